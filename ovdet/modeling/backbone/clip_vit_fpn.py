"""The shared CLIP ViT trunk with a simple feature pyramid (ViTDet style).

The trunk runs once per image at its patch stride ``p``; the pyramid builds strides 4, 8, 16, 32
from that single map (transposed convolutions up, max-pooling down), each level projected to
``out_channels`` with a 1x1 and a 3x3 convolution. The trunk is frozen by default (F-VLM style);
``trainable_blocks = N`` trains its last N blocks.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ...clip import CLIPBundle, CLIPViTTrunk, TrunkOutput, load_clip
from ...config import CfgNode, configurable
from ..contracts import ShapeSpec
from ..registry import BACKBONE_REGISTRY


def _level(in_channels: int, out_channels: int, scale: float) -> nn.Sequential:
    """Resample a stride-p map by ``scale`` (a power of two), then project to ``out_channels``."""
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(int(round(math.log2(scale))) if scale > 1 else 0):
        layers += [nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), nn.GELU()]
        channels //= 2
    for _ in range(int(round(math.log2(1 / scale))) if scale < 1 else 0):
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Conv2d(channels, out_channels, 1), nn.GroupNorm(1, out_channels),
               nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.GroupNorm(1, out_channels)]
    return nn.Sequential(*layers)


@BACKBONE_REGISTRY.register()
class CLIPViTSimpleFPN(nn.Module):
    """Trunk + simple pyramid.

    Args:
        trunk: the CLIP ViT trunk (its ``visual`` is shared with the CLIP model).
        out_channels: channels of every pyramid level.
        strides: pyramid strides, each a power-of-two multiple or fraction of the patch size.
        trainable_blocks: 0 freezes the trunk; N > 0 trains its last N blocks.
    """

    @configurable
    def __init__(self, *, trunk: CLIPViTTrunk, out_channels: int = 256,
                 strides: tuple[int, ...] = (4, 8, 16, 32), trainable_blocks: int = 0) -> None:
        super().__init__()
        if not 0 <= trainable_blocks <= trunk.depth:
            raise ValueError(f"trainable_blocks must be in [0, {trunk.depth}], got {trainable_blocks}")
        if list(strides) != sorted(set(strides)):
            raise ValueError(f"strides must be distinct and ascending (fine to coarse maps), got "
                             f"{tuple(strides)}")
        for stride in strides:
            ratio = math.log2(trunk.patch_size / stride)
            if ratio != int(ratio):
                raise ValueError(f"stride {stride} is not a power-of-two ratio of the patch size "
                                 f"{trunk.patch_size}")
        self.trunk = trunk
        self.trainable_blocks = trainable_blocks
        self.strides = tuple(strides)
        self.out_channels = out_channels
        self.levels = nn.ModuleDict({f"p{int(math.log2(s))}": _level(trunk.width, out_channels,
                                                                      trunk.patch_size / s)
                                     for s in strides})
        trunk.requires_grad_(False)
        if trainable_blocks:
            for block in trunk.visual.transformer.resblocks[-trainable_blocks:]:
                block.requires_grad_(True)

    @classmethod
    def from_config(cls, cfg: CfgNode, clip: CLIPBundle | None = None) -> dict:
        """``clip``: the already loaded CLIP to share (loaded from ``MODEL.CLIP`` if None)."""
        clip = clip or load_clip(cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED or None)
        return {"trunk": CLIPViTTrunk(clip.model.visual, cfg.MODEL.CLIP.KEEP_LAST_BLOCKS),
                "out_channels": cfg.MODEL.BACKBONE.OUT_CHANNELS,
                "strides": tuple(cfg.MODEL.BACKBONE.STRIDES),
                "trainable_blocks": cfg.MODEL.BACKBONE.TRAINABLE_BLOCKS}

    def output_shape(self) -> dict[str, ShapeSpec]:
        """{"p2": ShapeSpec(out_channels, 4), ...}: the pyramid's maps, in ``forward``'s order."""
        return {name: ShapeSpec(self.out_channels, stride)
                for name, stride in zip(self.levels, self.strides)}

    @property
    def size_divisibility(self) -> int:
        """Inputs are padded to a multiple of this (the largest stride and the patch size)."""
        return max(max(self.strides), self.trunk.patch_size)

    def forward(self, images: torch.Tensor) -> tuple[TrunkOutput, "OrderedDict[str, torch.Tensor]"]:
        """(B, 3, H, W) normalised, H and W multiples of ``size_divisibility`` -> the trunk
        output and the pyramid {"p2": (B, out_channels, H/4, W/4), ...}."""
        frozen = self.trainable_blocks == 0
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            output = self.trunk(images)
        grid = output.patch_grid()
        return output, OrderedDict((name, level(grid)) for name, level in self.levels.items())
