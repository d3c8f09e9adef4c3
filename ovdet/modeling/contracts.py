"""The seams of the detector, as ``typing.Protocol``s (the registries' docstrings say the same).

A new method plugs in as a registered class that keeps one of these contracts, plus config keys;
the meta-architecture's ``forward`` is never edited. ``isinstance(obj, Backbone)`` etc. check
that the methods and attributes exist (``runtime_checkable``), not their signatures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from ..clip.vit import CLIPViTTrunk, TrunkOutput


@dataclass(frozen=True)
class ShapeSpec:
    """One feature map of a backbone: ``channels`` and ``stride`` (input pixels per cell)."""

    channels: int
    stride: int


@runtime_checkable
class MetaArchitecture(Protocol):
    """What training, evaluation, checkpoints and the predictor use of a whole model."""

    vocabulary: nn.Module

    @property
    def base_names(self) -> list[str]: ...

    def set_vocabulary(self, names: list[str], templates: list[str] | None = None,
                       embeddings: torch.Tensor | None = None) -> None: ...

    def set_training_vocabulary(self, names: list[str],
                                image_counts: list[int] | None = None) -> None: ...

    def set_base_names(self, names: list[str]) -> None: ...

    def __call__(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]: ...


@runtime_checkable
class Backbone(Protocol):
    """``(B, 3, H, W)`` normalised images -> ``(TrunkOutput, {name: (B, C, H/s, W/s)})``."""

    trunk: CLIPViTTrunk

    @property
    def size_divisibility(self) -> int: ...

    def output_shape(self) -> dict[str, ShapeSpec]: ...

    def __call__(self, images: torch.Tensor) -> tuple[TrunkOutput, dict[str, torch.Tensor]]: ...


@runtime_checkable
class ProposalGenerator(Protocol):
    """Training: ``(proposals, losses)``; inference: ``propose_with_scores``."""

    def __call__(self, images: ImageList, features: dict[str, torch.Tensor],
                 targets: list[dict] | None = None
                 ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]: ...

    def propose_with_scores(self, images: ImageList, features: dict[str, torch.Tensor]
                            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]: ...


@runtime_checkable
class ROIHeads(Protocol):
    """``(results, losses)`` in both modes; results carry ``region_embeddings``."""

    mask_on: bool

    def __call__(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                 image_sizes: list[tuple[int, int]], class_embeddings: torch.Tensor,
                 targets: list[dict] | None = None,
                 class_image_counts: torch.Tensor | None = None
                 ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]: ...

    def predict_masks(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                      image_sizes: list[tuple[int, int]]) -> list[torch.Tensor]: ...


@runtime_checkable
class MaskHead(Protocol):
    """``(R, C, M, M)`` RoI features -> ``(R, 1, 2M, 2M)`` class-agnostic mask logits."""

    def __call__(self, features: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class PanopticHead(Protocol):
    """Query mask proposals on the pyramid, classified with CLIP: ``(results, losses)``; inference
    results per image ``{"scores": (Q, C), "mask_logits": (Q, h, w)}`` (registry doc), which
    ``segment`` turns into ``"panoptic_seg"`` at the original size."""

    def segment(self, result: dict, input_size: tuple[int, int], original_size: tuple[int, int],
                is_thing: torch.Tensor) -> tuple[torch.Tensor, list[dict]]: ...

    def __call__(self, features: dict[str, torch.Tensor], trunk: CLIPViTTrunk,
                 trunk_output: TrunkOutput, images: torch.Tensor, class_embeddings: torch.Tensor,
                 seen: torch.Tensor, logit_scale: torch.Tensor, targets: list[dict] | None = None
                 ) -> tuple[list[dict], dict[str, torch.Tensor]]: ...


@runtime_checkable
class EmbeddingSource(Protocol):
    """Class names -> ``(C, D)`` unit-norm embeddings; ``cacheable`` when they never change."""

    cacheable: bool

    def __call__(self, names: list[str]) -> torch.Tensor: ...


@dataclass
class ScoringInputs:
    """What a scorer may read, per image b (lists of length B).

    ``trunk`` and ``trunk_output``: the CLIP trunk and its kept states (for RMA region scores);
    ``proposals[b]`` (P, 4) xyxy in input pixels and ``objectness[b]`` (P,); ``boxes[b]`` (P, 4)
    the head's regressed boxes and ``probabilities[b]`` (P, C) its class probabilities;
    ``class_embeddings`` (C, D) unit norm; ``novel_mask`` (C,) bool (True: not trained on);
    ``logit_scale``: CLIP's temperature, exp'ed.
    """

    trunk: CLIPViTTrunk
    trunk_output: TrunkOutput
    proposals: list[torch.Tensor]
    objectness: list[torch.Tensor]
    boxes: list[torch.Tensor]
    probabilities: list[torch.Tensor]
    class_embeddings: torch.Tensor
    novel_mask: torch.Tensor
    logit_scale: torch.Tensor


@runtime_checkable
class Scorer(Protocol):
    """``ScoringInputs -> (boxes per image (N, 4), scores per image (N, C))``."""

    def __call__(self, inputs: ScoringInputs
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]: ...


@runtime_checkable
class Criterion(Protocol):
    """RoI training results -> named scalar losses (an ``nn.Module``). A criterion with a
    non-empty ``extra_names`` attribute is also given ``extra_embeddings`` (U, D): the embeddings
    of those of its names that are not in the training vocabulary; one whose ``wants_images`` is
    True is also given ``images``, the batch's ``ImageList`` as the backbone saw it."""

    def __call__(self, roi_results: list[dict[str, torch.Tensor]], class_embeddings: torch.Tensor,
                 targets: list[dict]) -> dict[str, torch.Tensor]: ...
