"""Distillation toward a frozen detector: keep what pseudo-box pretraining taught (ViLD-style).

Fine-tuning a pseudo-box-pretrained detector on human base boxes teaches the unlabelled novel
objects of its images as background. :class:`TeacherDistillation` (``CRITERION_REGISTRY``,
``loss_distill``, switched on by naming it in ``MODEL.CRITERIA``) keeps the pretrained detector's
class distribution on those regions: for each selected sampled proposal ``i``, with the frozen
teacher's class probabilities ``t_i`` (C + 1, background last) on the same box of the same
(augmented) image and the student's ``s_i = softmax(logits_i)``::

    L_distill = 1/N sum_i KL(t_i || s_i) = 1/N sum_i sum_j t_i(j) (log t_i(j) - log s_i(j))

The selected proposals (``MODEL.DISTILLATION.REGIONS``): ``"unlabelled"`` (default) those over
an unlabelled caption pseudo box (the RoI results' ``"unlabelled"``; see
``MODEL.ROI_HEADS.UNLABELLED``, whose ``"ignore"`` keeps such proposals in the results without a
loss of the heads), or ``"all"`` sampled proposals. ``N`` is their number; 0 (with a gradient
path) when there are none.

The teacher is built from the run's own config (no criteria, no masks, no panoptic branch) and
loaded from ``MODEL.DISTILLATION.WEIGHTS`` (default: ``MODEL.WEIGHTS``, the checkpoint the
fine-tuning starts from; it must have the student's architecture) when first needed, with the
random state put back, so that a resumed run draws as an uninterrupted one. It is frozen, in eval
mode, and not a submodule: it is neither trained nor saved with the detector. It scores the boxes
against the student's class embeddings (detached), so both distributions are over the same
classes. The softmax loss only (``MODEL.ROI_HEADS.LOSS softmax``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList

from ...config import CfgNode, ConfigError, configurable
from ..registry import CRITERION_REGISTRY

REGIONS = ("unlabelled", "all")


def teacher_weights(cfg: CfgNode) -> str:
    """The distillation teacher's checkpoint: ``MODEL.DISTILLATION.WEIGHTS``, else
    ``MODEL.WEIGHTS`` ("" when neither is set)."""
    return cfg.MODEL.DISTILLATION.WEIGHTS or cfg.MODEL.WEIGHTS


def check_teacher_weights(path: str) -> None:
    """A :class:`ConfigError` when no teacher checkpoint is named, a ``FileNotFoundError`` when
    ``path`` is not a file."""
    if not path:
        raise ConfigError("TeacherDistillation needs a teacher: MODEL.DISTILLATION.WEIGHTS or "
                          "MODEL.WEIGHTS must name the checkpoint to distil from (the pseudo-box "
                          "pretrained detector)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the distillation teacher's checkpoint (MODEL.DISTILLATION."
                                f"WEIGHTS, else MODEL.WEIGHTS) is not a file: {path}")


@dataclass
class _Frozen:
    """Holds the teacher outside the module tree (not a parameter, buffer or submodule)."""

    model: nn.Module | None = None


def teacher_distribution(teacher: nn.Module, images: ImageList, boxes: list[torch.Tensor],
                         class_embeddings: torch.Tensor) -> torch.Tensor:
    """The frozen ``teacher``'s (R, C + 1) class probabilities, background last, of ``boxes``
    (per image (R_b, 4) xyxy in the padded input's pixels) on ``images``, through its backbone and
    RoI heads in inference mode (``ROI_HEADS_REGISTRY``'s ``"probabilities"``)."""
    with torch.no_grad():
        _, features = teacher.backbone(images.tensors)
        results, _ = teacher.roi_heads(features, boxes, images.image_sizes,
                                       class_embeddings.detach())
        probabilities = torch.cat([r["probabilities"] for r in results])
    background = (1 - probabilities.sum(dim=1, keepdim=True)).clamp(min=0)
    return torch.cat([probabilities, background], dim=1)


def kl_divergence(teacher: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(teacher || softmax(student_logits)), (R, K) each; 0 for R = 0."""
    if not len(teacher):
        return student_logits.sum() * 0.0
    log_student = F.log_softmax(student_logits, dim=1)
    return F.kl_div(log_student, teacher, reduction="sum") / len(teacher)


@CRITERION_REGISTRY.register()
class TeacherDistillation(nn.Module):
    """``loss_distill``: KL toward a frozen teacher's class distribution (module doc).

    Called as ``criterion(roi_results, class_embeddings (C, D), targets, images=ImageList)``
    (``wants_images``: the meta-architecture passes the normalised, padded batch).

    Args:
        teacher: the frozen detector, or None to build it from ``config`` and ``weights`` when
            first needed.
        config: the run's config (for the teacher; with ``teacher`` None).
        weights: the teacher's checkpoint (with ``teacher`` None).
        regions: ``"unlabelled"`` or ``"all"`` (module doc).
    """

    wants_images = True

    @configurable
    def __init__(self, *, teacher: nn.Module | None = None, config: CfgNode | None = None,
                 weights: str = "", regions: str = "unlabelled") -> None:
        super().__init__()
        if regions not in REGIONS:
            raise ValueError(f"MODEL.DISTILLATION.REGIONS must be one of {REGIONS}, got "
                             f"{regions!r}")
        if teacher is None and config is None:
            raise ValueError("needs a teacher, or the config to build it from")
        self.regions = regions
        self.config, self.weights = config, weights
        self._teacher = _Frozen(None if teacher is None else _frozen(teacher))

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        if cfg.MODEL.ROI_HEADS.LOSS != "softmax":
            raise ConfigError("TeacherDistillation distils softmax class distributions; "
                              f"MODEL.ROI_HEADS.LOSS is {cfg.MODEL.ROI_HEADS.LOSS!r}")
        return {"config": cfg, "weights": teacher_weights(cfg),
                "regions": cfg.MODEL.DISTILLATION.REGIONS}

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (built and loaded on first use)."""
        if self._teacher.model is None:
            self._teacher.model = _frozen(self._build_teacher())
        return self._teacher.model

    def _build_teacher(self) -> nn.Module:
        from ...engine.checkpoint import DetectorCheckpointer
        from ..registry import build_model

        check_teacher_weights(self.weights)
        cfg = self.config.clone()
        cfg.defrost()
        cfg.MODEL.CRITERIA = ()
        cfg.MODEL.MASK_ON = False
        cfg.MODEL.PANOPTIC_ON = False
        with torch.random.fork_rng(devices=[]):  # the run's random draws stay as they were
            teacher = build_model(cfg)
        DetectorCheckpointer(teacher, complete=True).load(self.weights)
        return teacher

    def forward(self, roi_results: list[dict[str, torch.Tensor]], class_embeddings: torch.Tensor,
                targets: list[dict], images: ImageList) -> dict[str, torch.Tensor]:
        if self.regions == "unlabelled" and any("unlabelled" not in r for r in roi_results):
            raise ValueError("MODEL.DISTILLATION.REGIONS unlabelled needs RoI heads whose "
                             "training results mark the regions over unlabelled pseudo boxes "
                             "(\"unlabelled\", as OpenVocabROIHeads does); use REGIONS all")
        selected = [torch.ones(len(r["boxes"]), dtype=torch.bool, device=r["boxes"].device)
                    if self.regions == "all" else r["unlabelled"] for r in roi_results]
        logits = torch.cat([r["logits"][keep] for r, keep in zip(roi_results, selected)])
        if not len(logits):
            return {"loss_distill": torch.cat([r["logits"] for r in roi_results]).sum() * 0.0}
        teacher = self.teacher.to(logits.device)
        boxes = [r["boxes"][keep].detach() for r, keep in zip(roi_results, selected)]
        target = teacher_distribution(teacher, images, boxes, class_embeddings)
        return {"loss_distill": kl_divergence(target.to(logits.dtype), logits)}


def _frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter frozen."""
    model.eval()
    model.requires_grad_(False)
    return model
