"""``get_cfg()``: the global options, plus the defaults each component declares next to its code."""
from __future__ import annotations

from .config import CfgNode


def _global_defaults() -> CfgNode:
    cfg = CfgNode()
    cfg.MODEL = CfgNode()
    cfg.MODEL.META_ARCHITECTURE = "OpenVocabRCNN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""  # detector checkpoint to start from
    cfg.DATASETS = CfgNode()
    cfg.DATASETS.TRAIN = ()  # names in the dataset catalog
    cfg.DATASETS.TEST = ()
    cfg.OUTPUT_DIR = "output"
    cfg.SEED = -1  # < 0: a random seed, logged
    return cfg


def get_cfg() -> CfgNode:
    """A fresh config with every default; YAML files and ``KEY VALUE`` lists merge into it."""
    from ..clip.config import add_clip_config
    from ..modeling.backbone.config import add_backbone_config

    cfg = _global_defaults()
    add_clip_config(cfg)
    add_backbone_config(cfg)
    return cfg.clone()
