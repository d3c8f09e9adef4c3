"""Config defaults of the input pipeline (``INPUT``, ``DATALOADER``)."""
from __future__ import annotations

from ..config.config import CfgNode


def add_data_config(cfg: CfgNode) -> None:
    cfg.INPUT = CfgNode()
    cfg.INPUT.MIN_SIZE = 800  # shorter side after resizing, train and test
    cfg.INPUT.MAX_SIZE = 1333  # cap on the longer side
    cfg.INPUT.FLIP_PROB = 0.5
    cfg.INPUT.SCALE_JITTER = ()  # (low, high), e.g. (0.1, 2.0) for large-scale jitter; () disables
    cfg.DATALOADER = CfgNode()
    cfg.DATALOADER.NUM_WORKERS = 2
