"""Config defaults of the shared CLIP (``MODEL.CLIP``)."""
from __future__ import annotations

from ..config.config import CfgNode


def add_clip_config(cfg: CfgNode) -> None:
    cfg.MODEL.CLIP = CfgNode()
    # open_clip architecture (ViT-B-16, ...), one of ovdet.clip.list_models(), or "toyworld"
    cfg.MODEL.CLIP.NAME = "toyworld"
    # open_clip pretrained tag (openai, laion2b_s34b_b88k, ...) or a local checkpoint path;
    # "" uses the packaged weights for "toyworld" and random init otherwise
    cfg.MODEL.CLIP.PRETRAINED = ""
    # K: hidden states entering the last K ViT blocks are kept for region/mask token re-entry
    cfg.MODEL.CLIP.KEEP_LAST_BLOCKS = 2
