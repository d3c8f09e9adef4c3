"""Mask heads on RoI features (``ROI_MASK_HEAD_REGISTRY``; ``MODEL.ROI_MASK_HEAD.NAME``)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from ...config import CfgNode, configurable
from ..registry import ROI_MASK_HEAD_REGISTRY


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHead(nn.Module):
    """Mask R-CNN's mask head, class-agnostic: ``num_conv`` 3x3 convolutions (torchvision's
    ``MaskRCNNHeads``), a 2x transposed convolution and a 1x1 convolution to one channel.

    ``forward((R, in_channels, M, M)) -> (R, 1, 2M, 2M)`` mask logits.
    """

    @configurable
    def __init__(self, *, in_channels: int, conv_dim: int = 256, num_conv: int = 4) -> None:
        super().__init__()
        if num_conv < 1:
            raise ValueError(f"num_conv must be at least 1, got {num_conv}")
        self.convs = MaskRCNNHeads(in_channels, [conv_dim] * num_conv, 1)
        self.predictor = MaskRCNNPredictor(conv_dim, conv_dim, 1)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int) -> dict:
        return {"in_channels": in_channels, "conv_dim": cfg.MODEL.ROI_MASK_HEAD.CONV_DIM,
                "num_conv": cfg.MODEL.ROI_MASK_HEAD.NUM_CONV}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.convs(features))
