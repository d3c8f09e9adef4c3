"""Config defaults of the input pipeline (``INPUT``, ``DATALOADER``) and of how the training
datasets are used (``DATASETS.IMAGE_LABELLED``, ``DATASETS.PSEUDO_BOXES``; ``DATASETS.TRAIN``
itself is a global option)."""
from __future__ import annotations

from ..config.config import CfgNode


def add_data_config(cfg: CfgNode) -> None:
    cfg.INPUT = CfgNode()
    cfg.INPUT.MIN_SIZE = 800  # shorter side after resizing, train and test
    cfg.INPUT.MAX_SIZE = 1333  # cap on the longer side
    cfg.INPUT.FLIP_PROB = 0.5
    cfg.INPUT.SCALE_JITTER = ()  # (low, high), e.g. (0.1, 2.0) for large-scale jitter; () disables
    cfg.DATALOADER = CfgNode()
    cfg.DATALOADER.NUM_WORKERS = 2
    # () draws batches from the concatenated DATASETS.TRAIN; else one positive number per dataset
    # of DATASETS.TRAIN: each batch holds images of every dataset in these proportions
    # (ovdet.data.loader.split_batch), each dataset drawn by epochs of its own
    cfg.DATALOADER.DATASET_RATIOS = ()
    # names in DATASETS.TRAIN whose boxes are pseudo boxes from image-level labels (e.g.
    # toyworld_train_image_labels): their classes join the training vocabulary (those they alone
    # name stay novel), and the RoI heads learn from their boxes as positives only
    cfg.DATASETS.IMAGE_LABELLED = ()
    # datasets of caption pseudo boxes (e.g. toyworld_train_pseudo) for the images of the
    # box-labelled datasets of DATASETS.TRAIN, matched by image id: an image's pseudo boxes of
    # categories it has no human box of become its "pseudo_annotations" (unlabelled objects, which
    # MODEL.ROI_HEADS.UNLABELLED and MODEL.RPN.UNLABELLED say how to train); their classes join the
    # training vocabulary and stay novel. A name also in DATASETS.TRAIN is trained on as well, its
    # pseudo boxes as complete annotations (mixing pseudo-labelled images in)
    cfg.DATASETS.PSEUDO_BOXES = ()
