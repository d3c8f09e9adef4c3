"""Evaluation of a detector on the datasets of ``DATASETS.TEST``.

For each dataset the model's vocabulary becomes the dataset's classes (generalized setting: base
and novel together; things and stuff for a panoptic dataset), each process runs inference on its
share of the images, the evaluator gathers and scores them
(``OUTPUT_DIR/inference/<dataset>_results.json``), and rank 0 writes
``OUTPUT_DIR/eval_metrics.json`` = ``{dataset: {"bbox": {...}, "segm": {...}}}`` (a panoptic
dataset: ``{"panoptic": {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "PQ_novel", ...}}``, percent) and
prints one ``copypaste:`` line per dataset and task.

``TEST.PROTOCOL zsd`` evaluates a COCO-format box dataset by the zero-shot detection protocol
instead (:mod:`ovdet.evaluation.zsd`; unseen = the dataset's novel classes): GZSD runs the whole
vocabulary on every image (``inference/<dataset>_gzsd_results.json``), ZSD the unseen names alone
on the images that hold an unseen object (``inference/<dataset>_zsd_results.json``), and
``eval_metrics.json`` holds ``{dataset: {"zsd": {"mAP50", "recall100@0.4", "recall100@0.5",
"recall100@0.6"}, "gzsd": {"seen_mAP50", "unseen_mAP50", "hm_mAP50", "seen_recall100",
"unseen_recall100", "hm_recall100"}}}`` (percent).
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torch import nn
from tqdm import tqdm

from ..config import CfgNode, ConfigError
from ..data.catalog import DatasetCatalog, Metadata
from ..data.loader import iterate_test_records
from ..data.mapper import DatasetMapper
from ..evaluation.coco_evaluation import COCOEvaluator, process_batch, quiet_stdout
from ..evaluation.evaluator import DatasetEvaluator, gather_results
from ..evaluation.lvis_evaluation import LVISEvaluator
from ..evaluation.panoptic import COCOPanopticEvaluator
from ..evaluation.zsd import zsd_image_ids, zsd_metrics
from ..utils.io import atomic_write_json
from .distributed import get_rank, get_world_size, is_main_process

logger = logging.getLogger(__name__)
COPYPASTE_KEYS = {"coco": ("AP", "AP50", "AP50_base", "AP50_novel"),
                  "lvis": ("AP", "APr", "APc", "APf"),
                  "coco_panoptic": ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "PQ_novel"),
                  "zsd": ("mAP50", "recall100@0.4", "recall100@0.5", "recall100@0.6"),
                  "gzsd": ("seen_mAP50", "unseen_mAP50", "hm_mAP50", "seen_recall100",
                           "unseen_recall100", "hm_recall100")}
PROTOCOLS = ("ovd", "zsd")


def class_to_category_ids(metadata: Metadata) -> list[int]:
    """The dataset category id of each class index of ``metadata.thing_classes``."""
    ids = [0] * len(metadata.thing_classes)
    for category_id, index in metadata.thing_dataset_id_to_contiguous_id.items():
        ids[index] = category_id
    return ids


def build_evaluator(cfg: CfgNode, metadata: Metadata) -> DatasetEvaluator:
    """COCO, LVIS or COCO panoptic evaluator for a dataset, per its metadata's
    ``evaluator_type``."""
    class_to_category_id = class_to_category_ids(metadata)
    if metadata.evaluator_type == "coco_panoptic":
        if not cfg.MODEL.PANOPTIC_ON:
            raise ConfigError(f"{metadata.name} is a panoptic dataset: evaluating it needs "
                              "MODEL.PANOPTIC_ON True (and weights of a panoptic model)")
        stuff_ids = [0] * len(metadata.stuff_classes)
        for category_id, index in metadata.stuff_dataset_id_to_contiguous_id.items():
            stuff_ids[index] = category_id
        return COCOPanopticEvaluator(metadata.name, metadata.panoptic_json, metadata.panoptic_root,
                                     class_to_category_id + stuff_ids, output_dir=cfg.OUTPUT_DIR)
    tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
    if metadata.evaluator_type == "lvis":
        return LVISEvaluator(metadata.name, metadata.json_file, class_to_category_id,
                             output_dir=cfg.OUTPUT_DIR, tasks=tasks, max_dets_per_image=300)
    novel = [class_to_category_id[k] for k, split in enumerate(metadata.class_splits)
             if split == "novel"]
    return COCOEvaluator(metadata.name, metadata.json_file, class_to_category_id, novel,
                         output_dir=cfg.OUTPUT_DIR, tasks=tasks,
                         max_dets_per_image=cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module, names: list[str], stuff: list[str]) -> Iterator[None]:
    """``model`` in eval mode with the vocabulary ``names`` (and ``stuff``) inside the block; its
    mode and vocabulary (names, or none) are restored after it."""
    was_training, vocabulary = model.training, list(model.vocabulary)
    old_stuff = list(getattr(model, "stuff_vocabulary", []))
    model.eval()
    model.set_vocabulary(names, stuff=stuff)
    try:
        yield
    finally:
        if vocabulary:
            model.set_vocabulary(vocabulary, stuff=old_stuff)
        else:
            model.vocabulary.clear()
        model.train(was_training)


def batches(cfg: CfgNode, records: list[dict], description: str) -> Iterator[list[dict]]:
    """Mapped test batches of ``records`` (``TEST.IMS_PER_BATCH``), with a progress bar on
    rank 0."""
    batch_size = cfg.TEST.IMS_PER_BATCH
    return tqdm(iterate_test_records(records, DatasetMapper(cfg, False), batch_size),
                total=math.ceil(len(records) / batch_size), desc=f"evaluating {description}",
                unit="batch", disable=not is_main_process(), dynamic_ncols=True)


@torch.no_grad()
def inference_on_dataset(cfg: CfgNode, model: nn.Module, dataset_name: str) -> dict:
    """Metrics of ``model`` on one registered dataset (rank 0; {} on other ranks)."""
    metadata = DatasetCatalog.metadata(dataset_name)
    records = DatasetCatalog.get(dataset_name)[get_rank()::get_world_size()]
    evaluator = build_evaluator(cfg, metadata)
    panoptic = metadata.evaluator_type == "coco_panoptic"
    with evaluation_mode(model, metadata.thing_classes,
                         metadata.stuff_classes if panoptic else []):
        for inputs in batches(cfg, records, dataset_name):
            evaluator.process(inputs, model(inputs))
        return evaluator.evaluate()


def predict_results(cfg: CfgNode, model: nn.Module, records: list[dict], names: list[str],
                    category_ids: list[int], tag: str) -> list[dict] | None:
    """COCO box result entries (no masks) of ``model`` with the vocabulary ``names`` (class k is
    category ``category_ids[k]``) on this rank's share of ``records``, gathered on rank 0 into
    ``OUTPUT_DIR/inference/<tag>_results.json`` (None on other ranks)."""
    records = records[get_rank()::get_world_size()]
    sizes = {r["image_id"]: (r["height"], r["width"]) for r in records}
    max_dets = cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE
    entries: list[dict] = []
    with evaluation_mode(model, names, []):
        for inputs in batches(cfg, records, tag):
            outputs = [{"instances": {k: v for k, v in out["instances"].items() if k != "masks"}}
                       for out in model(inputs)]
            entries += process_batch(inputs, outputs, category_ids, max_dets, sizes, tag)
    return gather_results(entries, tag, cfg.OUTPUT_DIR)


@torch.no_grad()
def zsd_on_dataset(cfg: CfgNode, model: nn.Module, dataset_name: str) -> dict:
    """ZSD and GZSD metrics of ``model`` on one registered COCO-format dataset, its novel
    classes unseen (module doc; rank 0, {} on other ranks)."""
    metadata = DatasetCatalog.metadata(dataset_name)
    unseen = [k for k, split in enumerate(metadata.class_splits) if split == "novel"]
    category_ids = class_to_category_ids(metadata)
    unseen_ids = [category_ids[k] for k in unseen]
    with quiet_stdout("pycocotools"):
        ground_truth = COCO(metadata.json_file)
    records = DatasetCatalog.get(dataset_name)
    with_unseen = set(zsd_image_ids(ground_truth, unseen_ids))  # the images the metric reads
    gzsd = predict_results(cfg, model, records, metadata.thing_classes, category_ids,
                           f"{dataset_name}_gzsd")
    zsd = predict_results(cfg, model, [r for r in records if r["image_id"] in with_unseen],
                          [metadata.thing_classes[k] for k in unseen], unseen_ids,
                          f"{dataset_name}_zsd")
    if gzsd is None:
        return {}
    return zsd_metrics(ground_truth, gzsd, unseen_ids, zsd_results=zsd,
                       max_dets=cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE)


def check_test_protocol(protocol: str, dataset_names: list[str]) -> None:
    """A ConfigError unless ``protocol`` (``TEST.PROTOCOL``) is known and can evaluate every
    dataset of ``dataset_names``: the zero-shot one needs COCO-format box datasets with novel
    (unseen) classes."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"TEST.PROTOCOL must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol != "zsd":
        return
    for name in dataset_names:
        metadata = DatasetCatalog.metadata(name)
        if metadata.evaluator_type != "coco":
            raise ConfigError(f"TEST.PROTOCOL zsd evaluates COCO-format box datasets; {name} is "
                              f"evaluated as {metadata.evaluator_type!r}")
        if "novel" not in metadata.class_splits:
            raise ConfigError(f"TEST.PROTOCOL zsd needs unseen classes, and {name} has no novel "
                              "category (give its json's categories \"split\": \"novel\", or "
                              "register it with --dataset NAME=JSON:IMAGES:novel=a,b)")


def evaluate_datasets(cfg: CfgNode, model: nn.Module) -> dict:
    """Evaluate on every dataset of ``DATASETS.TEST`` by ``TEST.PROTOCOL`` (module doc)."""
    check_test_protocol(cfg.TEST.PROTOCOL, list(cfg.DATASETS.TEST))
    evaluate = zsd_on_dataset if cfg.TEST.PROTOCOL == "zsd" else inference_on_dataset
    results = {name: evaluate(cfg, model, name) for name in cfg.DATASETS.TEST}
    if is_main_process() and results:
        atomic_write_json(Path(cfg.OUTPUT_DIR) / "eval_metrics.json", results)
        for name, tasks in results.items():
            for task, metrics in tasks.items():
                keys = COPYPASTE_KEYS.get(task) or COPYPASTE_KEYS[
                    DatasetCatalog.metadata(name).evaluator_type]
                values = " ".join(f"{k}={metrics.get(k, float('nan')):.2f}" for k in keys)
                print(f"copypaste: {name} {task} {values}", flush=True)
    return results
