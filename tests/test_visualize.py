import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ovdet.utils.visualize import PALETTE, draw_detections, label_color, save_png

GRAY = 100


def gray(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), GRAY, np.uint8)


def test_box_edges_change_and_far_pixels_do_not():
    image = gray(200, 200)
    out = draw_detections(image, np.array([[50.0, 60.0, 150.0, 160.0]]), ["cat"])
    color = label_color("cat")
    for y, x in ((60, 100), (160, 100), (110, 50), (110, 150)):  # top, bottom, left, right edges
        assert tuple(out[y, x]) == color
    assert (out[62:158, 52:148] == GRAY).all()  # inside the outline
    assert (out[170:] == GRAY).all()
    assert (out[:, 160:] == GRAY).all() and (out[:, :45] == GRAY).all()
    assert (image == GRAY).all()  # the input is untouched


def test_label_tag_above_box_with_score():
    out = draw_detections(gray(200, 200), np.array([[50.0, 60.0, 150.0, 160.0]]), ["cat"],
                          scores=np.array([0.93]))
    tag = out[40:60, 50:150]
    color = np.array(label_color("cat"))
    assert (tag == color).all(axis=-1).sum() > 100  # filled background
    assert (~(tag == color).all(axis=-1) & ~(tag == GRAY).all(axis=-1)).any()  # text on it
    assert (out[:40] == GRAY).all()
    no_score = draw_detections(gray(200, 200), np.array([[50.0, 60.0, 150.0, 160.0]]), ["cat"])
    assert ((no_score[40:60] == color).all(axis=-1).sum()  # "cat" is shorter than "cat 0.93"
            < (out[40:60] == color).all(axis=-1).sum())


def test_label_tag_kept_inside_image():
    color = np.array(label_color("a long category name"))
    # at the top edge the tag goes inside the box; at the right edge it moves left
    out = draw_detections(gray(100, 200), np.array([[185.0, 0.0, 199.0, 50.0]]),
                          ["a long category name"], scores=np.array([0.5]))
    assert (out[0:5, 120:185] == color).all(axis=-1).any(axis=1).all()
    assert (out[60:] == GRAY).all()


def test_boxes_clipped_and_outside_boxes_ignored():
    image = gray(100, 100)
    out = draw_detections(image, np.array([[-20.0, -20.0, 50.0, 50.0]]), ["dog"])
    color = label_color("dog")
    assert tuple(out[50, 25]) == color and tuple(out[25, 0]) == color  # bottom edge, clipped left
    assert (out[52:] == GRAY).all()
    outside = np.array([[120.0, 10.0, 150.0, 20.0], [-50.0, -50.0, -10.0, -5.0]])
    np.testing.assert_array_equal(draw_detections(image, outside, ["dog", "cat"]), image)


def test_masks_blended_with_label_colour():
    image = gray(64, 64)
    masks = np.zeros((1, 64, 64), bool)
    masks[0, 30:40, 20:30] = True
    boxes = np.array([[10.0, 20.0, 40.0, 50.0]])  # the label tag lies above, in rows 0-19
    color = np.array(label_color("sheep"))
    out = draw_detections(image, boxes, ["sheep"], masks=masks, mask_alpha=0.5)
    half_way = np.rint((GRAY + color) / 2)
    np.testing.assert_array_equal(out[30:40, 20:30], np.broadcast_to(half_way, (10, 10, 3)))
    assert (out[22:30, 12:38] == GRAY).all() and (out[52:] == GRAY).all()  # outside the mask
    opaque = draw_detections(image, boxes, ["sheep"], masks=masks, mask_alpha=1.0)
    assert (opaque[30:40, 20:30] == color).all()
    clear = draw_detections(image, boxes, ["sheep"], masks=masks, mask_alpha=0.0)
    assert (clear[30:40, 20:30] == GRAY).all()
    empty_mask = draw_detections(image, boxes, ["sheep"], masks=np.zeros_like(masks))
    np.testing.assert_array_equal(empty_mask, draw_detections(image, boxes, ["sheep"]))


def test_no_detections_returns_equal_copy():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = draw_detections(image, np.zeros((0, 4)), [], scores=np.zeros(0),
                          masks=np.zeros((0, 20, 30), bool))
    np.testing.assert_array_equal(out, image)
    assert out is not image and not np.shares_memory(out, image)


def test_tiny_and_large_images():
    out = draw_detections(np.zeros((1, 1, 3), np.uint8), np.array([[0.0, 0.0, 0.0, 0.0]]), ["x"],
                          scores=np.array([1.0]), masks=np.ones((1, 1, 1), bool))
    assert out.shape == (1, 1, 3) and out.dtype == np.uint8 and out.any()
    large = np.zeros((3000, 4000, 3), np.uint8)
    masks = np.zeros((2, 3000, 4000), bool)
    masks[0, 100:2000, 200:3000] = True
    boxes = np.array([[200.0, 100.0, 3000.0, 2000.0], [3500.0, 2500.0, 4100.0, 3100.0]])
    out = draw_detections(large, boxes, ["person", "kite"], np.array([0.9, 0.2]), masks)
    assert out.shape == (3000, 4000, 3) and tuple(out[2000, 1000]) == label_color("person")
    assert (out[2100:2400, :3400] == 0).all()


def test_label_colour_deterministic_across_processes():
    labels = ["person", "traffic light", "ice cube", "ü"]
    colors = [label_color(label) for label in labels]
    assert colors == [label_color(label) for label in labels] and set(colors) <= set(PALETTE)
    code = ("from ovdet.utils.visualize import label_color; "
            f"print([label_color(label) for label in {labels!r}])")
    for seed in ("1", "2"):  # str hashes differ between these processes; colours must not
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.stdout.strip() == str(colors)
    assert len({label_color(f"category {i}") for i in range(100)}) > len(PALETTE) // 2
    image, boxes = gray(50, 50), np.array([[5.0, 5.0, 40.0, 40.0]])
    np.testing.assert_array_equal(draw_detections(image, boxes, ["x"]),
                                  draw_detections(image, boxes, ["x"]))


@pytest.mark.parametrize("kwargs, message", [
    ({"image": np.zeros((10, 10), np.uint8)}, r"\(H, W, 3\) uint8"),
    ({"image": np.zeros((10, 10, 3), np.float32)}, "float32"),
    ({"boxes": np.zeros((1, 5))}, r"\(N, 4\)"),
    ({"labels": ["a", "b"]}, "1 boxes but 2 labels"),
    ({"boxes": np.array([[5.0, 5.0, 2.0, 8.0]])}, "box 0"),
    ({"boxes": np.array([[0.0, np.nan, 2.0, 8.0]])}, "NaN"),
    ({"scores": np.zeros(2)}, r"scores must have shape \(1,\)"),
    ({"masks": np.zeros((1, 10, 10), np.uint8)}, "bool"),
    ({"masks": np.zeros((1, 5, 10), bool)}, r"\(1, 10, 10\)"),
    ({"mask_alpha": 1.5}, "mask_alpha"),
])
def test_invalid_inputs(kwargs, message):
    arguments = {"image": np.zeros((10, 10, 3), np.uint8),
                 "boxes": np.array([[1.0, 1.0, 5.0, 5.0]]), "labels": ["a"], **kwargs}
    with pytest.raises(ValueError, match=message):
        draw_detections(**arguments)


def test_save_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / "out" / "vis.png"
    save_png(path, image)
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        np.testing.assert_array_equal(np.asarray(saved), image)
    assert sorted(p.name for p in path.parent.iterdir()) == ["vis.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "bad.png", image.astype(np.float32))
    assert not (tmp_path / "bad.png").exists()
