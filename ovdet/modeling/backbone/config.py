"""Config defaults of the backbone (``MODEL.BACKBONE``)."""
from __future__ import annotations

from ...config.config import CfgNode


def add_backbone_config(cfg: CfgNode) -> None:
    cfg.MODEL.BACKBONE = CfgNode()
    cfg.MODEL.BACKBONE.NAME = "CLIPViTSimpleFPN"
    # 0 keeps the CLIP trunk frozen (F-VLM style); N > 0 trains its last N blocks
    cfg.MODEL.BACKBONE.TRAINABLE_BLOCKS = 0
    cfg.MODEL.BACKBONE.OUT_CHANNELS = 256
    cfg.MODEL.BACKBONE.STRIDES = (4, 8, 16, 32)
