"""Activation maps of caption nouns on the CLIP patch grid.

Three methods, one trunk pass per batch each:

* ``dense``: how strongly each place of the image is the category. With ``source="window"``
  (default) the place is a ``window`` x ``window`` patch neighbourhood whose region token runs
  through the trunk's kept blocks (RMA, :mod:`ovdet.clip.rma`); with ``source="value"`` it is a
  single patch embedded with the value-embedding trick (MaskCLIP+). Either way the activation is
  the softmax over the whole vocabulary (plus optional background names) of the scaled cosine
  similarities, read at the noun's category: every noun of a caption from the same pass.
* ``gradcam``: Grad-CAM of the image-text logit of the noun with respect to the patch states
  entering block ``gradcam_block``: ReLU of the channel-weighted states, weights the gradient
  averaged over patches. One backward per noun (batched over images).
* ``softmax_gradcam``: the same for the noun's softmax probability over the vocabulary (plus
  background names), as CLIP-ES: regions of the other categories get negative weight.

:func:`normalize_maps` upsamples to the image, min-max normalises and zeroes weak values.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..clip.attention import block_forward
from ..clip.rma import region_embeddings
from ..clip.text import text_probabilities
from ..clip.vit import CLIPViTTrunk, TrunkOutput

METHODS = ("dense", "gradcam", "softmax_gradcam")
DENSE_SOURCES = ("window", "value")


def window_masks(grid: tuple[int, int], window: int, device: torch.device | None = None
                 ) -> torch.Tensor:
    """(h*w, h*w) bool: row i marks the ``window`` x ``window`` patches centred on patch i
    (clipped at the border)."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                            indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    radius = window // 2
    return ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)


class ActivationMaps:
    """Per image and queried category, a (h, w) activation map (module doc).

    Args:
        trunk: a CLIP trunk; ``dense`` with ``source="window"`` uses its kept blocks.
        logit_scale: CLIP's temperature (``clip.model.logit_scale.exp()``).
        method, source, window, gradcam_block: see the module doc; ``gradcam_block`` counts
            from 0, negative values from the end (-1: the states entering the last block; the
            default -2 is a usual choice for deep CLIPs; the 3-block toy CLIP does best at 0).
    """

    def __init__(self, trunk: CLIPViTTrunk, logit_scale: float, method: str = "dense",
                 source: str = "window", window: int = 3, gradcam_block: int = -2) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if source not in DENSE_SOURCES:
            raise ValueError(f"dense source must be one of {DENSE_SOURCES}, got {source!r}")
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number of patches >= 1, got {window}")
        if not -trunk.depth <= gradcam_block < trunk.depth:
            raise ValueError(f"gradcam_block must be in [{-trunk.depth}, {trunk.depth - 1}], "
                             f"got {gradcam_block}")
        self.trunk, self.logit_scale = trunk, float(logit_scale)
        self.method, self.source, self.window = method, source, window
        self.gradcam_block = gradcam_block % trunk.depth

    def __call__(self, images: torch.Tensor, queries: list[list[int]], text: torch.Tensor
                 ) -> tuple[list[torch.Tensor], TrunkOutput]:
        """``images``: (B, 3, H, W) normalised; ``queries[b]``: rows of ``text`` (V, D, unit
        norm) to map for image b. Returns per image (len(queries[b]), h, w) maps and the trunk's
        output (detached, for region scoring)."""
        if self.method == "dense":
            with torch.no_grad():
                output = self.trunk(images)
                return self.dense(output, queries, text), output
        return self.gradcam(images, queries, text)

    def dense(self, output: TrunkOutput, queries: list[list[int]], text: torch.Tensor
              ) -> list[torch.Tensor]:
        h, w = output.grid
        if self.source == "window":
            masks = window_masks(output.grid, self.window, output.tokens.device)
            embeddings = region_embeddings(self.trunk, output, [masks] * len(queries))
        else:
            dense = self.trunk.dense_embeddings(output)  # (B, D, h, w)
            embeddings = list(dense.flatten(2).transpose(1, 2))
        return [text_probabilities(e, text, self.logit_scale)[:, q].T.reshape(len(q), h, w)
                for e, q in zip(embeddings, queries)]

    def gradcam(self, images: torch.Tensor, queries: list[list[int]], text: torch.Tensor
                ) -> tuple[list[torch.Tensor], TrunkOutput]:
        trunk = self.trunk
        first_kept = trunk.depth - trunk.keep_last
        kept: list[torch.Tensor] = []
        with torch.no_grad():
            x, grid = trunk.embed(images)
        with torch.enable_grad():
            blocks = trunk.visual.transformer.resblocks
            for index, block in enumerate(blocks):
                if index == self.gradcam_block:
                    x = x.detach().requires_grad_(True)
                    states = x
                if index >= first_kept:
                    kept.append(x.detach())
                if index < self.gradcam_block:
                    with torch.no_grad():
                        x = block_forward(block, x)
                else:
                    x = block_forward(block, x)
            logits = self.logit_scale * F.normalize(trunk.image_embedding(
                TrunkOutput(x, kept, grid)), dim=-1) @ text.T  # (B, V)
            scores = logits.softmax(dim=-1) if self.method == "softmax_gradcam" else logits
            maps = [images.new_zeros(len(q), *grid) for q in queries]
            for slot in range(max((len(q) for q in queries), default=0)):
                rows = [(b, q[slot]) for b, q in enumerate(queries) if slot < len(q)]
                target = sum(scores[b, c] for b, c in rows)
                gradient, = torch.autograd.grad(target, states, retain_graph=True)
                weights = gradient[:, 1:].mean(dim=1, keepdim=True)  # (B, 1, C)
                cam = F.relu((states[:, 1:].detach() * weights).sum(dim=-1))  # (B, h*w)
                for b, _ in rows:
                    maps[b][slot] = cam[b].reshape(grid)
        return maps, TrunkOutput(x.detach(), kept, grid)


def normalize_maps(maps: torch.Tensor, size: tuple[int, int], zero_below: float) -> torch.Tensor:
    """(K, h, w) raw maps -> (K, H, W): bilinear upsampling to ``size``, min-max normalisation to
    [0, 1] per map, values below ``zero_below`` set to 0. A constant map becomes all zeros."""
    if maps.shape[0] == 0:
        return maps.new_zeros(0, *size)
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.flatten(1).min(dim=1).values[:, None, None]
    span = up.flatten(1).max(dim=1).values[:, None, None] - low
    normalized = torch.where(span > 1e-12, (up - low) / span.clamp(min=1e-12), torch.zeros_like(up))
    return normalized * (normalized >= zero_below)
