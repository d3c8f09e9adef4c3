"""Panoptic assembly: scored mask proposals -> one segment id per pixel (Mask2Former's rules).

1. keep the queries whose best class scores above ``object_mask_threshold``;
2. each pixel goes to the kept query of largest ``score x mask probability``;
3. a query assigned fewer pixels than ``overlap_threshold`` of its own mask (probability >=
   ``mask_threshold``) is dropped (it is mostly hidden by others); the others get the pixels
   assigned to them that are inside their own mask;
4. stuff segments of one class merge into one segment; each thing query is its own segment.

Pixels left to no segment are 0 (void).
"""
from __future__ import annotations

import torch


@torch.no_grad()
def assemble_panoptic(scores: torch.Tensor, mask_probabilities: torch.Tensor,
                      is_thing: torch.Tensor, object_mask_threshold: float = 0.5,
                      overlap_threshold: float = 0.8, mask_threshold: float = 0.5
                      ) -> tuple[torch.Tensor, list[dict]]:
    """One image.

    Args:
        scores: (Q, C) class scores of the queries (void excluded).
        mask_probabilities: (Q, H, W) in [0, 1].
        is_thing: (C,) bool.
    Returns:
        ``(segment ids (H, W) int32, segments)``: ids 1, 2, ... and 0 for void; segments
        ``[{"id", "category_id": class index, "isthing": bool, "score": float}]`` in id order.
    """
    height, width = mask_probabilities.shape[-2:]
    panoptic = torch.zeros(height, width, dtype=torch.int32, device=mask_probabilities.device)
    segments: list[dict] = []
    if scores.numel() == 0:
        return panoptic, segments
    best, classes = scores.max(dim=-1)
    keep = best > object_mask_threshold
    best, classes, masks = best[keep], classes[keep], mask_probabilities[keep]
    if len(best) == 0:
        return panoptic, segments
    owner = (best[:, None, None] * masks).argmax(dim=0)
    stuff_ids: dict[int, int] = {}
    for k in range(len(best)):
        category = int(classes[k])
        own_mask = masks[k] >= mask_threshold
        assigned = owner == k
        visible = assigned & own_mask
        mask_area, assigned_area = int(own_mask.sum()), int(assigned.sum())
        if mask_area == 0 or not visible.any() or assigned_area < overlap_threshold * mask_area:
            continue
        thing = bool(is_thing[category])
        if not thing and category in stuff_ids:
            panoptic[visible] = stuff_ids[category]
            continue
        segment_id = len(segments) + 1
        panoptic[visible] = segment_id
        segments.append({"id": segment_id, "category_id": category, "isthing": thing,
                         "score": float(best[k])})
        if not thing:
            stuff_ids[category] = segment_id
    return panoptic, segments
