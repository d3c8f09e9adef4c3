"""Regions over unlabelled objects: which anchors or proposals a caption pseudo box claims.

A training target may carry ``"pseudo_boxes"`` (M, 4) xyxy: objects of its image that no human
labelled (:mod:`ovdet.data.unlabelled`). A region (anchor or proposal) is *over an unlabelled
object* when its best match among the human boxes and the pseudo boxes together is a pseudo box,
at IoU >= a threshold; a tie goes to the human box. The RPN (``MODEL.RPN.UNLABELLED``) and the RoI
heads (``MODEL.ROI_HEADS.UNLABELLED``) use this to keep such regions out of the background.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

RPN_MODES = ("background", "ignore", "positive")
ROI_MODES = ("background", "ignore", "soft")


def check_mode(mode: str, modes: tuple[str, ...], key: str) -> str:
    """``mode`` when it is one of ``modes``, else a ``ValueError`` naming ``key``."""
    if mode not in modes:
        raise ValueError(f"{key} must be one of {modes}, got {mode!r}")
    return mode


def unlabelled_matches(regions: torch.Tensor, labelled: torch.Tensor, unlabelled: torch.Tensor,
                       iou_threshold: float) -> torch.Tensor:
    """(P,) int64: for each of the (P, 4) xyxy ``regions``, the index of the ``unlabelled`` box
    (M, 4) that is its best match among ``labelled`` (N, 4) and ``unlabelled`` together, at IoU
    >= ``iou_threshold``; -1 for a region over no unlabelled box (module doc)."""
    none = torch.full((len(regions),), -1, dtype=torch.int64, device=regions.device)
    if not len(unlabelled) or not len(regions):
        return none
    best, index = box_iou(unlabelled, regions).max(dim=0)
    hit = best >= iou_threshold
    if len(labelled):
        hit &= best > box_iou(labelled, regions).max(dim=0).values
    return torch.where(hit, index, none)
