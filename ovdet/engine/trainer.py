"""The training loop: iteration-indexed data, fvcore schedules and checkpoints, exact resume.

Outputs in ``OUTPUT_DIR``: ``config.yaml`` (the full config, seed resolved), ``model_XXXXXXX.pth``
every ``SOLVER.CHECKPOINT_PERIOD`` iterations, ``model_final.pth``, ``last_checkpoint``,
``metrics.json`` (one JSON object per line: iteration, losses, lr, seconds per iteration) and the
evaluation files of :mod:`ovdet.engine.evaluation`.

Resuming (``resume=True``) loads ``last_checkpoint`` with its optimizer state and iteration. Batch
``i`` and every random draw of iteration ``i`` (RPN and RoI sampling) are seeded from
``(SEED, i)``, so a run killed and resumed ends with the weights of an uninterrupted run.

Data: the datasets of ``DATASETS.TRAIN``, concatenated, or mixed in every batch by
``DATALOADER.DATASET_RATIOS`` (:mod:`ovdet.data.loader`). Those also named in
``DATASETS.IMAGE_LABELLED`` have pseudo boxes from image-level labels (PromptDet's self-training):
the training vocabulary is then the union of the datasets' classes (:func:`training_vocabulary`,
the records' ids remapped into it by :func:`training_records`), the base classes are those of the
box-labelled datasets (:func:`training_base_names`), and the RoI heads train image-labelled images
on their positives only (:mod:`ovdet.modeling.roi_heads.open_vocab_heads`). The datasets of
``DATASETS.PSEUDO_BOXES`` hold caption pseudo boxes of the human-labelled images: each such image
gets those of categories it has no human box of as unlabelled objects
(:mod:`ovdet.data.unlabelled`), their classes join the training vocabulary and stay novel; one
also named in ``DATASETS.TRAIN`` is trained on as well, its pseudo boxes as complete
annotations.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from fvcore.common.checkpoint import PeriodicCheckpointer
from fvcore.common.param_scheduler import (CompositeParamScheduler, ConstantParamScheduler,
                                           CosineParamScheduler, LinearParamScheduler,
                                           MultiStepParamScheduler, ParamScheduler)
from torch import nn
from tqdm import tqdm

from ..config import CfgNode, ConfigError
from ..data.catalog import DatasetCatalog
from ..data.class_counts import class_image_counts
from ..data.loader import build_train_loader
from ..data.mapper import DatasetMapper
from ..data.unlabelled import attach_pseudo_boxes
from ..utils.io import atomic_open, finite_json
from ..modeling.vocabulary import normalize_class_name
from .checkpoint import CheckpointError, DetectorCheckpointer
from .distributed import get_rank, get_world_size, is_main_process, unwrap
from .evaluation import evaluate_datasets

logger = logging.getLogger(__name__)


def schedule_steps(steps: list[int], max_iter: int) -> list[int]:
    """``SOLVER.STEPS`` that fall inside the run: steps at or past ``max_iter`` are dropped with a
    warning (as detectron2 does), so that ``SOLVER.MAX_ITER`` alone can shorten a schedule."""
    kept = [step for step in steps if 0 < step < max_iter]
    if kept != sorted(set(kept)):
        raise ConfigError(f"SOLVER.STEPS must increase, got {tuple(steps)}")
    if len(kept) < len(steps):
        logger.warning("SOLVER.STEPS %s: dropping the steps outside (0, SOLVER.MAX_ITER = %d); "
                       "the lr drops at %s", tuple(steps), max_iter, tuple(kept) or "no step")
    return kept


def lr_schedule(cfg: CfgNode) -> ParamScheduler:
    """lr multiplier as a function of training progress in [0, 1): linear warmup, then multistep
    or cosine (fvcore schedulers). Multistep steps past ``MAX_ITER`` are dropped
    (:func:`schedule_steps`)."""
    solver = cfg.SOLVER
    max_iter = solver.MAX_ITER
    if max_iter < 1:
        raise ConfigError(f"SOLVER.MAX_ITER must be at least 1, got {max_iter}")
    if solver.LR_SCHEDULE == "multistep":
        steps = schedule_steps(list(solver.STEPS), max_iter)
        main = MultiStepParamScheduler([solver.GAMMA**k for k in range(len(steps) + 1)],
                                       num_updates=max_iter, milestones=steps)
    elif solver.LR_SCHEDULE == "cosine":
        main = CosineParamScheduler(1.0, 0.0)
    else:
        raise ConfigError(f"SOLVER.LR_SCHEDULE must be 'multistep' or 'cosine', "
                          f"got {solver.LR_SCHEDULE!r}")
    warmup = min(solver.WARMUP_ITERS, max_iter) / max_iter
    if warmup <= 0:
        return main
    ramp = LinearParamScheduler(solver.WARMUP_FACTOR, 1.0) if solver.WARMUP_FACTOR < 1 \
        else ConstantParamScheduler(1.0)
    return CompositeParamScheduler([ramp, main], lengths=[warmup, 1 - warmup],
                                   interval_scaling=["rescaled", "fixed"])


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters; no weight decay on norms, biases, scalars."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": cfg.SOLVER.WEIGHT_DECAY},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.SOLVER.OPTIMIZER == "SGD":
        return torch.optim.SGD(groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)
    if cfg.SOLVER.OPTIMIZER == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.SOLVER.BASE_LR)
    raise ConfigError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {cfg.SOLVER.OPTIMIZER!r}")


def check_image_labelled(dataset_names: Sequence[str], image_labelled: Sequence[str]) -> None:
    """``DATASETS.IMAGE_LABELLED`` must name training datasets of ``DATASETS.TRAIN``, leave at
    least one box-labelled one (the base classes are theirs) and name no panoptic one."""
    strangers = [name for name in image_labelled if name not in dataset_names]
    if strangers:
        raise ConfigError(f"DATASETS.IMAGE_LABELLED names {strangers}, which are not in "
                          f"DATASETS.TRAIN {tuple(dataset_names)}: it lists the training "
                          "datasets whose boxes come from image-level labels")
    if image_labelled and all(name in image_labelled for name in dataset_names):
        raise ConfigError("DATASETS.IMAGE_LABELLED names every dataset of DATASETS.TRAIN; "
                          "training needs at least one box-labelled dataset (its classes are "
                          "the detector's base classes)")
    panoptic = [name for name in dataset_names if image_labelled
                and DatasetCatalog.metadata(name).evaluator_type == "coco_panoptic"]
    if panoptic:
        raise ConfigError(f"training with image-labelled datasets (DATASETS.IMAGE_LABELLED) "
                          f"mixes detection datasets only; {panoptic} are panoptic")


def _ordered_union(class_lists: Iterable[Sequence[str]]) -> list[str]:
    """The names of ``class_lists``, first appearance first, compared in normal form."""
    union: dict[str, str] = {}
    for classes in class_lists:
        for name in classes:
            union.setdefault(normalize_class_name(name), name)
    return list(union.values())


def check_pseudo_boxes(dataset_names: Sequence[str], image_labelled: Sequence[str],
                       pseudo_boxes: Sequence[str]) -> None:
    """``DATASETS.PSEUDO_BOXES`` must name registered detection datasets (not image-labelled
    ones) and leave a box-labelled dataset of ``DATASETS.TRAIN`` to attach them to."""
    DatasetCatalog.check(pseudo_boxes, "DATASETS.PSEUDO_BOXES")
    both = [name for name in pseudo_boxes if name in image_labelled]
    if both:
        raise ConfigError(f"{both} are named in both DATASETS.PSEUDO_BOXES and "
                          "DATASETS.IMAGE_LABELLED; a dataset's boxes are caption pseudo boxes or "
                          "boxes from image-level labels, not both")
    panoptic = [name for name in pseudo_boxes
                if DatasetCatalog.metadata(name).evaluator_type == "coco_panoptic"]
    if panoptic:
        raise ConfigError(f"DATASETS.PSEUDO_BOXES names panoptic datasets {panoptic}; pseudo "
                          "boxes are a COCO instances file")
    if pseudo_boxes and not human_labelled(dataset_names, image_labelled, pseudo_boxes):
        raise ConfigError("DATASETS.PSEUDO_BOXES needs a dataset of human boxes in "
                          f"DATASETS.TRAIN {tuple(dataset_names)} (not itself a pseudo-box or "
                          "image-labelled dataset) to attach the pseudo boxes to")


def check_unlabelled_options(cfg: CfgNode) -> None:
    """A :class:`ConfigError` for training options that act on caption pseudo boxes of unlabelled
    objects while ``DATASETS.PSEUDO_BOXES`` is empty (they would silently do nothing)."""
    if cfg.DATASETS.PSEUDO_BOXES:
        return
    used = [f"{key} {value}" for key, value in (
        ("MODEL.ROI_HEADS.UNLABELLED", cfg.MODEL.ROI_HEADS.UNLABELLED),
        ("MODEL.RPN.UNLABELLED", cfg.MODEL.RPN.UNLABELLED)) if value != "background"]
    distillation = cfg.MODEL.DISTILLATION.REGIONS == "unlabelled"
    if "TeacherDistillation" in cfg.MODEL.CRITERIA and distillation:
        used.append("TeacherDistillation on MODEL.DISTILLATION.REGIONS unlabelled")
    if used:
        raise ConfigError(f"{', '.join(used)} act on caption pseudo boxes of unlabelled objects, "
                          "but DATASETS.PSEUDO_BOXES is empty: name the pseudo boxes of the "
                          "training images there (e.g. toyworld_train_pseudo)")


def human_labelled(dataset_names: Sequence[str], image_labelled: Sequence[str] = (),
                   pseudo_boxes: Sequence[str] = ()) -> list[str]:
    """The datasets of ``dataset_names`` whose boxes a human drew: neither image-labelled nor
    caption pseudo boxes."""
    return [name for name in dataset_names
            if name not in image_labelled and name not in pseudo_boxes]


def training_vocabulary(dataset_names: Sequence[str], image_labelled: Sequence[str] = (),
                        pseudo_boxes: Sequence[str] = ()) -> list[str]:
    """The class names of the training datasets. Without image-labelled or pseudo-box datasets
    they must agree (and not be empty); with some (``DATASETS.IMAGE_LABELLED``,
    ``DATASETS.PSEUDO_BOXES``), the vocabulary is their ordered union: the first dataset's
    classes, then the names the others add, in order of appearance, then those the pseudo-box
    datasets add (names compared in normal form, the first spelling kept)."""
    if not dataset_names:
        raise ConfigError("DATASETS.TRAIN is empty: name at least one registered dataset")
    check_image_labelled(dataset_names, image_labelled)
    check_pseudo_boxes(dataset_names, image_labelled, pseudo_boxes)
    vocabularies = {name: DatasetCatalog.metadata(name).thing_classes for name in dataset_names}
    for name, classes in vocabularies.items():
        if not classes:
            raise ConfigError(
                f"training dataset {name!r} has no base classes: every category of "
                f"{DatasetCatalog.metadata(name).json_file or 'its json'} is novel, and a "
                "training set (keep='base') drops novel ones; mark fewer categories novel")
    if image_labelled or pseudo_boxes:
        return _ordered_union([*(vocabularies[name] for name in dataset_names),
                               *(DatasetCatalog.metadata(name).thing_classes
                                 for name in pseudo_boxes)])
    first = vocabularies[dataset_names[0]]
    for name, classes in vocabularies.items():
        if classes != first:
            raise ConfigError(f"training datasets disagree on their classes: {dataset_names[0]} "
                              f"has {first}, {name} has {classes}")
    return list(first)


def training_base_names(dataset_names: Sequence[str], image_labelled: Sequence[str] = (),
                        pseudo_boxes: Sequence[str] = ()) -> list[str]:
    """The classes the detector counts as base after training: those of the human-labelled
    datasets (:func:`human_labelled`), in vocabulary order. A class known only from image labels
    or caption pseudo boxes stays novel (scored with the novel weights of the CLIP ensemble)."""
    vocabulary = training_vocabulary(dataset_names, image_labelled, pseudo_boxes)
    boxed = {normalize_class_name(c)
             for name in human_labelled(dataset_names, image_labelled, pseudo_boxes)
             for c in DatasetCatalog.metadata(name).thing_classes}
    return [name for name in vocabulary if normalize_class_name(name) in boxed]


def training_records(dataset_names: Sequence[str], image_labelled: Sequence[str] = (),
                     pseudo_boxes: Sequence[str] = ()) -> list[tuple[str, list[dict]]]:
    """``(name, dataset dicts)`` of each training dataset, as the loader reads them. Without
    image-labelled or pseudo-box datasets, the catalog's dicts as they are. With some, copies
    (the catalog's are never changed) whose ``category_id`` indexes :func:`training_vocabulary`'s
    union; records of an image-labelled dataset carry ``"image_labelled": True`` (the mapper
    passes it to the model), and records of a human-labelled dataset carry the
    ``"pseudo_annotations"`` of their image from the datasets of ``pseudo_boxes``
    (:func:`ovdet.data.unlabelled.attach_pseudo_boxes`)."""
    if not image_labelled and not pseudo_boxes:
        return [(name, DatasetCatalog.get(name)) for name in dataset_names]
    vocabulary = training_vocabulary(dataset_names, image_labelled, pseudo_boxes)
    index = {normalize_class_name(c): k for k, c in enumerate(vocabulary)}

    def to_union(name: str) -> list[int]:
        return [index[normalize_class_name(c)] for c in DatasetCatalog.metadata(name).thing_classes]

    humans = human_labelled(dataset_names, image_labelled, pseudo_boxes)
    datasets = []
    for name in dataset_names:
        ids = to_union(name)
        if name in humans and pseudo_boxes:
            datasets.append((name, attach_pseudo_boxes(
                DatasetCatalog.get(name), name, ids,
                [(p, DatasetCatalog.get(p), to_union(p)) for p in pseudo_boxes])))
            continue
        mark = {"image_labelled": True} if name in image_labelled else {}
        datasets.append((name, [
            {**record, **mark, "annotations": [{**a, "category_id": ids[a["category_id"]]}
                                               for a in record.get("annotations", [])]}
            for record in DatasetCatalog.get(name)]))
    return datasets


def training_stuff(dataset_names: list[str]) -> list[str]:
    """The stuff class names of the training datasets (panoptic ones; [] for detection sets);
    they must agree."""
    vocabularies = {name: list(DatasetCatalog.metadata(name).stuff_classes)
                    for name in dataset_names}
    first = vocabularies[dataset_names[0]] if dataset_names else []
    for name, classes in vocabularies.items():
        if classes != first:
            raise ConfigError(f"training datasets disagree on their stuff classes: "
                              f"{dataset_names[0]} has {first}, {name} has {classes}")
    return first


def iteration_seed(seed: int, iteration: int, rank: int) -> int:
    return int(np.random.default_rng([seed, iteration, rank, 7]).integers(2**62))


class Trainer:
    """Trains ``model`` as ``cfg`` says (module doc). ``model`` may be DDP-wrapped."""

    def __init__(self, cfg: CfgNode, model: nn.Module, seed: int) -> None:
        self.cfg, self.model, self.seed = cfg, model, seed
        self.optimizer = build_optimizer(cfg, model)
        self.schedule = lr_schedule(cfg)
        self.output_dir = Path(cfg.OUTPUT_DIR)
        self.checkpointer = DetectorCheckpointer(unwrap(model), str(self.output_dir),
                                         save_to_disk=is_main_process(), optimizer=self.optimizer)
        self.start_iter = 0

    def resume_or_load(self, resume: bool) -> None:
        """Continue from ``last_checkpoint`` (``resume``) or start from ``MODEL.WEIGHTS``. The
        model's base names (this run's training classes) stay: initial weights from another run,
        e.g. pseudo-box pretraining on more classes, carry that run's base names."""
        base_names = list(unwrap(self.model).base_names)
        try:
            extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        except CheckpointError as error:
            if not (resume and self.checkpointer.has_checkpoint()):
                raise
            raise CheckpointError(f"{error}; to resume from an earlier checkpoint, write the "
                                  f"name of one of its model_*.pth into "
                                  f"{self.output_dir / 'last_checkpoint'}") from None
        unwrap(self.model).set_base_names(base_names)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = int(extra.get("iteration", -1)) + 1
            logger.info("resuming at iteration %d", self.start_iter)

    def _restart_advice(self) -> str:
        """Where a failed run can go on from: its last checkpoint, or a fresh start."""
        if self.checkpointer.has_checkpoint():
            last = Path(self.checkpointer.get_checkpoint_file()).name
            return (f"the last good checkpoint is {self.output_dir / last} (resume with --resume, "
                    "perhaps with a lower SOLVER.BASE_LR or SOLVER.CLIP_GRADIENTS)")
        return (f"no checkpoint was saved yet in {self.output_dir} (the first comes after "
                f"SOLVER.CHECKPOINT_PERIOD = {self.cfg.SOLVER.CHECKPOINT_PERIOD} iterations); "
                "start again with a lower SOLVER.BASE_LR or SOLVER.CLIP_GRADIENTS")

    def train(self) -> None:
        cfg = self.cfg
        max_iter, world = cfg.SOLVER.MAX_ITER, get_world_size()
        if cfg.SOLVER.IMS_PER_BATCH % world:
            raise ConfigError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible "
                              f"by the {world} processes")
        names, image_labelled = list(cfg.DATASETS.TRAIN), list(cfg.DATASETS.IMAGE_LABELLED)
        pseudo_boxes = list(cfg.DATASETS.PSEUDO_BOXES)
        datasets = training_records(names, image_labelled, pseudo_boxes)
        vocabulary = unwrap(self.model).vocabulary  # the federated loss samples by frequency
        if image_labelled or pseudo_boxes:
            expected = training_vocabulary(names, image_labelled, pseudo_boxes)
            if [normalize_class_name(n) for n in vocabulary] != \
                    [normalize_class_name(n) for n in expected]:
                raise ConfigError(f"with DATASETS.IMAGE_LABELLED or DATASETS.PSEUDO_BOXES the "
                                  f"model must be trained on "
                                  f"the union of the training classes {expected} (its "
                                  f"set_training_vocabulary), not on {list(vocabulary)}")
        records = [r for _, dataset in datasets for r in dataset]
        vocabulary.set_image_counts(class_image_counts(records, len(vocabulary)))
        loader = build_train_loader(datasets, DatasetMapper(cfg, True),
                                    cfg.SOLVER.IMS_PER_BATCH // world, self.seed * 1000 + get_rank(),
                                    self.start_iter, max_iter, cfg.DATALOADER.NUM_WORKERS,
                                    cfg.DATALOADER.DATASET_RATIOS)
        periodic = PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_iter)
        device = torch.device(cfg.MODEL.DEVICE)
        amp = cfg.SOLVER.AMP and device.type == "cuda"
        self.model.train()
        metrics_file = self.output_dir / "metrics.json"
        if is_main_process() and self.start_iter == 0:
            metrics_file.write_text("")  # a fresh run starts a fresh log; a resumed one appends
        bar = tqdm(range(self.start_iter, max_iter), initial=self.start_iter, total=max_iter,
                   desc="training", unit="it", disable=not is_main_process(), dynamic_ncols=True)
        for iteration in bar:
            started = time.perf_counter()
            batch = next(loader)
            lr = cfg.SOLVER.BASE_LR * self.schedule(iteration / max_iter)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(iteration_seed(self.seed, iteration, get_rank()))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                losses = self.model(batch)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at iteration {iteration} "
                    f"({ {k: round(v.item(), 4) for k, v in losses.items()} }); "
                    f"{self._restart_advice()}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.SOLVER.CLIP_GRADIENTS > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], cfg.SOLVER.CLIP_GRADIENTS)
            self.optimizer.step()
            values = {k: round(v.item(), 5) for k, v in losses.items()}
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2g}")
            if is_main_process() and (iteration % 20 == 0 or iteration == max_iter - 1):
                with open(metrics_file, "a") as f:
                    f.write(json.dumps(finite_json({
                        "iteration": iteration, "total_loss": round(loss.item(), 5), **values,
                        "lr": lr, "time": round(time.perf_counter() - started, 4)}),
                        allow_nan=False) + "\n")
            periodic.step(iteration)
            period = cfg.TEST.EVAL_PERIOD
            if period > 0 and (iteration + 1) % period == 0 and iteration + 1 != max_iter:
                evaluate_datasets(cfg, unwrap(self.model))
                self.model.train()


def write_config(cfg: CfgNode, path: Path) -> None:
    """The full config as YAML, atomically."""
    with atomic_open(path, "w") as f:
        f.write(cfg.dump())

