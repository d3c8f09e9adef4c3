"""``get_cfg()``: the global options, plus the defaults each component declares in the small
``config.py`` next to its code (those import no model code, torch included)."""
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
    from ..clip.config import add_clip_config, add_prompt_learning_config
    from ..data.config import add_data_config
    from ..engine.config import add_engine_config
    from ..modeling.backbone.config import add_backbone_config
    from ..modeling.meta_arch.config import add_loss_config, add_open_vocab_config
    from ..modeling.panoptic.config import add_panoptic_config
    from ..modeling.proposal.config import add_rpn_config
    from ..modeling.roi_heads.config import add_roi_heads_config

    cfg = _global_defaults()
    for add in (add_clip_config, add_backbone_config, add_rpn_config, add_roi_heads_config,
                add_open_vocab_config, add_loss_config, add_panoptic_config, add_data_config,
                add_engine_config, add_prompt_learning_config):
        add(cfg)
    return cfg.clone()
