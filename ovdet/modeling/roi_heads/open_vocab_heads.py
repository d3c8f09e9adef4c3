"""Open-vocabulary RoI heads: classes are text embeddings, not weights.

* Box branch: RoI align on the backbone's maps (names from its ``output_shape()``) -> two FC
  layers -> projection into CLIP's joint space (the *region embeddings*, exposed in the results
  for added losses); the class logits are ``exp(logit_scale) * cos(region, [class embeddings;
  background])`` with a learnable temperature and a learned background embedding. Any vocabulary
  works at any time.
* Class-agnostic box regression (one delta per region, torchvision's ``BoxCoder``).
* A class-agnostic mask head from ``ROI_MASK_HEAD_REGISTRY``.
* Loss: softmax cross-entropy over classes + background (default), or sigmoid binary
  cross-entropy over a federated subset of classes (Detic's federated loss, for LVIS-sized
  vocabularies): the classes present in the batch plus classes sampled, without replacement and
  with probability proportional to (training images holding the class) ** ``fed_freq_weight_power``
  (0.5, as Detic), up to ``fed_num_classes``.
* Positive-only losses on image-labelled images (PromptDet's self-training): an image whose target
  carries ``"image_labelled"`` True has pseudo boxes, one per class named by its image-level
  labels (the detector's best proposal for that class), not a complete annotation: any other
  object in it is unlabelled, not background. Of such an image only the sampled proposals matched
  to a pseudo box (the positives; the sampler draws as for any image, its negatives are then
  dropped) enter the losses: classification and box regression as usual, no background sample
  (so no unlabelled object is pushed towards background), and no mask loss (a pseudo box has no
  mask). Box-labelled images (``"image_labelled"`` False or absent) are sampled and trained as
  before. Normalisation is unchanged: ``loss_cls`` averages over the batch's sampled proposals
  (the kept positives of an image-labelled image count, its dropped negatives do not), and
  ``loss_box_reg`` sums over positives and divides by that same number of sampled proposals.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, box_iou, boxes as box_ops

from ...config import CfgNode, ConfigError, configurable
from ..contracts import ShapeSpec
from ..registry import ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY, build_from_registry


class CosineClassifier(nn.Module):
    """(R, in_dim) region features -> (R, C + 1) logits against (C, D) class embeddings; the
    last column is the learned background."""

    def __init__(self, in_dim: int, embed_dim: int, init_temperature: float = 0.05) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, embed_dim)
        self.background = nn.Parameter(torch.randn(embed_dim) / math.sqrt(embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(R, in_dim) -> (R, D) L2-normalised region embeddings."""
        return F.normalize(self.projection(features), dim=-1)

    def logits(self, embeddings: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """(R, D) region embeddings (unit norm) -> (R, C + 1) logits."""
        classes = torch.cat([class_embeddings, self.background[None]], dim=0)
        scale = self.logit_scale.exp().clamp(max=100)
        return scale * embeddings @ F.normalize(classes, dim=-1).T

    def forward(self, features: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(features), class_embeddings)


def federated_classes(gt_classes: torch.Tensor, num_classes: int, num_sampled: int,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the classes a federated loss uses: every class in ``gt_classes`` plus classes
    sampled without replacement (``weights``, default uniform) up to ``num_sampled`` in all."""
    present = torch.unique(gt_classes[gt_classes < num_classes])
    if num_sampled <= len(present) or num_sampled >= num_classes:
        return present if num_sampled <= len(present) else torch.arange(num_classes)
    probabilities = torch.ones(num_classes) if weights is None else weights.float().clone()
    probabilities[present.cpu()] = 0
    extra = torch.multinomial(probabilities, num_sampled - len(present), replacement=False)
    return torch.cat([present, extra.to(present.device)])


def is_image_labelled(target: dict[str, torch.Tensor]) -> bool:
    """Whether a target's boxes come from image-level labels (its ``"image_labelled"``, a 0-dim
    bool tensor; absent: False)."""
    return bool(target.get("image_labelled", False))


@ROI_HEADS_REGISTRY.register()
class OpenVocabROIHeads(nn.Module):
    """RoI heads whose classifier is a set of text embeddings (module doc).

    ``forward(features, proposals, image_sizes, class_embeddings, targets=None,
    class_image_counts=None) -> (results, losses)`` as ``ROI_HEADS_REGISTRY`` states: training
    returns the sampled proposals with their labels, region embeddings and logits, and the losses
    ``loss_cls``, ``loss_box_reg`` (and ``loss_mask``); inference returns the decoded
    class-agnostic boxes (P, 4) xyxy, class probabilities (P, C) without background and region
    embeddings, and no losses. Masks of final boxes come from :meth:`predict_masks`.
    ``class_image_counts``: (C,) training images per class, the base of the federated sampling
    weights (uniform when None). ``targets``: per image ``{"boxes": (N, 4) xyxy, "classes": (N,)
    int64, "masks": (N, H, W) bool (with a mask head), "image_labelled": () bool (optional, False
    when absent: True trains the image's boxes as positives only, module doc)}``.

    Args:
        in_channels: channels of every feature map.
        featmap_names: the maps RoI align reads (the backbone's ``output_shape()`` keys).
        embed_dim: D, CLIP's joint-space width.
        mask_head: a ``ROI_MASK_HEAD_REGISTRY`` module, a function of no arguments that builds
            one (called after the box branch is made, so that a seeded initialisation draws in
            module order, as in detectors trained before the mask head was a registry), or None
            for boxes only.
        fed_num_classes, fed_freq_weight_power: the federated loss (module doc).
    """

    @configurable
    def __init__(self, *, in_channels: int, featmap_names: tuple[str, ...], embed_dim: int,
                 hidden_dim: int = 1024, pooler_resolution: int = 7,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                 iou_threshold: float = 0.5, loss_type: str = "softmax",
                 fed_num_classes: int = 50, fed_freq_weight_power: float = 0.5,
                 mask_head: nn.Module | Callable[[], nn.Module] | None = None,
                 mask_pooler_resolution: int = 14,
                 box_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)) -> None:
        super().__init__()
        if loss_type not in ("softmax", "federated_sigmoid"):
            raise ValueError(f"loss_type must be 'softmax' or 'federated_sigmoid', got {loss_type!r}")
        self.box_pooler = MultiScaleRoIAlign(list(featmap_names), pooler_resolution, sampling_ratio=2)
        self.box_head = TwoMLPHead(in_channels * pooler_resolution**2, hidden_dim)
        self.classifier = CosineClassifier(hidden_dim, embed_dim)
        self.box_regressor = nn.Linear(hidden_dim, 4)
        nn.init.normal_(self.box_regressor.weight, std=0.001)
        nn.init.zeros_(self.box_regressor.bias)
        self.box_coder = det_utils.BoxCoder(box_reg_weights)
        self.matcher = det_utils.Matcher(iou_threshold, iou_threshold, allow_low_quality_matches=False)
        self.sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.loss_type = loss_type
        self.fed_num_classes = fed_num_classes
        self.fed_freq_weight_power = fed_freq_weight_power
        self.mask_on = mask_head is not None
        if mask_head is not None:
            self.mask_pooler = MultiScaleRoIAlign(list(featmap_names), mask_pooler_resolution,
                                                  sampling_ratio=2)
            self.mask_head = mask_head if isinstance(mask_head, nn.Module) else mask_head()
        self._register_load_state_dict_pre_hook(_rename_legacy_mask_keys)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec], embed_dim: int) -> dict:
        heads, mask = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_MASK_HEAD
        channels = {shape.channels for shape in input_shape.values()}
        if len(channels) != 1:
            raise ConfigError(f"{cls.__name__} needs feature maps of equal channels, got "
                              f"{ {name: s.channels for name, s in input_shape.items()} }")
        in_channels = channels.pop()
        mask_head = (functools.partial(build_from_registry, ROI_MASK_HEAD_REGISTRY, mask.NAME, cfg,
                                       in_channels) if cfg.MODEL.MASK_ON else None)
        return {"in_channels": in_channels, "featmap_names": tuple(input_shape),
                "embed_dim": embed_dim, "hidden_dim": heads.HIDDEN_DIM,
                "pooler_resolution": heads.POOLER_RESOLUTION,
                "batch_size_per_image": heads.BATCH_SIZE_PER_IMAGE,
                "positive_fraction": heads.POSITIVE_FRACTION, "iou_threshold": heads.IOU_THRESHOLD,
                "loss_type": heads.LOSS, "fed_num_classes": heads.FED_NUM_CLASSES,
                "fed_freq_weight_power": heads.FED_FREQ_WEIGHT_POWER,
                "mask_head": mask_head, "mask_pooler_resolution": mask.POOLER_RESOLUTION}

    def _sample(self, proposals: list[torch.Tensor], targets: list[dict], num_classes: int):
        """Adds ground truth to the proposals, matches and samples them. Returns per image the
        sampled boxes, their labels (``num_classes`` = background), regression targets and the
        index of the matched ground truth (-1 for background). An image-labelled target keeps its
        sampled positives only (module doc)."""
        boxes, labels, deltas, matched = [], [], [], []
        for props, target in zip(proposals, targets):
            positive_only = is_image_labelled(target)
            gt_boxes, gt_classes = target["boxes"], target["classes"]
            props = torch.cat([props.detach(), gt_boxes])
            if gt_boxes.numel():
                matches = self.matcher(box_iou(gt_boxes, props))
                index = matches.clamp(min=0)
                image_labels = gt_classes[index].clone()
                image_labels[matches < 0] = num_classes
                matched_boxes = gt_boxes[index]
            else:
                matches = torch.full((len(props),), -1, dtype=torch.int64, device=props.device)
                image_labels = torch.full((len(props),), num_classes, dtype=torch.int64,
                                          device=props.device)
                matched_boxes = props
            positive, negative = self.sampler([(image_labels < num_classes).long()])
            keep = torch.where(positive[0] if positive_only else positive[0] | negative[0])[0]
            boxes.append(props[keep])
            labels.append(image_labels[keep])
            deltas.append(self.box_coder.encode_single(matched_boxes[keep], props[keep]))
            matched.append(torch.where(image_labels[keep] < num_classes, matches[keep], -1))
        return boxes, labels, deltas, matched

    def federated_weights(self, class_image_counts: torch.Tensor | None) -> torch.Tensor | None:
        """(C,) sampling weights ``counts ** fed_freq_weight_power`` (None: uniform)."""
        if class_image_counts is None:
            return None
        return class_image_counts.float() ** self.fed_freq_weight_power

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                    class_image_counts: torch.Tensor | None) -> torch.Tensor:
        num_classes = logits.shape[1] - 1
        if not len(labels):  # only image-labelled images, none with a box left: nothing to learn
            return logits.sum() * 0.0
        if self.loss_type == "softmax":
            return F.cross_entropy(logits, labels)
        # federated sigmoid: background is "no class is 1"; only the selected columns count
        used = federated_classes(labels, num_classes, self.fed_num_classes,
                                 self.federated_weights(class_image_counts))
        targets = F.one_hot(labels, num_classes + 1)[:, :num_classes].float()
        bias = logits[:, :num_classes] - logits[:, num_classes:]  # relative to background
        loss = F.binary_cross_entropy_with_logits(bias[:, used], targets[:, used], reduction="sum")
        return loss / max(1, logits.shape[0])

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]], class_embeddings: torch.Tensor,
                targets: list[dict] | None = None, class_image_counts: torch.Tensor | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        num_classes = class_embeddings.shape[0]
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            boxes, labels, deltas, matched = self._sample(proposals, targets, num_classes)
        else:
            boxes = proposals
        region = self.box_head(self.box_pooler(features, boxes, image_sizes))
        embeddings = self.classifier.embed(region)
        logits = self.classifier.logits(embeddings, class_embeddings)
        box_deltas = self.box_regressor(region)
        counts = [len(b) for b in boxes]
        if self.training:
            labels_all, deltas_all = torch.cat(labels), torch.cat(deltas)
            positive = labels_all < num_classes
            losses = {"loss_cls": self._class_loss(logits, labels_all, class_image_counts),
                      "loss_box_reg": F.smooth_l1_loss(box_deltas[positive], deltas_all[positive],
                                                       beta=1 / 9, reduction="sum")
                      / max(1, labels_all.numel())}
            if self.mask_on:
                losses["loss_mask"] = self._mask_loss(features, boxes, labels, matched,
                                                      image_sizes, targets, num_classes)
            results = [{"boxes": b, "labels": lab, "region_embeddings": e, "logits": g}
                       for b, lab, e, g in zip(boxes, labels, embeddings.split(counts),
                                               logits.split(counts))]
            return results, losses
        decoded = self.box_coder.decode(box_deltas, boxes).reshape(-1, 4)
        results = [{"boxes": box_ops.clip_boxes_to_image(image_boxes, size),
                    "probabilities": image_probs, "region_embeddings": image_embeddings}
                   for image_boxes, image_probs, image_embeddings, size in zip(
                       decoded.split(counts), self.probabilities(logits).split(counts),
                       embeddings.split(counts), image_sizes)]
        return results, {}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, C + 1) logits -> (R, C) class probabilities (background dropped)."""
        if self.loss_type == "softmax":
            return logits.softmax(dim=-1)[:, :-1]
        return torch.sigmoid(logits[:, :-1] - logits[:, -1:])

    def _mask_loss(self, features, boxes, labels, matched, image_sizes, targets, num_classes):
        """Mask loss on the positives of box-labelled images (image-labelled ones have no mask
        target)."""
        positive_boxes, positive_matched = [], []
        for image_boxes, image_labels, image_matched, target in zip(boxes, labels, matched,
                                                                    targets):
            keep = image_labels < num_classes
            if is_image_labelled(target):
                keep = torch.zeros_like(keep)
            positive_boxes.append(image_boxes[keep])
            positive_matched.append(image_matched[keep])
        if sum(len(b) for b in positive_boxes) == 0:
            return sum(p.sum() for p in self.mask_head.parameters()) * 0.0
        logits = self.mask_head(self.mask_pooler(features, positive_boxes, image_sizes))
        gt_masks = [t["masks"] for t in targets]
        zeros = [torch.zeros(len(t["boxes"]), dtype=torch.int64, device=logits.device) for t in targets]
        return maskrcnn_loss(logits, positive_boxes, gt_masks, zeros, positive_matched)

    def predict_masks(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                      image_sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Per image (N, 4) final boxes -> (N, M, M) mask probabilities inside each box."""
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            return [features[next(iter(features))].new_zeros(0, 1, 1) for _ in boxes]
        logits = self.mask_head(self.mask_pooler(features, boxes, image_sizes))
        return list(logits.sigmoid()[:, 0].split(counts))


def _rename_legacy_mask_keys(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the mask head came from ``ROI_MASK_HEAD_REGISTRY`` held
    ``mask_head.*`` (the convolutions) and ``mask_predictor.*``; they load as ``mask_head.convs.*``
    and ``mask_head.predictor.*``."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest.startswith("mask_predictor."):
            state_dict[f"{prefix}mask_head.predictor.{rest[len('mask_predictor.'):]}"] = \
                state_dict.pop(key)
        elif rest.startswith("mask_head.") and rest.split(".")[1].isdigit():
            state_dict[f"{prefix}mask_head.convs.{rest[len('mask_head.'):]}"] = state_dict.pop(key)
