"""Config defaults of the RoI heads (``MODEL.ROI_HEADS``, ``MODEL.ROI_MASK_HEAD``)."""
from __future__ import annotations

from ...config.config import CfgNode


def add_roi_heads_config(cfg: CfgNode) -> None:
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_HEADS = CfgNode()
    cfg.MODEL.ROI_HEADS.NAME = "OpenVocabROIHeads"
    cfg.MODEL.ROI_HEADS.HIDDEN_DIM = 1024
    cfg.MODEL.ROI_HEADS.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
    cfg.MODEL.ROI_HEADS.IOU_THRESHOLD = 0.5
    cfg.MODEL.ROI_HEADS.LOSS = "softmax"  # or "federated_sigmoid" (LVIS-sized vocabularies)
    cfg.MODEL.ROI_HEADS.FED_NUM_CLASSES = 50
    # federated sampling weight of a class: (images holding it in the training set) ** this
    cfg.MODEL.ROI_HEADS.FED_FREQ_WEIGHT_POWER = 0.5
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 100
    # at most this many (box, class) candidates, the best, enter the per-class NMS of an image
    cfg.MODEL.ROI_HEADS.TOPK_CANDIDATES_TEST = 5000
    cfg.MODEL.ROI_MASK_HEAD = CfgNode()
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 4
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
