"""Relative mask attention (RMA): CLIP embeddings of regions without crops or a second image pass.

For every region (a box or a mask, rasterised on the patch grid) a query token, initialised from
the CLS state entering block ``depth - K``, re-enters the last K blocks of the CLIP ViT. In each
block it attends only to the CLS state and the patch states *inside its region*, taken from the
states the trunk kept while it ran (patch tokens never attend to region tokens, so those states
are exactly the ones of the single image pass). The final token goes through ``ln_post`` and
``proj`` into CLIP's joint space. With one region covering the whole image and K equal to the
depth, the result is CLIP's own image embedding.

Cost per block: regions x (1 + patches) attention entries, no image re-encoding.
"""
from __future__ import annotations

import torch

from .attention import block_forward
from .text import text_probabilities
from .vit import CLIPViTTrunk, TrunkOutput


def rasterize_boxes(boxes: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(R, 4) xyxy boxes in input-image pixels -> (R, h*w) bool: patches whose centre lies in the
    box. A box that contains no patch centre gets the patch holding its own centre."""
    h, w = grid
    centers_y = (torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5) * patch_size
    centers_x = (torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5) * patch_size
    x1, y1, x2, y2 = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3], boxes[:, 3:4]
    inside_x = (centers_x[None] >= x1) & (centers_x[None] <= x2)  # (R, w)
    inside_y = (centers_y[None] >= y1) & (centers_y[None] <= y2)  # (R, h)
    masks = (inside_y[:, :, None] & inside_x[:, None, :]).flatten(1)
    empty = ~masks.any(dim=1)
    if empty.any():
        cx = ((x1 + x2)[empty, 0] / 2 / patch_size).long().clamp(0, w - 1)
        cy = ((y1 + y2)[empty, 0] / 2 / patch_size).long().clamp(0, h - 1)
        masks[empty.nonzero()[:, 0], cy * w + cx] = True
    return masks


def region_embeddings(trunk: CLIPViTTrunk, output: TrunkOutput,
                      region_masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """RMA (module doc). ``output``: the trunk's output for B images, with K kept states;
    ``region_masks[b]``: (R_b, h*w) bool patch masks of image b (at least one patch each).
    Returns per image (R_b, D) unnormalised CLIP-space region embeddings."""
    batch = len(region_masks)
    counts = [m.shape[0] for m in region_masks]
    total = max(counts, default=0)
    if total == 0:
        return [output.tokens.new_zeros(0, trunk.embed_dim) for _ in counts]
    kept = output.kept
    allowed = torch.zeros(batch, total, kept[0].shape[1], dtype=torch.bool, device=kept[0].device)
    allowed[:, :, 0] = True  # every region sees the CLS state
    for b, masks in enumerate(region_masks):
        allowed[b, :masks.shape[0], 1:] = masks
    blocks = trunk.visual.transformer.resblocks[trunk.depth - len(kept):]
    mask = allowed[:, None]  # (B, 1, R, 1 + h*w): SDPA's convention, the same for every head
    tokens = kept[0][:, :1].expand(batch, total, -1)
    for block, states in zip(blocks, kept):
        tokens = block_forward(block, tokens, context=states, attn_mask=mask)
    embeddings = trunk.project(tokens)
    return [embeddings[b, :n] for b, n in enumerate(counts)]


def box_embeddings(trunk: CLIPViTTrunk, output: TrunkOutput, boxes: list[torch.Tensor]
                   ) -> list[torch.Tensor]:
    """Per image (R_b, 4) xyxy boxes in input-image pixels -> (R_b, D) RMA region embeddings."""
    masks = [rasterize_boxes(b, output.grid, trunk.patch_size) for b in boxes]
    return region_embeddings(trunk, output, masks)


def box_probabilities(trunk: CLIPViTTrunk, output: TrunkOutput, boxes: list[torch.Tensor],
                      text: torch.Tensor, logit_scale: float | torch.Tensor) -> list[torch.Tensor]:
    """Per image (R_b, 4) xyxy boxes in input-image pixels -> (R_b, V) softmax over the V rows
    of ``text`` (unit norm) of the boxes' RMA embeddings (:func:`text_probabilities`)."""
    return [text_probabilities(e, text, logit_scale)
            for e in box_embeddings(trunk, output, boxes)]
