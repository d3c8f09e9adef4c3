"""Config defaults of the panoptic branch (``MODEL.PANOPTIC_ON``, ``MODEL.DETECTOR_ON``,
``MODEL.PANOPTIC``)."""
from __future__ import annotations

from ...config.config import CfgNode

# Losses of the panoptic branch (weights in MODEL.LOSS_WEIGHTS, 1 unless set there).
PANOPTIC_LOSSES = ("loss_panoptic_objectness", "loss_panoptic_ce", "loss_panoptic_mask", "loss_panoptic_dice",
                   "loss_rma_ce", "loss_rma_mask", "loss_rma_dice")


def add_panoptic_config(cfg: CfgNode) -> None:
    cfg.MODEL.PANOPTIC_ON = False  # the query mask head, RMA mask classification, "panoptic_seg"
    cfg.MODEL.DETECTOR_ON = True  # False: no RPN / RoI heads (the panoptic branch trains alone)
    p = cfg.MODEL.PANOPTIC = CfgNode()
    p.NAME = "MaskCLIPPanopticHead"  # PANOPTIC_HEAD_REGISTRY
    # query mask proposals (Mask2Former-style masked-attention decoder on the pyramid)
    p.NUM_QUERIES = 100
    p.HIDDEN_DIM = 256
    p.NUM_HEADS = 8
    p.DIM_FEEDFORWARD = 1024
    p.DEC_LAYERS = 3
    p.IMAGE_STEM = True  # add convolutions of the image to the per-pixel embeddings (boundaries)
    # training: points sampled per mask (importance sampling), matching and loss weights
    p.TRAIN_POINTS = 12544
    p.OVERSAMPLE_RATIO = 3.0
    p.IMPORTANCE_RATIO = 0.75
    p.COST_CLASS = 2.0
    p.COST_MASK = 5.0
    p.COST_DICE = 5.0
    p.VOID_WEIGHT = 0.1  # weight of unmatched queries ("no object") in the objectness loss
    # mask classification: "rma" (mask tokens inside CLIP) or "crop" (masked crops re-encoded)
    p.CLASSIFIER = "rma"
    # blocks (0-based, among the last MODEL.CLIP.KEEP_LAST_BLOCKS) with relative mask attention
    # (a learned bias from the mask and mask refinement); () = plain mask tokens, nothing trains
    p.RMA_BLOCKS = ()
    p.RMA_DIM = 64
    p.RMA_PATCH_THRESHOLD = 0.3  # a patch is in a mask when this fraction of it is
    p.USE_REFINED_MASKS = True  # assemble the last RMA block's refined masks (rma, RMA_BLOCKS)
    p.CROP_SIZE = 0  # crop classifier input size; 0 = the CLIP's native size
    # scoring (FC-CLIP-style geometric ensemble of the query head and CLIP), SCORER_REGISTRY
    p.SCORER = "MaskEnsembleScorer"
    p.ALPHA_SEEN = 0.4  # CLIP's weight for classes seen in training
    p.BETA_UNSEEN = 0.8  # CLIP's weight for unseen classes
    # assembly (Mask2Former panoptic inference)
    p.OBJECT_MASK_THRESHOLD = 0.5  # keep queries scoring above this
    p.OVERLAP_THRESHOLD = 0.8  # drop segments whose visible part is less than this of the mask
    p.MASK_THRESHOLD = 0.5
