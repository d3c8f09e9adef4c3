"""The CLIP ViT trunk: one pass per image at any size, kept states for re-entry, dense embeddings.

Wraps an open_clip ``VisionTransformer`` (class-token pooling, batch-first residual attention
blocks: every OpenAI / LAION ViT-CLIP) without copying its weights:

* ``forward`` runs the trunk at any input size that is a multiple of the patch size; positional
  embeddings are interpolated bicubically to the patch grid (unchanged at the native size).
* the hidden states *entering* each of the last ``keep_last`` blocks are kept, so that region or
  mask tokens can re-enter those blocks later against the same patch states (``run_blocks``).
* ``dense_embeddings`` maps every patch into CLIP's joint space with the value-embedding trick of
  MaskCLIP+ (Zhou et al. 2022): in the last block, value projection of each patch token, then the
  attention output projection, ``ln_post`` and ``proj``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from .attention import block_forward, check_block, sdpa_mask


@dataclass
class TrunkOutput:
    """``tokens``: (B, 1 + h*w, C) hidden states after the last block (CLS first, patches
    row-major); ``kept``: ``keep_last`` tensors (B, 1 + h*w, C), the states entering each of the
    last blocks, oldest first; ``grid``: the patch grid (h, w)."""

    tokens: torch.Tensor
    kept: list[torch.Tensor]
    grid: tuple[int, int]

    def patch_grid(self) -> torch.Tensor:
        """Final patch states as a feature map (B, C, h, w)."""
        b, _, c = self.tokens.shape
        return self.tokens[:, 1:].transpose(1, 2).reshape(b, c, *self.grid)


class CLIPViTTrunk(nn.Module):
    """Runs an open_clip ``VisionTransformer`` once per image and keeps what re-entry needs.

    Args:
        visual: ``clip_model.visual`` (shared, not copied: training the trunk trains the CLIP).
        keep_last: K, the number of last blocks whose input states are kept (1 <= K <= depth).
    """

    def __init__(self, visual: VisionTransformer, keep_last: int = 2) -> None:
        super().__init__()
        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None \
                or visual.pool_type != "tok" or getattr(visual, "final_ln_after_pool", False):
            raise TypeError("CLIPViTTrunk supports open_clip VisionTransformer towers with "
                            "class-token pooling (ViT-B/16-style CLIPs), got "
                            f"{type(visual).__name__}")
        blocks = visual.transformer.resblocks
        for block in blocks:
            check_block(block)
        if not 1 <= keep_last <= len(blocks):
            raise ValueError(f"keep_last must be in [1, {len(blocks)}], got {keep_last}")
        self.visual = visual
        self.keep_last = keep_last
        self.patch_size: int = visual.patch_size[0]
        self.width: int = visual.transformer.width
        self.embed_dim: int = visual.proj.shape[1]

    @property
    def depth(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def native_grid(self) -> tuple[int, int]:
        return tuple(self.visual.grid_size)

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1 + h*w, C) positional embedding for a patch grid (h, w): the model's own at the
        native grid, bicubically interpolated otherwise."""
        pos = self.visual.positional_embedding
        if tuple(grid) == self.native_grid:
            return pos
        gh, gw = self.native_grid
        patch_pos = pos[1:].reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], patch_pos.flatten(2)[0].T], dim=0)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 3, H, W) normalised images -> (B, 1 + h*w, C) tokens entering block 0, and (h, w)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size "
                             f"{self.patch_size}; pad or resize the input")
        visual = self.visual
        x = visual.conv1(images)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(grid).to(x.dtype)
        return visual.ln_pre(x), grid

    def run_blocks(self, x: torch.Tensor, start: int, attn_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """Run blocks ``start .. depth-1`` on tokens (B, N, C); ``attn_mask`` as in
        ``nn.MultiheadAttention`` (additive float, or boolean with ``True`` = may not attend;
        (N, N) or (B*heads, N, N))."""
        blocks = self.visual.transformer.resblocks
        mask = sdpa_mask(attn_mask, x.shape[0], blocks[0].attn.num_heads)
        for block in blocks[start:]:
            x = block_forward(block, x, attn_mask=mask)
        return x

    def forward(self, images: torch.Tensor) -> TrunkOutput:
        x, grid = self.embed(images)
        first_kept = self.depth - self.keep_last
        kept = []
        for index, block in enumerate(self.visual.transformer.resblocks):
            if index >= first_kept:
                kept.append(x)
            x = block_forward(block, x)
        return TrunkOutput(tokens=x, kept=kept, grid=grid)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (..., C) -> CLIP joint space (..., D), unnormalised."""
        return self.visual.ln_post(tokens) @ self.visual.proj

    def image_embedding(self, output: TrunkOutput) -> torch.Tensor:
        """(B, D) CLIP image embedding (unnormalised), equal to ``clip.encode_image``."""
        return self.project(output.tokens[:, 0])

    def dense_embeddings(self, output: TrunkOutput) -> torch.Tensor:
        """(B, D, h, w) per-patch CLIP-space embeddings (unnormalised), value-embedding trick."""
        last: ResidualAttentionBlock = self.visual.transformer.resblocks[-1]
        attn = last.attn
        x = last.ln_1(output.kept[-1][:, 1:])
        width = self.width
        value = F.linear(x, attn.in_proj_weight[2 * width:],
                         None if attn.in_proj_bias is None else attn.in_proj_bias[2 * width:])
        dense = self.project(attn.out_proj(value))
        b, _, d = dense.shape
        return dense.transpose(1, 2).reshape(b, d, *output.grid)
