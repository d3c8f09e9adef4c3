"""Zero-shot detection metrics (ovdet.evaluation.zsd) and the named splits (ovdet.data.zsd_splits),
on hand-made COCO dicts with hand-computed expected values."""
import contextlib
import io
import json
import math
import subprocess
import sys

import pytest
from pycocotools.coco import COCO

from ovdet.data.ovd_splits import COCO_OVD_NAMES
from ovdet.data.zsd_splits import (COCO_2017_NAMES, COCO_ZSD_SEEN_IDS, COCO_ZSD_UNSEEN_IDS,
                                   ZSD_SPLITS, coco_48_17_split, coco_65_15_split,
                                   split_category_ids, zsd_split)
from ovdet.evaluation.zsd import (harmonic_mean, main, recall_at_k, unseen_ids_from_names,
                                  zsd_image_ids, zsd_metrics)

CAT, DOG, PERSON = 1, 2, 3  # cat and dog unseen, person seen
CATEGORIES = [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "hot dog"},
              {"id": PERSON, "name": "person"}]
UNSEEN = (CAT, DOG)


def ann(ann_id, image_id, category_id, bbox, iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": iscrowd}


def det(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def coco_dict(annotations, num_images=3, categories=CATEGORIES):
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 100, "width": 100}
              for i in range(1, num_images + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco(data):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
    return gt


# Recall case: 4 non-crowd boxes (cat A1, A2, A3; dog B1) and a crowd cat on image 2.
# A box [dx, 0, w, w] against [0, 0, w, w] has IoU (w - dx) / (w + dx).
RECALL_GT = [ann(1, 1, CAT, [0, 0, 10, 10]),       # A1
             ann(2, 1, CAT, [50, 50, 10, 10]),     # A2
             ann(3, 1, DOG, [20, 20, 10, 10]),     # B1
             ann(4, 2, CAT, [0, 0, 20, 20]),       # A3
             ann(5, 2, CAT, [60, 60, 30, 30], iscrowd=1)]
RECALL_DETS = [
    det(1, DOG, [0, 0, 10, 10], 0.95),   # wrong category on A1: recalls nothing
    det(1, CAT, [3, 0, 10, 10], 0.9),    # A1 at IoU 7/13 = 0.538
    det(1, CAT, [52, 50, 10, 10], 0.8),  # A2 at IoU 8/12 = 0.667
    det(1, DOG, [24, 20, 10, 10], 0.1),  # B1 at IoU 6/14 = 0.429; 4th of image 1
    det(2, CAT, [60, 60, 30, 30], 0.99),  # on the crowd: neither counted nor penalising
    det(2, CAT, [8, 0, 20, 20], 0.5),    # A3 at IoU 12/28 = 0.429
]


@pytest.fixture(scope="module")
def recall_gt():
    return to_coco(coco_dict(RECALL_GT, num_images=2))


@pytest.mark.parametrize("k, iou, expected", [
    # per-category mean: cat (3 boxes) and dog (1 box)
    (100, 0.4, (3 / 3 + 1 / 1) / 2), (100, 0.5, (2 / 3 + 0) / 2), (100, 0.6, (1 / 3 + 0) / 2),
    # k = 3 drops B1's only match (4th detection of image 1)
    (3, 0.4, (3 / 3 + 0) / 2), (3, 0.5, (2 / 3 + 0) / 2), (3, 0.6, (1 / 3 + 0) / 2),
    # k = 2 keeps the dog on A1 and A1's cat on image 1, both of image 2
    (2, 0.4, (2 / 3 + 0) / 2),
])
def test_recall_at_k_hand_computed(recall_gt, k, iou, expected):
    value = recall_at_k(recall_gt, RECALL_DETS, UNSEEN, [1, 2], iou, k=k)
    assert value == pytest.approx(100 * expected)


def test_recall_is_a_per_category_mean_not_pooled(recall_gt):
    # pooled over boxes this would be 3 of 4 = 75
    assert recall_at_k(recall_gt, RECALL_DETS, UNSEEN, [1, 2], 0.4, k=3) == pytest.approx(50)


def test_recall_restricted_to_categories_and_images(recall_gt):
    assert recall_at_k(recall_gt, RECALL_DETS, [CAT], [1, 2], 0.5) == pytest.approx(200 / 3)
    # image 2 has cat A3 only (dog has no box there and is left out of the mean)
    assert recall_at_k(recall_gt, RECALL_DETS, UNSEEN, [2], 0.4) == pytest.approx(100)
    assert recall_at_k(recall_gt, RECALL_DETS, UNSEEN, [2], 0.5) == 0
    # no box of the categories in the images: NaN
    assert math.isnan(recall_at_k(recall_gt, RECALL_DETS, [PERSON], [1, 2], 0.5))
    assert recall_at_k(recall_gt, [], UNSEEN, [1, 2], 0.5) == 0


def test_recall_matching_is_one_to_one_voc_style():
    # two overlapping cats (IoU 8/12); both detections overlap G1 most
    gt = to_coco(coco_dict([ann(1, 1, CAT, [0, 0, 10, 10]), ann(2, 1, CAT, [2, 0, 10, 10])]))
    dets = [det(1, CAT, [0, 0, 10, 10], 0.9),    # G1 at 1.0, G2 at 0.667
            det(1, CAT, [0.5, 0, 10, 10], 0.8)]  # G1 at 0.905 (taken), G2 at 0.739: no match
    assert recall_at_k(gt, dets, [CAT], [1], 0.5) == pytest.approx(50)
    # a duplicate on one box recalls it once
    assert recall_at_k(gt, dets[:1] * 3, [CAT], [1], 0.5) == pytest.approx(50)


def test_harmonic_mean():
    assert harmonic_mean(40.0, 60.0) == pytest.approx(48.0)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.0, 30.0) == 0.0
    assert math.isnan(harmonic_mean(math.nan, 30.0))
    with pytest.raises(ValueError, match="non-negative"):
        harmonic_mean(-1.0, 1.0)


# mAP / metrics case: image 1 cat + person, image 2 cat (crowd) + dog, image 3 person only
METRIC_GT = [ann(1, 1, CAT, [10, 10, 30, 30]), ann(2, 1, PERSON, [50, 50, 40, 40]),
             ann(3, 2, CAT, [0, 0, 50, 50], iscrowd=1), ann(4, 2, DOG, [10, 10, 20, 20]),
             ann(5, 3, PERSON, [0, 0, 30, 30])]


@pytest.fixture(scope="module")
def metric_gt():
    return to_coco(coco_dict(METRIC_GT))


def perfect(annotations, categories=None):
    return [det(a["image_id"], a["category_id"], a["bbox"], 1.0) for a in annotations
            if not a["iscrowd"] and (categories is None or a["category_id"] in categories)]


def test_zsd_image_ids(metric_gt, recall_gt):
    # image 2's cat is a crowd, but its dog makes it a ZSD image; image 3 has no unseen object
    assert zsd_image_ids(metric_gt, UNSEEN) == [1, 2]
    assert zsd_image_ids(metric_gt, [CAT]) == [1]
    assert zsd_image_ids(metric_gt, [PERSON]) == [1, 3]
    assert zsd_image_ids(recall_gt, [DOG]) == [1]


def test_perfect_detections_score_100(metric_gt):
    metrics = zsd_metrics(metric_gt, perfect(METRIC_GT), UNSEEN)
    assert metrics["zsd"] == pytest.approx({"mAP50": 100, "recall100@0.4": 100,
                                            "recall100@0.5": 100, "recall100@0.6": 100})
    assert metrics["gzsd"] == pytest.approx({"seen_mAP50": 100, "unseen_mAP50": 100,
                                             "hm_mAP50": 100, "seen_recall100": 100,
                                             "unseen_recall100": 100, "hm_recall100": 100})
    assert all(isinstance(v, float) for part in metrics.values() for v in part.values())


def test_wrong_class_scores_0(metric_gt):
    swapped = {CAT: DOG, DOG: CAT, PERSON: CAT}
    wrong = [{**d, "category_id": swapped[d["category_id"]]} for d in perfect(METRIC_GT)]
    metrics = zsd_metrics(metric_gt, wrong, UNSEEN)
    assert all(v == 0 for part in metrics.values() for v in part.values())


def test_empty_results_score_0(metric_gt):
    metrics = zsd_metrics(metric_gt, [], UNSEEN, zsd_results=[])
    assert all(v == 0 for part in metrics.values() for v in part.values())


def test_map50_ranking_against_hand_computed_ap():
    # one unseen category, 2 boxes; detections by score: TP, FP, TP
    gt = to_coco(coco_dict([ann(1, 1, CAT, [0, 0, 20, 20]), ann(2, 2, CAT, [0, 0, 20, 20]),
                            ann(3, 3, PERSON, [0, 0, 20, 20])]))
    dets = [det(1, CAT, [0, 0, 20, 20], 0.9), det(1, CAT, [60, 60, 20, 20], 0.8),
            det(2, CAT, [1, 0, 20, 20], 0.7)]
    # precision / recall: (1, .5), (.5, .5), (2/3, 1); interpolated precision is 1 at the 51
    # recall thresholds 0, .01, ..., .5 and 2/3 at the 50 thresholds .51, ..., 1
    expected = 100 * (51 * 1 + 50 * 2 / 3) / 101
    metrics = zsd_metrics(gt, dets, [CAT])
    assert metrics["zsd"]["mAP50"] == pytest.approx(expected)
    assert metrics["gzsd"]["unseen_mAP50"] == pytest.approx(expected)
    assert metrics["zsd"]["recall100@0.5"] == pytest.approx(100)


def test_gzsd_with_unseen_only_results(metric_gt):
    metrics = zsd_metrics(metric_gt, perfect(METRIC_GT, UNSEEN), UNSEEN)
    gzsd = metrics["gzsd"]
    assert gzsd["seen_mAP50"] == 0 and gzsd["seen_recall100"] == 0
    assert gzsd["unseen_mAP50"] == pytest.approx(100)
    assert gzsd["unseen_recall100"] == pytest.approx(100)
    assert gzsd["hm_mAP50"] == 0 and gzsd["hm_recall100"] == 0


def test_filtered_path_reranks_unseen_detections(metric_gt):
    # image 1: a confident person and the cat; with max_dets=1 the person wins GZSD's slot,
    # while ZSD re-ranks the unseen detections alone and keeps the cat
    results = [det(1, PERSON, [50, 50, 40, 40], 0.9), det(1, CAT, [10, 10, 30, 30], 0.5),
               det(2, DOG, [10, 10, 20, 20], 0.8)]
    metrics = zsd_metrics(metric_gt, results, UNSEEN, max_dets=1)
    assert metrics["zsd"]["recall100@0.5"] == pytest.approx(100)
    assert metrics["zsd"]["mAP50"] == pytest.approx(100)
    assert metrics["gzsd"]["unseen_recall100"] == pytest.approx(50)  # dog found, cat cut
    assert metrics["gzsd"]["seen_recall100"] == pytest.approx(50)    # image 3's person missed


def test_zsd_results_path_replaces_filtered_detections(metric_gt):
    bad_unseen = [det(1, CAT, [60, 0, 30, 30], 0.9), det(2, DOG, [70, 70, 20, 20], 0.9)]
    results = perfect(METRIC_GT, [PERSON]) + bad_unseen
    filtered = zsd_metrics(metric_gt, results, UNSEEN)
    assert filtered["zsd"]["mAP50"] == 0 and filtered["zsd"]["recall100@0.4"] == 0
    # the ZSD run found both; an entry on image 3 (no unseen object) is left out
    zsd_run = perfect(METRIC_GT, UNSEEN) + [det(3, CAT, [0, 0, 30, 30], 0.99)]
    separate = zsd_metrics(metric_gt, results, UNSEEN, zsd_results=zsd_run)
    assert separate["zsd"] == pytest.approx({"mAP50": 100, "recall100@0.4": 100,
                                             "recall100@0.5": 100, "recall100@0.6": 100})
    assert separate["gzsd"] == filtered["gzsd"]  # GZSD reads `results` only
    assert separate["gzsd"]["seen_mAP50"] == pytest.approx(100)
    assert separate["gzsd"]["unseen_mAP50"] == 0
    with pytest.raises(ValueError, match=r"not unseen.*\[3\]|\[3\].*not unseen"):
        zsd_metrics(metric_gt, results, UNSEEN, zsd_results=perfect(METRIC_GT))


@pytest.mark.parametrize("results, unseen, match", [
    ({"image_id": 1}, UNSEEN, "must be a list"),
    ([{"image_id": 1, "category_id": CAT, "bbox": [0, 0, 1, 1]}], UNSEEN, r"results\[0\]"),
    ([det(1, CAT, [0, 0, 1], 0.5)], UNSEEN, "x, y, w, h"),
    ([det(1, CAT, [0, 0, 1, 1], "high")], UNSEEN, "score"),
    ([det(9, CAT, [0, 0, 1, 1], 0.5)], UNSEEN, r"image_ids \[9\]"),
    ([det(1, 42, [0, 0, 1, 1], 0.5)], UNSEEN, r"category_ids \[42\]"),
    ([], (), "empty"),
    ([], (CAT, 77), r"\[77\]"),
])
def test_bad_inputs_raise_value_error(metric_gt, results, unseen, match):
    with pytest.raises(ValueError, match=match):
        zsd_metrics(metric_gt, results, unseen)


def test_recall_at_k_checks_its_arguments(recall_gt):
    with pytest.raises(ValueError, match="iou"):
        recall_at_k(recall_gt, [], UNSEEN, [1], 0.0)
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(recall_gt, [], UNSEEN, [1], 0.5, k=0)
    with pytest.raises(ValueError, match=r"image_ids \[7\]"):
        recall_at_k(recall_gt, [], UNSEEN, [7], 0.5)


def test_unseen_ids_from_names(metric_gt):
    assert unseen_ids_from_names(metric_gt, [" Hot_Dog", "CAT", "cat"]) == [DOG, CAT]
    with pytest.raises(ValueError, match="'zebra'.*cat, hot dog, person"):
        unseen_ids_from_names(metric_gt, ["cat", "zebra"])
    with pytest.raises(ValueError, match="single string"):
        unseen_ids_from_names(metric_gt, "cat")


PUBLISHED_UNSEEN_65_15 = ["airplane", "train", "parking meter", "cat", "bear", "suitcase",
                          "frisbee", "snowboard", "fork", "sandwich", "hot dog", "toilet",
                          "mouse", "toaster", "hair drier"]


def test_coco_splits():
    assert len(COCO_2017_NAMES) == 80 and len(set(COCO_2017_NAMES.values())) == 80
    assert all(COCO_2017_NAMES[i] == name for i, name in COCO_OVD_NAMES.items())
    seen, unseen = coco_65_15_split()
    assert len(seen) == 65 and len(unseen) == 15 and not set(seen) & set(unseen)
    assert sorted(unseen) == sorted(PUBLISHED_UNSEEN_65_15)
    assert set(seen) | set(unseen) == set(COCO_2017_NAMES.values())
    assert [COCO_2017_NAMES[i] for i in COCO_ZSD_UNSEEN_IDS] == unseen
    assert len(COCO_ZSD_SEEN_IDS) == 65
    seen, unseen = coco_48_17_split()
    assert len(seen) == 48 and len(unseen) == 17 and not set(seen) & set(unseen)
    assert set(seen) | set(unseen) <= set(COCO_2017_NAMES.values())
    assert sorted(ZSD_SPLITS) == ["coco_48_17", "coco_65_15"]
    with pytest.raises(ValueError, match="coco_65_15"):
        zsd_split("coco_40_40")


COCO_CATEGORIES = [{"id": i, "name": n} for i, n in COCO_2017_NAMES.items()]


def test_split_category_ids_checks_the_json():
    seen, unseen = split_category_ids("coco_65_15", COCO_CATEGORIES)
    assert unseen == list(COCO_ZSD_UNSEEN_IDS) and len(seen) == 65
    renamed = [{**c, "name": "kitten"} if c["id"] == 17 else c for c in COCO_CATEGORIES]
    with pytest.raises(ValueError, match="17 is 'kitten', not 'cat'"):
        split_category_ids("coco_65_15", renamed)
    with pytest.raises(ValueError, match="lacks"):
        split_category_ids("coco_65_15", COCO_CATEGORIES[:70])
    with pytest.raises(ValueError, match="outside the coco_48_17 split"):
        split_category_ids("coco_48_17", COCO_CATEGORIES)
    ovd = [c for c in COCO_CATEGORIES if c["id"] in COCO_OVD_NAMES]
    assert [len(ids) for ids in split_category_ids("coco_48_17", ovd)] == [48, 17]


@pytest.fixture
def files(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(coco_dict(METRIC_GT)))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(perfect(METRIC_GT, UNSEEN)))
    return gt, results, tmp_path / "metrics.json"


def test_cli_writes_out_and_refuses_to_overwrite(files, capsys):
    gt, results, out = files
    argv = ["--gt-json", str(gt), "--results-json", str(results), "--unseen", "cat, hot dog",
            "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["zsd"]["mAP50"] == pytest.approx(100) and printed["gzsd"]["hm_mAP50"] == 0
    out.write_text("keep")
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep"
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(out.read_text()) == printed
    gt_text = gt.read_text()
    assert main([*argv[:-1], str(gt), "--overwrite"]) == 2
    assert "--gt-json" in capsys.readouterr().err and gt.read_text() == gt_text


@pytest.mark.parametrize("change, message", [
    ({"--unseen": "cat,unicorn"}, "'unicorn'"),
    ({"--results-json": "missing.json"}, "not found"),
    ({"--unseen": None, "--split": "coco_65_15"}, "lacks categories of the coco_65_15 split"),
    ({"--max-dets": "0"}, "max_dets"),
])
def test_cli_errors_exit_2_with_one_line(files, capsys, change, message):
    gt, results, _ = files
    options = {"--gt-json": str(gt), "--results-json": str(results), "--unseen": "cat"}
    options.update(change)
    argv = [part for key, value in options.items() if value is not None for part in (key, value)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1


def test_cli_split_and_module_entry_point(tmp_path):
    # a COCO-2017-named json: the cat (17) is unseen in 65/15, the person (1) seen
    data = coco_dict([ann(1, 1, 17, [10, 10, 30, 30]), ann(2, 2, 1, [0, 0, 30, 30])],
                     num_images=2, categories=COCO_CATEGORIES)
    gt, results = tmp_path / "gt.json", tmp_path / "results.json"
    gt.write_text(json.dumps(data))
    results.write_text(json.dumps(perfect(data["annotations"])))
    done = subprocess.run([sys.executable, "-m", "ovdet.evaluation.zsd", "--gt-json", str(gt),
                           "--results-json", str(results), "--split", "coco_65_15"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gzsd"]["hm_mAP50"] == pytest.approx(100)


@pytest.mark.parametrize("unseen", [[], ["--unseen", "cat", "--split", "coco_65_15"]])
def test_cli_wants_exactly_one_of_unseen_and_split(files, capsys, unseen):
    gt, results, _ = files
    with pytest.raises(SystemExit) as exit_info:
        main(["--gt-json", str(gt), "--results-json", str(results), *unseen])
    assert exit_info.value.code == 2 and "--unseen" in capsys.readouterr().err


def test_cli_reads_ground_truth_without_iscrowd_and_refuses_bad_boxes(files, capsys):
    gt, results, _ = files
    data = json.loads(gt.read_text())
    for annotation in data["annotations"]:
        if not annotation["iscrowd"]:
            del annotation["iscrowd"]  # optional in COCO files made by hand: absent is 0
    gt.write_text(json.dumps(data))
    argv = ["--gt-json", str(gt), "--results-json", str(results), "--unseen", "cat, hot dog"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["zsd"]["mAP50"] == pytest.approx(100)
    data["annotations"][0]["bbox"] = [0, 0, 10]
    gt.write_text(json.dumps(data))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "annotations[0]['bbox']" in err and err.count("\n") == 1
