"""Config defaults of the shared CLIP (``MODEL.CLIP``) and of learning region prompts
(``PROMPT_LEARNING``, read by ``tools/learn_region_prompts.py``)."""
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


def add_prompt_learning_config(cfg: CfgNode) -> None:
    p = cfg.PROMPT_LEARNING = CfgNode()
    p.NUM_BEFORE = 1  # m: context vectors before the class name
    p.NUM_AFTER = 1  # n: context vectors after it (then the description, if any)
    # "" draws N(0, 0.02); or a template like "a {} object" (m words before {}, n after; the
    # prompt's own "." follows)
    p.INIT = ""
    p.USE_DESCRIPTIONS = True  # the datasets' category "def" texts, where they have them
    p.BOX_SCALE = 1.0  # ground-truth boxes enlarged this much about their centre (context)
    p.BACKGROUND_PER_IMAGE = 4  # random boxes per training image, labelled background
    # ...that overlap no ground-truth box this much (IoU, or coverage of either by the other)
    p.BACKGROUND_MAX_OVERLAP = 0.3
    p.MAX_ITER = 1000
    p.BATCH_SIZE = 256  # regions per step
    p.BASE_LR = 2e-3  # AdamW, cosine schedule
    p.WEIGHT_DECAY = 0.0
    p.CHECKPOINT_PERIOD = 200
    p.MAX_IMAGES = 0  # > 0: embed only the first this many training images (quick runs)
