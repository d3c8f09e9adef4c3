import contextlib
import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ovdet.evaluation.coco_evaluation import COCOEvaluator, instances_to_results
from ovdet.evaluation.evaluator import merge_rank_results, results_path

# class index -> COCO category id: person, car (base), airplane, bus (novel: OVR-CNN split)
CLASS_TO_CATEGORY = [1, 3, 5, 6]
NOVEL = (5, 6)
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 3, "name": "car", "supercategory": "vehicle"},
              {"id": 5, "name": "airplane", "supercategory": "vehicle"},
              {"id": 6, "name": "bus", "supercategory": "vehicle"}]
IMAGES = [{"id": 1, "file_name": "000000000001.jpg", "height": 480, "width": 640},
          {"id": 2, "file_name": "000000000002.jpg", "height": 240, "width": 320},
          {"id": 3, "file_name": "000000000003.jpg", "height": 300, "width": 400}]


def rectangle(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


# (image, category, xywh box, polygon, area); areas: small < 32^2 <= medium < 96^2 <= large
BUS_BOX = [20.0, 30.0, 100.0, 100.0]
OBJECTS = [
    (1, 1, [10.0, 20.0, 60.0, 150.0], rectangle(10, 20, 60, 150), 9000.0),       # medium
    (1, 3, [200.0, 100.0, 200.0, 120.0], rectangle(200, 100, 200, 120), 24000.0),  # large
    (1, 5, [400.0, 50.0, 20.0, 15.0], rectangle(400, 50, 20, 15), 300.0),         # small
    (2, 6, BUS_BOX, rectangle(*BUS_BOX), 10000.0),                                # large
    (2, 1, [150.0, 40.0, 30.0, 30.0], rectangle(150, 40, 30, 30), 900.0),          # small
    (3, 3, [10.0, 10.0, 50.0, 40.0], rectangle(10, 10, 50, 40), 2000.0),           # medium
    (3, 5, [100.0, 100.0, 120.0, 100.0], [[100, 100, 220, 100, 160, 200]], 6000.0),  # triangle
]


@pytest.fixture(scope="module")
def gt_json(tmp_path_factory):
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box,
                    "segmentation": poly, "area": area, "iscrowd": 0}
                   for i, (img, cat, box, poly, area) in enumerate(OBJECTS)]
    data = {"info": {"description": "ovdet test"}, "licenses": [], "images": IMAGES,
            "annotations": annotations, "categories": CATEGORIES}
    path = tmp_path_factory.mktemp("coco") / "instances_test.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def coco(gt_json):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(gt_json)


def instances(boxes_xywh, classes, scores, masks=None):
    boxes = torch.tensor(boxes_xywh, dtype=torch.float32).reshape(-1, 4)
    out = {"boxes": torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1),
           "scores": torch.tensor(scores, dtype=torch.float32),
           "classes": torch.tensor(classes, dtype=torch.int64)}
    if masks is not None:
        out["masks"] = masks
    return out


def inst_xywh(inst):
    boxes = inst["boxes"]
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()


def gt_predictions(coco, with_masks=True, keep=lambda ann: True, moved=None):
    """Ground truth as predictions (score 1), per image; ``moved`` maps an annotation id to the
    box to predict instead."""
    inputs, outputs = [], []
    for img in IMAGES:
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])) if keep(a)]
        masks = None
        if with_masks:
            masks = torch.zeros(len(anns), img["height"], img["width"], dtype=torch.bool)
            for i, a in enumerate(anns):
                masks[i] = torch.from_numpy(coco.annToMask(a).astype(bool))
        boxes = [(moved or {}).get(a["id"], a["bbox"]) for a in anns]
        classes = [CLASS_TO_CATEGORY.index(a["category_id"]) for a in anns]
        inputs.append({"image_id": img["id"]})
        outputs.append({"instances": instances(boxes, classes, [1.0] * len(anns), masks)})
    return inputs, outputs


def run(gt_json, inputs, outputs, **kwargs):
    evaluator = COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY, NOVEL, **kwargs)
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()


def test_ground_truth_scores_100(gt_json, coco):
    metrics = run(gt_json, *gt_predictions(coco))
    assert set(metrics) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert set(metrics[task]) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP_base",
                                      "AP50_base", "AP_novel", "AP50_novel"}
        for name, value in metrics[task].items():
            assert value == pytest.approx(100.0), (task, name)


def test_base_only_predictions_score_zero_on_novel(gt_json, coco):
    inputs, outputs = gt_predictions(coco, keep=lambda a: a["category_id"] not in NOVEL)
    for task, m in run(gt_json, inputs, outputs).items():
        assert m["AP50_base"] == pytest.approx(100.0) and m["AP_base"] == pytest.approx(100.0)
        assert m["AP50_novel"] == 0.0 and m["AP_novel"] == 0.0
        assert m["AP50"] == pytest.approx(50.0)  # 2 of 4 categories found


def test_shifted_box_counts_at_low_iou_only(gt_json, coco):
    # the bus box moved 20 px right: intersection 80 x 100, union 2 x 100^2 - 8000, IoU 2/3;
    # it matches at IoU thresholds 0.50, 0.55, 0.60, 0.65: bus AP = 4/10
    bus_id = next(i + 1 for i, o in enumerate(OBJECTS) if o[1] == 6)
    moved = {bus_id: [BUS_BOX[0] + 20, BUS_BOX[1], BUS_BOX[2], BUS_BOX[3]]}
    m = run(gt_json, *gt_predictions(coco, with_masks=False, moved=moved), tasks=("bbox",))
    assert set(m) == {"bbox"}
    m = m["bbox"]
    assert m["AP50"] == pytest.approx(100.0)
    assert m["AP75"] == pytest.approx(75.0)                 # bus misses, 3 of 4 categories hit
    assert m["AP"] == pytest.approx((3 + 0.4) / 4 * 100)
    assert m["AP_novel"] == pytest.approx((1 + 0.4) / 2 * 100)
    assert m["AP_base"] == pytest.approx(100.0)
    assert m["APl"] == pytest.approx((1 + 0.4) / 2 * 100)   # large objects: one car, the bus
    assert m["APs"] == pytest.approx(100.0) and m["APm"] == pytest.approx(100.0)


def test_false_positive_between_true_positives(gt_json, coco):
    # person: 2 ground truths; ranked detections TP (0.9), FP (0.8, image 3), TP (0.7).
    # precision envelope 1 up to recall 0.5 (51 of 101 recall points), 2/3 after (50 points)
    inputs, outputs = gt_predictions(coco, with_masks=False)
    person = CLASS_TO_CATEGORY.index(1)
    scores = {1: 0.9, 2: 0.7}
    for inp, out in zip(inputs, outputs):
        inst = out["instances"]
        inst["scores"] = torch.where(inst["classes"] == person,
                                     torch.tensor(scores.get(inp["image_id"], 1.0)), inst["scores"])
        if inp["image_id"] == 3:
            out["instances"] = instances(
                inst_xywh(inst) + [[300.0, 200.0, 50.0, 50.0]],
                inst["classes"].tolist() + [person], inst["scores"].tolist() + [0.8])
    m = run(gt_json, inputs, outputs, tasks=("bbox",))["bbox"]
    person_ap = (51 + 50 * 2 / 3) / 101
    assert m["AP"] == pytest.approx((3 + person_ap) / 4 * 100)
    assert m["AP_base"] == pytest.approx((1 + person_ap) / 2 * 100)
    assert m["AP_novel"] == pytest.approx(100.0)


def test_matches_cocoeval_summarize(gt_json, coco, tmp_path):
    """An independent path: pycocotools' own summarize on the results file the evaluator wrote,
    and COCOeval restricted to the base / novel category ids."""
    rng = np.random.default_rng(0)
    inputs, outputs = gt_predictions(coco, with_masks=False)
    for img, out in zip(IMAGES, outputs):
        inst = out["instances"]
        n = len(inst["scores"]) + 4
        jitter = rng.uniform(-8, 8, size=(n, 4))
        boxes = np.array(inst_xywh(inst) + [[50, 50, 40, 40]] * 4) + jitter
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 5)
        out["instances"] = instances(boxes.tolist(),
                                     inst["classes"].tolist() + rng.integers(0, 4, 4).tolist(),
                                     rng.uniform(0.05, 1, n).tolist())
    m = run(gt_json, inputs, outputs, tasks=("bbox",), output_dir=str(tmp_path))["bbox"]

    def cocoeval_stats(cat_ids=None):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco, coco.loadRes(str(results_path(tmp_path, "coco_test"))), "bbox")
            if cat_ids is not None:
                ev.params.catIds = cat_ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev.stats * 100

    stats = cocoeval_stats()
    assert 20 < m["AP"] < 95  # a non-trivial case
    for i, name in enumerate(("AP", "AP50", "AP75", "APs", "APm", "APl")):
        assert m[name] == pytest.approx(stats[i]), name
    assert m["AP_base"] == pytest.approx(cocoeval_stats([1, 3])[0])
    assert m["AP50_novel"] == pytest.approx(cocoeval_stats([5, 6])[1])


def test_empty_predictions_score_zero(gt_json):
    evaluator = COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY, NOVEL)
    assert evaluator.evaluate() == {task: dict.fromkeys(
        ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP_base", "AP50_base", "AP_novel",
         "AP50_novel"), 0.0) for task in ("bbox", "segm")}
    empty = {"instances": instances([], [], [], torch.zeros(0, 480, 640, dtype=torch.bool))}
    evaluator.process([{"image_id": 1}], [empty])
    assert evaluator.evaluate()["segm"]["AP"] == 0.0


def test_no_novel_ids_gives_nan_and_no_masks_skips_segm(gt_json, coco, caplog):
    evaluator = COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY)
    evaluator.process(*gt_predictions(coco, with_masks=False))
    with caplog.at_level(logging.WARNING):
        metrics = evaluator.evaluate()
    assert set(metrics) == {"bbox"} and "skipping the 'segm' evaluation" in caplog.text
    assert math.isnan(metrics["bbox"]["AP_novel"]) and math.isnan(metrics["bbox"]["AP50_novel"])
    assert metrics["bbox"]["AP_base"] == pytest.approx(100.0)  # every category is base


def test_results_json_written_and_reset(gt_json, coco, tmp_path):
    evaluator = COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY, NOVEL,
                              output_dir=str(tmp_path))
    evaluator.process(*gt_predictions(coco))
    evaluator.evaluate()
    path = tmp_path / "inference" / "coco_test_results.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["coco_test_results.json"]
    results = json.loads(path.read_text())
    assert len(results) == len(OBJECTS)
    assert {r["category_id"] for r in results} == {1, 3, 5, 6}
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    with contextlib.redirect_stdout(io.StringIO()):
        assert len(coco.loadRes(str(path)).getAnnIds()) == len(OBJECTS)
    evaluator.reset()
    assert evaluator.evaluate()["bbox"]["AP"] == 0.0
    assert json.loads(path.read_text()) == []


def test_instances_to_results_converts_and_keeps_top_scores():
    masks = torch.zeros(3, 4, 6, dtype=torch.bool)
    masks[1, 1:3, 2:5] = True
    inst = {"boxes": torch.tensor([[0.0, 0, 1, 1], [2, 1, 5, 3], [1, 1, 2, 4]]),
            "scores": torch.tensor([0.2, 0.9, 0.5]), "classes": torch.tensor([0, 2, 1]),
            "masks": masks}
    results = instances_to_results(inst, 7, [10, 20, 30], max_dets=2, image_size=(4, 6))
    assert [(r["category_id"], r["score"]) for r in results] == [(30, pytest.approx(0.9)),
                                                                   (20, pytest.approx(0.5))]
    assert results[0]["bbox"] == [2.0, 1.0, 3.0, 2.0] and results[0]["image_id"] == 7
    from pycocotools import mask as mask_utils
    assert results[0]["segmentation"]["size"] == [4, 6]
    assert mask_utils.decode(results[0]["segmentation"]).sum() == 6
    assert mask_utils.decode(results[1]["segmentation"]).sum() == 0


@pytest.mark.parametrize("bad, message", [
    ({"image_id": 99}, "image_id 99 is not an image"),
    ({"classes": torch.tensor([4])}, r"class indices must lie in \[0, 4\)"),
    ({"masks": torch.zeros(1, 10, 10, dtype=torch.bool)}, "masks are"),
    ({"boxes": torch.zeros(1, 5)}, "expected boxes"),
    ({"image_id": None}, "has no 'image_id'"),
])
def test_bad_predictions_raise_clear_errors(gt_json, bad, message):
    evaluator = COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY, NOVEL)
    inst = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([1.0]),
            "classes": torch.tensor([0]), "masks": torch.zeros(1, 480, 640, dtype=torch.bool)}
    inp = {"image_id": 1}
    for key, value in bad.items():
        if key == "image_id":
            inp = {} if value is None else {"image_id": value}
        else:
            inst[key] = value
    with pytest.raises(ValueError, match=message):
        evaluator.process([inp], [{"instances": inst}])


def test_bad_construction_raises_clear_errors(gt_json, tmp_path):
    with pytest.raises(ValueError, match=r"category ids \[2\]"):
        COCOEvaluator("coco_test", gt_json, [1, 2])
    with pytest.raises(ValueError, match=r"novel_category_ids \[17\]"):
        COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY, (5, 17))
    with pytest.raises(ValueError, match="tasks must be"):
        COCOEvaluator("coco_test", gt_json, CLASS_TO_CATEGORY, tasks=("keypoints",))
    with pytest.raises(FileNotFoundError, match="ground-truth json not found"):
        COCOEvaluator("coco_test", str(tmp_path / "missing.json"), CLASS_TO_CATEGORY)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"no list \['categories'\]"):
        COCOEvaluator("coco_test", str(captions), CLASS_TO_CATEGORY)


def test_merge_rank_results(tmp_path):
    rank0, rank1 = results_path(tmp_path, "d", 0), results_path(tmp_path, "d", 1)
    assert rank1 == tmp_path / "inference" / "d_results.rank1.json"
    rank0.parent.mkdir()
    rank0.write_text(json.dumps([{"image_id": 1, "score": 0.5}]))
    rank1.write_text(json.dumps([{"image_id": 2, "score": 0.7}, {"image_id": 3, "score": 0.1}]))
    merged = merge_rank_results([rank0, rank1], results_path(tmp_path, "d"))
    assert [r["image_id"] for r in merged] == [1, 2, 3]
    assert json.loads((tmp_path / "inference" / "d_results.json").read_text()) == merged
    assert not rank0.exists() and not rank1.exists()
    with pytest.raises(FileNotFoundError, match="rank1.json is missing"):
        rank0.write_text("[]")
        merge_rank_results([rank0, rank1], results_path(tmp_path, "d"))
    assert rank0.exists()  # nothing removed on failure
