"""Evaluation of a detector on the datasets of ``DATASETS.TEST``.

For each dataset the model's vocabulary becomes the dataset's classes (generalized setting: base
and novel together; things and stuff for a panoptic dataset), each process runs inference on its
share of the images, the evaluator gathers and scores them
(``OUTPUT_DIR/inference/<dataset>_results.json``), and rank 0 writes
``OUTPUT_DIR/eval_metrics.json`` = ``{dataset: {"bbox": {...}, "segm": {...}}}`` (a panoptic
dataset: ``{"panoptic": {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "PQ_novel", ...}}``, percent) and
prints one ``copypaste:`` line per dataset and task.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import CfgNode, ConfigError
from ..data.catalog import DatasetCatalog, Metadata
from ..data.loader import iterate_test_records
from ..data.mapper import DatasetMapper
from ..evaluation.coco_evaluation import COCOEvaluator
from ..evaluation.evaluator import DatasetEvaluator
from ..evaluation.lvis_evaluation import LVISEvaluator
from ..evaluation.panoptic import COCOPanopticEvaluator
from ..utils.io import atomic_write_json
from .distributed import get_rank, get_world_size, is_main_process

logger = logging.getLogger(__name__)
COPYPASTE_KEYS = {"coco": ("AP", "AP50", "AP50_base", "AP50_novel"),
                  "lvis": ("AP", "APr", "APc", "APf"),
                  "coco_panoptic": ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "PQ_novel")}


def build_evaluator(cfg: CfgNode, metadata: Metadata) -> DatasetEvaluator:
    """COCO, LVIS or COCO panoptic evaluator for a dataset, per its metadata's
    ``evaluator_type``."""
    class_to_category_id = [0] * len(metadata.thing_classes)
    for category_id, index in metadata.thing_dataset_id_to_contiguous_id.items():
        class_to_category_id[index] = category_id
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


@torch.no_grad()
def inference_on_dataset(cfg: CfgNode, model: nn.Module, dataset_name: str) -> dict:
    """Metrics of ``model`` on one registered dataset (rank 0; {} on other ranks)."""
    metadata = DatasetCatalog.metadata(dataset_name)
    records = DatasetCatalog.get(dataset_name)[get_rank()::get_world_size()]
    evaluator = build_evaluator(cfg, metadata)
    mapper = DatasetMapper(cfg, False)
    was_training, vocabulary = model.training, list(model.vocabulary)
    stuff = list(getattr(model, "stuff_vocabulary", []))
    model.eval()
    panoptic = metadata.evaluator_type == "coco_panoptic"
    model.set_vocabulary(metadata.thing_classes, stuff=metadata.stuff_classes if panoptic else [])
    batch_size = cfg.TEST.IMS_PER_BATCH
    try:
        for inputs in tqdm(iterate_test_records(records, mapper, batch_size),
                           total=math.ceil(len(records) / batch_size), desc=f"evaluating {dataset_name}",
                           unit="batch", disable=not is_main_process(), dynamic_ncols=True):
            evaluator.process(inputs, model(inputs))
        return evaluator.evaluate()
    finally:
        if vocabulary:
            model.set_vocabulary(vocabulary, stuff=stuff)
        model.train(was_training)


def evaluate_datasets(cfg: CfgNode, model: nn.Module) -> dict:
    """Evaluate on every dataset of ``DATASETS.TEST`` (module doc)."""
    results = {name: inference_on_dataset(cfg, model, name) for name in cfg.DATASETS.TEST}
    if is_main_process() and results:
        atomic_write_json(Path(cfg.OUTPUT_DIR) / "eval_metrics.json", results)
        for name, tasks in results.items():
            keys = COPYPASTE_KEYS[DatasetCatalog.metadata(name).evaluator_type]
            for task, metrics in tasks.items():
                values = " ".join(f"{k}={metrics.get(k, float('nan')):.2f}" for k in keys)
                print(f"copypaste: {name} {task} {values}", flush=True)
    return results
