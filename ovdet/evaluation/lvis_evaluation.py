"""LVIS box and mask AP, overall and on rare / common / frequent categories (the ``lvis`` package).

LVIS is federated: a detection of category ``c`` in an image counts only when ``c`` is verified
there, as a ground-truth category or one of the image's ``neg_category_ids``; unmatched detections
of the image's ``not_exhaustive_category_ids`` are ignored. In open-vocabulary LVIS the rare
categories are the novel ones, so ``APr`` is the novel AP.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from lvis import LVIS, LVISEval, LVISResults

from ..utils.io import read_json_dataset
from .coco_evaluation import TASKS, ResultsEvaluator, gt_fields, quiet_stdout, task_entries

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


class _LoadedLVIS(LVIS):
    """``LVIS`` over an already loaded dataset dict (``LVIS()`` itself reads a path)."""

    def __init__(self, dataset: dict):
        self.logger = logging.getLogger(__name__)
        self.dataset = dataset
        self._create_index()


class _EmptyLVISResults(LVISResults):
    """An LVIS results set without any detection (``LVISResults`` cannot take an empty list)."""

    def __init__(self, lvis_gt: LVIS):
        self.logger = logging.getLogger(__name__)
        self.dataset = {"images": lvis_gt.dataset["images"],
                        "categories": lvis_gt.dataset["categories"], "annotations": []}
        self._create_index()


class _LVISEval(LVISEval):
    """``LVISEval`` with an ``accumulate`` that runs on numpy >= 1.24 (lvis 0.5.3's uses the
    removed ``np.float``). It computes the same ``precision`` (T, R, K, A) and ``recall``
    (T, K, A) arrays, -1 where a category has no ground truth in an area range: per category
    and area range, detections of all images sorted by score (stable), cumulative true and false
    positives (ignored detections count as neither), the precision envelope (running maximum
    from the right) read at each recall threshold (0 beyond the highest recall reached)."""

    def accumulate(self) -> None:
        p = self.params
        num_cats = len(p.cat_ids) if p.use_cats else 1
        num_thrs, num_recalls = len(p.iou_thrs), len(p.rec_thrs)
        num_areas, num_imgs = len(p.area_rng), len(p.img_ids)
        precision = -np.ones((num_thrs, num_recalls, num_cats, num_areas))
        recall = -np.ones((num_thrs, num_cats, num_areas))
        for k in range(num_cats):
            for a in range(num_areas):
                start = (k * num_areas + a) * num_imgs
                evals = [e for e in self.eval_imgs[start:start + num_imgs] if e is not None]
                if not evals:
                    continue
                num_gt = int(np.count_nonzero(np.concatenate([e["gt_ignore"] for e in evals]) == 0))
                if num_gt == 0:
                    continue
                scores = np.concatenate([np.asarray(e["dt_scores"], dtype=float) for e in evals])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([e["dt_matches"] for e in evals], axis=1)[:, order] != 0
                ignored = np.concatenate([e["dt_ignore"] for e in evals], axis=1)[:, order] != 0
                tp = np.cumsum(matched & ~ignored, axis=1, dtype=float)  # (T, D)
                fp = np.cumsum(~matched & ~ignored, axis=1, dtype=float)
                if tp.shape[1] == 0:
                    recall[:, k, a] = 0
                    precision[:, :, k, a] = 0
                    continue
                recall[:, k, a] = tp[:, -1] / num_gt
                for t in range(num_thrs):
                    rc = tp[t] / num_gt
                    pr = tp[t] / (tp[t] + fp[t] + np.spacing(1))
                    envelope = np.maximum.accumulate(pr[::-1])[::-1]
                    at = np.searchsorted(rc, p.rec_thrs, side="left")
                    reached = at < len(envelope)
                    at_envelope = envelope[np.minimum(at, len(envelope) - 1)]
                    precision[t, :, k, a] = np.where(reached, at_envelope, 0.0)
        self.eval = {"params": p, "counts": [num_thrs, num_recalls, num_cats, num_areas],
                     "precision": precision, "recall": recall}


def _load_lvis(json_file: str, tasks: Sequence[str]) -> dict:
    fields = gt_fields(tasks, ("id", "image_id", "category_id", "bbox", "area"))
    fields["images"] += ("neg_category_ids", "not_exhaustive_category_ids")
    fields["categories"] += ("frequency",)
    data = read_json_dataset(json_file, "LVIS v1", fields, "ground-truth json")
    bad = [c["id"] for c in data["categories"] if c["frequency"] not in ("r", "c", "f")]
    if bad:
        raise ValueError(f"{json_file}: categories {bad[:10]} have a frequency other than "
                         f"'r', 'c' or 'f': not an LVIS v1 json")
    return data


class LVISEvaluator(ResultsEvaluator):
    """Box / mask AP of predictions against an LVIS v1 json, with APr / APc / APf.

    ``process`` reads ``outputs[i]["instances"]`` as documented in
    :func:`ovdet.evaluation.coco_evaluation.instances_to_results` and keeps the
    ``max_dets_per_image`` highest-scoring detections of each image (LVIS's rule: 300 per image,
    over all categories). Every image of ``json_file`` is evaluated.

    ``evaluate`` returns, for each evaluated task ("bbox", "segm"), the percentages ``AP, AP50,
    AP75, APs, APm, APl, APr, APc, APf`` from ``LVISEval``; a metric with no ground truth behind
    it (e.g. ``APr`` when the json has no rare category with annotations) is NaN. With no
    prediction at all every task is evaluated and scores 0; with predictions but no masks "segm"
    is skipped with a warning.

    With ``output_dir`` (the run's OUTPUT_DIR) the merged predictions are written as an LVIS
    results json to ``output_dir/inference/<dataset_name>_results.json``.
    """

    def __init__(self, dataset_name: str, json_file: str, class_to_category_id: Sequence[int],
                 output_dir: str | None = None, tasks: Sequence[str] = TASKS,
                 max_dets_per_image: int = 300):
        """
        Args:
            dataset_name: names the results file.
            json_file: LVIS v1 json of the evaluated split.
            class_to_category_id: ``class_to_category_id[c]`` is the LVIS category id of the
                model's class index ``c``.
            output_dir: where ``inference/<dataset_name>_results.json`` goes; None writes nothing.
            tasks: a non-empty subset of ("bbox", "segm").
            max_dets_per_image: detections kept per image, highest scores first.
        """
        self._check_options(dataset_name, tasks, max_dets_per_image)
        data = _load_lvis(json_file, tasks)
        self._lvis_gt = _LoadedLVIS(data)
        self._set_ground_truth(dataset_name, json_file, data, set(self._lvis_gt.get_cat_ids()),
                               class_to_category_id, output_dir, tasks, max_dets_per_image)

    def _evaluate_task(self, results: list[dict], iou_type: str) -> dict[str, float]:
        entries = task_entries(results, iou_type)
        with quiet_stdout("lvis"), warnings.catch_warnings():
            # lvis 0.5.3 logs through the deprecated Logger.warn
            warnings.filterwarnings("ignore", "The 'warn' method is deprecated", DeprecationWarning)
            if entries:
                lvis_dt = LVISResults(self._lvis_gt, entries, max_dets=self.max_dets_per_image)
            else:
                lvis_dt = _EmptyLVISResults(self._lvis_gt)
            lvis_eval = _LVISEval(self._lvis_gt, lvis_dt, iou_type)
            lvis_eval.params.max_dets = self.max_dets_per_image
            lvis_eval.run()
        summary = lvis_eval.get_results()
        return {k: float(summary[k]) * 100 if summary[k] > -1 else float("nan") for k in METRICS}
