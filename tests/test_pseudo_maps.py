"""Activation maps, candidates and scores of the pseudo-box generator."""
import numpy as np
import pytest
import torch

from ovdet.clip.vit import CLIPViTTrunk
from ovdet.data.toyworld.categories import STUFF_CATEGORIES, THING_BY_ID, THING_CATEGORIES
from ovdet.data.toyworld.shapes import SHAPES
from ovdet.pseudo.candidates import component_boxes
from ovdet.pseudo.generator import PseudoBoxGenerator, PseudoBoxOptions, input_shape
from ovdet.pseudo.maps import METHODS, normalize_maps, window_masks
from ovdet.pseudo.scoring import activation_scores, combine_scores, pixel_boxes
from ovdet.pseudo.vocabulary import NounVocabulary

TOMATO, ICE_CUBE = 1, 6
# (category id, centre x, centre y, radius) of the two objects of the synthetic image
OBJECTS = ((TOMATO, 36, 40, 18), (ICE_CUBE, 90, 86, 18))


def two_object_image(size: int = 128) -> np.ndarray:
    """A flat sand-coloured image with a tomato (top left) and an ice cube (bottom right)."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = STUFF_CATEGORIES[3].color
    ys, xs = np.mgrid[:size, :size] + 0.5
    for category_id, cx, cy, radius in OBJECTS:
        category = THING_BY_ID[category_id]
        mask = SHAPES[category.shape]((xs - cx) / radius, (ys - cy) / radius)
        image[mask] = category.color
    return image


def object_box(category_id: int) -> tuple[int, int, int, int]:
    _, cx, cy, radius = next(o for o in OBJECTS if o[0] == category_id)
    return cx - radius, cy - radius, cx + radius, cy + radius


@pytest.fixture(scope="module")
def vocabulary():
    return NounVocabulary([{"id": c.id, "name": c.name, "synonyms": [c.plural]}
                           for c in THING_CATEGORIES])


@pytest.mark.parametrize("method", METHODS)
def test_each_method_peaks_on_the_named_object(toy_clip, vocabulary, method):
    generator = PseudoBoxGenerator(toy_clip, vocabulary, PseudoBoxOptions(method=method),
                                   background=[c.name for c in STUFF_CATEGORIES])
    image = two_object_image()
    batch = generator._to_input(image, input_shape(128, 128, 192, 8))[None]
    rows = [generator.row_of[TOMATO], generator.row_of[ICE_CUBE]]
    maps, _ = generator.maps(batch, [rows], generator.text)
    normalized = normalize_maps(maps[0], (128, 128), 0.0)
    for category_id, activation in zip((TOMATO, ICE_CUBE), normalized):
        y, x = np.unravel_index(int(activation.argmax()), activation.shape)
        x1, y1, x2, y2 = object_box(category_id)
        assert x1 <= x <= x2 and y1 <= y <= y2, (method, category_id, (x, y))


def test_generator_boxes_the_named_objects(toy_clip, vocabulary):
    generator = PseudoBoxGenerator(toy_clip, vocabulary,
                                   background=[c.name for c in STUFF_CATEGORIES])
    result, = generator([two_object_image()], [["An ice-cube and a TOMATO on the sand."]])
    assert not result.problems
    assert [b.category_id for b in result.boxes] == [ICE_CUBE, TOMATO]
    for box in result.boxes:
        x1, y1, x2, y2 = object_box(box.category_id)
        inter = max(0, min(x2, box.box[2]) - max(x1, box.box[0])) * \
            max(0, min(y2, box.box[3]) - max(y1, box.box[1]))
        union = (x2 - x1) * (y2 - y1) + (box.box[2] - box.box[0]) * (box.box[3] - box.box[1]) \
            - inter
        assert inter / union >= 0.5
        assert 0 < box.score <= 1


def test_proposals_replace_box_free_candidates(toy_clip, vocabulary):
    proposals = torch.tensor([[0.0, 0.0, 128.0, 128.0], [18.0, 22.0, 54.0, 58.0],
                              [72.0, 68.0, 108.0, 104.0]])
    generator = PseudoBoxGenerator(toy_clip, vocabulary,
                                   background=[c.name for c in STUFF_CATEGORIES],
                                   proposals=lambda images: [proposals] * len(images))
    result, = generator([two_object_image()], [["a tomato and an ice cube"]])
    chosen = {b.category_id: b.box for b in result.boxes}
    assert chosen == {TOMATO: tuple(proposals[1].tolist()), ICE_CUBE: tuple(proposals[2].tolist())}


def test_caption_problems_are_reported_not_raised(toy_clip, vocabulary):
    generator = PseudoBoxGenerator(toy_clip, vocabulary)
    image = two_object_image()
    captions = [[""], ["a photo of a sofa"], [None], ["Crème brûlée and a tomato"],
                ["a tomato " + "very " * 5000 + "long caption"]]
    results = generator([image] * len(captions), captions)
    assert [r.problems for r in results[:3]] == [["empty caption"],
                                                  ["no vocabulary noun in the captions"],
                                                  ["a caption is not a string"]]
    assert all(not r.boxes for r in results[:3])
    assert [b.category_id for b in results[3].boxes] == [TOMATO]
    assert [b.category_id for b in results[4].boxes] == [TOMATO]


def test_activation_score_by_hand():
    activation = torch.zeros(4, 6)
    activation[1:3, 1:3] = 1.0  # a 2x2 blob of ones: energy 4
    activation[0, 5] = 0.5  # energy 4.25 in all
    boxes = torch.tensor([[1.0, 1.0, 3.0, 3.0],    # the blob: 4 / sqrt(4 * 4.25)
                          [0.0, 0.0, 6.0, 4.0],    # everything: 4.5 / sqrt(24 * 4.25)
                          [1.0, 1.0, 2.0, 2.0],    # one pixel: 1 / sqrt(1 * 4.25)
                          [1.2, 1.5, 2.9, 2.1]])   # rounds out to the blob's 2x2 pixels
    expected = torch.tensor([4 / (4 * 4.25) ** 0.5, 4.5 / (24 * 4.25) ** 0.5,
                             1 / 4.25 ** 0.5, 4 / (4 * 4.25) ** 0.5])
    assert torch.allclose(activation_scores(activation, boxes), expected)
    assert int(activation_scores(activation, boxes).argmax()) == 0
    assert activation_scores(torch.zeros(4, 6), boxes).eq(0).all()
    assert activation_scores(activation, torch.zeros(0, 4)).shape == (0,)


def test_pixel_boxes_clip_and_keep_one_pixel():
    boxes = torch.tensor([[-3.0, 2.2, 50.0, 2.4], [5.5, 5.5, 5.5, 5.5]])
    assert pixel_boxes(boxes, (10, 8)).tolist() == [[0, 2, 8, 3], [5, 5, 6, 6]]


def test_combine_scores():
    activation, region = torch.tensor([0.25, 1.0]), torch.tensor([1.0, 0.04])
    assert torch.equal(combine_scores(activation, region, "activation"), activation)
    assert torch.equal(combine_scores(activation, region, "region"), region)
    assert torch.allclose(combine_scores(activation, region, "combined", 0.5),
                          torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="scorer"):
        combine_scores(activation, region, "best")


def test_component_boxes_at_several_thresholds():
    activation = torch.zeros(8, 10)
    activation[1:3, 1:4] = 0.9
    activation[5:7, 6:9] = 0.4
    activation[4, 5] = 0.4  # touches the second blob diagonally: 8-connected
    boxes = component_boxes(activation, (0.3, 0.8))
    assert boxes.tolist() == [[1, 1, 4, 3], [5, 4, 9, 7]]
    assert component_boxes(torch.zeros(3, 3), (0.5,)).shape == (0, 4)


def test_normalize_maps_and_windows():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]])
    out = normalize_maps(maps, (2, 2), zero_below=0.3)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))
    assert out[1].eq(0).all()  # a constant map has no activation
    assert normalize_maps(maps, (6, 4), 0.0).shape == (2, 6, 4)
    masks = window_masks((3, 4), 3)
    assert masks.shape == (12, 12)
    assert masks[0].reshape(3, 4).tolist() == [[True, True, False, False],
                                                 [True, True, False, False],
                                                 [False, False, False, False]]
    assert masks[5].sum() == 9 and masks.diagonal().all()


def test_bad_options_are_clear_errors(toy_clip):
    trunk = CLIPViTTrunk(toy_clip.model.visual, keep_last=3)
    from ovdet.pseudo.maps import ActivationMaps

    with pytest.raises(ValueError, match="method"):
        ActivationMaps(trunk, 100.0, method="lrp")
    with pytest.raises(ValueError, match="window"):
        ActivationMaps(trunk, 100.0, window=2)
    with pytest.raises(ValueError, match="gradcam_block"):
        ActivationMaps(trunk, 100.0, method="gradcam", gradcam_block=7)
    with pytest.raises(ValueError, match="zero_below"):
        PseudoBoxOptions(zero_below=1.5)
    with pytest.raises(ValueError, match="same regions as zero_below"):
        PseudoBoxOptions(zero_below=0.4, thresholds=(0.3, 0.6))


def test_input_shape_keeps_aspect_on_the_patch_grid():
    assert input_shape(128, 128, 192, 8) == (192, 192)
    assert input_shape(480, 640, 448, 16) == (336, 448)
    assert input_shape(1, 500, 64, 8) == (8, 64)
