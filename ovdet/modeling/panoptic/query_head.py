"""Class-agnostic mask proposals from learned queries on the shared pyramid (Mask2Former style).

* **Pixel decoder.** Every pyramid level is projected to ``hidden_dim`` channels and summed top
  down (FPN); the finest sum, plus (``image_stem``) a few stride-2 convolutions of the image itself
  at the same stride, after a 3x3 convolution, is the per-pixel embedding map (``mask features``,
  at the finest pyramid stride). The CLIP patch grid is coarse (16 px cells for ViT-B/16): the
  image stem gives mask boundaries the image's own edges, for every class alike. The three
  coarsest levels are the decoder's memory.
* **Transformer decoder.** ``num_queries`` learned queries go through ``num_layers`` layers of
  masked cross-attention (each query sees only the pixels of the memory level where its previous
  mask is on; a query whose mask is empty sees all), self-attention and a feed-forward network,
  round robin over the memory levels. PyTorch's own attention, no compiled ops.
* **Predictions, after the query initialisation and after every layer** (deep supervision): mask
  logits = (mask embedding of the query) . (per-pixel embedding); class logits = scaled cosine
  between a projection of the query into CLIP's joint space and the (C, D) text embeddings of the
  vocabulary: (Q, C); and a class-agnostic objectness logit per query (is the query a segment at
  all; ``p(void) = 1 - sigmoid(objectness)``), which does not depend on the vocabulary, so that a
  query on an object of a class never trained on is not pushed to "void" by the base classes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import ShapeSpec


def sine_position_encoding(height: int, width: int, channels: int, device: torch.device
                           ) -> torch.Tensor:
    """(height * width, channels) 2-D sine/cosine encoding of a grid (half the channels for y,
    half for x), coordinates normalised to (0, 2 pi]."""
    quarter = channels // 4
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 1) / height * 2 * math.pi
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 1) / width * 2 * math.pi
    frequencies = 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    y = ys[:, None] / frequencies  # (h, quarter)
    x = xs[:, None] / frequencies
    y = torch.cat([y.sin(), y.cos()], dim=1)[:, None, :].expand(height, width, -1)
    x = torch.cat([x.sin(), x.cos()], dim=1)[None, :, :].expand(height, width, -1)
    encoding = torch.cat([y, x], dim=-1).reshape(height * width, -1)
    return F.pad(encoding, (0, channels - encoding.shape[1]))


class DecoderLayer(nn.Module):
    """Masked cross-attention, self-attention, feed-forward; post-norm, residual each."""

    def __init__(self, dim: int, heads: int, feedforward: int) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, feedforward), nn.ReLU(), nn.Linear(feedforward, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
        """queries, query_pos: (B, Q, dim); memory, memory_pos: (B, HW, dim); blocked:
        (B * heads, Q, HW) bool, True where a query may not look."""
        attended, _ = self.cross(queries + query_pos, memory + memory_pos, memory,
                                 attn_mask=blocked, need_weights=False)
        queries = self.norms[0](queries + attended)
        q = queries + query_pos
        attended, _ = self.self_attn(q, q, queries, need_weights=False)
        queries = self.norms[1](queries + attended)
        return self.norms[2](queries + self.ffn(queries))


def _image_stem(channels: int, stride: int) -> nn.Sequential:
    """(B, 3, H, W) -> (B, channels, H / stride, W / stride): log2(stride) stride-2 3x3
    convolutions (GroupNorm, ReLU), the last projecting to ``channels`` (zero-initialised: the
    stem starts as a no-op)."""
    layers: list[nn.Module] = []
    width = 3
    for _ in range(int(math.log2(stride))):
        layers += [nn.Conv2d(width, channels // 2, 3, stride=2, padding=1),
                   nn.GroupNorm(1, channels // 2), nn.ReLU()]
        width = channels // 2
    projection = nn.Conv2d(width, channels, 1)
    nn.init.zeros_(projection.weight)
    nn.init.zeros_(projection.bias)
    return nn.Sequential(*layers, projection)


class QueryMaskHead(nn.Module):
    """Query mask proposals on a feature pyramid (module doc).

    Args:
        input_shape: the backbone's ``output_shape()`` (fine to coarse; at least one level).
        embed_dim: D, CLIP's joint space (width of the class embeddings).
        num_queries, hidden_dim, num_heads, dim_feedforward, num_layers: the decoder's sizes.
        image_stem: add convolutions of the input image to the per-pixel embeddings.
    """

    def __init__(self, input_shape: dict[str, ShapeSpec], embed_dim: int, num_queries: int = 100,
                 hidden_dim: int = 256, num_heads: int = 8, dim_feedforward: int = 1024,
                 num_layers: int = 3, image_stem: bool = True) -> None:
        super().__init__()
        if num_queries < 1 or num_layers < 0:
            raise ValueError(f"need num_queries >= 1 and num_layers >= 0, got {num_queries}, "
                             f"{num_layers}")
        if hidden_dim % num_heads or hidden_dim % 4:
            raise ValueError(f"hidden_dim {hidden_dim} must be a multiple of num_heads "
                             f"{num_heads} and of 4")
        self.in_features = list(input_shape)
        self.mask_stride = input_shape[self.in_features[0]].stride
        if image_stem and (self.mask_stride < 2 or self.mask_stride & (self.mask_stride - 1)):
            raise ValueError(f"the image stem needs a finest pyramid stride that is a power of two "
                             f">= 2, got {self.mask_stride}")
        self.image_stem = _image_stem(hidden_dim, self.mask_stride) if image_stem else None
        self.num_heads = num_heads
        self.lateral = nn.ModuleList(nn.Conv2d(s.channels, hidden_dim, 1)
                                     for s in input_shape.values())
        self.mask_features = nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
                                           nn.GroupNorm(32 if hidden_dim % 32 == 0 else 1,
                                                        hidden_dim), nn.ReLU(),
                                           nn.Conv2d(hidden_dim, hidden_dim, 1))
        self.num_memory_levels = min(3, len(self.in_features))
        self.level_embed = nn.Embedding(self.num_memory_levels, hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_pos = nn.Embedding(num_queries, hidden_dim)
        self.layers = nn.ModuleList(DecoderLayer(hidden_dim, num_heads, dim_feedforward)
                                    for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                        nn.Linear(hidden_dim, hidden_dim))
        self.class_embed = nn.Linear(hidden_dim, embed_dim)
        self.objectness = nn.Linear(hidden_dim, 1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def num_queries(self) -> int:
        return self.query_feat.num_embeddings

    def pixel_decoder(self, features: dict[str, torch.Tensor], images: torch.Tensor | None
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Pyramid (and the (B, 3, H, W) normalised images, for the image stem) -> per-pixel
        embeddings (B, hidden, H/s0, W/s0) and the memory maps (coarsest first), each
        (B, hidden, h_l, w_l)."""
        maps = [lateral(features[name]) for lateral, name in zip(self.lateral, self.in_features)]
        summed = maps[-1]
        pyramid = [summed]
        for lateral in reversed(maps[:-1]):
            summed = lateral + F.interpolate(summed, size=lateral.shape[-2:], mode="nearest")
            pyramid.append(summed)
        memory = pyramid[:self.num_memory_levels]
        finest = pyramid[-1]
        if self.image_stem is not None:
            if images is None:
                raise ValueError("this head has an image stem: pass the images")
            finest = finest + self.image_stem(images)
        return self.mask_features(finest), memory

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor,
                class_embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, Q, hidden) queries -> ``{"logits": (B, Q, C) class logits, "objectness": (B, Q)
        logits, "masks": (B, Q, H/s0, W/s0) mask logits}``."""
        queries = self.decoder_norm(queries)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(queries), mask_features)
        projected = F.normalize(self.class_embed(queries), dim=-1)
        logits = self.logit_scale.exp().clamp(max=100) * projected @ class_embeddings.T
        return {"logits": logits, "objectness": self.objectness(queries)[..., 0], "masks": masks}

    def attention_block(self, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, Q, H, W) mask logits -> (B * heads, Q, h*w) bool: True where the mask (resized to
        ``size``) is off; a query whose mask is off everywhere may look everywhere."""
        resized = F.interpolate(masks.detach(), size=size, mode="bilinear", align_corners=False)
        blocked = (resized.sigmoid() < 0.5).flatten(2)
        blocked &= ~blocked.all(dim=-1, keepdim=True)
        return blocked.repeat_interleave(self.num_heads, dim=0)

    def forward(self, features: dict[str, torch.Tensor], class_embeddings: torch.Tensor,
                images: torch.Tensor | None = None) -> dict[str, torch.Tensor | list]:
        """``features``: the pyramid; ``class_embeddings``: (C, D) unit norm; ``images``: (B, 3,
        H, W) normalised inputs (needed with an image stem). Returns
        ``{"logits": (B, Q, C), "objectness": (B, Q), "masks": (B, Q, H/s0, W/s0), "queries":
        (B, Q, hidden), "aux": [{"logits", "objectness", "masks"} of the earlier
        predictions]}``."""
        mask_features, memory = self.pixel_decoder(features, images)
        batch = mask_features.shape[0]
        sizes = [tuple(m.shape[-2:]) for m in memory]
        memory_pos = [sine_position_encoding(*size, m.shape[1], m.device)[None]
                      + self.level_embed.weight[level]
                      for level, (size, m) in enumerate(zip(sizes, memory))]
        memory = [m.flatten(2).transpose(1, 2) for m in memory]
        queries = self.query_feat.weight[None].expand(batch, -1, -1)
        query_pos = self.query_pos.weight[None].expand(batch, -1, -1)
        predictions = [self.predict(queries, mask_features, class_embeddings)]
        for index, layer in enumerate(self.layers):
            level = index % self.num_memory_levels
            blocked = self.attention_block(predictions[-1]["masks"], sizes[level])
            queries = layer(queries, query_pos, memory[level], memory_pos[level], blocked)
            predictions.append(self.predict(queries, mask_features, class_embeddings))
        return {**predictions[-1], "queries": queries, "aux": predictions[:-1]}
