"""Panoptic quality (PQ, SQ, RQ) of COCO panoptic predictions, with the results of panopticapi's
``pq_compute``, and the evaluator that turns a model's panoptic outputs into such predictions.

**Files** (COCO panoptic format): a JSON ``{"annotations": [{"image_id", "file_name" (the PNG's
name), "segments_info": [{"id", "category_id", ...}]}], "categories": [{"id", "name", "isthing",
...}]}`` and a folder of PNGs whose pixel value is the segment id ``R + 256 G + 256^2 B``; id 0 is
VOID. Ground-truth segments also carry ``"area"`` (pixels) and ``"iscrowd"`` (0 / 1). Categories
may carry ``"split": "base" | "novel"`` (ovdet's toy world and OVD files mark novel things so).

**Rules** (panopticapi's, per image, then summed over images per category):

* A predicted segment's area is its pixel count in the PNG; a ground-truth segment's area is the
  JSON ``"area"``. Prediction pixels of id 0 that ``segments_info`` does not list are no segment.
* A ground-truth pixel is VOID when its id is 0. Ground-truth ids that ``segments_info`` does not
  list are no segment: nothing matches them and nothing is charged for them, but (as in
  panopticapi) they are *not* VOID, so they stay in a union and do not excuse a false positive.
* A prediction and a non-crowd ground truth of the *same* category match when
  ``IoU = intersection / (pred_area + gt_area - intersection - pred∩VOID) > 0.5`` (strictly).
  Each match is a true positive (TP) adding its IoU to the category's IoU sum.
* An unmatched non-crowd ground truth is a false negative (FN); crowd ground truth is never
  matched and never a FN.
* An unmatched prediction is a false positive (FP) unless
  ``(pred∩VOID + pred∩crowd) / pred_area > 0.5``, where *crowd* is the crowd segment of the
  prediction's category. panopticapi keeps one crowd segment per category and image (a dict keyed
  by category): with several, the one listed last in ``segments_info`` is the crowd region, the
  others excuse nothing. So does this module.
* Per category: ``PQ = ΣIoU / (TP + FP/2 + FN/2)``, ``SQ = ΣIoU / TP`` (0 when TP = 0),
  ``RQ = TP / (TP + FP/2 + FN/2)``; a group's PQ / SQ / RQ is the mean over its categories with
  ``TP + FP + FN > 0`` (their number is ``n``). Where panopticapi divides by ``n = 0``, this module
  returns NaN.

panopticapi raises ``KeyError`` for a prediction PNG id that ``segments_info`` lacks, a
``segments_info`` id that is absent from the PNG, a predicted category that is not a category, and
a ground-truth image without prediction; here each is a :class:`PanopticFormatError` (a
``ValueError``) naming the file and the segment. Beyond panopticapi, mismatched PNG sizes, PNGs that
are not RGB, malformed segments, a match whose union is not positive (a ground-truth ``area``
of 0 or less that has pixels) and a match whose IoU would exceed 1 (a ground-truth ``area``
smaller than the segment's pixels under one prediction: a PNG of another json, e.g. a wrong
``--gt-folder``) are refused with the same error.

Command line::

    python -m ovdet.evaluation.panoptic --gt-json F --gt-folder D --pred-json F --pred-folder D \\
        [--out metrics.json]
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..data.toyworld.writer import decode_segment_ids, encode_segment_ids
from ..utils.io import atomic_open, atomic_write_json, check_json_dataset, read_json
from .evaluator import DatasetEvaluator, check_dataset_name, gather_results

logger = logging.getLogger(__name__)

VOID = 0
OFFSET = 256 ** 3  # segment ids of an RGB PNG lie in [0, OFFSET)
IOU_THRESHOLD = 0.5
GROUPS = (("All", None), ("Things", True), ("Stuff", False))

JsonSource = str | os.PathLike | dict


class PanopticFormatError(ValueError):
    """A panoptic JSON or PNG that PQ cannot be computed from; the message names the file (or
    image) and the segment."""


# ------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class CategoryPQStat:
    """One category's counts: ``iou`` (sum of the matched IoUs), ``tp``, ``fp``, ``fn``."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: CategoryPQStat) -> CategoryPQStat:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    def metrics(self) -> dict[str, float | int]:
        """``{"pq", "sq", "rq", "tp", "fp", "fn"}``, PQ / SQ / RQ in [0, 1]; all 0 when the
        category has no TP, FP or FN."""
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        if denominator == 0:
            pq = sq = rq = 0.0
        else:
            pq = self.iou / denominator
            sq = self.iou / self.tp if self.tp else 0.0
            rq = self.tp / denominator
        return {"pq": float(pq), "sq": float(sq), "rq": float(rq),
                "tp": self.tp, "fp": self.fp, "fn": self.fn}


class PQStat:
    """Per-category PQ counts, accumulated over images with ``+=``."""

    def __init__(self) -> None:
        self.per_category: dict[int, CategoryPQStat] = {}

    def __getitem__(self, category_id: int) -> CategoryPQStat:
        """The counts of ``category_id`` (created empty on first access)."""
        if category_id not in self.per_category:
            self.per_category[category_id] = CategoryPQStat()
        return self.per_category[category_id]

    def __iadd__(self, other: PQStat) -> PQStat:
        for category_id, stat in other.per_category.items():
            total = self[category_id]
            total += stat
        return self

    def counted(self, category_id: int) -> bool:
        """Whether ``category_id`` has a TP, FP or FN (only those enter a mean)."""
        stat = self.per_category.get(category_id)
        return stat is not None and stat.tp + stat.fp + stat.fn > 0

    def average(self, categories: Mapping[int, Mapping[str, Any]],
                isthing: bool | None = None) -> dict[str, float | int]:
        """``{"pq", "sq", "rq", "n"}``: the means over the categories of ``categories`` (id ->
        category dict with ``"isthing"``) that have a TP, FP or FN, restricted to things
        (``isthing=True``, ``category["isthing"] == 1``) or stuff (``False``); ``n`` is their
        number, and the means are NaN when ``n`` is 0."""
        selected = [c for c, info in categories.items()
                    if isthing is None or (info["isthing"] == 1) == isthing]
        values = [self.per_category[c].metrics() for c in selected if self.counted(c)]
        n = len(values)
        if n == 0:
            return {"pq": math.nan, "sq": math.nan, "rq": math.nan, "n": 0}
        return {key: sum(v[key] for v in values) / n for key in ("pq", "sq", "rq")} | {"n": n}

    def per_class(self, category_ids: Iterable[int]) -> dict[int, dict[str, float | int]]:
        """:meth:`CategoryPQStat.metrics` of each category id (zeros for one never seen)."""
        return {c: self.per_category.get(c, CategoryPQStat()).metrics() for c in category_ids}


# ------------------------------------------------------------------------------------------------
# One image


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not float(value).is_integer():
        raise PanopticFormatError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _segments_by_id(segments: Sequence[Mapping], name: str, keys: Sequence[str]) -> dict:
    """``{id: segment}`` as panopticapi builds it (a repeated id keeps its first position and its
    last entry), with ``id`` and ``category_id`` as ints; ``keys`` must be present."""
    if not isinstance(segments, (list, tuple)):
        raise PanopticFormatError(f"{name}: segments_info must be a list, "
                                  f"got {type(segments).__name__}")
    by_id: dict[int, dict] = {}
    for i, segment in enumerate(segments):
        absent = [k for k in keys if not isinstance(segment, Mapping) or k not in segment]
        if absent:
            raise PanopticFormatError(f"{name}: segments_info[{i}] has no {absent}")
        segment_id = _integer(segment["id"], f"{name}: segments_info[{i}]['id']")
        category_id = _integer(segment["category_id"],
                               f"{name}: segment {segment_id}: category_id")
        by_id[segment_id] = {**segment, "id": segment_id, "category_id": category_id}
        if "area" in keys and (isinstance(segment["area"], bool)
                               or not isinstance(segment["area"], (int, float))):
            raise PanopticFormatError(f"{name}: segment {segment_id}: area must be a number, "
                                      f"got {segment['area']!r}")
    return by_id


def _check_id_map(ids: np.ndarray, name: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
        raise PanopticFormatError(f"{name}: segment ids must be a 2-D integer array, got "
                                  f"{ids.dtype} of shape {ids.shape}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= OFFSET):
        raise PanopticFormatError(f"{name}: segment ids must lie in [0, {OFFSET}), got "
                                  f"{int(ids.min())}..{int(ids.max())}")
    return ids.astype(np.uint64)


def pq_stats_single_image(gt_ids: np.ndarray, gt_segments: Sequence[Mapping],
                          pred_ids: np.ndarray, pred_segments: Sequence[Mapping],
                          categories: Collection[int], *, gt_name: str = "ground truth",
                          pred_name: str = "prediction") -> PQStat:
    """PQ counts (per-category TP, FP, FN and IoU sum) of one image, by the module's rules.

    Args:
        gt_ids: (H, W) integer array of ground-truth segment ids (0 = VOID).
        gt_segments: the ground truth's ``segments_info``, ``[{"id", "category_id", "area",
            "iscrowd"}]``.
        pred_ids: (H, W) integer array of predicted segment ids (0 = VOID unless listed).
        pred_segments: the prediction's ``segments_info``, ``[{"id", "category_id"}]``.
        categories: the known category ids (a dict keyed by id will do); a prediction of any
            other category is refused.
        gt_name, pred_name: how error messages name the two (e.g. their PNG paths).

    Returns a :class:`PQStat` with an entry for every category that occurs in the image.
    Raises :class:`PanopticFormatError` for mismatched sizes, ids out of ``[0, 256^3)``, a
    predicted id in the PNG but not in ``segments_info`` or the reverse, an unknown predicted
    category, a malformed segment, and a match whose union is not positive or whose IoU would
    exceed 1.
    """
    gt = _check_id_map(gt_ids, gt_name)
    pred = _check_id_map(pred_ids, pred_name)
    if gt.shape != pred.shape:
        raise PanopticFormatError(f"{pred_name} is {pred.shape[1]}x{pred.shape[0]} (width x "
                                  f"height) but {gt_name} is {gt.shape[1]}x{gt.shape[0]}")
    gt_segms = _segments_by_id(gt_segments, gt_name, ("id", "category_id", "area", "iscrowd"))
    pred_segms = _segments_by_id(pred_segments, pred_name, ("id", "category_id"))

    # every (gt id, pred id) pair that shares pixels, with its pixel count
    pairs, intersections = np.unique(gt * np.uint64(OFFSET) + pred, return_counts=True)
    pair_gt = (pairs // np.uint64(OFFSET)).astype(np.int64)
    pair_pred = (pairs % np.uint64(OFFSET)).astype(np.int64)
    intersections = intersections.astype(np.int64)

    # predicted areas from the PNG, and panopticapi's sanity checks in its order
    png_ids, inverse = np.unique(pair_pred, return_inverse=True)
    png_areas = np.bincount(inverse, weights=intersections).astype(np.int64)
    for segment_id in png_ids.tolist():
        if segment_id not in pred_segms:
            if segment_id == VOID:
                continue
            raise PanopticFormatError(f"{pred_name}: segment id {segment_id} is in the PNG but not "
                                      f"in segments_info")
        category_id = pred_segms[segment_id]["category_id"]
        if category_id not in categories:
            raise PanopticFormatError(f"{pred_name}: segment {segment_id} has category_id "
                                      f"{category_id}, which is not a category")
    absent = sorted(set(pred_segms) - set(png_ids.tolist()))
    if absent:
        raise PanopticFormatError(f"{pred_name}: segments {absent} of segments_info have no pixel "
                                  f"in the PNG")
    pred_area = dict(zip(png_ids.tolist(), png_areas.tolist()))
    void_area = {p: n for g, p, n in zip(pair_gt.tolist(), pair_pred.tolist(),
                                         intersections.tolist()) if g == VOID}

    # candidate matches: a listed gt (not crowd) and a listed prediction of the same category
    candidate = np.array([
        g in gt_segms and p in pred_segms and not gt_segms[g]["iscrowd"] == 1
        and gt_segms[g]["category_id"] == pred_segms[p]["category_id"]
        for g, p in zip(pair_gt.tolist(), pair_pred.tolist())], dtype=bool)
    cand_gt, cand_pred, cand_inter = (pair_gt[candidate], pair_pred[candidate],
                                      intersections[candidate])
    unions = (np.array([pred_area[p] for p in cand_pred.tolist()], dtype=np.float64)
              + np.array([gt_segms[g]["area"] for g in cand_gt.tolist()], dtype=np.float64)
              - cand_inter - np.array([void_area.get(p, 0) for p in cand_pred.tolist()],
                                      dtype=np.float64))
    if np.any(unions <= 0):
        g = int(cand_gt[np.flatnonzero(unions <= 0)[0]])
        raise PanopticFormatError(f"{gt_name}: segment {g} has area {gt_segms[g]['area']} in "
                                  f"segments_info but pixels in the PNG: its IoU is undefined")
    gt_areas = np.array([gt_segms[g]["area"] for g in cand_gt.tolist()], dtype=np.float64)
    if np.any(cand_inter > gt_areas):  # an IoU above 1: the PNG is not the json's
        k = int(np.flatnonzero(cand_inter > gt_areas)[0])
        raise PanopticFormatError(
            f"{gt_name}: segment {int(cand_gt[k])} has area {int(gt_areas[k])} in segments_info "
            f"but {int(cand_inter[k])} of its PNG pixels overlap one prediction: the PNG does not "
            "belong to the json (check --gt-folder)")
    ious = cand_inter / unions

    stat = PQStat()
    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    for g, p, iou in zip(cand_gt.tolist(), cand_pred.tolist(), ious.tolist()):
        if iou > IOU_THRESHOLD:
            category = stat[gt_segms[g]["category_id"]]
            category.tp += 1
            category.iou += iou
            gt_matched.add(g)
            pred_matched.add(p)

    crowd_of_category: dict[int, int] = {}  # panopticapi's: the last crowd segment wins
    for g, segment in gt_segms.items():
        if g in gt_matched:
            continue
        if segment["iscrowd"] == 1:
            crowd_of_category[segment["category_id"]] = g
            continue
        stat[segment["category_id"]].fn += 1

    pair_count = {(g, p): n for g, p, n in zip(pair_gt.tolist(), pair_pred.tolist(),
                                               intersections.tolist())}
    for p, segment in pred_segms.items():
        if p in pred_matched:
            continue
        ignored = void_area.get(p, 0)
        crowd = crowd_of_category.get(segment["category_id"])
        if crowd is not None:
            ignored += pair_count.get((crowd, p), 0)
        if ignored / pred_area[p] > IOU_THRESHOLD:
            continue
        stat[segment["category_id"]].fp += 1
    return stat


# ------------------------------------------------------------------------------------------------
# Files


def read_segment_ids(path: str | os.PathLike) -> np.ndarray:
    """(H, W) int64 segment ids of a COCO panoptic PNG (RGB or RGBA; id = R + 256 G + 256^2 B).
    ``FileNotFoundError`` when missing, :class:`PanopticFormatError` when not such a PNG."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"panoptic PNG not found: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode not in ("RGB", "RGBA"):
                raise PanopticFormatError(f"{path} is a {mode} image; a panoptic PNG is RGB "
                                          f"(id = R + 256 G + 256^2 B)")
            rgb = np.asarray(image)[..., :3]
    except (UnidentifiedImageError, OSError) as error:
        raise PanopticFormatError(f"{path} is not a readable image: {error}") from None
    return decode_segment_ids(rgb)


ANNOTATION_KEYS = ("image_id", "file_name", "segments_info")
CATEGORY_KEYS = ("id", "isthing")


def load_panoptic_json(source: JsonSource, what: str, with_categories: bool = True) -> dict:
    """A COCO panoptic json (a path, or an already loaded dict), schema checked: ``annotations``
    entries need ``image_id, file_name, segments_info``, and with ``with_categories``,
    ``categories`` entries need ``id, isthing``. ``what`` names it in errors."""
    fields: dict[str, Sequence[str]] = {"annotations": ANNOTATION_KEYS}
    if with_categories:
        fields["categories"] = CATEGORY_KEYS
    data, name = (source, what) if isinstance(source, dict) else (read_json(source, what),
                                                                  str(source))
    try:
        return check_json_dataset(data, name, "COCO panoptic", fields)
    except ValueError as error:
        raise PanopticFormatError(str(error)) from None


def _categories_by_id(categories: Sequence[Mapping], name: str) -> dict[int, dict]:
    if not isinstance(categories, (list, tuple)):
        raise PanopticFormatError(f"{name}: categories must be a list of dicts")
    by_id = {}
    for i, category in enumerate(categories):
        absent = [k for k in CATEGORY_KEYS
                  if not isinstance(category, Mapping) or k not in category]
        if absent:
            raise PanopticFormatError(f"{name}: categories[{i}] has no {absent}")
        by_id[_integer(category["id"], f"{name}: categories[{i}]['id']")] = dict(category)
    return by_id


def novel_category_ids(categories: Mapping[int, Mapping]) -> list[int]:
    """Ids of the categories marked ``"split": "novel"``."""
    return [c for c, info in categories.items() if info.get("split") == "novel"]


def pq_compute(gt_json: JsonSource, pred_json: JsonSource, gt_folder: str | os.PathLike,
               pred_folder: str | os.PathLike, categories: list[dict] | None = None, *,
               progress: bool | None = None) -> dict:
    """PQ, SQ, RQ of COCO panoptic predictions against COCO panoptic ground truth, with
    panopticapi's ``pq_compute`` rules (module docstring).

    Args:
        gt_json: the ground-truth json (path, or loaded dict): ``annotations`` with
            ``segments_info`` entries ``{"id", "category_id", "area", "iscrowd"}``, and
            ``categories`` ``[{"id", "isthing", optional "split"}]``.
        pred_json: the predictions json (path or dict): ``annotations`` with ``segments_info``
            entries ``{"id", "category_id"}``; its ``categories`` are not read. Every ground-truth
            image needs one annotation (matched by ``image_id``; with repeats the last counts);
            annotations of other images are ignored.
        gt_folder, pred_folder: the folders of the PNGs the ``file_name`` entries name.
        categories: the categories to evaluate (``[{"id", "isthing", optional "split"}]``);
            default: those of ``gt_json``.
        progress: show a tqdm bar over images; default: when stderr is a terminal.

    Returns:
        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {category_id:
        {"pq", "sq", "rq", "tp", "fp", "fn"}}}`` with PQ / SQ / RQ in [0, 1] (NaN where ``n``, the
        number of categories with a TP, FP or FN, is 0), plus ``"Novel"`` (the means over the
        categories marked ``"split": "novel"``) when there is one. ``per_class`` lists every
        category, with zeros for those never seen.

    Raises ``FileNotFoundError`` for a missing file or folder, :class:`PanopticFormatError` for
    malformed input (see :func:`pq_stats_single_image`) and a ground-truth image without
    prediction.
    """
    gt = load_panoptic_json(gt_json, "ground-truth json", with_categories=categories is None)
    pred = load_panoptic_json(pred_json, "predictions json", with_categories=False)
    return _pq_compute_loaded(
        gt, pred, gt_folder, pred_folder, categories, progress=progress,
        gt_name="ground-truth json" if isinstance(gt_json, dict) else str(gt_json),
        pred_name="predictions json" if isinstance(pred_json, dict) else str(pred_json))


def _pq_compute_loaded(gt: dict, pred: dict, gt_folder: str | os.PathLike,
                       pred_folder: str | os.PathLike, categories: list[dict] | None,
                       progress: bool | None, gt_name: str, pred_name: str) -> dict:
    """:func:`pq_compute` of schema-checked jsons; ``gt_name`` and ``pred_name`` name them in
    errors."""
    by_id = _categories_by_id(gt["categories"] if categories is None else categories,
                              gt_name if categories is None else "categories")
    for folder, what in ((gt_folder, "ground-truth"), (pred_folder, "prediction")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{what} PNG folder not found: {folder}")

    predictions = {ann["image_id"]: ann for ann in pred["annotations"]}
    missing = [ann for ann in gt["annotations"] if ann["image_id"] not in predictions]
    if missing:
        raise PanopticFormatError(
            f"{pred_name} has no prediction for {len(missing)} image(s) of {gt_name}, the first: "
            f"image_id {missing[0]['image_id']} ({missing[0]['file_name']})")

    stat = PQStat()
    show = sys.stderr.isatty() if progress is None else progress
    for gt_ann in tqdm(gt["annotations"], desc="PQ", unit="img", disable=not show):
        pred_ann = predictions[gt_ann["image_id"]]
        gt_png = Path(gt_folder) / gt_ann["file_name"]
        pred_png = Path(pred_folder) / pred_ann["file_name"]
        stat += pq_stats_single_image(read_segment_ids(gt_png), gt_ann["segments_info"],
                                      read_segment_ids(pred_png), pred_ann["segments_info"],
                                      by_id, gt_name=str(gt_png), pred_name=str(pred_png))

    unlisted = sorted(c for c in stat.per_category if c not in by_id)
    if unlisted:
        logger.warning("ground-truth segments of category ids %s, which are not among the "
                       "evaluated categories, are not counted", unlisted)
    results: dict[str, Any] = {name: stat.average(by_id, isthing) for name, isthing in GROUPS}
    novel = novel_category_ids(by_id)
    if novel:
        results["Novel"] = stat.average({c: by_id[c] for c in novel})
    results["per_class"] = stat.per_class(by_id)
    return results


def format_table(results: Mapping[str, Mapping]) -> str:
    """The groups of a :func:`pq_compute` result as a table, PQ / SQ / RQ in percent."""
    lines = [f"{'':10s}| {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'N':>5s}", "-" * 37]
    for name in ("All", "Things", "Stuff", "Novel"):
        if name in results:
            r = results[name]
            lines.append(f"{name:10s}| {100 * r['pq']:6.1f} {100 * r['sq']:6.1f} "
                         f"{100 * r['rq']:6.1f} {r['n']:5d}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Evaluator


class COCOPanopticEvaluator(DatasetEvaluator):
    """PQ of a model's panoptic outputs against a COCO panoptic ground truth (:func:`pq_compute`).

    ``process`` reads ``inputs[i]["image_id"]`` and ``outputs[i]["panoptic_seg"] = (seg,
    segments)``: ``seg`` a (H, W) integer tensor of segment ids at the image's original size
    (0 = void), ``segments`` a list of ``{"id": int, "category_id": int (model class index),
    "isthing": bool, "score": float}`` (``isthing`` and ``score`` optional). Each image's ids are
    written as a PNG named like its ground-truth PNG to
    ``output_dir/inference/<dataset_name>_panoptic/`` (a temporary folder without
    ``output_dir``); a segment with no pixel left in ``seg`` is dropped.

    ``evaluate`` gathers the annotations of all ranks (:func:`gather_results`, under the name
    ``<dataset_name>_panoptic``), writes ``output_dir/inference/<dataset_name>_panoptic.json``
    (``{"annotations", "categories"}``) and ``<dataset_name>_pq_per_class.json``, and returns
    ``{"panoptic": {"PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"}}`` in
    percent, plus ``PQ_novel, SQ_novel, RQ_novel`` when the ground truth marks novel categories;
    NaN for a group with no counted category. A ground-truth image never processed counts as one
    with no segment (all its ground truth is missed).
    """

    def __init__(self, dataset_name: str, gt_json: str, gt_folder: str,
                 class_to_category_id: Sequence[int], output_dir: str | None = None):
        """
        Args:
            dataset_name: names the output files.
            gt_json: the COCO panoptic ground-truth json of the evaluated split.
            gt_folder: the folder of its PNGs.
            class_to_category_id: ``class_to_category_id[k]`` is the json category id of the
                model's class index ``k`` (things first, then stuff).
            output_dir: where ``inference/`` goes; None writes to a temporary folder.
        """
        check_dataset_name(dataset_name)
        self.dataset_name = dataset_name
        self.gt_json = gt_json
        self.gt_folder = gt_folder
        self.output_dir = output_dir
        self._gt = load_panoptic_json(gt_json, "ground-truth json")
        self._categories = _categories_by_id(self._gt["categories"], str(gt_json))
        self.class_to_category_id = [int(c) for c in class_to_category_id]
        if not self.class_to_category_id:
            raise ValueError("class_to_category_id is empty: the evaluated vocabulary has no class")
        unknown = sorted(set(self.class_to_category_id) - set(self._categories))
        if unknown:
            raise ValueError(f"class_to_category_id names category ids {unknown} that are not "
                             f"categories of {gt_json}")
        self._png_names = {ann["image_id"]: ann["file_name"] for ann in self._gt["annotations"]}
        self._image_sizes = {img["id"]: (img["height"], img["width"])
                             for img in self._gt.get("images", [])
                             if isinstance(img, dict) and {"id", "height", "width"} <= img.keys()}
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._entries: list[dict] = []

    @property
    def prediction_folder(self) -> Path:
        """Where the predicted PNGs go."""
        if self.output_dir is not None:
            return Path(self.output_dir) / "inference" / f"{self.dataset_name}_panoptic"
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ovdet-panoptic-")
        return Path(self._tmp.name)

    def reset(self) -> None:
        self._entries = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Write each image's PNG and record its annotation (see the class docstring). Raises
        ``ValueError`` naming the image for an unknown image, a malformed output, or ids in
        ``seg`` that ``segments`` does not list."""
        if len(inputs) != len(outputs):
            raise ValueError(f"process() got {len(inputs)} inputs but {len(outputs)} outputs")
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise ValueError(f"an input has no 'image_id' (keys: {sorted(inp)})")
            image_id = inp["image_id"]
            if image_id not in self._png_names:
                raise ValueError(f"image_id {image_id} is not an image of {self.gt_json}")
            if "panoptic_seg" not in out:
                raise ValueError(f"the output for image {image_id} has no 'panoptic_seg' "
                                 f"(keys: {sorted(out)})")
            seg, segments = out["panoptic_seg"]
            self._entries.append(self._record(image_id, seg, segments))

    def _record(self, image_id: int, seg: torch.Tensor, segments: list[dict]) -> dict:
        where = f"image {image_id}"
        if not isinstance(seg, torch.Tensor) or seg.dim() != 2 or seg.is_floating_point():
            raise ValueError(f"{where}: panoptic_seg[0] must be a (H, W) integer tensor, got "
                             f"{getattr(seg, 'dtype', type(seg).__name__)} of shape "
                             f"{tuple(getattr(seg, 'shape', ()))}")
        ids = seg.detach().cpu().numpy().astype(np.int64)
        size = self._image_sizes.get(image_id)
        if size is not None and ids.shape != tuple(size):
            raise ValueError(f"{where}: panoptic_seg is {ids.shape} but the image is {size} "
                             f"(height, width); it must be at original image size")
        if ids.size and (ids.min() < 0 or ids.max() >= OFFSET):
            raise ValueError(f"{where}: segment ids must lie in [0, {OFFSET}), got "
                             f"{ids.min()}..{ids.max()}")
        listed: dict[int, dict] = {}
        for segment in segments:
            if not isinstance(segment, Mapping) or not {"id", "category_id"} <= segment.keys():
                raise ValueError(f"{where}: each of panoptic_seg[1] must be a dict with 'id' and "
                                 f"'category_id', got {segment!r}")
            segment_id, k = int(segment["id"]), int(segment["category_id"])
            if segment_id == VOID or segment_id in listed:
                raise ValueError(f"{where}: segment id {segment_id} is "
                                 f"{'0 (void)' if segment_id == VOID else 'listed twice'}")
            if not 0 <= k < len(self.class_to_category_id):
                raise ValueError(f"{where}: segment {segment_id} has class index {k}, outside "
                                 f"[0, {len(self.class_to_category_id)}) (class_to_category_id)")
            listed[segment_id] = segment
        present = set(np.unique(ids).tolist()) - {VOID}
        unlisted = sorted(present - set(listed))
        if unlisted:
            raise ValueError(f"{where}: segment ids {unlisted} are in panoptic_seg but not in its "
                             f"segments list")
        segments_info = []
        for segment_id, segment in listed.items():
            if segment_id not in present:  # overlapped away entirely: no pixel, no segment
                continue
            info = {"id": segment_id,
                    "category_id": self.class_to_category_id[int(segment["category_id"])]}
            if "isthing" in segment:
                info["isthing"] = bool(segment["isthing"])
            if "score" in segment:
                info["score"] = float(segment["score"])
            segments_info.append(info)
        file_name = self._png_names[image_id]
        path = self.prediction_folder / file_name
        with atomic_open(path, "wb") as f:
            Image.fromarray(encode_segment_ids(ids)).save(f, format="PNG")
        return {"image_id": image_id, "file_name": file_name, "segments_info": segments_info}

    def _empty_predictions(self, image_ids: list) -> list[dict]:
        """All-void PNGs and empty annotations for ground-truth images never processed."""
        entries = []
        for image_id in image_ids:
            file_name = self._png_names[image_id]
            height, width = read_segment_ids(Path(self.gt_folder) / file_name).shape
            with atomic_open(self.prediction_folder / file_name, "wb") as f:
                Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(f, format="PNG")
            entries.append({"image_id": image_id, "file_name": file_name, "segments_info": []})
        return entries

    def evaluate(self) -> dict:
        entries = gather_results(self._entries, f"{self.dataset_name}_panoptic", self.output_dir)
        if entries is None:
            return {}
        processed = {e["image_id"] for e in entries}
        unprocessed = [i for i in self._png_names if i not in processed]
        if unprocessed:
            logger.warning("%s: %d of %d images were never processed; they count as images with "
                           "no segment", self.dataset_name, len(unprocessed), len(self._png_names))
            entries = entries + self._empty_predictions(unprocessed)
        predictions = {"annotations": entries, "categories": self._gt["categories"]}
        inference = None if self.output_dir is None else Path(self.output_dir) / "inference"
        if inference is not None:
            atomic_write_json(inference / f"{self.dataset_name}_panoptic.json", predictions)
        results = pq_compute(self._gt, predictions, self.gt_folder, self.prediction_folder)
        if inference is not None:
            atomic_write_json(inference / f"{self.dataset_name}_pq_per_class.json",
                              results["per_class"])
        logger.info("%s panoptic:\n%s", self.dataset_name, format_table(results))
        metrics = {}
        suffixes = (("All", ""), ("Things", "_th"), ("Stuff", "_st"), ("Novel", "_novel"))
        for group, suffix in suffixes:
            if group in results:
                for key in ("pq", "sq", "rq"):
                    metrics[f"{key.upper()}{suffix}"] = 100 * results[group][key]
        return {"panoptic": metrics}


# ------------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ovdet.evaluation.panoptic",
        description="PQ / SQ / RQ of COCO panoptic predictions (panopticapi's rules).")
    parser.add_argument("--gt-json", required=True, help="ground-truth COCO panoptic json")
    parser.add_argument("--gt-folder", help="folder of the ground-truth PNGs "
                                            "(default: the json's path without .json)")
    parser.add_argument("--pred-json", required=True, help="predictions COCO panoptic json")
    parser.add_argument("--pred-folder", help="folder of the predicted PNGs "
                                              "(default: the json's path without .json)")
    parser.add_argument("--out", help="write the result (PQ / SQ / RQ in [0, 1]) to this json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 with one ``error:`` line for bad input)."""
    args = _parse_args(argv)
    gt_folder = args.gt_folder or str(Path(args.gt_json).with_suffix(""))
    pred_folder = args.pred_folder or str(Path(args.pred_json).with_suffix(""))
    try:
        gt = load_panoptic_json(args.gt_json, "ground-truth json")
        pred = load_panoptic_json(args.pred_json, "predictions json", with_categories=False)
        if args.out is not None:
            out = Path(args.out).resolve()
            inputs = {Path(args.gt_json).resolve(), Path(args.pred_json).resolve()}
            inputs |= {(Path(gt_folder) / a["file_name"]).resolve() for a in gt["annotations"]}
            inputs |= {(Path(pred_folder) / a["file_name"]).resolve()
                       for a in pred["annotations"]}
            if out in inputs:
                raise ValueError(f"--out {args.out} is one of the inputs; refusing to overwrite it")
            if out.is_dir():
                raise ValueError(f"--out {args.out} is a folder")
        results = _pq_compute_loaded(gt, pred, gt_folder, pred_folder, None, None,
                                     args.gt_json, args.pred_json)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.out is not None:
        try:
            atomic_write_json(args.out, results)
        except OSError as error:
            print(f"error: cannot write {args.out}: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
