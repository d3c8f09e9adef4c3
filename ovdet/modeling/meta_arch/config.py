"""Config defaults of the meta-architecture: open-vocabulary scoring (``MODEL.OPEN_VOCAB``) and
the losses (``MODEL.LOSS_WEIGHTS``, ``MODEL.CRITERIA``)."""
from __future__ import annotations

from ...config.config import CfgNode
from ..panoptic.config import PANOPTIC_LOSSES

# Losses of the built-in heads; every one has weight 1 unless MODEL.LOSS_WEIGHTS says otherwise.
DETECTOR_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_cls", "loss_box_reg", "loss_mask")
BUILTIN_LOSSES = DETECTOR_LOSSES + PANOPTIC_LOSSES


def add_open_vocab_config(cfg: CfgNode) -> None:
    ov = cfg.MODEL.OPEN_VOCAB = CfgNode()
    ov.EMBEDDING_SOURCE = "TemplateEmbeddings"  # EMBEDDING_SOURCE_REGISTRY: class embeddings
    ov.TEMPLATES = ()  # () = ovdet.clip.text.DEFAULT_TEMPLATES
    # learned region prompts (tools/learn_region_prompts.py) for EMBEDDING_SOURCE
    # RegionPromptEmbeddings: their file, which must have been learned for MODEL.CLIP
    ov.PROMPTS = ""
    ov.SCORER = "CLIPEnsembleScorer"  # SCORER_REGISTRY: how detections are scored
    ov.USE_CLIP_ENSEMBLE = True
    ov.ALPHA_BASE = 0.35  # CLIP's weight in the geometric mean, base classes
    ov.BETA_NOVEL = 0.65  # the same for novel classes
    # the head-side term of novel classes: "head" (F-VLM) or "objectness" (RPN objectness x
    # dense CLIP box fit; see ovdet.modeling.scoring)
    ov.NOVEL_PRIOR = "head"
    ov.BOX_FIT_EXPONENT = 0.5
    # boxes of novel classes: "regressed" (the head's) or "proposals" (the RPN's)
    ov.NOVEL_BOXES = "regressed"


def add_loss_config(cfg: CfgNode) -> None:
    # {loss name: weight}; a loss not named here weighs 1; weight 0 drops the loss entirely.
    # New names are allowed (losses of added heads or criteria).
    cfg.MODEL.LOSS_WEIGHTS = CfgNode({name: 1.0 for name in BUILTIN_LOSSES}, new_allowed=True)
    cfg.MODEL.CRITERIA = ()  # names in CRITERION_REGISTRY: extra losses on the RoI results
