"""The shipped toy CLIP meets its zero-shot target on a small, freshly drawn held-out set."""
from ovdet.evaluation.clip_probe import dense_patch_accuracy, patch_labels, zero_shot_accuracy

import numpy as np

FRESH_SEED = 424242  # never used for training (1000) nor for the model card's probes (9001, 9002)


def test_zero_shot_target(toy_clip):
    result = zero_shot_accuracy(toy_clip, num_images=240, seed=FRESH_SEED)
    assert result["overall"] >= 0.90, result
    assert result["novel"] >= 0.85, result


def test_dense_patches_localise(toy_clip):
    result = dense_patch_accuracy(toy_clip, num_images=48, seed=FRESH_SEED + 1)
    assert result["overall"] >= 0.5, result  # chance is 1/12


def test_patch_labels_by_hand():
    mask = np.zeros((16, 16), bool)
    mask[0:8, 0:8] = True      # fills patch (0, 0)
    mask[8:12, 8:16] = True    # half of patch (1, 1)
    other = np.zeros((16, 16), bool)
    other[8:11, 0:8] = True    # 3/8 of patch (1, 0): below half
    labels = patch_labels([(3, mask), (7, other)], grid=2)
    assert labels.tolist() == [[3, 0], [0, 3]]
