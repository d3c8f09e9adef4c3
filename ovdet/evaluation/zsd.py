"""Zero-shot detection metrics: ZSD and GZSD mAP50, Recall@100 and their harmonic means.

The protocol of Bansal et al., "Zero-Shot Object Detection" (ECCV 2018, arXiv:1804.04340) and
Rahman, Khan & Barnes, "Polarity Loss for Zero-shot Object Detection" (arXiv:1811.08982), on a
COCO-format ground truth whose categories are split into seen and unseen (the named COCO splits
are in :mod:`ovdet.data.zsd_splits`):

* **ZSD**: the images that hold an unseen object (:func:`zsd_image_ids`), the unseen categories
  only. Detections come from a run with the unseen vocabulary alone (``zsd_results``, the true
  ZSD setting) or, without one, from the unseen detections of the generalized run, re-ranked and
  cut to the top ``max_dets`` of each image. Metrics: mAP at IoU 0.5 and Recall@100 at IoU 0.4,
  0.5 and 0.6.
* **GZSD**: every image, every category; the detections of all categories compete for the top
  ``max_dets`` of each image. Metrics: mAP50 and Recall@100 (IoU 0.5) on the seen and on the
  unseen categories, and the harmonic mean of each pair.

Definitions (all values in percent):

* ``mAP50``: COCO AP at IoU 0.5 (pycocotools' COCOeval, 101-point interpolated precision,
  ``maxDets`` ``[1, 10, max_dets]``, area "all"), averaged over the evaluated categories that
  have ground truth in the evaluated images; crowd boxes are COCO's "ignore" regions.
* ``Recall@K`` at IoU ``t`` over categories ``C`` and images ``I`` (:func:`recall_at_k`):
  ``D_i`` = the ``K`` highest-scoring detections of image ``i`` whose category is in ``C`` (ties
  keep the input order). The detections of ``D_i`` of category ``c`` are taken by decreasing
  score; each is assigned the non-crowd ground-truth box of ``(i, c)`` it overlaps most (the
  first in annotation order on ties) and recalls that box when ``IoU >= t`` and the box is not
  recalled yet (VOC-style greedy matching: a detection counts for at most one box, a box for at
  most one detection)::

      R_c = |recalled boxes of c in I| / |non-crowd boxes of c in I|
      Recall@K = 100 * mean(R_c for c in C with at least one non-crowd box in I)

  A **per-category mean**, not recall pooled over all boxes: this is what the evaluation code
  released for this protocol computes (per-class recall from VOC-style matching of each image's
  top detections, averaged over the classes with ground truth; e.g. Hayat et al., "Synthesizing
  the Unseen for Zero-shot Object Detection", ACCV 2020, whose tables follow Rahman et al.'s).
  Crowd boxes are neither counted nor matched, so a detection on a crowd never recalls anything
  and never hides a box. NaN when no category of ``C`` has a box in ``I``.
* ``HM(a, b) = 2 a b / (a + b)`` (:func:`harmonic_mean`), 0 when ``a = b = 0``.

The GZSD keys ``seen_recall100`` / ``unseen_recall100`` and the ZSD keys ``recall100@t`` are
Recall@``max_dets`` (Recall@100 with the default). Results are COCO result entries
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (as
:func:`ovdet.evaluation.coco_evaluation.instances_to_results` writes them; other keys such as
``"segmentation"`` are ignored).

Command line (prints the metrics as JSON; exit status 2 with one ``error:`` line on unreadable or
malformed inputs)::

    python -m ovdet.evaluation.zsd --gt-json GT.json --results-json RESULTS.json
        (--unseen "cat,hair drier,..." | --split coco_65_15|coco_48_17)
        [--zsd-results-json ZSD_RESULTS.json] [--max-dets 100] [--out METRICS.json [--overwrite]]
"""
from __future__ import annotations

import argparse
import json
import math
import numbers
import sys
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.zsd_splits import ZSD_SPLITS, split_category_ids
from ..utils.io import atomic_write_json, finite_json, read_json, read_json_dataset
from ..utils.names import normalize_class_name
from .coco_evaluation import average_precision, coco_from_dict, coco_results, quiet_stdout

RESULT_KEYS = ("image_id", "category_id", "bbox", "score")
ZSD_IOUS = (0.4, 0.5, 0.6)
GT_FIELDS = {"images": ("id",), "categories": ("id", "name"),
             "annotations": ("id", "image_id", "category_id", "bbox", "area")}


def _is_number(value: object) -> bool:
    return type(value) in (float, int) or (isinstance(value, numbers.Real)
                                           and not isinstance(value, bool))


def _is_id(value: object) -> bool:
    return type(value) is int or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool))


def _check_category_ids(gt: COCO, category_ids: Collection[int], what: str) -> frozenset[int]:
    """``category_ids`` as a set, or ``ValueError`` when it is empty or names a category that
    ``gt`` lacks."""
    if isinstance(category_ids, (str, bytes)):
        raise ValueError(f"{what} must be a collection of category ids, got {category_ids!r}")
    ids = frozenset(category_ids)
    if not ids:
        raise ValueError(f"{what} is empty: give at least one category id")
    unknown = sorted(ids - set(gt.cats), key=repr)
    if unknown:
        raise ValueError(f"{what} {unknown} are not category ids of the ground truth (its ids: "
                         f"{sorted(gt.cats)})")
    return ids


def _check_image_ids(gt: COCO, image_ids: Collection[int]) -> frozenset[int]:
    ids = frozenset(image_ids)
    unknown = sorted(ids - set(gt.imgs), key=repr)
    if unknown:
        raise ValueError(f"image_ids {unknown[:10]} are not images of the ground truth")
    return ids


def _check_bbox(bbox: object, what: str) -> None:
    """``ValueError`` unless ``bbox`` is ``[x, y, w, h]``, four numbers."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(_is_number(v) for v in bbox)):
        raise ValueError(f"{what} must be [x, y, w, h] numbers, got {bbox!r}")


def _check_results(gt: COCO, results: object, what: str) -> None:
    """``ValueError`` naming the first entry of ``results`` that is not a COCO box result of an
    image and a category of ``gt``."""
    if not isinstance(results, list):
        raise ValueError(f"{what} must be a list of COCO result entries {RESULT_KEYS}, got a "
                         f"{type(results).__name__}")
    for i, entry in enumerate(results):
        if not isinstance(entry, dict) or any(k not in entry for k in RESULT_KEYS):
            raise ValueError(f"{what}[{i}] must be a dict with keys {RESULT_KEYS}, got "
                             f"{str(entry)[:100]}")
        _check_bbox(entry["bbox"], f"{what}[{i}]['bbox']")
        if not _is_number(entry["score"]) or not math.isfinite(entry["score"]):
            raise ValueError(f"{what}[{i}]['score'] must be a finite number, got "
                             f"{entry['score']!r}")
        for key in ("image_id", "category_id"):
            if not _is_id(entry[key]):
                raise ValueError(f"{what}[{i}][{key!r}] must be an integer id, got "
                                 f"{entry[key]!r}")
    for key, known, kind in (("image_id", gt.imgs, "images"), ("category_id", gt.cats,
                                                              "categories")):
        unknown = sorted({entry[key] for entry in results} - set(known), key=repr)
        if unknown:
            raise ValueError(f"{what} name {key}s {unknown[:10]} that are not {kind} of the "
                             f"ground truth")


def _top_per_image(results: list[dict], k: int) -> list[dict]:
    """The ``k`` highest-scoring entries of each image, image by image, each image's entries by
    decreasing score (ties keep the input order)."""
    by_image: dict[int, list[dict]] = defaultdict(list)
    for entry in results:
        by_image[entry["image_id"]].append(entry)
    kept: list[dict] = []
    for entries in by_image.values():
        kept.extend(sorted(entries, key=lambda e: -e["score"])[:k])
    return kept


def _keep(results: list[dict], category_ids: Collection[int],
          image_ids: Collection[int]) -> list[dict]:
    return [r for r in results if r["category_id"] in category_ids and r["image_id"] in image_ids]


def zsd_image_ids(gt: COCO, unseen_category_ids: Collection[int]) -> list[int]:
    """The ids, sorted, of the images of ``gt`` that hold at least one non-crowd annotation of an
    unseen category. ``ValueError`` when ``unseen_category_ids`` is empty or not all of ``gt``."""
    unseen = _check_category_ids(gt, unseen_category_ids, "unseen_category_ids")
    return sorted({a["image_id"] for a in gt.anns.values()
                   if a["category_id"] in unseen and not a.get("iscrowd", 0)})


def harmonic_mean(a: float, b: float) -> float:
    """``2 a b / (a + b)``; 0 when both are 0, NaN when either is NaN. ``ValueError`` for a
    negative value (the means taken here are of percentages)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a < 0 or b < 0:
        raise ValueError(f"harmonic_mean takes non-negative values, got {a} and {b}")
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def unseen_ids_from_names(gt: COCO, names: Sequence[str]) -> list[int]:
    """The category ids of ``gt`` named ``names`` (in that order, repeats dropped), names compared
    ignoring case, underscores and extra spaces. ``ValueError`` naming the unknown names and
    listing the known ones, or for an empty list or a name two categories share."""
    if isinstance(names, (str, bytes)):
        raise ValueError(f"names must be a list of category names, got the single string "
                         f"{names!r}")
    names = list(names)
    if not names:
        raise ValueError("no unseen category name given")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"category names must be non-empty strings, got {bad[:3]}")
    ids_by_name: dict[str, list[int]] = defaultdict(list)
    for category in gt.cats.values():
        ids_by_name[normalize_class_name(category["name"])].append(category["id"])
    unknown = [n for n in names if normalize_class_name(n) not in ids_by_name]
    if unknown:
        known = ", ".join(sorted(c["name"] for c in gt.cats.values()))
        raise ValueError(f"unknown category names {unknown}; the ground truth's categories are: "
                         f"{known}")
    shared = [n for n in names if len(ids_by_name[normalize_class_name(n)]) > 1]
    if shared:
        raise ValueError(f"category names {shared} name several categories of the ground truth")
    return list(dict.fromkeys(ids_by_name[normalize_class_name(n)][0] for n in names))


def _recalled(detections: list[dict], boxes: list[list[float]], iou: float) -> int:
    """How many of ``boxes`` (xywh) the ``detections`` (by decreasing score) recall, matched
    VOC-style (module doc)."""
    overlaps = mask_utils.iou(np.asarray([d["bbox"] for d in detections], dtype=np.float64),
                              np.asarray(boxes, dtype=np.float64), [0] * len(boxes))
    covered = np.zeros(len(boxes), dtype=bool)
    for row in np.atleast_2d(overlaps):
        best = int(row.argmax())
        if row[best] >= iou and not covered[best]:
            covered[best] = True
    return int(covered.sum())


def _recall_at_k(gt: COCO, results: list[dict], category_ids: Collection[int],
                 image_ids: Collection[int], iou: float, k: int) -> float:
    """:func:`recall_at_k` on checked inputs."""
    boxes: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for image_id in image_ids:
        for a in gt.imgToAnns.get(image_id, ()):
            if a["category_id"] in category_ids and not a.get("iscrowd", 0):
                boxes[image_id, a["category_id"]].append(a["bbox"])
    num_boxes: Counter[int] = Counter()
    for (_, category_id), group in boxes.items():
        num_boxes[category_id] += len(group)
    if not num_boxes:
        return math.nan
    detections: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for entry in _top_per_image(_keep(results, category_ids, image_ids), k):
        detections[entry["image_id"], entry["category_id"]].append(entry)
    found: Counter[int] = Counter()
    for key, group in boxes.items():
        if detections.get(key):
            found[key[1]] += _recalled(detections[key], group, iou)
    return 100.0 * float(np.mean([found[c] / n for c, n in num_boxes.items()]))


def recall_at_k(gt: COCO, results: list[dict], category_ids: Collection[int],
                image_ids: Collection[int], iou: float, k: int = 100) -> float:
    """Recall@``k`` in percent at IoU ``iou`` of ``results`` on the categories ``category_ids``
    and the images ``image_ids`` of ``gt``: the mean over categories of the fraction of non-crowd
    boxes recalled by each image's ``k`` best detections of those categories (module doc for the
    formula and its source). NaN when no category has a box in the images.

    ``ValueError`` for malformed results, unknown image or category ids, an empty
    ``category_ids``, ``iou`` outside (0, 1] or ``k`` < 1.
    """
    _check_results(gt, results, "results")
    categories = _check_category_ids(gt, category_ids, "category_ids")
    images = _check_image_ids(gt, image_ids)
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return _recall_at_k(gt, results, categories, images, iou, k)


def _map50(gt: COCO, results: list[dict], category_sets: Sequence[Collection[int]],
           image_ids: Collection[int], max_dets: int) -> list[float]:
    """mAP50 (percent) of ``results`` on ``image_ids`` for each of ``category_sets``, read off one
    COCOeval run over their union (NaN for a set with no ground truth)."""
    category_ids = sorted(set().union(*category_sets))
    if not category_ids or not image_ids:  # COCOeval reads an empty id list as "all"
        return [math.nan] * len(category_sets)
    with quiet_stdout("pycocotools"):
        detections = coco_results(gt, [{k: r[k] for k in RESULT_KEYS} for r in results])
        coco_eval = COCOeval(gt, detections, "bbox")
        params = coco_eval.params
        params.imgIds, params.catIds = sorted(image_ids), category_ids
        params.iouThrs, params.maxDets = np.array([0.5]), [1, 10, max_dets]
        params.areaRng, params.areaRngLbl = [[0.0, 1e10]], ["all"]
        coco_eval.evaluate()
        coco_eval.accumulate()
    position = {c: k for k, c in enumerate(params.catIds)}
    return [average_precision(coco_eval.eval["precision"], params.iouThrs, 0.5,
                              [position[c] for c in categories]) if categories else math.nan
            for categories in category_sets]


def zsd_metrics(gt: COCO, results: list[dict], unseen_category_ids: Collection[int],
                zsd_results: list[dict] | None = None, max_dets: int = 100) -> dict:
    """ZSD and GZSD metrics (percent; module doc for the definitions).

    Args:
        gt: the ground truth; its categories not in ``unseen_category_ids`` are the seen ones.
        results: COCO result entries of the generalized run (whole vocabulary, every image).
        unseen_category_ids: category ids of ``gt`` that are unseen.
        zsd_results: result entries of a run with the unseen vocabulary only (entries on images
            without an unseen object are left out); None: take ``results``' unseen detections.
        max_dets: detections kept per image, and ``K`` of Recall@K.

    Returns:
        ``{"zsd": {"mAP50", "recall100@0.4", "recall100@0.5", "recall100@0.6"},
        "gzsd": {"seen_mAP50", "unseen_mAP50", "hm_mAP50", "seen_recall100",
        "unseen_recall100", "hm_recall100"}}``, floats; NaN where no ground truth is behind a
        value (e.g. no seen category). Empty results score 0.

    ``ValueError`` for malformed results, results of unknown images or categories, seen
    categories in ``zsd_results``, an empty or unknown ``unseen_category_ids``, ``max_dets`` < 1.
    """
    unseen = _check_category_ids(gt, unseen_category_ids, "unseen_category_ids")
    if isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets < 1:
        raise ValueError(f"max_dets must be an integer of at least 1, got {max_dets!r}")
    _check_results(gt, results, "results")
    source = results
    if zsd_results is not None:
        _check_results(gt, zsd_results, "zsd_results")
        seen_in_zsd = sorted({r["category_id"] for r in zsd_results} - unseen)
        if seen_in_zsd:
            raise ValueError(f"zsd_results hold detections of categories {seen_in_zsd[:10]} that "
                             f"are not unseen: the ZSD run must use the unseen vocabulary only")
        source = zsd_results
    zsd_images = frozenset(zsd_image_ids(gt, unseen))
    zsd_dets = _top_per_image(_keep(source, unseen, zsd_images), max_dets)
    zsd = {"mAP50": _map50(gt, zsd_dets, [unseen], zsd_images, max_dets)[0]}
    for iou in ZSD_IOUS:
        zsd[f"recall100@{iou}"] = _recall_at_k(gt, zsd_dets, unseen, zsd_images, iou, max_dets)

    seen = frozenset(gt.cats) - unseen
    images = frozenset(gt.imgs)
    gzsd_dets = _top_per_image(results, max_dets)
    seen_map, unseen_map = _map50(gt, gzsd_dets, [seen, unseen], images, max_dets)
    seen_recall = (_recall_at_k(gt, gzsd_dets, seen, images, 0.5, max_dets) if seen
                   else math.nan)
    unseen_recall = _recall_at_k(gt, gzsd_dets, unseen, images, 0.5, max_dets)
    gzsd = {"seen_mAP50": seen_map, "unseen_mAP50": unseen_map,
            "hm_mAP50": harmonic_mean(seen_map, unseen_map),
            "seen_recall100": seen_recall, "unseen_recall100": unseen_recall,
            "hm_recall100": harmonic_mean(seen_recall, unseen_recall)}
    return {"zsd": zsd, "gzsd": gzsd}


def load_ground_truth(path: str) -> COCO:
    """The COCO instances json at ``path`` as a COCO object, schema checked (``ValueError``
    naming the file and what is missing; ``FileNotFoundError`` when it is not a file)."""
    data = read_json_dataset(path, "COCO instances", GT_FIELDS, "ground-truth json")
    for i, annotation in enumerate(data["annotations"]):
        _check_bbox(annotation["bbox"], f"{path}: annotations[{i}]['bbox']")
        annotation.setdefault("iscrowd", 0)  # absent means not a crowd, as pycocotools needs it
    return coco_from_dict(data)


def _check_out(out: str | None, inputs: dict[str, str | None], overwrite: bool) -> None:
    """``ValueError`` when ``out`` is one of the ``inputs`` (never written over), a directory,
    or an existing file without ``overwrite``."""
    if out is None:
        return
    target = Path(out).resolve()
    for option, path in inputs.items():
        if path is not None and Path(path).resolve() == target:
            raise ValueError(f"--out {out} is the {option} file: write the metrics elsewhere")
    if target.is_dir():
        raise ValueError(f"--out {out} is a directory")
    if target.exists() and not overwrite:
        raise ValueError(f"{out} exists: pass --overwrite to replace it")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--unseen {text!r} names no category")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ovdet.evaluation.zsd",
        description="Zero-shot detection metrics (ZSD and GZSD mAP50, Recall@100, harmonic "
                    "means) of COCO results against a COCO instances json.")
    parser.add_argument("--gt-json", required=True, help="ground-truth COCO instances json")
    parser.add_argument("--results-json", required=True,
                        help="COCO results json of the generalized run (all categories)")
    unseen = parser.add_mutually_exclusive_group(required=True)
    unseen.add_argument("--unseen", help="comma-separated unseen category names, e.g. "
                                         "'cat,hair drier' (case and '_' ignored)")
    unseen.add_argument("--split", choices=sorted(ZSD_SPLITS),
                        help="a named COCO 2017 split (ovdet.data.zsd_splits)")
    parser.add_argument("--zsd-results-json",
                        help="COCO results json of a run with the unseen vocabulary only")
    parser.add_argument("--max-dets", type=int, default=100,
                        help="detections kept per image, and K of Recall@K (default 100)")
    parser.add_argument("--out", help="also write the metrics to this json (atomically)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (never an input file)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line (module doc); returns the exit status: 0, or 2 after one ``error:`` line
    on stderr."""
    args = _parser().parse_args(argv)
    try:
        _check_out(args.out, {"--gt-json": args.gt_json, "--results-json": args.results_json,
                              "--zsd-results-json": args.zsd_results_json}, args.overwrite)
        gt = load_ground_truth(args.gt_json)
        results = read_json(args.results_json, "results json")
        zsd_results = (read_json(args.zsd_results_json, "ZSD results json")
                       if args.zsd_results_json else None)
        unseen = (split_category_ids(args.split, gt.dataset["categories"])[1] if args.split
                  else unseen_ids_from_names(gt, _names(args.unseen)))
        metrics = zsd_metrics(gt, results, unseen, zsd_results, args.max_dets)
        print(json.dumps(finite_json(metrics), indent=1))
        if args.out:
            atomic_write_json(args.out, metrics)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
