"""Config defaults of the RoI heads (``MODEL.ROI_HEADS``, ``MODEL.ROI_MASK_HEAD``) and of their
contrastive and distillation criteria (``MODEL.CONTRASTIVE``, ``MODEL.DISTILLATION``)."""
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
    # proposals over caption pseudo boxes of objects no human labelled (DATASETS.PSEUDO_BOXES):
    # "background" (PB-OVD: the pseudo boxes are not used), "ignore" (neither foreground nor
    # background: no loss) or "soft" (positives of the pseudo box's class, their losses weighted
    # by SOFT_WEIGHT x pseudo_score, at most a human box's 1)
    cfg.MODEL.ROI_HEADS.UNLABELLED = "background"
    cfg.MODEL.ROI_HEADS.UNLABELLED_IOU = 0.5  # "over" a pseudo box: best match, IoU >= this
    cfg.MODEL.ROI_HEADS.SOFT_WEIGHT = 1.0
    # "soft": whether pseudo-box positives train the box regressor too (weighted), or only the
    # classifier (boxes then learnt from human boxes alone)
    cfg.MODEL.ROI_HEADS.SOFT_BOX_REGRESSION = True
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
    # the contrastive criteria (ovdet.modeling.roi_heads.contrastive), on when MODEL.CRITERIA
    # names RegionCategoryContrast (loss_rccl) and/or RegionRegionContrast (loss_rrcl)
    cfg.MODEL.CONTRASTIVE = CfgNode()
    cfg.MODEL.CONTRASTIVE.RCCL_TEMPERATURE = 0.1
    # of the class-similarity soft targets: real CLIPs' prompt embeddings lie close (cosines
    # 0.7-0.9), so a small one keeps the true class's share of the target large
    cfg.MODEL.CONTRASTIVE.SIMILARITY_TEMPERATURE = 0.05
    cfg.MODEL.CONTRASTIVE.RRCL_TEMPERATURE = 0.1
    cfg.MODEL.CONTRASTIVE.QUEUE_LENGTH = 1024  # recent regions RRCL contrasts with; 0: none
    # "ovd": unseen names never enter training; "zsd": they enter RCCL's similarity distribution
    cfg.MODEL.CONTRASTIVE.PROTOCOL = "ovd"
    cfg.MODEL.CONTRASTIVE.UNSEEN_NAMES = ()  # zsd; () = the novel classes of DATASETS.TEST
    # distillation toward a frozen detector (ovdet.modeling.roi_heads.distillation), on when
    # MODEL.CRITERIA names TeacherDistillation (loss_distill)
    cfg.MODEL.DISTILLATION = CfgNode()
    cfg.MODEL.DISTILLATION.WEIGHTS = ""  # the teacher's checkpoint; "" = MODEL.WEIGHTS
    # the sampled proposals distilled: "unlabelled" (over caption pseudo boxes of objects no human
    # labelled, DATASETS.PSEUDO_BOXES) or "all"
    cfg.MODEL.DISTILLATION.REGIONS = "unlabelled"
