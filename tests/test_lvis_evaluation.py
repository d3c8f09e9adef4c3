import json
import math

import numpy as np
import pytest
import torch
from lvis import LVIS, LVISEval
from pycocotools import mask as mask_utils

from ovdet.evaluation.lvis_evaluation import LVISEvaluator, _LVISEval

METRICS = {"AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"}
# LVIS v1 schema; one category of each frequency (rare = novel in open-vocabulary LVIS)
CATEGORIES = [
    {"id": 1, "name": "person", "synset": "person.n.01", "synonyms": ["person", "human"],
     "def": "a human being", "frequency": "f", "image_count": 3000, "instance_count": 9000},
    {"id": 2, "name": "bus_(vehicle)", "synset": "bus.n.01", "synonyms": ["bus_(vehicle)"],
     "def": "a vehicle carrying many passengers", "frequency": "c", "image_count": 40,
     "instance_count": 90},
    {"id": 3, "name": "yoke_(animal_equipment)", "synset": "yoke.n.07",
     "synonyms": ["yoke_(animal_equipment)"], "def": "a connection between draft animals",
     "frequency": "r", "image_count": 4, "instance_count": 5},
]
CLASS_TO_CATEGORY = [1, 2, 3]


def image(id, h, w, neg, not_exhaustive):
    return {"id": id, "height": h, "width": w, "license": 1, "date_captured": "2013-11-14",
            "flickr_url": f"http://farm1.staticflickr.com/{id}.jpg",
            "coco_url": f"http://images.cocodataset.org/val2017/{id:012d}.jpg",
            "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive}


# image 2: person annotated but not exhaustively; image 3: verified person-free; image 4: nothing
# verified about any category
IMAGES = [image(1, 480, 640, [3], []), image(2, 240, 320, [], [1]), image(3, 300, 400, [1], []),
          image(4, 200, 200, [], [])]


def rectangle(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


OBJECTS = [  # (image, category, xywh box, area): small, medium and large in every frequency group
    (1, 1, [10.0, 20.0, 60.0, 150.0], 9000.0),
    (1, 2, [200.0, 100.0, 200.0, 120.0], 24000.0),
    (2, 1, [150.0, 40.0, 30.0, 30.0], 900.0),
    (2, 2, [20.0, 30.0, 20.0, 20.0], 400.0),
    (3, 3, [10.0, 10.0, 50.0, 40.0], 2000.0),
    (3, 3, [100.0, 100.0, 120.0, 100.0], 12000.0),
    (3, 2, [300.0, 200.0, 10.0, 10.0], 100.0),
]


@pytest.fixture(scope="module")
def gt_json(tmp_path_factory):
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box,
                    "segmentation": rectangle(*box), "area": area}
                   for i, (img, cat, box, area) in enumerate(OBJECTS)]
    data = {"info": {"version": "1.0"}, "licenses": [], "images": IMAGES,
            "annotations": annotations, "categories": CATEGORIES}
    path = tmp_path_factory.mktemp("lvis") / "lvis_v1_test.json"
    path.write_text(json.dumps(data))
    return str(path)


def ground_truth(person_scores=None):
    """Every ground-truth box as a detection ``(image, category, xywh, score)``, score 1 (or
    ``person_scores[image]`` for persons)."""
    return [(img, cat, box, (person_scores or {}).get(img, 1.0) if cat == 1 else 1.0)
            for img, cat, box, _ in OBJECTS]


def predictions(detections, with_masks=True):
    """Model outputs holding ``detections`` ``(image, category, xywh, score)``, for every image."""
    inputs, outputs = [], []
    for img in IMAGES:
        dets = [d for d in detections if d[0] == img["id"]]
        boxes = torch.tensor([d[2] for d in dets], dtype=torch.float32).reshape(-1, 4)
        inst = {"boxes": torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1),
                "scores": torch.tensor([d[3] for d in dets]),
                "classes": torch.tensor([CLASS_TO_CATEGORY.index(d[1]) for d in dets],
                                        dtype=torch.int64)}
        if with_masks:
            masks = [mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(
                rectangle(*d[2]), img["height"], img["width"]))) for d in dets]
            inst["masks"] = torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, img["height"], img["width"]))).bool()
        inputs.append({"image_id": img["id"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def run(gt_json, inputs, outputs, **kwargs):
    evaluator = LVISEvaluator("lvis_test", gt_json, CLASS_TO_CATEGORY, **kwargs)
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()


def test_ground_truth_scores_100(gt_json):
    metrics = run(gt_json, *predictions(ground_truth()))
    assert set(metrics) == {"bbox", "segm"}
    for task, values in metrics.items():
        assert set(values) == METRICS
        for name, value in values.items():
            assert value == pytest.approx(100.0), (task, name)


def test_empty_predictions_score_zero(gt_json):
    evaluator = LVISEvaluator("lvis_test", gt_json, CLASS_TO_CATEGORY)
    assert evaluator.evaluate() == {t: dict.fromkeys(METRICS, 0.0) for t in ("bbox", "segm")}
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
               "classes": torch.zeros(0, dtype=torch.int64),
               "masks": torch.zeros(0, 480, 640, dtype=torch.bool)}
    evaluator.process([{"image_id": 1}], [{"instances": nothing}])
    assert evaluator.evaluate()["segm"]["APr"] == 0.0


# person: 2 ground truths; detections TP (0.9), FP (0.8), TP (0.7): the precision envelope is 1
# up to recall 0.5 (51 of 101 recall points) and 2/3 after (50 points)
PERSON_AP = (51 + 50 * 2 / 3) / 101
FALSE_PERSON = [60.0, 60.0, 50.0, 50.0]


def person_fp_metrics(gt_json, image_id):
    """bbox metrics of ground truth with persons at 0.9 (image 1) and 0.7 (image 2), plus a false
    person at 0.8 in ``image_id``."""
    detections = ground_truth({1: 0.9, 2: 0.7}) + [(image_id, 1, FALSE_PERSON, 0.8)]
    return run(gt_json, *predictions(detections, False), tasks=("bbox",))["bbox"]


def test_false_positive_on_verified_negative_image_counts(gt_json):
    m = person_fp_metrics(gt_json, 3)
    assert m["APf"] == pytest.approx(PERSON_AP * 100)
    assert m["AP"] == pytest.approx((2 + PERSON_AP) / 3 * 100)
    assert m["APr"] == pytest.approx(100.0) and m["APc"] == pytest.approx(100.0)


@pytest.mark.parametrize("image_id", [4, 2])
def test_unverified_and_not_exhaustive_false_positives_are_ignored(gt_json, image_id):
    # image 4: person neither annotated nor a negative; image 2: persons not exhaustively labelled
    assert person_fp_metrics(gt_json, image_id)["APf"] == pytest.approx(100.0)


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")
def test_accumulate_matches_lvis_own(gt_json, monkeypatch, tmp_path):
    """lvis 0.5.3's accumulate needs ``np.float`` (gone since numpy 1.24): restore the alias for
    this test and compare its arrays with ovdet's accumulate on a non-trivial case."""
    rng = np.random.default_rng(0)
    extra = [(int(rng.integers(1, 5)), int(rng.integers(1, 4)),
              (rng.uniform(0, 150, 2).tolist() + rng.uniform(5, 120, 2).tolist()),
              float(rng.uniform(0, 1))) for _ in range(40)]
    jittered = [(img, cat, (np.array(box) + rng.uniform(-6, 6, 4)).tolist(), float(rng.uniform()))
                for img, cat, box, _ in OBJECTS]
    metrics = run(gt_json, *predictions(extra + jittered, False), tasks=("bbox",),
                  output_dir=str(tmp_path))["bbox"]
    results = json.loads((tmp_path / "inference" / "lvis_test_results.json").read_text())
    ours = _LVISEval(LVIS(gt_json), [dict(r) for r in results], "bbox")
    ours.run()
    monkeypatch.setattr(np, "float", float, raising=False)
    theirs = LVISEval(LVIS(gt_json), [dict(r) for r in results], "bbox")
    theirs.run()
    np.testing.assert_allclose(ours.eval["precision"], theirs.eval["precision"])
    np.testing.assert_allclose(ours.eval["recall"], theirs.eval["recall"])
    assert 0.1 < ours.results["AP"] < 0.95
    assert metrics["AP"] == pytest.approx(theirs.results["AP"] * 100)
    assert metrics["APr"] == pytest.approx(theirs.results["APr"] * 100)


def test_keeps_300_top_detections_per_image_and_writes_results(gt_json, tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 0.9, 310)
    extra = [(1, 3, [5.0, 5.0, 30.0, 30.0], float(s)) for s in scores]
    m = run(gt_json, *predictions(ground_truth() + extra), output_dir=str(tmp_path))
    results = json.loads((tmp_path / "inference" / "lvis_test_results.json").read_text())
    image1 = [r for r in results if r["image_id"] == 1]
    assert len(image1) == 300
    kept = sorted(r["score"] for r in image1 if r["category_id"] == 3)
    assert kept[0] >= np.sort(scores)[-298] - 1e-6  # the 2 ground-truth boxes + the top 298
    assert len(results) == 300 + sum(1 for o in OBJECTS if o[0] != 1)
    # yoke is a verified negative of image 1: those are false positives, ranked below the
    # ground-truth boxes (score 1), so AP stays 100
    assert m["bbox"]["APr"] == pytest.approx(100.0) and m["segm"]["AP"] == pytest.approx(100.0)


def test_nan_for_groups_without_ground_truth(gt_json, tmp_path):
    data = json.loads(open(gt_json).read())
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 3]
    path = tmp_path / "no_rare.json"
    path.write_text(json.dumps(data))
    m = run(str(path), *predictions(ground_truth(), False), tasks=("bbox",))["bbox"]
    assert math.isnan(m["APr"]) and m["APf"] == pytest.approx(100.0)


def test_not_an_lvis_json_is_a_clear_error(tmp_path):
    coco_like = {"images": [{"id": 1, "height": 10, "width": 10}], "annotations": [],
                 "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco_like))
    with pytest.raises(ValueError, match="neg_category_ids"):
        LVISEvaluator("lvis_test", str(path), [1])
