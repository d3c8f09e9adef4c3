import contextlib
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ovdet.data.toyworld import (BASE_NAMES, NOVEL_NAMES, THING_CATEGORIES, decode_segment_ids,
                                 render_scene, write_split)
from ovdet.data.toyworld.__main__ import main as toyworld_main

NUM = 24


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("toyworld")
    write_split(root, "val", NUM, seed=5, workers=2, progress=False)
    return root


def load(root, kind, split="val"):
    return json.loads((root / "annotations" / f"{kind}_{split}.json").read_text())


def test_split_is_fixed_and_documented():
    assert len(THING_CATEGORIES) == 12
    assert NOVEL_NAMES == ("banana", "ice cube", "grape", "egg") and len(BASE_NAMES) == 8
    assert len({c.color for c in THING_CATEGORIES}) == 12  # every category its own colour family


def test_same_seed_identical_files_other_seed_differs(world, tmp_path):
    write_split(tmp_path / "again", "val", NUM, seed=5, workers=1, progress=False)
    write_split(tmp_path / "other", "val", NUM, seed=6, workers=1, progress=False)
    files = sorted(p.relative_to(world) for p in world.rglob("*") if p.is_file())
    assert len(files) == 2 * NUM + 3
    for rel in files:
        assert (world / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel
    assert (world / "val/000001.png").read_bytes() != (tmp_path / "other/val/000001.png").read_bytes()


def test_instances_load_with_pycocotools_and_boxes_match_masks(world):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(world / "annotations/instances_val.json"))
    assert len(coco.getImgIds()) == NUM
    categories = coco.loadCats(coco.getCatIds())
    assert {c["split"] for c in categories} == {"base", "novel"}
    assert sum(c["split"] == "novel" for c in categories) == 4
    anns = coco.loadAnns(coco.getAnnIds())
    ids = [a["id"] for a in load(world, "instances")["annotations"]]
    assert len(anns) >= NUM and ids == list(range(1, len(ids) + 1))  # unique, consecutive
    for ann in anns:
        image = coco.loadImgs(ann["image_id"])[0]
        mask = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
        assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum() > 0 and ann["iscrowd"] == 0


def test_panoptic_png_ids_match_segments(world):
    panoptic = load(world, "panoptic")
    instances = load(world, "instances")
    is_thing = {c["id"]: c["isthing"] for c in panoptic["categories"]}
    assert set(is_thing.values()) == {0, 1}
    boxes = {}
    for ann in instances["annotations"]:
        boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    for ann in panoptic["annotations"]:
        ids = decode_segment_ids(np.asarray(Image.open(world / "annotations/panoptic_val" / ann["file_name"])))
        present, counts = np.unique(ids, return_counts=True)
        segments = {s["id"]: s for s in ann["segments_info"]}
        assert set(present.tolist()) == set(segments)  # every pixel labelled, no stray id
        for seg_id, count in zip(present.tolist(), counts.tolist()):
            assert segments[seg_id]["area"] == count
            rle = mask_utils.encode(np.asfortranarray((ids == seg_id).astype(np.uint8)))
            assert list(mask_utils.toBbox(rle)) == segments[seg_id]["bbox"]
        things = [s["bbox"] for s in ann["segments_info"] if is_thing[s["category_id"]]]
        assert things == boxes.get(ann["image_id"], [])


def test_captions_name_things(world):
    captions = load(world, "captions")["annotations"]
    instances = load(world, "instances")
    names = {c["id"]: c["synonyms"] for c in instances["categories"]}
    present = {}
    for ann in instances["annotations"]:
        present.setdefault(ann["image_id"], set()).add(ann["category_id"])
    named = 0
    for caption in captions:
        text = caption["caption"]
        hits = {cid for cid, words in names.items()
                if any(re.search(rf"\b{re.escape(w)}s?\b", text) for w in words)}
        assert hits <= present[caption["image_id"]], text  # never a thing that is not there
        named += len(hits)
    assert named >= 0.8 * sum(len(v) for v in present.values())  # few omissions


def test_scene_occlusion_and_coverage():
    for index in range(30):
        scene = render_scene(np.random.default_rng([11, index]), size=64)
        masks = [s.mask for s in scene.things + scene.stuff]
        assert np.array_equal(np.sum(masks, axis=0), np.ones((64, 64)))  # disjoint, complete
        assert all(t.mask.any() for t in scene.things)
        assert scene.image.dtype == np.uint8 and scene.image.shape == (64, 64, 3)


def test_cli_layout(tmp_path, capsys):
    toyworld_main(["--out", str(tmp_path), "--split", "mini", "--num-images", "3", "--seed", "4"])
    assert "wrote 3 images (seed 4)" in capsys.readouterr().out
    for rel in ["mini/000003.png", "annotations/instances_mini.json", "annotations/captions_mini.json",
                "annotations/panoptic_mini.json", "annotations/panoptic_mini/000003.png"]:
        assert (tmp_path / rel).is_file(), rel
    with pytest.raises(SystemExit):
        toyworld_main(["--out", str(tmp_path), "--num-images", "0"])
