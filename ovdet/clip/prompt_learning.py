"""Learning region prompts (PromptDet's first stage) against RMA region embeddings.

The CLIP trunk and text tower are frozen, so a region's embedding never changes while the prompts
learn: regions are embedded once (:func:`extract_regions`: one trunk pass per image, RMA tokens
for its boxes, no crops, no second image pass), and training then runs on those embeddings
alone, each step re-encoding the base class names through the text tower with the current
context vectors (:func:`train_prompts`).

* Positives: the base ground-truth boxes of the training set, optionally enlarged about their
  centre (``box_scale``, PromptDet's context); label = their class.
* Background: random boxes of each training image that overlap no ground-truth box by
  ``background_max_overlap`` or more (IoU, the fraction of the object they cover, or their
  fraction inside it); label = a
  background class whose embedding (D,) is learned too.
* Loss: cross-entropy over the base classes (plus background, when there are background boxes)
  of ``logit_scale * cos(region, class)``, CLIP's own temperature.

Accuracy (:func:`region_accuracy`) is measured on the ground-truth boxes of a validation set,
classified among all its classes (base and novel together, the generalized setting) without
background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.param_scheduler import CosineParamScheduler
from torchvision.ops import box_iou, clip_boxes_to_image
from tqdm import tqdm

from .load import CLIPBundle
from .prompts import RegionPrompts
from .rma import box_embeddings
from .vit import CLIPViTTrunk


@dataclass
class RegionSet:
    """Embedded regions: ``embeddings`` (N, D) float32 CLIP-space (unnormalised), ``labels``
    (N,) int64 class index, -1 for background."""

    embeddings: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def empty(cls, dim: int) -> RegionSet:
        return cls(torch.zeros(0, dim), torch.zeros(0, dtype=torch.int64))

    @classmethod
    def concat(cls, parts: Sequence[RegionSet]) -> RegionSet:
        return cls(torch.cat([p.embeddings for p in parts]), torch.cat([p.labels for p in parts]))

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"embeddings": self.embeddings, "labels": self.labels}


def scale_boxes(boxes: torch.Tensor, scale: float, size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) xyxy boxes enlarged ``scale`` times about their centres, clipped to ``size``
    (height, width)."""
    if scale == 1.0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * scale / 2
    return clip_boxes_to_image(torch.cat([centre - half, centre + half], dim=1), size)


def object_overlap(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) and (N, 4) xyxy boxes -> (B,) the largest overlap of each box with any of
    ``gt_boxes``: the largest of their IoU, the fraction of the ground-truth box it covers (a
    large box around a small object has a small IoU but holds all of it) and the fraction of
    the box inside the ground-truth box (a small box on a large object); 0 when N = 0."""
    if not len(gt_boxes) or not len(boxes):
        return boxes.new_zeros(len(boxes))
    lt = torch.maximum(boxes[:, None, :2], gt_boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], gt_boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    gt_area = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=1e-6).prod(dim=1)
    box_area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6).prod(dim=1)
    overlaps = torch.stack([box_iou(boxes, gt_boxes), inter / gt_area[None],
                            inter / box_area[:, None]])
    return overlaps.amax(dim=(0, 2))


def background_boxes(gt_boxes: torch.Tensor, size: tuple[int, int], count: int,
                     max_overlap: float, generator: np.random.Generator, min_side: float = 4.0,
                     tries: int = 20) -> torch.Tensor:
    """Up to ``count`` random (B, 4) xyxy boxes inside ``size`` (height, width) whose
    :func:`object_overlap` with ``gt_boxes`` (N, 4) is below ``max_overlap``: sides
    log-uniform in [``min_side``, the image side], positions uniform; ``count * tries`` draws at
    most."""
    height, width = size
    draws = count * tries
    sides = np.exp(generator.uniform(np.log(min_side), np.log([width, height]), size=(draws, 2)))
    x1 = generator.uniform(0, 1, draws) * (width - sides[:, 0])
    y1 = generator.uniform(0, 1, draws) * (height - sides[:, 1])
    boxes = torch.tensor(np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1),
                         dtype=torch.float32)
    boxes = boxes[object_overlap(boxes, gt_boxes.float()) < max_overlap]
    return boxes[:count]


@torch.no_grad()
def extract_regions(trunk: CLIPViTTrunk, normalize: Callable[[torch.Tensor], torch.Tensor],
                    inputs: Iterable[list[dict]], box_scale: float = 1.0,
                    background_per_image: int = 0, background_max_overlap: float = 0.3,
                    seed: int = 0, first_index: int = 0,
                    progress: Callable[[int], None] | None = None,
                    device: torch.device | str = "cpu") -> RegionSet:
    """RMA embeddings of the boxes of mapped training inputs (``ovdet.data.mapper`` training
    form: ``{"image": (3, H, W) uint8, "instances": {"boxes": (N, 4) xyxy, "classes": (N,)}}``).

    ``inputs`` yields batches; ``normalize`` maps (1, 3, H, W) float images in 0-255 to the
    trunk's input; a batch is then zero-padded to a multiple of the patch size (the detector
    pads to its backbone's size divisibility, which is the same for same-size images).
    Boxes are enlarged by ``box_scale``; ``background_per_image`` random boxes per image
    overlapping no box by ``background_max_overlap`` (:func:`object_overlap`) are added with
    label -1 (drawn from a generator seeded by ``(seed, image number)``, images numbered from
    ``first_index`` in the order they come, so that a dataset embedded in chunks draws what it
    would in one go). ``progress(n)`` is told of every ``n`` images done."""
    parts: list[RegionSet] = []
    index = first_index
    patch = trunk.patch_size
    for batch in inputs:
        sizes = [tuple(x["image"].shape[-2:]) for x in batch]
        height = -(-max(s[0] for s in sizes) // patch) * patch
        width = -(-max(s[1] for s in sizes) // patch) * patch
        images = torch.zeros(len(batch), 3, height, width, device=device)
        for b, x in enumerate(batch):  # normalised, then zero-padded
            images[b, :, :sizes[b][0], :sizes[b][1]] = normalize(
                x["image"].float()[None].to(device))[0]
        output = trunk(images)
        boxes, labels = [], []
        for b, x in enumerate(batch):
            gt = x["instances"]["boxes"].float()
            image_boxes = [scale_boxes(gt, box_scale, sizes[b])]
            image_labels = [x["instances"]["classes"]]
            if background_per_image:
                rng = np.random.default_rng([seed, index + b])
                background = background_boxes(gt, sizes[b], background_per_image,
                                              background_max_overlap, rng)
                image_boxes.append(background)
                image_labels.append(torch.full((len(background),), -1, dtype=torch.int64))
            boxes.append(torch.cat(image_boxes).to(device))
            labels.append(torch.cat(image_labels))
        embeddings = box_embeddings(trunk, output, boxes)
        parts += [RegionSet(e.float().cpu(), lab.cpu()) for e, lab in zip(embeddings, labels)]
        index += len(batch)
        if progress is not None:
            progress(len(batch))
    return RegionSet.concat(parts) if parts else RegionSet.empty(trunk.embed_dim)


def region_logits(regions: torch.Tensor, classes: torch.Tensor, logit_scale: float | torch.Tensor
                  ) -> torch.Tensor:
    """(N, D) region embeddings and (C, D) class embeddings -> (N, C) ``logit_scale * cos``."""
    return logit_scale * F.normalize(regions, dim=-1) @ F.normalize(classes, dim=-1).T


def region_accuracy(regions: RegionSet, class_embeddings: torch.Tensor,
                    logit_scale: float | torch.Tensor, novel: torch.Tensor,
                    batch_size: int = 4096) -> dict[str, float | int | None]:
    """Top-1 accuracy (percent) of classifying the labelled regions (label >= 0) among the (C, D)
    ``class_embeddings``, over all of them and split by ``novel`` (C,) bool; counts included;
    an empty group's accuracy is None."""
    keep = regions.labels >= 0
    labels = regions.labels[keep]
    embeddings = regions.embeddings[keep]
    predicted = torch.cat([region_logits(chunk, class_embeddings, logit_scale).argmax(dim=1)
                           for chunk in embeddings.split(batch_size)]) \
        if len(embeddings) else labels
    correct = predicted == labels
    is_novel = novel[labels] if len(labels) else labels.bool()
    result: dict[str, float | int | None] = {}
    for group, members in (("all", torch.ones_like(correct)), ("base", ~is_novel),
                           ("novel", is_novel)):
        count = int(members.sum())
        result[group] = round(100.0 * float(correct[members].float().mean()), 2) if count else None
        result[f"{group}_boxes"] = count
    return result


@dataclass
class PromptTrainingOptions:
    """``max_iter`` steps of AdamW (``base_lr``, ``weight_decay``) with a cosine schedule, each
    on ``batch_size`` regions drawn uniformly (seeded by ``(seed, step)``); a checkpoint every
    ``checkpoint_period`` steps."""

    max_iter: int = 1000
    batch_size: int = 256
    base_lr: float = 2e-3
    weight_decay: float = 0.0
    checkpoint_period: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_iter < 1 or self.batch_size < 1 or self.checkpoint_period < 1:
            raise ValueError("max_iter, batch_size and checkpoint_period must be at least 1")
        if not self.base_lr > 0 or self.weight_decay < 0:
            raise ValueError(f"base_lr must be positive and weight_decay non-negative, got "
                             f"{self.base_lr} and {self.weight_decay}")


class PromptTrainer:
    """Trains ``prompts`` (and a background embedding) on ``regions`` of the classes ``names``
    (module doc). ``state()`` / ``load_state()`` make it resumable: the step, the parameters,
    the optimizer; batch ``i`` depends only on ``(seed, i)``, so a resumed run ends where an
    uninterrupted one does."""

    def __init__(self, prompts: RegionPrompts, names: Sequence[str], regions: RegionSet,
                 options: PromptTrainingOptions, logit_scale: float) -> None:
        if not len(regions.labels):
            raise ValueError("no training regions: the training set has no base boxes")
        if int(regions.labels.max()) >= len(names):
            raise ValueError(f"region labels reach {int(regions.labels.max())} but there are "
                             f"{len(names)} class names")
        device = prompts.context_before.device
        self.prompts, self.names, self.options = prompts, list(names), options
        self.tokens = prompts.tokens(self.names)  # the same names at every step
        self.regions = RegionSet(regions.embeddings.to(device), regions.labels.to(device))
        self.logit_scale = logit_scale
        # the background class joins the softmax only when there are background regions
        self.with_background = bool((regions.labels < 0).any())
        dim = regions.embeddings.shape[1]
        generator = torch.Generator().manual_seed(options.seed)
        self.background = torch.nn.Parameter(
            (torch.randn(dim, generator=generator) * 0.02).to(device))
        self.optimizer = torch.optim.AdamW([prompts.context_before, prompts.context_after,
                                            self.background], lr=options.base_lr,
                                           weight_decay=options.weight_decay)
        self.schedule = CosineParamScheduler(1.0, 0.0)
        self.step = 0

    def loss(self, step: int) -> torch.Tensor:
        """The cross-entropy of step ``step``'s batch (base classes + background)."""
        rng = np.random.default_rng([self.options.seed, step])
        pick = torch.from_numpy(rng.integers(0, len(self.regions.labels), self.options.batch_size)
                                ).to(self.regions.labels.device)
        regions = self.regions.embeddings[pick]
        labels = self.regions.labels[pick].clone()
        labels[labels < 0] = len(self.names)
        classes = self.prompts(self.names, self.tokens)
        if self.with_background:
            classes = torch.cat([classes, self.background[None]])
        return F.cross_entropy(region_logits(regions, classes, self.logit_scale), labels)

    def train(self, on_checkpoint: Callable[[PromptTrainer], None] | None = None) -> list[float]:
        """Run from ``self.step`` to ``max_iter``; returns the losses of this call's steps."""
        losses = []
        options = self.options
        bar = tqdm(range(self.step, options.max_iter), initial=self.step, total=options.max_iter,
                   desc="prompts", unit="it", dynamic_ncols=True)
        for step in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = options.base_lr * self.schedule(step / options.max_iter)
            loss = self.loss(step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the prompt loss became {loss.item()} at step {step}; "
                                         "lower PROMPT_LEARNING.BASE_LR")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
            self.step = step + 1
            if on_checkpoint is not None and (self.step % options.checkpoint_period == 0
                                              or self.step == options.max_iter):
                on_checkpoint(self)
        return losses

    def state(self) -> dict:
        return {"step": self.step, "prompts": self.prompts.to_file_dict(),
                "background": self.background.detach().clone(),
                "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        loaded = RegionPrompts.from_file_dict(state["prompts"], self.prompts.clip, "checkpoint")
        with torch.no_grad():
            self.prompts.context_before.copy_(loaded.context_before)
            self.prompts.context_after.copy_(loaded.context_after)
            self.background.copy_(state["background"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


def clip_logit_scale(clip: CLIPBundle) -> float:
    """CLIP's temperature, exp'ed (about 100 for trained CLIPs): the detector's too."""
    return math.exp(float(clip.model.logit_scale))
