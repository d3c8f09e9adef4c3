"""The two-stage crop baseline (zsseg, ZegFormer): one CLIP pass per mask, on its crop.

Each mask's bounding box is cut out of its image with the pixels outside the mask set to 0 (the
mean colour, in normalised units), resized to CLIP's input size and encoded by the full trunk.
It is the baseline that mask tokens (:class:`ovdet.clip.rma.MaskTokenRMA`) replace: its cost is
one image pass per mask instead of one per image.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from .vit import CLIPViTTrunk


def _masked_crops(image: torch.Tensor, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) image, (n, H', W') bool or logit masks -> (n, 3, *size) masked box crops."""
    height, width = image.shape[-2:]
    inside = masks if masks.dtype == torch.bool else masks > 0
    inside = F.interpolate(inside[:, None].to(image.dtype), size=(height, width), mode="nearest")
    rows, cols = inside[:, 0].amax(dim=2) > 0, inside[:, 0].amax(dim=1) > 0  # (n, H), (n, W)
    # the box's pixel edges; an empty mask's argmax is 0 on both ends: the whole image
    x1 = cols.to(torch.uint8).argmax(dim=1)
    x2 = width - cols.flip(1).to(torch.uint8).argmax(dim=1)
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = height - rows.flip(1).to(torch.uint8).argmax(dim=1)
    index = torch.arange(len(masks), device=image.device)
    boxes = torch.stack([index, x1, y1, x2, y2], dim=1).to(image.dtype)
    # bilinear samples averaged over ceil(box / size) points per output pixel (area-like when
    # shrinking); pixel centres aligned as in F.interpolate(align_corners=False)
    return roi_align(image[None] * inside, boxes, size, spatial_scale=1.0, sampling_ratio=0,
                     aligned=True)


def crop_embeddings(trunk: CLIPViTTrunk, images: torch.Tensor, masks: list[torch.Tensor],
                    size: int | None = None, batch_size: int = 32) -> list[torch.Tensor]:
    """CLIP embeddings of mask crops (module doc).

    ``images``: (B, 3, H, W) normalised input images; ``masks[b]``: (M_b, H', W') masks of image b,
    bool or logits (inside where > 0), at any resolution (resized to (H, W), nearest). Each mask's
    bounding box is cropped from its image with the pixels outside the mask set to 0, resized to
    ``size`` x ``size`` (default: the CLIP's native input size, ``trunk.native_grid`` times the
    patch size) and encoded by the full trunk (``trunk.image_embedding(trunk(crops))``), in
    batches of ``batch_size`` crops across images. An empty mask crops the whole image with every
    pixel set to 0: the embedding of an all-mean image.

    Returns per image (M_b, D) unnormalised embeddings. Autograd is the caller's: run it under
    ``torch.no_grad()`` for inference. Memory: ``batch_size`` x 3 x H x W for the masking step.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if len(masks) != images.shape[0]:
        raise ValueError(f"got masks for {len(masks)} images, and {images.shape[0]} images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for b, image_masks in enumerate(masks):
        if image_masks.ndim != 3:
            raise ValueError(f"masks[{b}] must be (M, H', W'), got {tuple(image_masks.shape)}")
    if size is None:
        out_size = tuple(g * trunk.patch_size for g in trunk.native_grid)
    else:
        out_size = (size, size)

    def chunks() -> Iterator[torch.Tensor]:
        for image, image_masks in zip(images, masks):
            for start in range(0, image_masks.shape[0], batch_size):
                yield _masked_crops(image, image_masks[start:start + batch_size], out_size)

    encoded: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    waiting = 0
    for crops in chunks():
        pending.append(crops)
        waiting += crops.shape[0]
        while waiting >= batch_size:
            ready = torch.cat(pending)
            encoded.append(trunk.image_embedding(trunk(ready[:batch_size])))
            pending, waiting = [ready[batch_size:]], waiting - batch_size
    if waiting:
        encoded.append(trunk.image_embedding(trunk(torch.cat(pending))))
    counts = [m.shape[0] for m in masks]
    if not encoded:
        return [images.new_zeros(0, trunk.embed_dim) for _ in counts]
    return list(torch.cat(encoded).split(counts))
