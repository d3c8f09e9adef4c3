"""Command-line setup shared by the tools: detectron2's argument parser, config and logging."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch

from ..config import CfgNode, ConfigError, get_cfg

DATASET_FORMAT = "NAME=JSON:IMAGE_ROOT[:novel=a,b]"


@dataclass(frozen=True)
class DatasetSpec:
    """A user's COCO-format dataset named on the command line (``--dataset``)."""

    name: str
    json_file: str
    image_root: str
    novel: tuple[str, ...] = ()


def parse_dataset_spec(text: str) -> DatasetSpec:
    """``"mine=train.json:images/:novel=zebra,okapi"`` -> DatasetSpec (argparse type). The
    ``:novel=`` suffix is the last one; JSON and IMAGE_ROOT are split at the last ``:`` before
    it, so JSON may contain ``:`` (``C:/data/train.json``) but IMAGE_ROOT may not."""
    name, _, rest = text.partition("=")
    paths, marker, novel = rest.rpartition(":novel=")
    if not marker:
        paths, novel = rest, ""
    json_file, _, image_root = paths.rpartition(":")
    novel_names = tuple(n.strip() for n in novel.split(",") if n.strip())
    if not (name.strip() and json_file and image_root) or (marker and not novel_names):
        raise argparse.ArgumentTypeError(f"--dataset takes {DATASET_FORMAT}, got {text!r}")
    return DatasetSpec(name.strip(), json_file, image_root, novel_names)


def register_datasets(specs: list[DatasetSpec], train_names: list[str]) -> None:
    """Register each ``--dataset`` with :func:`ovdet.data.register_coco_instances`: with
    ``keep="base"`` (novel categories dropped) when its name is in ``train_names``
    (``DATASETS.TRAIN`` of a training run), with every category otherwise."""
    from ..data import register_coco_instances

    for spec in specs:
        if not os.path.isfile(spec.json_file):
            raise FileNotFoundError(f"--dataset {spec.name}: annotation file not found: "
                                    f"{spec.json_file}")
        if not os.path.isdir(spec.image_root):
            raise FileNotFoundError(f"--dataset {spec.name}: image folder not found: "
                                    f"{spec.image_root}")
        keep = "base" if spec.name in train_names else "all"
        register_coco_instances(spec.name, spec.json_file, spec.image_root, novel=spec.novel,
                                keep=keep)


def default_argument_parser(description: str) -> argparse.ArgumentParser:
    """``--config-file X.yaml [--resume] [--eval-only] [--num-gpus N] KEY VALUE ...``"""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint (same schedule and data order)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and stop")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes (one per GPU); > 1 relaunches itself through torchrun")
    parser.add_argument("--dataset", type=parse_dataset_spec, action="append", default=[],
                        metavar=DATASET_FORMAT,
                        help="register a COCO-format dataset under NAME (repeatable); it keeps "
                             "base classes only when NAME is in DATASETS.TRAIN of a training "
                             "run. JSON may contain ':', IMAGE_ROOT may not")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.MAX_ITER 100")
    return parser


def setup_config(args: argparse.Namespace) -> CfgNode:
    """Config from file and overrides, with the seed resolved: when SEED < 0, the seed of the run
    being resumed, or a random one."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    previous = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    if cfg.SEED < 0 and args.resume and os.path.isfile(previous):
        cfg.SEED = CfgNode.load_yaml_with_base(previous).get("SEED", -1)  # resume: same seed
    if cfg.SEED < 0:
        cfg.SEED = random.SystemRandom().randrange(2**31)
    blocking = next((str(p) for p in (Path(cfg.OUTPUT_DIR), *Path(cfg.OUTPUT_DIR).parents)
                     if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"OUTPUT_DIR {cfg.OUTPUT_DIR} cannot be a folder: {blocking} is an "
                          "existing file; give a folder (it is created when missing)")
    cfg.freeze()
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_logging(output_dir: str, rank: int) -> None:
    """ovdet's INFO (others' WARNING) to stderr (rank 0 only) and to OUTPUT_DIR/log.txt (rank suffix on other ranks)."""
    os.makedirs(output_dir, exist_ok=True)
    name = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
    handlers: list[logging.Handler] = [logging.FileHandler(os.path.join(output_dir, name))]
    if rank == 0:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.WARNING, handlers=handlers, force=True,
                        format="[%(asctime)s %(name)s %(levelname)s] %(message)s", datefmt="%H:%M:%S")
    for name in ("ovdet", "fvcore"):  # libraries that log to the root logger stay at WARNING
        logging.getLogger(name).setLevel(logging.INFO)


def relaunch_with_torchrun(num_gpus: int) -> None:
    """Replace this process by ``torchrun --nproc_per_node N <same command>`` (once)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={num_gpus}", *sys.argv]
    os.execv(sys.executable, command)
