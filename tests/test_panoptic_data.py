"""COCO panoptic data: reader and split, PNG decoding, catalog entries, mapper targets, and the
``datasets/prepare_coco_panoptic.py`` converter on COCO's real schema."""
import copy
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ovdet.data import DatasetCatalog
from ovdet.data.catalog import BoxMode, DatasetError
from ovdet.data.image_io import ImageReadError
from ovdet.data.loader import IterationBatches
from ovdet.data.mapper import DatasetMapper
from ovdet.data.ovd_splits import COCO_OVD_BASE_IDS, COCO_OVD_NOVEL_IDS
from ovdet.data.panoptic import (coco_panoptic_metadata, load_coco_panoptic_json,
                                 make_coco_panoptic_ovd, read_panoptic_png,
                                 register_coco_panoptic)
from ovdet.data.toyworld.writer import encode_segment_ids
from ovdet.data.toyworld.categories import NOVEL_NAMES, STUFF_CATEGORIES, THING_BY_ID

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "coco_panoptic_sample"

CATEGORIES = [  # out of id order on purpose: things and stuff are each sorted by id
    {"id": 11, "name": "grass", "isthing": 0}, {"id": 1, "name": "cat", "isthing": 1},
    {"id": 2, "name": "dog", "isthing": 1, "split": "novel"},
    {"id": 5, "name": "cow", "isthing": 1},
    {"id": 10, "name": "sky", "isthing": 0}]
H, W = 12, 16
CAT_A, CAT_B, DOG, COW, SKY, GRASS, UNLISTED, UNKNOWN = 3, 4, 263, 2 * 65536 + 1, 40, 41, 99, 50


def segment_map() -> np.ndarray:
    ids = np.zeros((H, W), dtype=np.int64)
    ids[:6], ids[6:] = SKY, GRASS
    ids[1:5, 1:6] = CAT_A
    ids[9:12, 12:16] = CAT_B
    ids[6:10, 2:7] = DOG          # novel: void in a base-only set
    ids[1:4, 10:15] = COW         # crowd: void for training
    ids[10:12, 0:2] = 0           # void in the PNG
    ids[5, 8:10] = UNLISTED       # an id that segments_info does not list: void
    ids[7, 8:10] = UNKNOWN        # a segment of a category id the json does not define
    return ids


def segments_info(ids: np.ndarray) -> list[dict]:
    def info(segment_id, category_id, iscrowd=0):
        ys, xs = np.nonzero(ids == segment_id)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1)]
        return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd,
                "area": len(xs), "bbox": bbox}

    return [info(CAT_A, 1), info(CAT_B, 1), info(DOG, 2), info(COW, 5, iscrowd=1), info(SKY, 10),
            info(GRASS, 11), info(UNKNOWN, 77)]


def write_panoptic_case(root: Path) -> tuple[str, str, str]:
    """One 16x12 image (white) with its panoptic PNG and json (real COCO panoptic schema), and a
    second image without a panoptic annotation. Returns (json, PNG folder, image folder)."""
    ids = segment_map()
    (root / "images").mkdir(parents=True)
    (root / "pngs").mkdir()
    Image.fromarray(np.full((H, W, 3), 255, dtype=np.uint8)).save(root / "images/a.jpg.png")
    Image.fromarray(encode_segment_ids(ids)).save(root / "pngs/a.png")
    data = {"info": {}, "licenses": [],
            "images": [{"id": 7, "file_name": "a.jpg.png", "height": H, "width": W},
                       {"id": 8, "file_name": "b.png", "height": H, "width": W}],
            "annotations": [{"image_id": 7, "file_name": "a.png",
                             "segments_info": segments_info(ids)}],
            "categories": CATEGORIES}
    (root / "panoptic.json").write_text(json.dumps(data))
    return str(root / "panoptic.json"), str(root / "pngs"), str(root / "images")


@pytest.fixture()
def case(tmp_path):
    return write_panoptic_case(tmp_path)


def test_metadata_things_then_stuff_and_base_split(case):
    everything = coco_panoptic_metadata("p_all", *case)
    assert everything.thing_classes == ["cat", "dog", "cow"]
    assert everything.class_splits == ["base", "novel", "base"]
    assert everything.stuff_classes == ["sky", "grass"]
    assert everything.stuff_dataset_id_to_contiguous_id == {10: 0, 11: 1}
    assert everything.panoptic_classes == ["cat", "dog", "cow", "sky", "grass"]
    assert everything.evaluator_type == "coco_panoptic" and everything.panoptic_json == case[0]
    assert everything.panoptic_root == case[1] and everything.image_root == case[2]
    base = coco_panoptic_metadata("p_base", *case, novel=["cow"], keep="base")
    assert base.thing_classes == ["cat"] and base.class_splits == ["base"]
    assert base.panoptic_classes == ["cat", "sky", "grass"]
    assert base.thing_dataset_id_to_contiguous_id == {1: 0}


def test_dicts_contiguous_ids_and_novel_segments_void(case, caplog):
    with caplog.at_level(logging.WARNING):
        records = load_coco_panoptic_json(*case, coco_panoptic_metadata("p_all", *case))
    assert "1 segments of unknown category ids" in caplog.text
    assert "1 images without a panoptic annotation" in caplog.text
    assert len(records) == 1
    record = records[0]
    assert record["file_name"] == str(Path(case[2]) / "a.jpg.png")
    assert record["pan_seg_file_name"] == str(Path(case[1]) / "a.png")
    assert (record["height"], record["width"], record["image_id"]) == (H, W, 7)
    segments = {s["id"]: (s["category_id"], s["isthing"], s["iscrowd"])
                for s in record["segments_info"]}
    assert segments == {CAT_A: (0, True, 0), CAT_B: (0, True, 0), DOG: (1, True, 0),
                        COW: (2, True, 1), SKY: (3, False, 0), GRASS: (4, False, 0)}
    assert record["segments_info"][0]["bbox"] == [1.0, 1.0, 5.0, 4.0]
    assert record["annotations"] == [
        {"bbox": [1.0, 1.0, 5.0, 4.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
         "iscrowd": 0, "segment_id": CAT_A},
        {"bbox": [12.0, 9.0, 4.0, 3.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
         "iscrowd": 0, "segment_id": CAT_B},
        {"bbox": [2.0, 6.0, 5.0, 4.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1,
         "iscrowd": 0, "segment_id": DOG},
        {"bbox": [10.0, 1.0, 5.0, 3.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2,
         "iscrowd": 1, "segment_id": COW}]
    # keep="base": the novel dog is gone from segments_info and annotations (its pixels are void)
    base = load_coco_panoptic_json(*case, coco_panoptic_metadata("p_base", *case, keep="base"))[0]
    assert {s["id"]: s["category_id"] for s in base["segments_info"]} == {
        CAT_A: 0, CAT_B: 0, COW: 1, SKY: 2, GRASS: 3}
    assert [a["segment_id"] for a in base["annotations"]] == [CAT_A, CAT_B, COW]
    assert [a["category_id"] for a in base["annotations"]] == [0, 0, 1]


def test_register_lazily_and_errors(case, tmp_path):
    register_coco_panoptic("p_reg", *case, keep="base")
    assert DatasetCatalog.metadata("p_reg").thing_classes == ["cat", "cow"]
    assert len(DatasetCatalog.get("p_reg")) == 1
    register_coco_panoptic("p_missing", str(tmp_path / "nope.json"), *case[1:])  # costs nothing
    with pytest.raises(FileNotFoundError, match="'p_missing'.*nope.json"):
        DatasetCatalog.get("p_missing")
    (tmp_path / "instances.json").write_text(json.dumps(
        {"images": [], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}],
         "categories": [{"id": 1, "name": "cat"}]}))
    register_coco_panoptic("p_instances", str(tmp_path / "instances.json"), *case[1:])
    with pytest.raises(DatasetError, match="'p_instances'.*instances.json.*not a COCO panoptic"):
        DatasetCatalog.metadata("p_instances")
    with pytest.raises(DatasetError, match=r"\['sky'\].*stuff is never novel"):
        coco_panoptic_metadata("p_sky", *case, novel=["sky"])
    with pytest.raises(ValueError, match="keep must be"):
        coco_panoptic_metadata("p_keep", *case, keep="novel")


def test_read_panoptic_png_and_unreadable_files(case, tmp_path):
    assert np.array_equal(read_panoptic_png(Path(case[1]) / "a.png"), segment_map())
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    (tmp_path / "empty.png").write_bytes(b"")
    png = (Path(case[1]) / "a.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "gray.png")
    for name, reason in [("garbage.png", "not an image"), ("empty.png", "empty"),
                         ("truncated.png", "truncated"), ("gray.png", "mode L"),
                         ("absent.png", "no such file")]:
        with pytest.raises(ImageReadError, match=reason):
            read_panoptic_png(tmp_path / name)


def pixel_labels(panoptic: dict) -> torch.Tensor:
    """(H, W) index of the mask holding each pixel, -1 for void; asserts that every pixel is in
    exactly one mask or void."""
    masks, void = panoptic["masks"], panoptic["void"]
    assert masks.dtype == torch.bool and void.dtype == torch.bool
    count = masks.sum(0)
    assert ((count == 1) ^ void).all() and (count <= 1).all()
    labels = torch.full(void.shape, -1, dtype=torch.int64)
    for k, mask in enumerate(masks):
        labels[mask] = k
    return labels


def test_mapper_panoptic_targets_follow_the_png(case):
    record = load_coco_panoptic_json(*case, coco_panoptic_metadata("p_base", *case, keep="base"))[0]
    mapper = DatasetMapper(is_train=True, min_size=24, max_size=32, flip=0.0)  # 2x, nearest
    out = mapper(record)
    panoptic = out["panoptic"]
    assert out["image"].shape == (3, 24, 32) and panoptic["masks"].shape == (4, 24, 32)
    assert panoptic["classes"].tolist() == [0, 0, 2, 3]  # cat, cat, sky, grass: crowd cow left out
    ids = torch.from_numpy(np.kron(segment_map(), np.ones((2, 2), dtype=np.int64)))
    labels = pixel_labels(panoptic)
    for k, segment_id in enumerate([CAT_A, CAT_B, SKY, GRASS]):
        assert torch.equal(labels == k, ids == segment_id)
    for void_id in (DOG, COW, UNLISTED, UNKNOWN, 0):  # novel, crowd, unlisted, unknown, void
        assert panoptic["void"][ids == void_id].all()
    instances = out["instances"]
    assert instances["boxes"].tolist() == [[2, 2, 12, 10], [24, 18, 32, 24]]
    assert instances["classes"].tolist() == [0, 0]
    assert torch.equal(instances["masks"], panoptic["masks"][:2])
    assert "masks" not in DatasetMapper(is_train=True, min_size=24, max_size=32, flip=0.0,
                                        with_masks=False)(record)["instances"]
    # a flip moves image, masks and boxes together
    flipped = DatasetMapper(is_train=True, min_size=24, max_size=32, flip=1.0)(record)
    assert torch.equal(flipped["panoptic"]["masks"], panoptic["masks"].flip(-1))
    assert torch.equal(flipped["panoptic"]["void"], panoptic["void"].flip(-1))
    assert flipped["instances"]["boxes"].tolist() == [[20, 2, 30, 10], [0, 18, 8, 24]]
    # inference: no targets
    test = DatasetMapper(is_train=False, min_size=24, max_size=32)(record)
    assert "panoptic" not in test and "instances" not in test


def test_mapper_scale_jitter_pads_void_and_drops_empty_segments(case):
    record = load_coco_panoptic_json(*case, coco_panoptic_metadata("p_all", *case))[0]
    torch.manual_seed(0)
    shrink = DatasetMapper(is_train=True, min_size=40, max_size=40, scale_jitter=(0.3, 0.4))
    out = shrink(record)
    image, panoptic = out["image"], out["panoptic"]
    assert image.shape == (3, 40, 40)
    pixel_labels(panoptic)
    padding = (image == 0).all(0)  # the image is white: black pixels are padding
    assert padding.any() and panoptic["void"][padding].all()
    grow = DatasetMapper(is_train=True, min_size=8, max_size=8, scale_jitter=(2.0, 2.0), flip=0.0)
    for seed in range(6):  # crops of 8 x 8 out of 16 x 21: segments outside are dropped
        torch.manual_seed(seed)
        panoptic = grow(record)["panoptic"]
        pixel_labels(panoptic)
        assert panoptic["masks"].flatten(1).any(1).all()
        assert len(panoptic["classes"]) == len(panoptic["masks"])
    empty = grow({**record, "segments_info": []})  # nothing kept: all void, no targets
    assert empty["panoptic"]["masks"].shape == (0, 8, 8) and empty["panoptic"]["void"].all()
    assert empty["instances"]["boxes"].shape == (0, 4) and len(empty["instances"]["classes"]) == 0


def test_mapper_png_errors_are_skipped_by_the_loader(case, tmp_path, caplog):
    record = load_coco_panoptic_json(*case, coco_panoptic_metadata("p_all", *case))[0]
    mapper = DatasetMapper(is_train=True, min_size=24, max_size=32)
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="panoptic PNG is 5x5 but its image is 16x12"):
        mapper({**record, "pan_seg_file_name": str(tmp_path / "small.png")})
    with pytest.raises(ImageReadError, match="bad.png"):
        mapper({**record, "pan_seg_file_name": str(tmp_path / "bad.png")})
    records = [{**record, "pan_seg_file_name": str(tmp_path / "bad.png")}, record]
    with caplog.at_level(logging.WARNING):
        batch = IterationBatches(records, mapper, batch_size=2, seed=0)[0]
    assert len(batch) == 1 and "skipping" in caplog.text and "bad.png" in caplog.text


def test_builtin_panoptic_datasets(tiny_world, tmp_path, monkeypatch):
    (tmp_path / "toyworld").symlink_to(tiny_world)
    monkeypatch.setenv("OVDET_DATASETS", str(tmp_path))
    for name in ("toyworld_train_panoptic", "toyworld_val_panoptic", "coco_panoptic_ovd_train",
                 "coco_panoptic_ovd_val"):
        assert name in DatasetCatalog
    train = DatasetCatalog.metadata("toyworld_train_panoptic")
    assert len(train.thing_classes) == 8 and set(train.class_splits) == {"base"}
    assert not set(NOVEL_NAMES) & set(train.thing_classes)
    assert train.stuff_classes == [c.name for c in STUFF_CATEGORIES]
    assert train.evaluator_type == "coco_panoptic" and train.keep == "base"
    assert train.panoptic_root == str(tmp_path / "toyworld/annotations/panoptic_train")
    val = DatasetCatalog.metadata("toyworld_val_panoptic")
    assert val.novel_classes == ["banana", "ice cube", "grape", "egg"]
    assert len(val.panoptic_classes) == 17 and len(DatasetCatalog.get("toyworld_val_panoptic")) == 6
    raw = json.loads((tiny_world / "annotations/panoptic_train.json").read_text())
    novel = {ann["image_id"]: [s["id"] for s in ann["segments_info"]
                               if THING_BY_ID.get(s["category_id"], None)
                               and THING_BY_ID[s["category_id"]].split == "novel"]
             for ann in raw["annotations"]}
    records = DatasetCatalog.get("toyworld_train_panoptic")
    record = next(r for r in records if novel[r["image_id"]])  # an image with a novel object
    assert not set(novel[record["image_id"]]) & {s["id"] for s in record["segments_info"]}
    assert all(a["category_id"] < 8 for r in records for a in r["annotations"])
    out = DatasetMapper(is_train=True, min_size=64, max_size=64, flip=0.0)(record)
    ids = torch.from_numpy(read_panoptic_png(record["pan_seg_file_name"]))
    labels = pixel_labels(out["panoptic"])
    for segment_id in novel[record["image_id"]]:
        assert (labels[ids == segment_id] == -1).all()
    assert len(out["instances"]["boxes"]) == sum(s["isthing"] for s in record["segments_info"])
    with pytest.raises(FileNotFoundError, match="panoptic_val2017_ovd.json"):
        DatasetCatalog.metadata("coco_panoptic_ovd_val")


# ---- datasets/prepare_coco_panoptic.py, on COCO's real schema ----------------------------------

needs_sample = pytest.mark.skipif(not (SAMPLE / "panoptic_val2017_sample.json").is_file(),
                                  reason="the real COCO panoptic sample is not in ../shared/data")
RELABEL = {3937500: 17, 4587520: 6}  # a person as a cat, a truck as a bus: novel things


def sample_with_novel() -> dict:
    """The real sample (2 images, 133 categories) with two segments relabelled as novel things,
    so that the split has something to remove (its PNGs are still valid for it)."""
    data = json.loads((SAMPLE / "panoptic_val2017_sample.json").read_text())
    for ann in data["annotations"]:
        for segment in ann["segments_info"]:
            if ann["image_id"] == 142238 and segment["id"] == 3937500 \
                    or ann["image_id"] == 439180 and segment["id"] == 4587520:
                segment["category_id"] = RELABEL[segment["id"]]
    return data


def segment_categories(data: dict) -> list[int]:
    return sorted(s["category_id"] for a in data["annotations"] for s in a["segments_info"])


@needs_sample
def test_make_coco_panoptic_ovd_on_the_real_schema():
    data = sample_with_novel()
    before = copy.deepcopy(data)
    base, removed = make_coco_panoptic_ovd(data, "base")
    assert data == before  # the input is not modified
    assert removed == 2  # the cat and the bus
    things = {c["id"]: c["split"] for c in base["categories"] if c["isthing"]}
    assert things == {c["id"]: "base" for c in data["categories"]
                      if c["isthing"] and c["id"] not in COCO_OVD_NOVEL_IDS}
    assert len(things) == 63 and set(COCO_OVD_BASE_IDS) <= set(things)
    assert sum(not c["isthing"] for c in base["categories"]) == 53
    kept = segment_categories(base)
    assert not {6, 17} & set(kept) and {1, 8, 19, 37, 125, 184, 187, 193} <= set(kept)
    assert len(kept) == len(segment_categories(data)) - 2
    assert base["images"] == data["images"] and base["info"] == data["info"]
    everything, removed = make_coco_panoptic_ovd(data, "all")
    assert removed == 0 and everything["annotations"] == data["annotations"]
    things = {c["id"]: c["split"] for c in everything["categories"] if c["isthing"]}
    assert len(things) == 80 and {i for i, s in things.items() if s == "novel"} == set(
        COCO_OVD_NOVEL_IDS)
    # --others drop: the 15 categories outside the split go too, as in the instance files
    dropped, removed = make_coco_panoptic_ovd(data, "base", others="drop")
    assert removed == 3 and 37 not in segment_categories(dropped)
    assert {c["id"] for c in dropped["categories"] if c["isthing"]} == set(COCO_OVD_BASE_IDS)
    dropped, removed = make_coco_panoptic_ovd(data, "all", others="drop")
    assert removed == 1 and sum(c["isthing"] for c in dropped["categories"]) == 65
    with pytest.raises(ValueError, match="not a COCO panoptic json"):
        make_coco_panoptic_ovd({**data, "annotations": [{"image_id": 1, "bbox": []}]}, "base")
    renamed = copy.deepcopy(data)
    next(c for c in renamed["categories"] if c["id"] == 17)["name"] = "kitten"
    with pytest.raises(ValueError, match="17 is 'kitten', not 'cat'"):
        make_coco_panoptic_ovd(renamed, "all")


def run_script(*args, env_root=None):
    env = {**os.environ, "OVDET_DATASETS": str(env_root)} if env_root else None
    return subprocess.run([sys.executable, str(REPO / "datasets/prepare_coco_panoptic.py"), *args],
                          env=env, capture_output=True, text=True, timeout=60)


@needs_sample
def test_prepare_script_end_to_end(tmp_path):
    annotations = tmp_path / "coco" / "annotations"
    proc = run_script(env_root=tmp_path)  # nothing there yet
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1
    assert str(annotations / "panoptic_train2017.json") in proc.stderr
    assert "cocodataset.org" in proc.stderr and "Traceback" not in proc.stderr
    annotations.mkdir(parents=True)
    for split in ("train", "val"):
        (annotations / f"panoptic_{split}2017.json").write_text(json.dumps(sample_with_novel()))
    proc = run_script(env_root=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "63 thing categories (63 base, 0 novel), 53 stuff categories" in proc.stdout
    assert "80 thing categories (63 base, 17 novel), 53 stuff categories" in proc.stdout
    assert "2 removed" in proc.stdout and "0 removed" in proc.stdout
    train = json.loads((annotations / "panoptic_train2017_ovd_base.json").read_text())
    assert train == make_coco_panoptic_ovd(sample_with_novel(), "base")[0]
    val = json.loads((annotations / "panoptic_val2017_ovd.json").read_text())
    assert val == make_coco_panoptic_ovd(sample_with_novel(), "all")[0]

    # the written base-only file, read with COCO's own (untouched) PNGs: novel pixels are void
    register_coco_panoptic("sample_ovd_base", str(annotations / "panoptic_train2017_ovd_base.json"),
                           str(SAMPLE / "panoptic_val2017_sample"), str(SAMPLE / "val2017"),
                           keep="base")
    metadata = DatasetCatalog.metadata("sample_ovd_base")
    assert len(metadata.thing_classes) == 63 and len(metadata.stuff_classes) == 53
    record = next(r for r in DatasetCatalog.get("sample_ovd_base") if r["image_id"] == 142238)
    assert 3937500 not in {s["id"] for s in record["segments_info"]}
    out = DatasetMapper(is_train=True, min_size=427, max_size=640, flip=0.0)(record)  # no resize
    ids = torch.from_numpy(read_panoptic_png(record["pan_seg_file_name"]))
    labels = pixel_labels(out["panoptic"])
    assert (labels[ids == 3937500] == -1).all()  # the novel "cat"
    assert (labels[ids == 3153362] == -1).all()  # a crowd of people
    person = metadata.thing_classes.index("person")
    kept = [s for s in record["segments_info"] if not s["iscrowd"]]
    assert out["panoptic"]["classes"].tolist() == [s["category_id"] for s in kept]
    for k, segment in enumerate(kept):
        assert torch.equal(labels == k, ids == segment["id"])
    assert (out["instances"]["classes"] == person).sum() == 12



@needs_sample
def test_prepare_script_one_file_and_errors(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("prepare_coco_panoptic",
                                                  REPO / "datasets/prepare_coco_panoptic.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    source = tmp_path / "panoptic_val2017_sample.json"
    source.write_text(json.dumps(sample_with_novel()))
    assert script.main(["--input", str(source), "--keep", "base"]) == 0
    written = tmp_path / "panoptic_val2017_sample_ovd_base.json"
    assert f"wrote {written}" in capsys.readouterr().out and written.is_file()
    assert script.main(["--input", str(source), "--keep", "all", "--output", str(source)]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite the input" in err and err.count("\n") == 1
    assert json.loads(source.read_text()) == sample_with_novel()
    with pytest.raises(SystemExit):
        script.main(["--input", str(source)])  # no --keep
    capsys.readouterr()
    (tmp_path / "instances.json").write_text(json.dumps(
        {"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
         "categories": []}))
    assert script.main(["--input", str(tmp_path / "instances.json"), "--keep", "all"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("instances.json: annotations[0] has no ['file_name', "
                                      "'segments_info']: not a COCO panoptic json") in err
    assert not (tmp_path / "instances_ovd.json").exists()
