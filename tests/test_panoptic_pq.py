"""PQ by panopticapi's rules: single images built in code with hand-computed IoUs, file round
trips through pq_compute and the command line, the real COCO panoptic sample, and the evaluator."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ovdet.data.toyworld.writer import decode_segment_ids, encode_segment_ids
from ovdet.evaluation.panoptic import (COCOPanopticEvaluator, PanopticFormatError, PQStat, main,
                                       pq_compute, pq_stats_single_image, read_segment_ids)

# things 1, 2 (2 novel), stuff 3, 4; category 5 (a thing) never occurs
CATEGORIES = [{"id": 1, "name": "apple", "isthing": 1, "split": "base"},
              {"id": 2, "name": "pear", "isthing": 1, "split": "novel"},
              {"id": 3, "name": "grass", "isthing": 0},
              {"id": 4, "name": "sky", "isthing": 0},
              {"id": 5, "name": "plum", "isthing": 1, "split": "base"}]
BY_ID = {c["id"]: c for c in CATEGORIES}
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_panoptic_sample"


def gt_seg(segment_id, category_id, ids, iscrowd=0):
    """A ground-truth segment whose area is its pixel count in ``ids``."""
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd,
            "area": int((ids == segment_id).sum())}


def pred_seg(segment_id, category_id):
    return {"id": segment_id, "category_id": category_id}


def counts(stat, category_id):
    s = stat[category_id]
    return s.tp, s.fp, s.fn


def band(shape, rows, cols, value, base=None):
    """``base`` (zeros of ``shape`` by default) with ``value`` in the rectangle rows x cols."""
    ids = np.zeros(shape, np.int64) if base is None else base.copy()
    ids[rows[0]:rows[1], cols[0]:cols[1]] = value
    return ids


# ------------------------------------------------------------------------------------------------
# One image, hand-computed


def test_perfect_prediction_scores_one():
    gt = band((8, 8), (0, 4), (0, 4), 1, band((8, 8), (0, 8), (0, 8), 9))
    gt[5:7, 5:7] = 2
    gt_segments = [gt_seg(1, 1, gt), gt_seg(2, 2, gt), gt_seg(9, 3, gt)]
    pred = gt * 10  # other ids, same masks
    stat = pq_stats_single_image(gt, gt_segments, pred,
                                 [pred_seg(10, 1), pred_seg(20, 2), pred_seg(90, 3)], BY_ID)
    for category_id in (1, 2, 3):
        assert counts(stat, category_id) == (1, 0, 0)
        assert stat[category_id].iou == 1.0
    for group, isthing, n in (("All", None, 3), ("Things", True, 2), ("Stuff", False, 1)):
        assert stat.average(BY_ID, isthing) == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": n}, group


def shifted(gt_cols, pred_cols):
    """A thing (category 1) on a labelled stuff background (category 3), predicted shifted."""
    gt = band((10, 20), (0, 10), gt_cols, 1, band((10, 20), (0, 10), (0, 20), 9))
    pred = band((10, 20), (0, 10), pred_cols, 5, band((10, 20), (0, 10), (0, 20), 9))
    return pq_stats_single_image(gt, [gt_seg(1, 1, gt), gt_seg(9, 3, gt)],
                                 pred, [pred_seg(5, 1), pred_seg(9, 3)], BY_ID)


def test_shifted_segment_above_half_matches_with_its_iou():
    # 10x10 square shifted by 2 columns: intersection 80, union 100 + 100 - 80 = 120
    stat = shifted((0, 10), (2, 12))
    assert counts(stat, 1) == (1, 0, 0)
    assert stat[1].iou == pytest.approx(80 / 120)
    m = stat.per_class([1])[1]
    assert (m["pq"], m["sq"], m["rq"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 1.0)


def test_shifted_segment_below_half_is_a_miss_and_a_false_positive():
    # shifted by 4: intersection 60, union 140, IoU 3/7
    stat = shifted((0, 10), (4, 14))
    assert counts(stat, 1) == (0, 1, 1)
    assert stat.per_class([1])[1]["pq"] == 0.0


def test_iou_of_exactly_half_does_not_match():
    # 10x3 bands shifted by one column: intersection 20, union 30 + 30 - 20 = 40, IoU 0.5
    stat = shifted((0, 3), (1, 4))
    assert counts(stat, 1) == (0, 1, 1)
    assert stat[1].iou == 0.0


def test_category_must_match_exactly():
    gt = band((4, 4), (0, 4), (0, 4), 1)
    stat = pq_stats_single_image(gt, [gt_seg(1, 1, gt)], gt, [pred_seg(1, 2)], BY_ID)
    assert counts(stat, 1) == (0, 0, 1) and counts(stat, 2) == (0, 1, 0)


def crowd_case(pred_cols, pred_category, crowd_category=1):
    """10x20 image: crowd of ``crowd_category`` in columns 0..9, stuff (3) in 10..19; one thing
    predicted over ``pred_cols``, stuff predicted on the rest."""
    gt = band((10, 20), (0, 10), (0, 10), 7, band((10, 20), (0, 10), (0, 20), 9))
    pred = band((10, 20), (0, 10), pred_cols, 5, band((10, 20), (0, 10), (0, 20), 9))
    return pq_stats_single_image(gt, [gt_seg(7, crowd_category, gt, iscrowd=1), gt_seg(9, 3, gt)],
                                 pred, [pred_seg(5, pred_category), pred_seg(9, 3)], BY_ID)


def test_crowd_is_never_matched_nor_missed_and_excuses_predictions_on_it():
    # the prediction is exactly the crowd region: no TP (crowd never matches), no FP (100% on
    # crowd of its category), no FN for the unmatched crowd
    stat = crowd_case((0, 10), 1)
    assert counts(stat, 1) == (0, 0, 0)
    assert not stat.counted(1)
    # 60% on the crowd: still no FP
    assert counts(crowd_case((4, 14), 1), 1) == (0, 0, 0)


def test_prediction_half_on_crowd_or_on_crowd_of_another_category_is_a_false_positive():
    assert counts(crowd_case((5, 15), 1), 1) == (0, 1, 0)        # exactly 50% on crowd
    assert counts(crowd_case((0, 10), 2), 2) == (0, 1, 0)        # crowd of category 1
    assert counts(crowd_case((0, 10), 2), 1) == (0, 0, 0)        # and the crowd is no FN


def test_several_crowd_segments_of_a_category_only_the_last_listed_excuses():
    # panopticapi keeps one crowd segment per category (a dict keyed by category id): the last
    # one of segments_info
    gt = band((10, 20), (0, 10), (10, 20), 8, band((10, 20), (0, 10), (0, 10), 7))
    crowds = [gt_seg(7, 1, gt, iscrowd=1), gt_seg(8, 1, gt, iscrowd=1)]
    for pred_cols, fp in (((0, 10), 1), ((10, 20), 0)):
        pred = band((10, 20), (0, 10), pred_cols, 5)
        stat = pq_stats_single_image(gt, crowds, pred, [pred_seg(5, 1)], BY_ID)
        assert counts(stat, 1) == (0, fp, 0)
    stat = pq_stats_single_image(gt, crowds[::-1], band((10, 20), (0, 10), (0, 10), 5),
                                 [pred_seg(5, 1)], BY_ID)
    assert counts(stat, 1) == (0, 0, 0)


def test_union_leaves_out_the_prediction_on_void():
    # thing in columns 0..5 (60 px), void in 6..9, stuff in 10..19; the thing is predicted over
    # columns 0..13 (140 px: 60 thing + 40 void + 40 stuff). union = 140 + 60 - 60 - 40 = 100,
    # IoU 0.6 (it would be 60 / 140 < 0.5 without the void rule)
    gt = band((10, 20), (0, 10), (10, 20), 9, band((10, 20), (0, 10), (0, 6), 1))
    pred = band((10, 20), (0, 10), (0, 14), 5, band((10, 20), (0, 10), (14, 20), 9))
    stat = pq_stats_single_image(gt, [gt_seg(1, 1, gt), gt_seg(9, 3, gt)],
                                 pred, [pred_seg(5, 1), pred_seg(9, 3)], BY_ID)
    assert counts(stat, 1) == (1, 0, 0)
    assert stat[1].iou == pytest.approx(0.6)
    # stuff: intersection 60, union 60 + 100 - 60 = 100
    assert counts(stat, 3) == (1, 0, 0) and stat[3].iou == pytest.approx(0.6)


@pytest.mark.parametrize("void_cols, fp", [(6, 0), (5, 1), (4, 1)])
def test_false_positive_mostly_on_void_is_ignored(void_cols, fp):
    # a 10-column prediction with no ground truth of its category, void_cols of its columns on void
    gt = band((10, 20), (0, 10), (void_cols, 20), 9)
    pred = band((10, 20), (0, 10), (0, 10), 5)
    stat = pq_stats_single_image(gt, [gt_seg(9, 3, gt)], pred, [pred_seg(5, 2)], BY_ID)
    assert counts(stat, 2) == (0, fp, 0)
    assert counts(stat, 3) == (0, 0, 1)  # the stuff was not predicted


def test_void_plus_crowd_together_excuse_a_prediction():
    # prediction of 10 columns: 3 on void, 3 on crowd of its category, 4 on stuff: 60% ignored
    gt = band((10, 20), (0, 10), (6, 20), 9, band((10, 20), (0, 10), (3, 6), 7))
    pred = band((10, 20), (0, 10), (0, 10), 5)
    stat = pq_stats_single_image(gt, [gt_seg(7, 1, gt, iscrowd=1), gt_seg(9, 3, gt)],
                                 pred, [pred_seg(5, 1)], BY_ID)
    assert counts(stat, 1) == (0, 0, 0)


def test_ids_missing_from_gt_segments_info_match_nothing_but_are_not_void():
    # panopticapi's behaviour: only gt id 0 is VOID. Same layout as the void test, but the 4
    # columns next to the thing carry id 6, which segments_info does not list
    gt = band((10, 20), (0, 10), (10, 20), 9, band((10, 20), (0, 10), (0, 6), 1))
    gt[:, 6:10] = 6
    pred = band((10, 20), (0, 10), (0, 14), 5, band((10, 20), (0, 10), (14, 20), 9))
    stat = pq_stats_single_image(gt, [gt_seg(1, 1, gt), gt_seg(9, 3, gt)],
                                 pred, [pred_seg(5, 1), pred_seg(9, 3)], BY_ID)
    # union = 140 + 60 - 60 - 0: IoU 60 / 140 < 0.5, so a miss and a false positive; the unlisted
    # region itself is never a false negative
    assert counts(stat, 1) == (0, 1, 1)
    # a prediction lying only on the unlisted region is a false positive (it is not on void)
    pred = band((10, 20), (0, 10), (6, 10), 4, band((10, 20), (0, 10), (0, 6), 5))
    pred[:, 10:] = 9
    stat = pq_stats_single_image(gt, [gt_seg(1, 1, gt), gt_seg(9, 3, gt)], pred,
                                 [pred_seg(5, 1), pred_seg(4, 2), pred_seg(9, 3)], BY_ID)
    assert counts(stat, 1) == (1, 0, 0) and counts(stat, 2) == (0, 1, 0)
    assert sum(s.fn for s in stat.per_category.values()) == 0


def test_prediction_void_pixels_are_no_segment_and_gt_area_comes_from_the_json():
    gt = band((4, 10), (0, 4), (0, 10), 1)
    pred = band((4, 10), (0, 4), (0, 8), 5)  # 8 columns predicted, 2 left void
    stat = pq_stats_single_image(gt, [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 40}],
                                 pred, [pred_seg(5, 1)], BY_ID)
    assert stat[1].iou == pytest.approx(32 / 40)
    # a json area of 50 (not the 40 pixels) is what counts: union = 32 + 50 - 32
    stat = pq_stats_single_image(gt, [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 50}],
                                 pred, [pred_seg(5, 1)], BY_ID)
    assert stat[1].iou == pytest.approx(32 / 50)


def test_categories_without_tp_fp_fn_are_left_out_of_the_means():
    gt = band((4, 4), (0, 2), (0, 4), 1, band((4, 4), (0, 4), (0, 4), 9))
    pred = band((4, 4), (0, 2), (0, 4), 1)  # the stuff (category 3) is missed
    stat = pq_stats_single_image(gt, [gt_seg(1, 1, gt), gt_seg(9, 3, gt)],
                                 pred, [pred_seg(1, 1)], BY_ID)
    assert stat.average(BY_ID) == {"pq": 0.5, "sq": 0.5, "rq": 0.5, "n": 2}
    assert stat.average(BY_ID, isthing=True) == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    assert stat.average(BY_ID, isthing=False) == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}
    empty = PQStat().average(BY_ID)
    assert empty["n"] == 0 and math.isnan(empty["pq"])
    assert stat.per_class([5]) == {5: {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0,
                                       "fn": 0}}


def test_pq_stat_accumulates_and_formulas():
    total = PQStat()
    for tp, fp, fn, iou in ((2, 1, 0, 1.5), (1, 0, 1, 0.9)):
        image = PQStat()
        image[1].tp, image[1].fp, image[1].fn, image[1].iou = tp, fp, fn, iou
        total += image
    # tp 3, fp 1, fn 1, iou 2.4: PQ = 2.4 / 4, SQ = 2.4 / 3, RQ = 3 / 4
    m = total.per_class([1])[1]
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 1)
    assert (m["pq"], m["sq"], m["rq"]) == (pytest.approx(0.6), pytest.approx(0.8), 0.75)
    # no TP: SQ is 0
    only_fp = PQStat()
    only_fp[2].fp = 1
    assert only_fp.per_class([2])[2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1,
                                         "fn": 0}


def test_malformed_predictions_are_refused_naming_the_file_and_segment():
    gt = band((4, 4), (0, 4), (0, 4), 1)
    segments = [gt_seg(1, 1, gt)]
    pred = band((4, 4), (0, 2), (0, 4), 5)
    with pytest.raises(PanopticFormatError, match=r"p\.png: segment id 5 is in the PNG but not"):
        pq_stats_single_image(gt, segments, pred, [], BY_ID, pred_name="p.png")
    with pytest.raises(PanopticFormatError, match=r"p\.png: segments \[6\] of segments_info have "
                                                  r"no pixel"):
        pq_stats_single_image(gt, segments, pred, [pred_seg(5, 1), pred_seg(6, 1)], BY_ID,
                              pred_name="p.png")
    with pytest.raises(PanopticFormatError, match=r"segment 5 has category_id 42, which is not"):
        pq_stats_single_image(gt, segments, pred, [pred_seg(5, 42)], BY_ID)
    with pytest.raises(PanopticFormatError, match=r"p\.png is 4x3 .* but g\.png is 4x4"):
        pq_stats_single_image(gt, segments, pred[:3], [pred_seg(5, 1)], BY_ID,
                              gt_name="g.png", pred_name="p.png")
    with pytest.raises(PanopticFormatError, match=r"g\.png: segments_info\[0\] has no \['iscrowd'"):
        pq_stats_single_image(gt, [{"id": 1, "category_id": 1, "area": 16}], pred,
                              [pred_seg(5, 1)], BY_ID, gt_name="g.png")
    with pytest.raises(PanopticFormatError, match=r"g\.png: segment 1 has area 0"):
        pq_stats_single_image(gt, [{"id": 1, "category_id": 1, "area": 0, "iscrowd": 0}], gt,
                              [pred_seg(1, 1)], BY_ID, gt_name="g.png")
    # a json area below the pixels a prediction overlaps (IoU 8/5): PNGs of another json
    half = band((4, 4), (0, 2), (0, 4), 1)
    with pytest.raises(PanopticFormatError, match=r"g\.png: segment 1 has area 5 in segments_info "
                                                  r"but 8 of its PNG pixels overlap"):
        pq_stats_single_image(half, [{"id": 1, "category_id": 1, "area": 5, "iscrowd": 0}], half,
                              [pred_seg(1, 1)], BY_ID, gt_name="g.png")


# ------------------------------------------------------------------------------------------------
# Files


def write_png(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(encode_segment_ids(np.asarray(ids))).save(path)


@pytest.fixture
def small_dataset(tmp_path):
    """Two 10x20 images: image 1 as in the shifted test (thing IoU 2/3, stuff IoU 80/120);
    image 2 a novel thing (category 2) predicted perfectly and its stuff (category 4) missed."""
    gt1 = band((10, 20), (0, 10), (0, 10), 1, band((10, 20), (0, 10), (0, 20), 9))
    pred1 = band((10, 20), (0, 10), (2, 12), 5, band((10, 20), (0, 10), (0, 20), 9))
    gt2 = band((10, 20), (0, 10), (0, 5), 3, band((10, 20), (0, 10), (0, 20), 4))
    pred2 = band((10, 20), (0, 10), (0, 5), 3)
    write_png(tmp_path / "gt" / "a.png", gt1)
    write_png(tmp_path / "gt" / "b.png", gt2)
    write_png(tmp_path / "pred" / "a.png", pred1)
    write_png(tmp_path / "pred" / "b.png", pred2)
    gt = {"annotations": [
        {"image_id": 1, "file_name": "a.png", "segments_info": [gt_seg(1, 1, gt1),
                                                                gt_seg(9, 3, gt1)]},
        {"image_id": 2, "file_name": "b.png", "segments_info": [gt_seg(3, 2, gt2),
                                                                gt_seg(4, 4, gt2)]}],
        "categories": CATEGORIES}
    pred = {"annotations": [
        {"image_id": 2, "file_name": "b.png", "segments_info": [pred_seg(3, 2)]},
        {"image_id": 1, "file_name": "a.png", "segments_info": [pred_seg(5, 1),
                                                                pred_seg(9, 3)]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    return tmp_path


def check_small_dataset_result(result):
    # apple: IoU 80 / 120 (shifted by 2 columns); grass: 100 px in gt and 100 px in pred (columns
    # 0..1 and 12..19), intersecting on 80: IoU 80 / 120; pear: IoU 1; sky: missed
    assert set(result) == {"All", "Things", "Stuff", "Novel", "per_class"}
    per_class = result["per_class"]
    assert set(per_class) == {1, 2, 3, 4, 5}
    assert per_class[1]["pq"] == pytest.approx(2 / 3)
    assert per_class[2]["pq"] == 1.0
    assert per_class[3]["pq"] == pytest.approx(2 / 3)
    assert (per_class[4]["tp"], per_class[4]["fn"], per_class[4]["pq"]) == (0, 1, 0.0)
    assert result["Things"] == {"pq": pytest.approx(5 / 6), "sq": pytest.approx(5 / 6),
                                "rq": 1.0, "n": 2}
    assert result["Stuff"] == {"pq": pytest.approx(1 / 3), "sq": pytest.approx(1 / 3),
                               "rq": 0.5, "n": 2}
    assert result["All"]["n"] == 4
    assert result["All"]["pq"] == pytest.approx((2 / 3 + 1 + 2 / 3 + 0) / 4)
    assert result["Novel"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}


def test_pq_compute_from_files(small_dataset):
    d = small_dataset
    result = pq_compute(d / "gt.json", str(d / "pred.json"), d / "gt", d / "pred",
                        progress=False)
    check_small_dataset_result(result)
    # the same from loaded dicts; without novel categories there is no "Novel"
    gt = json.loads((d / "gt.json").read_text())
    plain = [{k: v for k, v in c.items() if k != "split"} for c in CATEGORIES]
    result = pq_compute(gt, json.loads((d / "pred.json").read_text()), d / "gt", d / "pred",
                        categories=plain, progress=False)
    assert "Novel" not in result and result["All"]["n"] == 4


def test_pq_compute_refuses_a_missing_prediction_and_a_missing_png(small_dataset):
    d = small_dataset
    pred = json.loads((d / "pred.json").read_text())
    only_b = {"annotations": pred["annotations"][:1]}
    with pytest.raises(PanopticFormatError,
                       match=r"no prediction for 1 image.*image_id 1 \(a\.png\)"):
        pq_compute(d / "gt.json", only_b, d / "gt", d / "pred", progress=False)
    os.remove(d / "pred" / "a.png")
    with pytest.raises(FileNotFoundError, match=r"panoptic PNG not found: .*pred/a\.png"):
        pq_compute(d / "gt.json", d / "pred.json", d / "gt", d / "pred", progress=False)
    with pytest.raises(PanopticFormatError, match=r"has no list \['categories'\]"):
        pq_compute({"annotations": []}, pred, d / "gt", d / "pred", progress=False)


def test_png_reading_round_trips_and_refuses_non_rgb(tmp_path):
    ids = np.array([[0, 1, 256], [65536, 16777215, 70000]])
    write_png(tmp_path / "ids.png", ids)
    np.testing.assert_array_equal(read_segment_ids(tmp_path / "ids.png"), ids)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(PanopticFormatError, match="gray.png is a L image"):
        read_segment_ids(tmp_path / "gray.png")


def test_command_line(small_dataset):
    d = small_dataset
    python = sys.executable
    ok_cmd = [python, "-m", "ovdet.evaluation.panoptic", "--gt-json", str(d / "gt.json"),
              "--gt-folder", str(d / "gt"), "--pred-json", str(d / "pred.json"),
              "--pred-folder", str(d / "pred"), "--out", str(d / "out" / "metrics.json")]
    bad_cmd = [python, "-m", "ovdet.evaluation.panoptic", "--gt-json", str(d / "missing.json"),
               "--gt-folder", str(d / "gt"), "--pred-json", str(d / "pred.json"),
               "--pred-folder", str(d / "pred")]
    # both at once: each pays the interpreter's start-up
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
            for cmd in (ok_cmd, bad_cmd)]
    (ok_out, ok_err), (bad_out, bad_err) = (run.communicate(timeout=120) for run in runs)
    assert runs[0].returncode == 0, ok_err
    lines = ok_out.splitlines()
    assert lines[0].split() == ["|", "PQ", "SQ", "RQ", "N"]
    assert [line.split()[0] for line in lines[2:]] == ["All", "Things", "Stuff", "Novel"]
    assert lines[3].split()[2:] == ["83.3", "83.3", "100.0", "2"]  # Things
    written = json.loads((d / "out" / "metrics.json").read_text())
    assert set(written["per_class"]) == {"1", "2", "3", "4", "5"}
    check_small_dataset_result({**written, "per_class": {int(k): v for k, v in
                                                         written["per_class"].items()}})
    assert runs[1].returncode == 2
    assert bad_err.splitlines() == [f"error: ground-truth json not found: {d / 'missing.json'}"]


def test_command_line_refuses_bad_inputs_and_overwriting_them(small_dataset, capsys):
    d = small_dataset
    args = ["--gt-json", str(d / "gt.json"), "--gt-folder", str(d / "gt"),
            "--pred-json", str(d / "pred.json"), "--pred-folder", str(d / "pred")]
    before = (d / "pred.json").read_text()
    for out in (d / "pred.json", d / "pred" / "a.png"):
        assert main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out") and "is one of the inputs" in err
        assert len(err.splitlines()) == 1
    assert (d / "pred.json").read_text() == before
    (d / "bad.json").write_text("{not json")
    assert main([*args[:4], "--pred-json", str(d / "bad.json"), *args[6:]]) == 2
    assert capsys.readouterr().err.startswith(f"error: {d / 'bad.json'} is not valid JSON")
    (d / "list.json").write_text("[]")
    assert main(["--gt-json", str(d / "list.json"), *args[2:]]) == 2
    assert "holds a list, expected a COCO panoptic json" in capsys.readouterr().err
    # a PNG id missing from segments_info: the file and segment are named
    pred = json.loads(before)
    pred["annotations"][1]["segments_info"].pop()
    (d / "pred.json").write_text(json.dumps(pred))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"error: {d / 'pred' / 'a.png'}: segment id 9 is in the PNG but not in " \
                  f"segments_info\n"


# ------------------------------------------------------------------------------------------------
# The real COCO panoptic sample


@pytest.fixture(scope="module")
def coco_sample():
    if not (SAMPLE / "panoptic_val2017_sample.json").is_file():
        pytest.skip(f"the shared COCO panoptic sample is not at {SAMPLE} (CI has ../shared beside "
                    f"the project)")
    return json.loads((SAMPLE / "panoptic_val2017_sample.json").read_text())


def test_coco_sample_against_itself_is_perfect(coco_sample):
    result = pq_compute(coco_sample, coco_sample, SAMPLE / "panoptic_val2017_sample",
                        SAMPLE / "panoptic_val2017_sample", progress=False)
    present = {s["category_id"] for ann in coco_sample["annotations"]
               for s in ann["segments_info"] if not s["iscrowd"]}
    things = {c["id"] for c in coco_sample["categories"] if c["isthing"]}
    assert present == {1, 8, 19, 37, 125, 184, 187, 193}
    for category_id, m in result["per_class"].items():
        if category_id in present:
            assert (m["pq"], m["sq"], m["rq"], m["fp"], m["fn"]) == (1.0, 1.0, 1.0, 0, 0)
        else:
            assert m["tp"] + m["fp"] + m["fn"] == 0
    # 26 non-crowd people, 3 crowd segments: a crowd predicted as itself is no TP and no FP
    assert result["per_class"][1]["tp"] == 26
    assert result["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": len(present)}
    assert result["Things"]["n"] == len(present & things) == 4
    assert result["Stuff"]["n"] == 4


def test_coco_sample_with_a_dropped_and_a_merged_segment(coco_sample, tmp_path):
    annotations = json.loads(json.dumps(coco_sample["annotations"]))
    first = annotations[0]  # 000000142238.png
    ids = read_segment_ids(SAMPLE / "panoptic_val2017_sample" / first["file_name"])
    segments = {s["id"]: s for s in first["segments_info"]}
    big, small, ball = 4325578, 4917453, 16757838  # person 4076 px, person 477 px, sports ball
    for segment_id in (big, small, ball):
        assert (ids == segment_id).sum() == segments[segment_id]["area"]
    assert segments[ball]["category_id"] == 37
    pred = ids.copy()
    pred[pred == ball] = 0          # the sports ball is not predicted
    pred[pred == small] = big       # the small person is merged into the big one
    write_png(tmp_path / first["file_name"], pred)
    first["segments_info"] = [s for s in first["segments_info"] if s["id"] not in (small, ball)]
    second = annotations[1]
    Image.open(SAMPLE / "panoptic_val2017_sample" / second["file_name"]).save(
        tmp_path / second["file_name"])
    result = pq_compute(coco_sample, {"annotations": annotations},
                        SAMPLE / "panoptic_val2017_sample", tmp_path, progress=False)
    person = result["per_class"][1]
    # the merged segment matches the big person with IoU 4076 / (4076 + 477): the small one is
    # missed; the 24 other people are perfect
    assert (person["tp"], person["fp"], person["fn"]) == (26 - 1, 0, 1)
    iou = 4076 / (4076 + 477)
    assert person["pq"] == pytest.approx((24 + iou) / 25.5)
    assert person["sq"] == pytest.approx((24 + iou) / 25)
    assert (result["per_class"][37]["fn"], result["per_class"][37]["pq"]) == (1, 0.0)
    assert result["All"]["n"] == 8
    assert result["All"]["pq"] == pytest.approx((6 + (24 + iou) / 25.5) / 8)


# ------------------------------------------------------------------------------------------------
# The evaluator

PANOPTIC_CATEGORIES = [{"id": 1, "name": "apple", "isthing": 1, "split": "base"},
                       {"id": 2, "name": "pear", "isthing": 1, "split": "novel"},
                       {"id": 3, "name": "grass", "isthing": 0}]


@pytest.fixture
def panoptic_gt(tmp_path):
    """Image 1 (8x8): apple rows 0..3 x cols 0..3 (16 px), grass the rest. Image 2 (6x8): pear
    rows 0..2 x cols 0..3 (12 px), grass the rest (36 px)."""
    gt1 = band((8, 8), (0, 4), (0, 4), 1, band((8, 8), (0, 8), (0, 8), 2))
    gt2 = band((6, 8), (0, 3), (0, 4), 1, band((6, 8), (0, 6), (0, 8), 2))
    write_png(tmp_path / "gt" / "000001.png", gt1)
    write_png(tmp_path / "gt" / "000002.png", gt2)
    gt = {"images": [{"id": 1, "file_name": "000001.jpg", "height": 8, "width": 8},
                     {"id": 2, "file_name": "000002.jpg", "height": 6, "width": 8}],
          "annotations": [
              {"image_id": 1, "file_name": "000001.png",
               "segments_info": [gt_seg(1, 1, gt1), gt_seg(2, 3, gt1)]},
              {"image_id": 2, "file_name": "000002.png",
               "segments_info": [gt_seg(1, 2, gt2), gt_seg(2, 3, gt2)]}],
          "categories": PANOPTIC_CATEGORIES}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return tmp_path


def model_outputs():
    """Image 1 predicted perfectly (plus segment 9, overlapped away); image 2: the pear predicted
    on cols 1..3 (9 px, IoU 9/12), grass on the rest (39 px, IoU 36/39)."""
    seg1 = torch.from_numpy(band((8, 8), (0, 4), (0, 4), 5, band((8, 8), (0, 8), (0, 8), 6)))
    seg2 = torch.from_numpy(band((6, 8), (0, 3), (1, 4), 1, band((6, 8), (0, 6), (0, 8), 2)))
    # class indices: 0 apple, 1 pear, 2 grass (things first)
    segments1 = [{"id": 5, "category_id": 0, "isthing": True, "score": 0.9},
                 {"id": 9, "category_id": 1, "isthing": True, "score": 0.4},
                 {"id": 6, "category_id": 2, "isthing": False, "score": 0.8}]
    segments2 = [{"id": 1, "category_id": 1, "isthing": True, "score": 0.7},
                 {"id": 2, "category_id": 2, "isthing": False, "score": 0.6}]
    inputs = [{"image_id": 1, "file_name": "images/000001.jpg"},
              {"image_id": 2, "file_name": "images/000002.jpg"}]
    return inputs, [{"panoptic_seg": (seg1, segments1)}, {"panoptic_seg": (seg2, segments2)}]


def test_evaluator_writes_pngs_json_and_percent_metrics(panoptic_gt):
    d = panoptic_gt
    evaluator = COCOPanopticEvaluator("toy_val", str(d / "gt.json"), str(d / "gt"), [1, 2, 3],
                                      str(d / "run"))
    evaluator.reset()
    inputs, outputs = model_outputs()
    evaluator.process(inputs[:1], outputs[:1])
    evaluator.process(inputs[1:], outputs[1:])
    metrics = evaluator.evaluate()["panoptic"]

    inference = d / "run" / "inference"
    for name, (seg, _) in (("000001.png", outputs[0]["panoptic_seg"]),
                           ("000002.png", outputs[1]["panoptic_seg"])):
        rgb = np.asarray(Image.open(inference / "toy_val_panoptic" / name))
        np.testing.assert_array_equal(decode_segment_ids(rgb), seg.numpy())
    written = json.loads((inference / "toy_val_panoptic.json").read_text())
    assert written["categories"] == PANOPTIC_CATEGORIES
    assert written["annotations"][0] == {
        "image_id": 1, "file_name": "000001.png",
        "segments_info": [{"id": 5, "category_id": 1, "isthing": True, "score": 0.9},
                          {"id": 6, "category_id": 3, "isthing": False, "score": 0.8}]}
    assert [s["category_id"] for s in written["annotations"][1]["segments_info"]] == [2, 3]

    grass = (1 + 36 / 39) / 2
    expected = {"PQ": (1 + 0.75 + grass) / 3, "SQ": (1 + 0.75 + grass) / 3, "RQ": 1.0,
                "PQ_th": 0.875, "SQ_th": 0.875, "RQ_th": 1.0,
                "PQ_st": grass, "SQ_st": grass, "RQ_st": 1.0,
                "PQ_novel": 0.75, "SQ_novel": 0.75, "RQ_novel": 1.0}
    assert metrics == {k: pytest.approx(100 * v) for k, v in expected.items()}
    per_class = json.loads((inference / "toy_val_pq_per_class.json").read_text())
    assert per_class["2"] == {"pq": 0.75, "sq": 0.75, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}


def test_evaluator_without_output_dir_and_with_an_unprocessed_image(panoptic_gt):
    d = panoptic_gt
    evaluator = COCOPanopticEvaluator("toy_val", str(d / "gt.json"), str(d / "gt"), [1, 2, 3],
                                      None)
    inputs, outputs = model_outputs()
    evaluator.process(inputs, outputs)
    assert evaluator.evaluate()["panoptic"]["PQ_novel"] == pytest.approx(75.0)
    assert not (d / "inference").exists()
    # only image 1 processed: image 2 counts as predicted empty (its pear and grass are missed)
    evaluator.reset()
    evaluator.process(inputs[:1], outputs[:1])
    metrics = evaluator.evaluate()["panoptic"]
    assert metrics["PQ_novel"] == 0.0 and metrics["RQ_st"] == pytest.approx(100 / 1.5)


def test_evaluator_refuses_malformed_outputs(panoptic_gt):
    d = panoptic_gt
    evaluator = COCOPanopticEvaluator("toy_val", str(d / "gt.json"), str(d / "gt"), [1, 2, 3],
                                      str(d / "run"))
    inputs, outputs = model_outputs()
    seg, segments = outputs[0]["panoptic_seg"]
    with pytest.raises(ValueError, match=r"image 1: segment ids \[6\] are in panoptic_seg but not"):
        evaluator.process(inputs[:1], [{"panoptic_seg": (seg, segments[:2])}])
    with pytest.raises(ValueError, match=r"image 1: panoptic_seg is \(6, 8\) but the image is "
                                         r"\(8, 8\)"):
        evaluator.process(inputs[:1], [{"panoptic_seg": (seg[:6], segments)}])
    with pytest.raises(ValueError, match=r"image_id 7 is not an image of"):
        evaluator.process([{"image_id": 7}], outputs[:1])
    with pytest.raises(ValueError, match=r"class index 3, outside \[0, 3\)"):
        evaluator.process(inputs[:1], [{"panoptic_seg": (seg, [{**segments[0], "category_id": 3},
                                                               *segments[1:]])}])
    with pytest.raises(ValueError, match=r"category ids \[42\] that are not categories"):
        COCOPanopticEvaluator("toy_val", str(d / "gt.json"), str(d / "gt"), [1, 42], None)
