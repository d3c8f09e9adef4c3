"""Scores of candidate boxes for one category.

* :func:`activation_scores` (PB-OVD): activation inside the box / sqrt(pixels in the box). The
  raw score is divided by sqrt(sum of squared activation over the whole map), its upper bound
  (Cauchy-Schwarz), so scores lie in [0, 1] and compare across images: 1 means the box holds all
  of the map's activation, spread evenly over the box.
* region scores: the softmax over the vocabulary of the RMA region embedding of each box
  (:func:`ovdet.clip.rma.box_probabilities`), read at the category.
* the combined score is their geometric mean with weight ``region_weight`` on the region score.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


SCORERS = ("activation", "region", "combined")


def pixel_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(R, 4) float xyxy -> (R, 4) int64 pixel-edge boxes covering them, clipped to ``size``
    (H, W), at least one pixel wide and high."""
    height, width = size
    x1 = boxes[:, 0].floor().clamp(0, width - 1)
    y1 = boxes[:, 1].floor().clamp(0, height - 1)
    x2 = torch.maximum(boxes[:, 2].ceil().clamp(max=width), x1 + 1)
    y2 = torch.maximum(boxes[:, 3].ceil().clamp(max=height), y1 + 1)
    return torch.stack([x1, y1, x2, y2], dim=1).long()


def activation_scores(activation: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``activation``: (H, W) map; ``boxes``: (R, 4) xyxy in its pixels. Returns (R,) scores
    sum_inside / sqrt(area * sum(activation ** 2)), in [0, 1] (module doc); 0 for an empty map."""
    if len(boxes) == 0:
        return activation.new_zeros(0)
    values = activation.double()
    integral = F.pad(values.cumsum(0).cumsum(1), (1, 0, 1, 0))
    x1, y1, x2, y2 = pixel_boxes(boxes, tuple(activation.shape)).unbind(dim=1)
    inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    area = ((x2 - x1) * (y2 - y1)).double()
    energy = (values ** 2).sum()
    if energy <= 0:
        return activation.new_zeros(len(boxes))
    return (inside.clamp(min=0) / (area * energy).sqrt()).to(activation.dtype)


def combine_scores(activation: torch.Tensor, region: torch.Tensor, scorer: str,
                   region_weight: float = 0.5) -> torch.Tensor:
    """(R,) activation and region scores -> (R,) scores of ``scorer`` (module doc)."""
    if scorer == "activation":
        return activation
    if scorer == "region":
        return region
    if scorer == "combined":
        return activation.clamp(min=0) ** (1 - region_weight) * region.clamp(min=0) ** region_weight
    raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
