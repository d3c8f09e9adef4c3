"""Contrastive pretraining of a tiny CLIP on toy-world image-caption pairs (image level, no boxes).

Two objectives, both from captions alone:

* CLIP's symmetric InfoNCE between image (CLS) and caption embeddings (open_clip's ``ClipLoss``);
* a patch-level alignment term in the spirit of PACL (Mukhoti et al. 2023): for every
  (image i, caption j) pair, the dense value-trick patch embeddings of image i are pooled with
  attention weights ``softmax_n(<patch_n, text_j> / tau)``, and the pooled embedding is contrasted
  with the captions like the CLS embedding. Patches that match words of their own caption are
  pulled into CLIP's joint space, which is what dense maps and pseudo boxes need.
"""
from __future__ import annotations

import multiprocessing
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.loss import ClipLoss
from tqdm import tqdm

from ..data.toyworld import render_scene
from .vit import CLIPViTTrunk



@dataclass
class PairPool:
    """``images``: (N, 3, S, S) uint8 at the CLIP's native size; ``captions``: N strings."""

    images: torch.Tensor
    captions: list[str]


def _render_pair(job: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    seed, index, size = job
    scene = render_scene(np.random.default_rng([seed, index]), size)
    return scene.image, scene.caption


def render_pair_pool(seed: int, num_pairs: int, native_size: int, world_size: int = 128,
                     workers: int | None = None, progress: bool = True) -> PairPool:
    """Render ``num_pairs`` toy scenes at ``world_size`` (the toy world's image size) and resize
    them to ``native_size`` with antialiased bicubic resampling, as CLIP's preprocess does."""
    jobs = [(seed, index, world_size) for index in range(num_pairs)]
    workers = workers or multiprocessing.cpu_count()
    with multiprocessing.Pool(workers) as pool:
        results = list(tqdm(pool.imap(_render_pair, jobs, chunksize=64), total=num_pairs,
                            desc="rendering image-caption pairs", unit="img", disable=not progress))
    images = torch.from_numpy(np.stack([r[0] for r in results])).permute(0, 3, 1, 2)
    resized = []
    for chunk in images.split(1024):
        small = F.interpolate(chunk.float(), size=(native_size, native_size), mode="bicubic",
                              antialias=True, align_corners=False)
        resized.append(small.round().clamp(0, 255).to(torch.uint8))
    return PairPool(torch.cat(resized), [r[1] for r in results])


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> float, normalised with open_clip's default (OpenAI) mean and std,
    which the toy CLIP's preprocess uses."""
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def patch_alignment_loss(dense: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                         pool_temperature: float = 0.05) -> torch.Tensor:
    """PACL-style loss. ``dense``: (B, N, D) L2-normalised patch embeddings; ``text``: (B, D)
    L2-normalised caption embeddings, pair i matching caption i. Returns a scalar."""
    similarity = torch.einsum("bnd,cd->bcn", dense, text)  # image b, caption c, patch n
    weights = (similarity / pool_temperature).softmax(dim=-1)
    pooled = F.normalize(torch.einsum("bcn,bnd->bcd", weights, dense), dim=-1)
    logits = logit_scale * torch.einsum("bcd,cd->bc", pooled, text)
    labels = torch.arange(len(text), device=text.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ToyCLIPObjective(torch.nn.Module):
    """Computes ``{"loss_clip", "loss_patch"}`` for a batch of normalised images and captions."""

    def __init__(self, clip_model: torch.nn.Module, tokenizer, patch_weight: float = 1.0) -> None:
        super().__init__()
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.trunk = CLIPViTTrunk(clip_model.visual, keep_last=1)
        self.patch_weight = patch_weight
        self.clip_loss = ClipLoss()

    def forward(self, images: torch.Tensor, captions: list[str]) -> dict[str, torch.Tensor]:
        output = self.trunk(images)
        image = F.normalize(self.trunk.image_embedding(output), dim=-1)
        text = self.clip_model.encode_text(self.tokenizer(captions), normalize=True)
        scale = self.clip_model.logit_scale.exp().clamp(max=100)
        losses = {"loss_clip": self.clip_loss(image, text, scale)}
        if self.patch_weight > 0:
            dense = F.normalize(self.trunk.dense_embeddings(output).flatten(2).transpose(1, 2), dim=-1)
            losses["loss_patch"] = self.patch_weight * patch_alignment_loss(dense, text, scale)
        return losses
