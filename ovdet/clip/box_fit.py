"""How well a box fits a class's CLIP activation map (PB-OVD's box score).

The activation of class c on the patch grid is the softmax over the vocabulary of the dense
value-trick patch embeddings (:meth:`CLIPViTTrunk.dense_embeddings`). A box's fit for class c is
the activation inside the box divided by (patches in the box) ** exponent: with exponent 1/2
(PB-OVD) a box must cover the activated region to score high, and a box much larger than the
region is penalised. Fits are normalised per image and class by the best box, so they lie in
[0, 1] and the best-fitting box of each class scores 1.
"""
from __future__ import annotations

import torch

from .rma import rasterize_boxes
from .text import text_probabilities
from .vit import CLIPViTTrunk, TrunkOutput


def class_activation(trunk: CLIPViTTrunk, output: TrunkOutput, class_embeddings: torch.Tensor,
                     logit_scale: float | torch.Tensor) -> torch.Tensor:
    """(B, C, h*w): per patch, softmax over the C classes of ``logit_scale * cos(patch, class)``."""
    dense = trunk.dense_embeddings(output).flatten(2).transpose(1, 2)  # (B, N, D)
    return text_probabilities(dense, class_embeddings, logit_scale).transpose(1, 2)


def box_fit(activation: torch.Tensor, region_masks: torch.Tensor, exponent: float = 0.5
            ) -> torch.Tensor:
    """``activation``: (C, N) of one image; ``region_masks``: (R, N) bool patch masks of R boxes.
    Returns (R, C): inside-activation / patches ** exponent, divided by its maximum over the
    R boxes (per class)."""
    masks = region_masks.float()
    inside = masks @ activation.T  # (R, C)
    fit = inside / masks.sum(dim=1, keepdim=True).clamp(min=1) ** exponent
    return fit / fit.max(dim=0, keepdim=True).values.clamp(min=1e-12)


def box_fits(trunk: CLIPViTTrunk, output: TrunkOutput, boxes: list[torch.Tensor],
             class_embeddings: torch.Tensor, logit_scale: float | torch.Tensor,
             exponent: float = 0.5) -> list[torch.Tensor]:
    """Per image (R_b, 4) xyxy boxes in input pixels -> (R_b, C) normalised box fits."""
    activation = class_activation(trunk, output, class_embeddings, logit_scale)
    return [box_fit(a, rasterize_boxes(b, output.grid, trunk.patch_size), exponent)
            if len(b) else a.new_zeros(0, a.shape[0]) for a, b in zip(activation, boxes)]
