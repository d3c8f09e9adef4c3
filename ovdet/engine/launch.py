"""Command-line setup shared by the tools: detectron2's argument parser, config and logging."""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys

import numpy as np
import torch

from ..config import CfgNode, get_cfg


def default_argument_parser(description: str) -> argparse.ArgumentParser:
    """``--config-file X.yaml [--resume] [--eval-only] [--num-gpus N] KEY VALUE ...``"""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint (same schedule and data order)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and stop")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes (one per GPU); > 1 relaunches itself through torchrun")
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
