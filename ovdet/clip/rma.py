"""Relative mask attention (RMA): CLIP embeddings of regions without crops or a second image pass.

For every region (a box or a mask, rasterised on the patch grid) a query token, initialised from
the CLS state entering block ``depth - K``, re-enters the last K blocks of the CLIP ViT. In each
block it attends only to the CLS state and the patch states *inside its region*, taken from the
states the trunk kept while it ran (patch tokens never attend to region tokens, so those states
are exactly the ones of the single image pass). The final token goes through ``ln_post`` and
``proj`` into CLIP's joint space. With one region covering the whole image and K equal to the
depth, the result is CLIP's own image embedding.

Cost per block: regions x (1 + patches) attention entries, no image re-encoding.

:class:`MaskTokenRMA` is the trainable form for mask proposals (MaskCLIP's relative mask
attention): mask tokens whose patch masks come from mask logits, and, at chosen blocks, a learned
attention bias from the mask and a refinement of the mask logits.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

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


def mask_patch_masks(mask_logits: torch.Tensor, s: int, patch_threshold: float) -> torch.Tensor:
    """(M, h*s, w*s) mask logits, ``s`` mask pixels per patch side -> (M, h*w) bool patch masks.

    A mask pixel is inside where its logit is > 0 (sigmoid > 0.5). A patch is in the mask when the
    fraction of its s x s pixels inside is >= ``patch_threshold`` (in (0, 1]). A mask with pixels
    inside but no patch reaching the threshold gets the patch with the largest fraction (the first
    one, row-major, on ties); an empty mask gets no patch."""
    if not 0.0 < patch_threshold <= 1.0:
        raise ValueError(f"patch_threshold must be in (0, 1], got {patch_threshold}")
    if mask_logits.ndim != 3 or mask_logits.shape[1] % s or mask_logits.shape[2] % s:
        raise ValueError(f"expected mask logits (M, h*{s}, w*{s}), got {tuple(mask_logits.shape)}")
    inside = (mask_logits.detach() > 0).to(torch.float32)
    fraction = F.avg_pool2d(inside[:, None], s).flatten(1)  # (M, h*w)
    patches = fraction >= patch_threshold
    fallback = (fraction > 0).any(dim=1) & ~patches.any(dim=1)
    best = F.one_hot(fraction.argmax(dim=1), fraction.shape[1]).bool()
    return patches | (best & fallback[:, None])


def patch_keys(block: nn.Module, states: torch.Tensor) -> torch.Tensor:
    """(B, 1 + h*w, C) states entering ``block`` -> (B, h*w, C) the block's attention keys of the
    patches: its key projection of ``ln_1(patch states)``."""
    attn = block.attn
    width = states.shape[-1]
    bias = attn.in_proj_bias
    return F.linear(block.ln_1(states[:, 1:]), attn.in_proj_weight[width:2 * width],
                    None if bias is None else bias[width:2 * width])


class RelativeMaskAttention(nn.Module):
    """MaskCLIP's relative mask attention at one block: an attention bias from each mask, and a
    refinement of the mask logits from the mask token and the patch keys.

    Shapes: B images, M masks each (padded), (h, w) patch grid, ``s`` mask pixels per patch side,
    C the trunk width, ``dim`` this module's width.

    * ``bias``: q'[m, p] = LayerNorm(Conv2d(1, dim, s, stride=s)(tanh(logits)))[m, p],
      k'[p] = Linear(C, dim)(key[p]); bias[m, p] = q'[m, p] . k'[p] / sqrt(dim), the same for
      every head. k' is initialised to zero, so the bias starts at exactly 0.
    * ``refine``: GELU(Linear(C, dim)(token[m]) * Linear(C, dim)(key[p])) -> 1x1 Conv2d(dim,
      s*s) -> pixel_shuffle(s), added to the logits. The last conv is initialised to zero, so the
      refinement starts at exactly 0.

    Memory: (B, M, h*w, dim) for q' and for the refinement product, never (B, M, h*w, C).
    """

    def __init__(self, width: int, s: int, dim: int) -> None:
        super().__init__()
        self.s = s
        self.mask_embed = nn.Conv2d(1, dim, kernel_size=s, stride=s)
        self.mask_norm = nn.LayerNorm(dim)
        self.key_embed = nn.Linear(width, dim)
        self.token_refine = nn.Linear(width, dim)
        self.key_refine = nn.Linear(width, dim)
        self.refine_out = nn.Conv2d(dim, s * s, kernel_size=1)
        for layer in (self.key_embed, self.refine_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def bias(self, logits: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, M, h*s, w*s) mask logits, (B, h*w, C) patch keys -> (B, M, h*w) attention bias."""
        b, m = logits.shape[:2]
        query = self.mask_embed(torch.tanh(logits).flatten(0, 1)[:, None])  # (B*M, dim, h, w)
        query = self.mask_norm(query.flatten(2).transpose(1, 2)).unflatten(0, (b, m))
        key = self.key_embed(keys)  # (B, h*w, dim)
        return torch.einsum("bmpd,bpd->bmp", query, key) / math.sqrt(key.shape[-1])

    def refine(self, logits: torch.Tensor, tokens: torch.Tensor, keys: torch.Tensor,
               grid: tuple[int, int]) -> torch.Tensor:
        """(B, M, h*s, w*s) mask logits, (B, M, C) mask tokens, (B, h*w, C) patch keys -> the
        refined (B, M, h*s, w*s) logits."""
        b, m, height, width = logits.shape
        mixed = F.gelu(self.token_refine(tokens)[:, :, None] * self.key_refine(keys)[:, None])
        mixed = mixed.transpose(2, 3).reshape(b * m, mixed.shape[-1], *grid)  # (B*M, dim, h, w)
        delta = F.pixel_shuffle(self.refine_out(mixed), self.s)  # (B*M, 1, h*s, w*s)
        return logits + delta.view(b, m, height, width).to(logits.dtype)


class _Bound(nn.Module):
    """``fn(module, *args)`` as a module that holds ``module``: see :func:`_call_detached`."""

    def __init__(self, module: nn.Module, fn: Callable) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *args):
        return self.fn(self.module, *args)


def _call_detached(fn: Callable, module: nn.Module, *args):
    """``fn(module, *args)`` with ``module``'s parameters replaced by detached views for the call:
    gradients flow through the computation to ``args`` and to other modules, never into
    ``module``'s parameters, whatever their ``requires_grad``."""
    bound = _Bound(module, fn)
    params = {name: p.detach() for name, p in bound.named_parameters()}
    return functional_call(bound, params, args)


class MaskTokenRMA(nn.Module):
    """Mask tokens through the last K blocks with relative mask attention (MaskCLIP, Ding et al.
    2023): CLIP embeddings of mask proposals without crops or a second image pass.

    One token per mask, initialised from the CLS state entering block ``depth - K``, re-enters the
    last K blocks against the states the trunk kept (as :func:`region_embeddings`; patch states
    are never updated by mask tokens). In every block a token attends to the CLS state and to the
    patches its current mask covers (:func:`mask_patch_masks`; an empty mask attends to CLS only).
    At each block of ``bias_blocks`` (absolute 0-based indices among the last K) a
    :class:`RelativeMaskAttention` adds a learned per-patch bias to the token's attention logits
    (0 on CLS, the same for every head) and then refines the mask logits from the token leaving
    the block; later blocks use the refined masks, and the refined logits are returned for deep
    supervision.

    Initialisation: the bias key projection and the refinement's last conv are zero, so at
    initialisation the bias and the refinement are exactly 0 and the module computes plain RMA on
    the given masks (with ``bias_blocks`` empty it has no parameters at all). With one all-inside
    mask and K = depth the embedding is CLIP's image embedding.

    The trunk is an argument of :meth:`forward`, not a submodule: its weights are CLIP's, saved
    elsewhere. The trunk's blocks, ``ln_post`` and ``proj`` are applied with detached weights, so
    gradients reach this module's parameters, the mask logits and the kept states (only if those
    carry autograd history), never the trunk's parameters directly.

    Args:
        width, patch_size, depth, keep_last: the trunk's (see :meth:`for_trunk`); K = keep_last.
        bias_blocks: block indices in [depth - K, depth) with relative mask attention.
        mask_stride: input pixels per mask pixel; must divide ``patch_size``.
        refine_dim: width of the bias and refinement embeddings.
        patch_threshold: fraction of a patch a mask must cover to attend to it, in (0, 1].
    """

    def __init__(self, *, width: int, patch_size: int, depth: int, keep_last: int,
                 bias_blocks: Sequence[int] = (), mask_stride: int = 4, refine_dim: int = 64,
                 patch_threshold: float = 0.3) -> None:
        super().__init__()
        if not 1 <= keep_last <= depth:
            raise ValueError(f"keep_last must be in [1, {depth}], got {keep_last}")
        if mask_stride < 1 or patch_size % mask_stride:
            raise ValueError(f"mask_stride must divide the patch size {patch_size}, "
                             f"got {mask_stride}")
        if not 0.0 < patch_threshold <= 1.0:
            raise ValueError(f"patch_threshold must be in (0, 1], got {patch_threshold}")
        if refine_dim < 1:
            raise ValueError(f"refine_dim must be positive, got {refine_dim}")
        first = depth - keep_last
        blocks = [int(b) for b in bias_blocks]
        if len(set(blocks)) != len(blocks) or any(not first <= b < depth for b in blocks):
            raise ValueError(
                f"bias_blocks must be distinct block indices in [{first}, {depth}) (the last "
                f"keep_last={keep_last} blocks of a {depth}-block trunk), got {list(bias_blocks)}")
        self.width, self.patch_size = width, patch_size
        self.depth, self.keep_last = depth, keep_last
        self.mask_stride = mask_stride
        self.s = patch_size // mask_stride
        self.patch_threshold = float(patch_threshold)
        self.bias_blocks: tuple[int, ...] = tuple(sorted(blocks))
        self.layers = nn.ModuleDict({str(b): RelativeMaskAttention(width, self.s, refine_dim)
                                     for b in self.bias_blocks})

    @classmethod
    def for_trunk(cls, trunk: CLIPViTTrunk, **kwargs) -> "MaskTokenRMA":
        """Width, patch size, depth and K = ``keep_last`` taken from ``trunk``; other keyword
        arguments as in the constructor."""
        return cls(width=trunk.width, patch_size=trunk.patch_size, depth=trunk.depth,
                   keep_last=trunk.keep_last, **kwargs)

    def extra_repr(self) -> str:
        return (f"blocks={self.depth - self.keep_last}..{self.depth - 1}, "
                f"bias_blocks={self.bias_blocks}, mask_stride={self.mask_stride}, "
                f"patch_threshold={self.patch_threshold}")

    def forward(self, trunk: CLIPViTTrunk, output: TrunkOutput, mask_logits: list[torch.Tensor]
                ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """``output``: the trunk's output for B images (at least K kept states; the last K are
        used); ``mask_logits[b]``: (M_b, h*s, w*s) mask logits of image b, ``mask_stride`` input
        pixels per mask pixel, s = patch_size // mask_stride, (h, w) = ``output.grid``.

        Returns ``(embeddings, refined)``: per image (M_b, D) unnormalised CLIP-space mask
        embeddings (after ``ln_post`` and ``proj``); per bias block (in block order), per image
        (M_b, h*s, w*s) refined mask logits (an empty list without bias blocks)."""
        built_for = (self.width, self.patch_size, self.depth)
        if (trunk.width, trunk.patch_size, trunk.depth) != built_for:
            raise ValueError(
                f"this MaskTokenRMA was built for a trunk of width {self.width}, patch size "
                f"{self.patch_size} and depth {self.depth}; got width {trunk.width}, patch size "
                f"{trunk.patch_size}, depth {trunk.depth}")
        if len(output.kept) < self.keep_last:
            raise ValueError(f"MaskTokenRMA re-enters the last {self.keep_last} blocks but the "
                             f"trunk kept {len(output.kept)} states; build the trunk with "
                             f"keep_last >= {self.keep_last}")
        if len(mask_logits) != output.kept[0].shape[0]:
            raise ValueError(f"got mask logits for {len(mask_logits)} images, the trunk output "
                             f"has {output.kept[0].shape[0]}")
        h, w = output.grid
        for b, logits in enumerate(mask_logits):
            if logits.ndim != 3 or tuple(logits.shape[1:]) != (h * self.s, w * self.s):
                raise ValueError(
                    f"mask_logits[{b}] must be (M, {h * self.s}, {w * self.s}) for a {h}x{w} "
                    f"patch grid at mask stride {self.mask_stride}, got {tuple(logits.shape)}")
        return _call_detached(self._forward, trunk, output, mask_logits)

    def _allowed(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, M, h*s, w*s) logits -> (B, M, 1 + h*w) bool: CLS, then the mask's patches."""
        b, m = logits.shape[:2]
        patches = mask_patch_masks(logits.flatten(0, 1), self.s, self.patch_threshold)
        cls = torch.ones(b * m, 1, dtype=torch.bool, device=logits.device)
        return torch.cat([cls, patches], dim=1).view(b, m, -1)

    def _forward(self, trunk: CLIPViTTrunk, output: TrunkOutput, mask_logits: list[torch.Tensor]
                 ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        counts = [m.shape[0] for m in mask_logits]
        total = max(counts, default=0)
        kept = output.kept[len(output.kept) - self.keep_last:]
        if total == 0:
            return ([kept[0].new_zeros(0, trunk.embed_dim) for _ in counts],
                    [list(mask_logits) for _ in self.bias_blocks])
        batch = len(counts)
        # padding masks are empty (logit 0 is outside): their tokens attend to CLS only
        logits = torch.stack([F.pad(m, (0, 0, 0, 0, 0, total - m.shape[0])) for m in mask_logits])
        allowed = self._allowed(logits)
        blocks = trunk.visual.transformer.resblocks[-self.keep_last:]
        tokens = kept[0][:, :1].expand(batch, total, -1)
        refined = []
        first = self.depth - self.keep_last
        for index, (block, states) in enumerate(zip(blocks, kept), start=first):
            if str(index) not in self.layers:
                tokens = block_forward(block, tokens, context=states, attn_mask=allowed[:, None])
                continue
            layer: RelativeMaskAttention = self.layers[str(index)]
            keys = patch_keys(block, states)
            bias = layer.bias(logits, keys)
            mask = torch.cat([bias.new_zeros(batch, total, 1), bias], dim=2)
            mask = mask.masked_fill(~allowed, float("-inf"))  # CLS stays 0: every row finite
            tokens = block_forward(block, tokens, context=states, attn_mask=mask[:, None])
            logits = layer.refine(logits, tokens, keys, output.grid)
            refined.append(logits)
            allowed = self._allowed(logits)
        embeddings = trunk.project(tokens)
        return ([embeddings[b, :n] for b, n in enumerate(counts)],
                [[r[b, :n] for b, n in enumerate(counts)] for r in refined])
