"""Catalog, COCO reader, mapper and loaders: splits, malformed inputs, determinism."""
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ovdet.config import get_cfg
from ovdet.data import DatasetCatalog, register_coco_instances
from ovdet.data.catalog import UnknownDatasetError
from ovdet.data.image_io import ImageReadError
from ovdet.data.loader import IterationBatches, iterate_test_records
from ovdet.data.mapper import DatasetMapper


def write_coco(tmp_path, images, annotations, categories):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return str(path)


CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "category", "split": "novel"},
              {"id": 9, "name": "dog"}]


def test_register_coco_instances_splits_and_cleans(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [2, 2, 5, 5], "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 9, "bbox": [25, 15, 10, 10], "iscrowd": 0},  # clipped
        {"id": 4, "image_id": 1, "category_id": 9, "bbox": [40, 1, 5, 5], "iscrowd": 0},  # outside
        {"id": 5, "image_id": 1, "category_id": 9, "bbox": [3, 3, 0, 4], "iscrowd": 0},  # zero area
        {"id": 6, "image_id": 1, "category_id": 99, "bbox": [3, 3, 4, 4], "iscrowd": 0},  # unknown
    ]
    json_file = write_coco(tmp_path, images, annotations, CATEGORIES)
    register_coco_instances("t_all", json_file, str(tmp_path), novel=["dog"])
    register_coco_instances("t_base", json_file, str(tmp_path), novel=["dog"], keep="base")
    everything = DatasetCatalog.metadata("t_all")
    assert everything.thing_classes == ["cat", "category", "dog"]
    assert everything.class_splits == ["base", "novel", "novel"]  # json split + novel=[...]
    assert DatasetCatalog.metadata("t_base").thing_classes == ["cat"]
    with caplog.at_level(logging.WARNING):
        records = DatasetCatalog.get("t_all")
    assert "unknown category id" in caplog.text and "empty box" in caplog.text
    boxes = [(a["category_id"], a["bbox"]) for a in records[0]["annotations"]]
    assert boxes == [(0, [1, 1, 5, 5]), (1, [2, 2, 5, 5]), (2, [25, 15, 5, 5])]
    base = DatasetCatalog.get("t_base")[0]["annotations"]
    assert [a["category_id"] for a in base] == [0]  # novel boxes never reach training
    assert records[0]["file_name"] == str(tmp_path / "a.png")


def test_catalog_errors(tmp_path):
    with pytest.raises(UnknownDatasetError, match="not registered.*register_coco_instances"):
        DatasetCatalog.get("no_such_dataset")
    register_coco_instances("t_missing", str(tmp_path / "nope.json"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        DatasetCatalog.get("t_missing")
    (tmp_path / "bad.json").write_text("{\"images\": []}")
    register_coco_instances("t_bad", str(tmp_path / "bad.json"), str(tmp_path))
    with pytest.raises(ValueError, match="not a COCO instances json"):
        DatasetCatalog.metadata("t_bad")
    register_coco_instances("t_novel", write_coco(tmp_path, [], [], CATEGORIES), str(tmp_path),
                            novel=["zebra"])
    with pytest.raises(ValueError, match="zebra"):
        DatasetCatalog.metadata("t_novel")


def test_builtin_toyworld_reads_ovdet_datasets(tiny_world, tmp_path, monkeypatch):
    (tmp_path / "toyworld").symlink_to(tiny_world)
    monkeypatch.setenv("OVDET_DATASETS", str(tmp_path))
    train = DatasetCatalog.metadata("toyworld_train")
    assert len(train.thing_classes) == 8 and set(train.class_splits) == {"base"}
    assert train.json_file == str(tmp_path / "toyworld/annotations/instances_train.json")
    val = DatasetCatalog.metadata("toyworld_val")
    assert val.novel_classes == ["banana", "ice cube", "grape", "egg"]
    assert len(DatasetCatalog.get("toyworld_val")) == 6


def mapper_cfg():
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.MIN_SIZE", "32", "INPUT.MAX_SIZE", "48"])
    return cfg


def test_train_mapper_keeps_boxes_and_masks_together(tiny_world):
    record = DatasetCatalog.get("tiny_train")[0]
    torch.manual_seed(0)
    sample = DatasetMapper(mapper_cfg(), True)(record)
    instances = sample["instances"]
    assert sample["image"].shape == (3, 32, 32) and sample["height"] == 64
    assert len(instances["boxes"]) == len(instances["masks"]) == len(instances["classes"]) > 0
    for box, mask in zip(instances["boxes"], instances["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        tight = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert (box - tight).abs().max() <= 1.5  # resized box and resized mask agree


def test_mapper_reads_any_image_mode(tmp_path):
    mapper = DatasetMapper(mapper_cfg(), False)
    gray16 = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    Image.new("RGBA", (50, 40), (10, 20, 30, 128)).save(tmp_path / "rgba.png")
    Image.new("L", (50, 40), 99).save(tmp_path / "gray.png")
    for name in ("g16.png", "rgba.png", "gray.png"):
        out = mapper({"file_name": str(tmp_path / name), "height": 40, "width": 50, "image_id": 1})
        assert out["image"].shape == (3, 32, 40) and out["image"].dtype == torch.uint8


def test_malformed_images_are_skipped_with_a_log(tmp_path, caplog):
    Image.new("RGB", (20, 20)).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    records = [{"file_name": str(tmp_path / n), "height": 20, "width": 20, "image_id": k,
                "annotations": []}
               for k, n in enumerate(["missing.png", "truncated.png", "good.png"])]
    records.append({**records[2], "height": 21, "image_id": 9})  # size disagrees with the json
    mapper = DatasetMapper(mapper_cfg(), False)
    with pytest.raises(ImageReadError):
        mapper(records[0])
    with caplog.at_level(logging.WARNING):
        batches = list(iterate_test_records(records, mapper, batch_size=2))
    assert [x["image_id"] for b in batches for x in b] == [2]
    assert caplog.text.count("skipping") == 3
    train = IterationBatches(records, DatasetMapper(mapper_cfg(), True), batch_size=2, seed=0)
    assert all(x["image_id"] == 2 for x in train[0])  # unreadable ones replaced by readable ones


def test_iteration_batches_are_deterministic(tiny_world):
    records = DatasetCatalog.get("tiny_train")
    mapper = DatasetMapper(mapper_cfg(), True)
    first = IterationBatches(records, mapper, batch_size=3, seed=5)
    second = IterationBatches(records, mapper, batch_size=3, seed=5)
    for iteration in (0, 3, 7):
        a, b = first[iteration], second[iteration]
        assert [x["image_id"] for x in a] == [x["image_id"] for x in b]
        for x, y in zip(a, b):
            assert torch.equal(x["image"], y["image"])
            assert torch.equal(x["instances"]["boxes"], y["instances"]["boxes"])
    epoch = [x["image_id"] for i in range(4) for x in first[i]]
    assert sorted(epoch) == sorted(r["image_id"] for r in records)  # one epoch = a permutation


def test_large_scale_jitter_crops_to_size_and_clamps_boxes(tiny_world):
    cfg = mapper_cfg()
    cfg.merge_from_list(["INPUT.SCALE_JITTER", "(0.5, 2.0)"])
    mapper = DatasetMapper(cfg, True)
    record = DatasetCatalog.get("tiny_train")[1]
    for seed in range(6):
        torch.manual_seed(seed)
        sample = mapper(record)
        boxes = sample["instances"]["boxes"]
        assert sample["image"].shape == (3, 32, 32)
        assert (boxes >= 0).all() and (boxes <= 32).all()
        assert ((boxes[:, 2] - boxes[:, 0]) >= 1).all()
