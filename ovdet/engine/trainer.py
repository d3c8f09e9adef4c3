"""The training loop: iteration-indexed data, fvcore schedules and checkpoints, exact resume.

Outputs in ``OUTPUT_DIR``: ``config.yaml`` (the full config, seed resolved), ``model_XXXXXXX.pth``
every ``SOLVER.CHECKPOINT_PERIOD`` iterations, ``model_final.pth``, ``last_checkpoint``,
``metrics.json`` (one JSON object per line: iteration, losses, lr, seconds per iteration) and the
evaluation files of :mod:`ovdet.engine.evaluation`.

Resuming (``resume=True``) loads ``last_checkpoint`` with its optimizer state and iteration. Batch
``i`` and every random draw of iteration ``i`` (RPN and RoI sampling) are seeded from
``(SEED, i)``, so a run killed and resumed ends with the weights of an uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

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
from ..utils.io import atomic_open, finite_json
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


def training_vocabulary(dataset_names: list[str]) -> list[str]:
    """The class names of the training datasets (they must agree, and not be empty)."""
    if not dataset_names:
        raise ConfigError("DATASETS.TRAIN is empty: name at least one registered dataset")
    vocabularies = {name: DatasetCatalog.metadata(name).thing_classes for name in dataset_names}
    for name, classes in vocabularies.items():
        if not classes:
            raise ConfigError(
                f"training dataset {name!r} has no base classes: every category of "
                f"{DatasetCatalog.metadata(name).json_file or 'its json'} is novel, and a "
                "training set (keep='base') drops novel ones; mark fewer categories novel")
    first = vocabularies[dataset_names[0]]
    for name, classes in vocabularies.items():
        if classes != first:
            raise ConfigError(f"training datasets disagree on their classes: {dataset_names[0]} "
                              f"has {first}, {name} has {classes}")
    return list(first)


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
        records = [r for name in cfg.DATASETS.TRAIN for r in DatasetCatalog.get(name)]
        vocabulary = unwrap(self.model).vocabulary  # the federated loss samples by frequency
        vocabulary.set_image_counts(class_image_counts(records, len(vocabulary)))
        loader = build_train_loader(records, DatasetMapper(cfg, True),
                                    cfg.SOLVER.IMS_PER_BATCH // world, self.seed * 1000 + get_rank(),
                                    self.start_iter, max_iter, cfg.DATALOADER.NUM_WORKERS)
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

