"""Points on masks, and the Hungarian matching of predicted masks to ground-truth segments.

Masks are compared on sampled points rather than on every pixel (Mask2Former / PointRend): a
point is a position in [0, 1]^2 of the padded input image, read from any mask of that image with
bilinear interpolation, so that (Q, H/4, W/4) logits and (S, H, W) targets are compared at the
same places. Points on VOID pixels (unlabelled, crowd, novel segments) count for nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def point_sample(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``maps`` (N, H, W), ``points`` (N, K, 2) or (K, 2) as (x, y) in [0, 1] -> (N, K) values
    at the points (bilinear; pixel centres at (i + 0.5) / size)."""
    if points.ndim == 2:
        points = points[None].expand(maps.shape[0], -1, -1)
    grid = (2 * points - 1)[:, :, None]  # (N, K, 1, 2)
    return F.grid_sample(maps[:, None].float(), grid, mode="bilinear",
                         align_corners=False)[:, 0, :, 0]


def pairwise_mask_costs(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean binary cross-entropy and dice cost between every prediction and every target.

    ``logits`` (Q, K) predicted mask logits at K points, ``targets`` (S, K) in {0, 1}, ``weights``
    (K,) 1 for labelled points, 0 on void. Returns two (Q, S) costs."""
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits),
                                                  reduction="none")
    labelled = weights.sum().clamp(min=1)
    bce = (positive @ (targets * weights).T + negative @ ((1 - targets) * weights).T) / labelled
    probabilities = logits.sigmoid() * weights
    numerator = 2 * probabilities @ targets.T
    denominator = probabilities.sum(-1)[:, None] + (targets * weights).sum(-1)[None, :]
    dice = 1 - (numerator + 1) / (denominator + 1)
    return bce, dice


@torch.no_grad()
def hungarian_match(class_probabilities: torch.Tensor, mask_logits: torch.Tensor,
                    target_classes: torch.Tensor, target_masks: torch.Tensor,
                    weights: torch.Tensor, cost_class: float = 2.0, cost_mask: float = 5.0,
                    cost_dice: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: the assignment of queries to segments of least total cost
    ``cost_class * (-p(target class)) + cost_mask * BCE + cost_dice * dice`` (scipy's
    ``linear_sum_assignment``).

    ``class_probabilities`` (Q, C) (objectness x class); ``mask_logits`` (Q, K) and ``target_masks`` (S, K) at the
    same K points; ``target_classes`` (S,); ``weights`` (K,) 0 on void points. Returns (query
    indices, segment indices), both (min(Q, S),) int64, sorted by query."""
    if target_classes.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    with torch.autocast(mask_logits.device.type, enabled=False):  # costs in float32, not bf16
        bce, dice = pairwise_mask_costs(mask_logits.float(), target_masks.float(),
                                        weights.float())
        cost = (cost_mask * bce + cost_dice * dice
                - cost_class * class_probabilities[:, target_classes].float())
    rows, columns = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(columns, dtype=torch.int64)
