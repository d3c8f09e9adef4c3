"""Test-wide setup: never touch the network, never write into the user's caches."""
import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OVDET_CACHE", tempfile.mkdtemp(prefix="ovdet-test-cache-"))

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_clip():
    """A randomly initialised tiny CLIP (ovdet-test-vit-t8: 32 px, patch 8, 2 blocks)."""
    from ovdet.clip import load_clip

    torch.manual_seed(0)
    return load_clip("ovdet-test-vit-t8")


@pytest.fixture(scope="session")
def toy_clip():
    """The toy CLIP shipped with the package."""
    from ovdet.clip import load_clip

    return load_clip("toyworld")


TINY_DETECTOR = [
    "MODEL.CLIP.NAME", "ovdet-test-vit-t8", "MODEL.CLIP.KEEP_LAST_BLOCKS", "2",
    "MODEL.BACKBONE.OUT_CHANNELS", "16", "MODEL.RPN.ANCHOR_SIZES", "(8, 16, 32, 64)",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "30",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.ROI_HEADS.HIDDEN_DIM", "32",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "MODEL.ROI_MASK_HEAD.CONV_DIM", "8", "MODEL.ROI_MASK_HEAD.NUM_CONV", "1",
    "INPUT.MIN_SIZE", "64", "INPUT.MAX_SIZE", "64", "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "(3,)", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
    "TEST.IMS_PER_BATCH", "4", "SEED", "3",
]

# The tiny detector with a small panoptic branch (RMA blocks included) instead of the RoI mask head.
TINY_PANOPTIC = TINY_DETECTOR + [
    "MODEL.MASK_ON", "False", "MODEL.PANOPTIC_ON", "True", "MODEL.PANOPTIC.NUM_QUERIES", "5",
    "MODEL.PANOPTIC.HIDDEN_DIM", "32", "MODEL.PANOPTIC.NUM_HEADS", "4",
    "MODEL.PANOPTIC.DIM_FEEDFORWARD", "64", "MODEL.PANOPTIC.DEC_LAYERS", "1",
    "MODEL.PANOPTIC.TRAIN_POINTS", "64", "MODEL.PANOPTIC.RMA_BLOCKS", "(1,)",
    "MODEL.PANOPTIC.RMA_DIM", "8", "DATASETS.TRAIN", "('tiny_train_panoptic',)",
    "DATASETS.TEST", "('tiny_val_panoptic',)",
]


@pytest.fixture()
def tiny_cfg():
    """A config of a tiny detector on the random tiny CLIP (64 px inputs)."""
    from ovdet.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR)
    return cfg


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A toy world of 64-px images (train 12, val 6) registered as tiny_train / tiny_val and
    tiny_train_panoptic / tiny_val_panoptic."""
    from ovdet.data import register_coco_instances
    from ovdet.data.panoptic import register_coco_panoptic
    from ovdet.data.toyworld import write_split

    root = tmp_path_factory.mktemp("tiny_world")
    for split, count in (("train", 12), ("val", 6)):
        write_split(root, split, count, seed=77, size=64, workers=1, progress=False)
    register_coco_instances("tiny_train", str(root / "annotations/instances_train.json"),
                            str(root / "train"), keep="base")
    register_coco_instances("tiny_val", str(root / "annotations/instances_val.json"),
                            str(root / "val"))
    for split, keep in (("train", "base"), ("val", "all")):
        register_coco_panoptic(f"tiny_{split}_panoptic",
                               str(root / f"annotations/panoptic_{split}.json"),
                               str(root / f"annotations/panoptic_{split}"), str(root / split),
                               keep=keep)
    return root


@pytest.fixture(autouse=True)
def fresh_logging():
    """train_net configures the root logger for its process; undo that between tests."""
    yield
    for handler in logging.getLogger().handlers[:]:
        logging.getLogger().removeHandler(handler)
        handler.close()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """A config naming the tiny world's datasets (see ``tiny_world``)."""
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text("DATASETS:\n  TRAIN: [tiny_train]\n  TEST: [tiny_val]\n")
    return str(path)


NAMES = ["tomato", "egg", "olive"]  # the reference detector's training vocabulary
REFERENCE = Path(__file__).parent / "data" / "scorer_reference.pt"


def reference_model(cfg):
    """The tiny detector with the weights it had at seed 0 before the seams refactor (the file
    also holds that code's detections; see data/README.md). The text tower is not in a detector
    checkpoint: it is the tiny CLIP's at seed 0, as then."""
    from ovdet.modeling.registry import build_model

    torch.manual_seed(0)
    model = build_model(cfg)
    model.load_state_dict(torch.load(REFERENCE, weights_only=True)["state_dict"])
    return model


@pytest.fixture()
def model(tiny_cfg):
    """:func:`reference_model` trained on :data:`NAMES`."""
    model = reference_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    return model
