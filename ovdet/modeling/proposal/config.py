"""Config defaults of the proposal generator (``MODEL.PROPOSAL_GENERATOR``, ``MODEL.RPN``)."""
from __future__ import annotations

from ...config.config import CfgNode


def add_rpn_config(cfg: CfgNode) -> None:
    cfg.MODEL.PROPOSAL_GENERATOR = CfgNode()
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    cfg.MODEL.RPN = CfgNode()
    cfg.MODEL.RPN.ANCHOR_SIZES = (32, 64, 128, 256)  # one per pyramid level
    cfg.MODEL.RPN.ASPECT_RATIOS = (0.5, 1.0, 2.0)
    cfg.MODEL.RPN.IOU_THRESHOLDS = (0.3, 0.7)
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
    cfg.MODEL.RPN.POSITIVE_FRACTION = 0.5
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 1000
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
    cfg.MODEL.RPN.NMS_THRESH = 0.7
    # caption pseudo boxes of objects no human labelled (DATASETS.PSEUDO_BOXES): "background"
    # (not used), "ignore" (anchors over them, IoU >= UNLABELLED_IOU, leave the objectness loss)
    # or "positive" (matched like human boxes)
    cfg.MODEL.RPN.UNLABELLED = "background"
    cfg.MODEL.RPN.UNLABELLED_IOU = 0.5
