"""COCO-style box and mask AP, overall and on base / novel categories (pycocotools' COCOeval).

Evaluation is *generalized*: every category of the ground-truth json competes, and AP on the base
and novel subsets is read off the same COCOeval run, restricted to those categories.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
from abc import abstractmethod
from collections.abc import Collection, Iterator, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils.io import read_json_dataset
from .evaluator import DatasetEvaluator, check_dataset_name, gather_results

logger = logging.getLogger(__name__)

TASKS = ("bbox", "segm")


@contextlib.contextmanager
def quiet_stdout(name: str) -> Iterator[None]:
    """Capture what the block prints (pycocotools, lvis) and log it at DEBUG level as ``name``."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            logger.debug("%s:\n%s", name, text)


def _check_instances(instances: object, num_classes: int, image_id: int,
                     image_size: tuple[int, int] | None) -> None:
    if not isinstance(instances, dict):
        raise ValueError(f"image {image_id}: outputs[i]['instances'] must be a dict of tensors, "
                         f"got {type(instances).__name__}")
    for key in ("boxes", "scores", "classes"):
        if not isinstance(instances.get(key), torch.Tensor):
            raise ValueError(f"image {image_id}: instances[{key!r}] must be a tensor, "
                             f"got {type(instances.get(key)).__name__}")
    boxes, scores, classes = instances["boxes"], instances["scores"], instances["classes"]
    n = boxes.shape[0] if boxes.dim() == 2 else -1
    if boxes.shape != (n, 4) or scores.shape != (n,) or classes.shape != (n,):
        raise ValueError(f"image {image_id}: expected boxes (N, 4), scores (N,), classes (N,); got "
                         f"{tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(classes.shape)}")
    if classes.is_floating_point():
        raise ValueError(f"image {image_id}: instances['classes'] must be an integer tensor, "
                         f"got {classes.dtype}")
    if n and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
        raise ValueError(f"image {image_id}: class indices must lie in [0, {num_classes}) (the "
                         f"length of class_to_category_id), got {classes.min()}..{classes.max()}")
    masks = instances.get("masks")
    if masks is None:
        return
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.shape[0] != n:
        raise ValueError(f"image {image_id}: instances['masks'] must be a (N, H, W) tensor with "
                         f"N = {n}, got {getattr(masks, 'shape', type(masks).__name__)}")
    if image_size is not None and tuple(masks.shape[1:]) != image_size:
        raise ValueError(f"image {image_id}: masks are {tuple(masks.shape[1:])} but the image is "
                         f"{image_size} (height, width); masks must be at original image size")


def instances_to_results(instances: dict, image_id: int, class_to_category_id: Sequence[int],
                         max_dets: int, image_size: tuple[int, int] | None = None) -> list[dict]:
    """One image's predictions as COCO / LVIS result entries, highest score first.

    Args:
        instances: ``{"boxes": (N, 4) float xyxy in original image pixels, "scores": (N,) float,
            "classes": (N,) int64 index into ``class_to_category_id``, optional "masks": (N, H, W)
            bool at original image size}``.
        image_id: the dataset's id of the image.
        class_to_category_id: the dataset category id of each class index.
        max_dets: keep at most this many entries (the highest scores; ties keep model order).
        image_size: ``(height, width)`` of the image; when given, mask sizes are checked.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h] floats, "score", and with masks
        "segmentation": compressed RLE {"size": [H, W], "counts": str}}]``.

    Raises ``ValueError`` naming the image for malformed instances.
    """
    _check_instances(instances, len(class_to_category_id), image_id, image_size)
    scores = instances["scores"].detach().float().cpu()
    order = torch.argsort(scores, descending=True, stable=True)[:max_dets]
    if order.numel() == 0:
        return []
    boxes = instances["boxes"].detach().float().cpu()[order]
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    classes = instances["classes"].detach().cpu()[order].tolist()
    results = [{"image_id": image_id, "category_id": class_to_category_id[c], "bbox": box,
                "score": s} for c, box, s in zip(classes, xywh, scores[order].tolist())]
    masks = instances.get("masks")
    if masks is not None:
        stacked = masks.detach().cpu()[order].to(torch.uint8).permute(1, 2, 0).numpy()
        for entry, rle in zip(results, mask_utils.encode(np.asfortranarray(stacked))):
            rle["counts"] = rle["counts"].decode("ascii")
            entry["segmentation"] = rle
    return results


def average_precision(precision: np.ndarray, iou_thrs: np.ndarray, iou: float | None = None,
                      category_positions: Sequence[int] | None = None, area_index: int = 0,
                      max_dets_index: int = -1) -> float:
    """AP in percent from COCOeval's ``eval["precision"]``, as ``COCOeval.summarize`` computes it.

    ``precision`` is (T IoU thresholds, R recall thresholds, K categories, A area ranges, M max
    detections), -1 where a category has no ground truth. The slice at ``iou`` (all thresholds
    when None), the categories at ``category_positions`` (all when None), ``area_index`` and
    ``max_dets_index`` is averaged over its entries > -1; NaN when there is none.
    """
    s = precision
    if iou is not None:
        matches = np.flatnonzero(np.isclose(iou_thrs, iou))
        if matches.size != 1:
            raise ValueError(f"IoU threshold {iou} is not one of {iou_thrs.tolist()}")
        s = s[matches]
    s = s[:, :, :, area_index, max_dets_index]
    if category_positions is not None:
        s = s[:, :, list(category_positions)]
    valid = s[s > -1]
    return float(valid.mean() * 100) if valid.size else math.nan


def gt_fields(tasks: Sequence[str], annotation_keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The entry keys evaluation reads: ``annotation_keys`` of every annotation (plus
    ``segmentation`` when "segm" is a task), ``id, height, width`` of every image, ``id`` of every
    category."""
    segm = ("segmentation",) if "segm" in tasks else ()
    return {"images": ("id", "height", "width"), "categories": ("id",),
            "annotations": (*annotation_keys, *segm)}


def process_batch(inputs: list[dict], outputs: list[dict], class_to_category_id: Sequence[int],
                  max_dets: int, image_sizes: dict[int, tuple[int, int]],
                  json_file: str) -> list[dict]:
    """Result entries of a batch; ``image_sizes`` maps each ground-truth image id to
    ``(height, width)``. ``ValueError`` for mismatched lists, missing keys or unknown images."""
    if len(inputs) != len(outputs):
        raise ValueError(f"process() got {len(inputs)} inputs but {len(outputs)} outputs")
    entries: list[dict] = []
    for inp, out in zip(inputs, outputs):
        if "image_id" not in inp:
            raise ValueError(f"an input has no 'image_id' (keys: {sorted(inp)})")
        image_id = int(inp["image_id"])
        if image_id not in image_sizes:
            raise ValueError(f"image_id {image_id} is not an image of {json_file}")
        if "instances" not in out:
            raise ValueError(f"the output for image {image_id} has no 'instances' "
                             f"(keys: {sorted(out)})")
        entries.extend(instances_to_results(out["instances"], image_id, class_to_category_id,
                                            max_dets, image_sizes[image_id]))
    return entries


def tasks_with_predictions(tasks: Sequence[str], results: list[dict]) -> list[str]:
    """The requested ``tasks`` that ``results`` can be scored on: "segm" is dropped (with a
    warning) when there are results but none carries a mask; with no result every task stays.
    ``ValueError`` when only some results carry masks."""
    with_masks = sum("segmentation" in r for r in results)
    if 0 < with_masks < len(results):
        raise ValueError(f"{len(results) - with_masks} of {len(results)} predictions carry no "
                         f"mask: a model predicts masks for all instances or for none")
    if "segm" in tasks and results and not with_masks:
        logger.warning("no masks were predicted: skipping the 'segm' evaluation")
        return [t for t in tasks if t != "segm"]
    return list(tasks)


def task_entries(results: list[dict], iou_type: str) -> list[dict]:
    """Copies of ``results`` holding what ``iou_type`` scores: no mask for "bbox", no box for
    "segm" (so that COCO / LVIS take each instance's area from its mask, as for ground truth).
    Copies, because pycocotools and lvis add fields to the entries they load."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: v for k, v in r.items() if k != drop} for r in results]


def coco_from_dict(data: dict) -> COCO:
    """A loaded COCO instances dict as a pycocotools ``COCO`` (indexed, quietly)."""
    with quiet_stdout("pycocotools"):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def coco_results(coco_gt: COCO, entries: list[dict]) -> COCO:
    """COCO result ``entries`` (which pycocotools completes in place: pass copies) as a ``COCO``
    over ``coco_gt``'s images and categories; an empty list gives one without annotations
    (``loadRes`` refuses it)."""
    if not entries:
        return coco_from_dict({"images": coco_gt.dataset["images"],
                               "categories": coco_gt.dataset["categories"], "annotations": []})
    with quiet_stdout("pycocotools"):
        return coco_gt.loadRes(entries)


class ResultsEvaluator(DatasetEvaluator):
    """What the COCO and LVIS evaluators share: checking the options, turning instances into
    result entries, gathering them over ranks, and scoring each task with ``_evaluate_task``."""

    def _check_options(self, dataset_name: str, tasks: Sequence[str],
                       max_dets_per_image: int) -> None:
        check_dataset_name(dataset_name)
        unknown = [t for t in tasks if t not in TASKS]
        if not tasks or unknown:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tuple(tasks)}")
        if max_dets_per_image < 1:
            raise ValueError(f"max_dets_per_image must be at least 1, got {max_dets_per_image}")

    def _set_ground_truth(self, dataset_name: str, json_file: str, data: dict,
                          category_ids: set[int], class_to_category_id: Sequence[int],
                          output_dir: str | None, tasks: Sequence[str],
                          max_dets_per_image: int) -> None:
        self.class_to_category_id = [int(c) for c in class_to_category_id]
        if not self.class_to_category_id:
            raise ValueError("class_to_category_id is empty: the evaluated vocabulary has no class")
        unknown_ids = sorted(set(self.class_to_category_id) - category_ids)
        if unknown_ids:
            raise ValueError(f"class_to_category_id names category ids {unknown_ids} that are not "
                             f"categories of {json_file}")
        self.dataset_name = dataset_name
        self.json_file = json_file
        self.output_dir = output_dir
        self.tasks = tuple(tasks)
        self.max_dets_per_image = max_dets_per_image
        self._image_sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
        self._results: list[dict] = []

    def reset(self) -> None:
        self._results = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Convert one batch's instances to result entries, the top ``max_dets_per_image`` of
        each image (see :func:`instances_to_results`)."""
        self._results.extend(process_batch(inputs, outputs, self.class_to_category_id,
                                           self.max_dets_per_image, self._image_sizes,
                                           self.json_file))

    def evaluate(self) -> dict:
        results = gather_results(self._results, self.dataset_name, self.output_dir)
        if results is None:
            return {}
        metrics = {task: self._evaluate_task(results, task)
                   for task in tasks_with_predictions(self.tasks, results)}
        for task, values in metrics.items():
            logger.info("%s %s: %s", self.dataset_name, task,
                        ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
        return metrics

    @abstractmethod
    def _evaluate_task(self, results: list[dict], iou_type: str) -> dict[str, float]:
        """Metrics (percentages) of ``results`` for one task ("bbox" or "segm")."""


class COCOEvaluator(ResultsEvaluator):
    """Box / mask AP of predictions against a COCO instances json, overall and on base / novel
    categories.

    ``process`` reads ``outputs[i]["instances"]`` as documented in :func:`instances_to_results`.
    Every image of ``json_file`` is evaluated (an image never processed counts as one with no
    detections), and every category of ``json_file`` competes (generalized setting).

    ``evaluate`` returns, for each evaluated task ("bbox", "segm"), the percentages ``AP, AP50,
    AP75, APs, APm, APl`` (as ``COCOeval.summarize``, with ``max_dets_per_image`` detections) and
    ``AP_base, AP50_base, AP_novel, AP50_novel`` over the categories of ``novel_category_ids``
    (novel) and all other categories of the json (base). A metric with no ground truth behind it
    is NaN: ``AP_novel`` and ``AP50_novel`` are NaN when ``novel_category_ids`` is empty, ``APs``
    is NaN when there is no small object. With no prediction at all every task is evaluated and
    scores 0; with predictions but no masks "segm" is skipped with a warning.

    With ``output_dir`` (the run's OUTPUT_DIR) the merged predictions are written as a COCO
    results json to ``output_dir/inference/<dataset_name>_results.json`` (see
    :mod:`ovdet.evaluation.evaluator` for the distributed case).
    """

    def __init__(self, dataset_name: str, json_file: str, class_to_category_id: Sequence[int],
                 novel_category_ids: Collection[int] = (), output_dir: str | None = None,
                 tasks: Sequence[str] = TASKS, max_dets_per_image: int = 100):
        """
        Args:
            dataset_name: names the results file.
            json_file: COCO instances json of the evaluated split (``images``, ``annotations``,
                ``categories``).
            class_to_category_id: ``class_to_category_id[c]`` is the json category id of the
                model's class index ``c`` (the evaluated vocabulary).
            novel_category_ids: json category ids counted as novel.
            output_dir: where ``inference/<dataset_name>_results.json`` goes; None writes nothing.
            tasks: a non-empty subset of ("bbox", "segm").
            max_dets_per_image: detections kept per image (highest scores) and COCOeval's
                largest ``maxDets``.
        """
        self._check_options(dataset_name, tasks, max_dets_per_image)
        data = read_json_dataset(json_file, "COCO instances", gt_fields(
            tasks, ("id", "image_id", "category_id", "bbox", "area", "iscrowd")),
            "ground-truth json")
        self._coco_gt = coco_from_dict(data)
        category_ids = set(self._coco_gt.getCatIds())
        self._set_ground_truth(dataset_name, json_file, data, category_ids, class_to_category_id,
                               output_dir, tasks, max_dets_per_image)
        self.novel_category_ids = frozenset(int(c) for c in novel_category_ids)
        unknown_ids = sorted(self.novel_category_ids - category_ids)
        if unknown_ids:
            raise ValueError(f"novel_category_ids {unknown_ids} are not categories of {json_file}")

    def _evaluate_task(self, results: list[dict], iou_type: str) -> dict[str, float]:
        coco_dt = coco_results(self._coco_gt, task_entries(results, iou_type))
        with quiet_stdout("pycocotools"):
            coco_eval = COCOeval(self._coco_gt, coco_dt, iou_type)
            coco_eval.params.maxDets = [1, 10, self.max_dets_per_image]
            coco_eval.evaluate()
            coco_eval.accumulate()
        params = coco_eval.params
        precision, iou_thrs = coco_eval.eval["precision"], params.iouThrs
        areas = {label: i for i, label in enumerate(params.areaRngLbl)}
        novel = [k for k, c in enumerate(params.catIds) if c in self.novel_category_ids]
        base = [k for k, c in enumerate(params.catIds) if c not in self.novel_category_ids]

        def ap(iou: float | None = None, categories: list[int] | None = None,
               area: str = "all") -> float:
            return average_precision(precision, iou_thrs, iou, categories, areas[area])

        return {"AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75), "APs": ap(area="small"),
                "APm": ap(area="medium"), "APl": ap(area="large"),
                "AP_base": ap(None, base), "AP50_base": ap(0.5, base),
                "AP_novel": ap(None, novel), "AP50_novel": ap(0.5, novel)}

