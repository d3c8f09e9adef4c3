"""The shared CLIP ViT trunk as a backbone: frozen by default, last N blocks trainable on request."""
from __future__ import annotations

import torch
from torch import nn

from ...clip import CLIPViTTrunk, TrunkOutput, load_clip
from ...config import CfgNode, configurable
from ..registry import BACKBONE_REGISTRY


@BACKBONE_REGISTRY.register()
class CLIPViTBackbone(nn.Module):
    """Runs the CLIP trunk once per image; returns its :class:`TrunkOutput`.

    Args:
        trunk: the CLIP ViT trunk (its ``visual`` is shared with the CLIP model).
        trainable_blocks: 0 freezes the whole trunk; N > 0 trains the last N blocks (and the final
            norm and projection); the patch embedding is always frozen.
    """

    @configurable
    def __init__(self, *, trunk: CLIPViTTrunk, trainable_blocks: int = 0) -> None:
        super().__init__()
        if not 0 <= trainable_blocks <= trunk.depth:
            raise ValueError(f"trainable_blocks must be in [0, {trunk.depth}], got {trainable_blocks}")
        self.trunk = trunk
        self.trainable_blocks = trainable_blocks
        trunk.requires_grad_(False)
        if trainable_blocks:
            for block in trunk.visual.transformer.resblocks[-trainable_blocks:]:
                block.requires_grad_(True)
            trunk.visual.ln_post.requires_grad_(True)
            trunk.visual.proj.requires_grad_(True)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        clip = load_clip(cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED or None)
        return {"trunk": CLIPViTTrunk(clip.model.visual, cfg.MODEL.CLIP.KEEP_LAST_BLOCKS),
                "trainable_blocks": cfg.MODEL.BACKBONE.TRAINABLE_BLOCKS}

    def forward(self, images: torch.Tensor) -> TrunkOutput:
        """(B, 3, H, W) normalised images, H and W multiples of the patch size."""
        return self.trunk(images)
