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
* Unlabelled objects (novel-aware fine-tuning): a box-labelled target may carry caption pseudo
  boxes of objects no human labelled (``"pseudo_boxes"`` (M, 4), ``"pseudo_classes"``,
  ``"pseudo_scores"``; :mod:`ovdet.data.unlabelled`). A proposal is *over* one when its best match
  among the human and pseudo boxes is a pseudo box at IoU >= ``unlabelled_iou``
  (:func:`ovdet.modeling.unlabelled.unlabelled_matches`). ``unlabelled`` says what the heads make
  of them: ``"background"`` (default, PB-OVD's fine-tuning) nothing: proposals are matched to the
  human boxes alone; ``"ignore"``: a would-be background proposal over a pseudo box is neither
  sampled as foreground nor as background; the heads' losses never see it, but up to
  ``batch_size_per_image`` of them join the results with label C and weight 0, for criteria (they
  pass through the box head either way);
  ``"soft"``: the pseudo boxes join the human boxes as truth (and as proposals), a proposal
  matched to one is a positive of its class whose classification and box losses are weighted by
  ``soft_weight x pseudo_score`` (in [0, 1]; a human box's weight is 1; ``soft_box_regression``
  False: no box loss), and it gets no mask loss. Criteria (e.g. the contrastive ones) see soft
  positives as positives; the ``"weights"`` are theirs to read. With
  weights, ``loss_cls`` is the weighted sum of the regions' losses over the number of regions of
  weight > 0, and ``loss_box_reg`` the weighted sum over positives over that same number (with
  every weight 1, the formulas above). The training results carry each region's ``"weights"``
  (R,) and ``"unlabelled"`` (R,) bool (over a pseudo box).
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
from ..unlabelled import ROI_MODES, check_mode, unlabelled_matches


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
    embeddings, and no losses. Training results also carry ``"weights"`` and ``"unlabelled"``
    (module doc). Masks of final boxes come from :meth:`predict_masks`.
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
        unlabelled, unlabelled_iou, soft_weight, soft_box_regression: what proposals over
            caption pseudo boxes of unlabelled objects are (module doc): ``"background"``,
            ``"ignore"`` or ``"soft"``.
    """

    @configurable
    def __init__(self, *, in_channels: int, featmap_names: tuple[str, ...], embed_dim: int,
                 hidden_dim: int = 1024, pooler_resolution: int = 7,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                 iou_threshold: float = 0.5, loss_type: str = "softmax",
                 fed_num_classes: int = 50, fed_freq_weight_power: float = 0.5,
                 mask_head: nn.Module | Callable[[], nn.Module] | None = None,
                 mask_pooler_resolution: int = 14,
                 box_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
                 unlabelled: str = "background", unlabelled_iou: float = 0.5,
                 soft_weight: float = 1.0, soft_box_regression: bool = True) -> None:
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
        self.unlabelled = check_mode(unlabelled, ROI_MODES, "MODEL.ROI_HEADS.UNLABELLED")
        self.unlabelled_iou = unlabelled_iou
        if not 0 < soft_weight <= 1:
            raise ValueError(f"MODEL.ROI_HEADS.SOFT_WEIGHT must be in (0, 1] (a pseudo box "
                             f"weighs at most what a human box does, 1), got {soft_weight}")
        self.soft_weight = soft_weight
        self.soft_box_regression = soft_box_regression
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
                "mask_head": mask_head, "mask_pooler_resolution": mask.POOLER_RESOLUTION,
                "unlabelled": heads.UNLABELLED, "unlabelled_iou": heads.UNLABELLED_IOU,
                "soft_weight": heads.SOFT_WEIGHT,
                "soft_box_regression": heads.SOFT_BOX_REGRESSION}

    def _sample(self, proposals: list[torch.Tensor], targets: list[dict], num_classes: int
                ) -> list[dict[str, torch.Tensor]]:
        """Adds ground truth to the proposals, matches and samples them. Returns per image the
        sampled ``"boxes"``, their ``"labels"`` (``num_classes`` = background), regression
        ``"deltas"``, the index of the matched human box (``"matched"``, -1 for background and
        soft positives), the classification loss ``"weights"`` and whether each region is over an
        unlabelled pseudo box (``"unlabelled"``) (module doc). An image-labelled target keeps its
        sampled positives only."""
        samples = []
        for props, target in zip(proposals, targets):
            gt_boxes, gt_classes = target["boxes"], target["classes"]
            pseudo = target.get("pseudo_boxes", gt_boxes[:0])
            weights = torch.ones(len(gt_boxes), device=gt_boxes.device)
            if self.unlabelled == "soft" and len(pseudo):  # pseudo boxes join as weighted truth
                gt_boxes = torch.cat([gt_boxes, pseudo])
                gt_classes = torch.cat([gt_classes, target["pseudo_classes"]])
                weights = torch.cat([weights, self.soft_weight * target["pseudo_scores"]])
            props = torch.cat([props.detach(), gt_boxes])
            if gt_boxes.numel():
                matches = self.matcher(box_iou(gt_boxes, props))
                index = matches.clamp(min=0)
                image_labels = gt_classes[index].clone()
                image_labels[matches < 0] = num_classes
                matched_boxes = gt_boxes[index]
                region_weights = torch.where(matches >= 0, weights[index], 1.0)
            else:
                matches = torch.full((len(props),), -1, dtype=torch.int64, device=props.device)
                image_labels = torch.full((len(props),), num_classes, dtype=torch.int64,
                                          device=props.device)
                matched_boxes = props
                region_weights = torch.ones(len(props), device=props.device)
            over = unlabelled_matches(props, target["boxes"], pseudo, self.unlabelled_iou) >= 0
            kinds = (image_labels < num_classes).long()  # 1 object, 0 background, -1 left out
            if self.unlabelled == "ignore":
                kinds[over & (kinds == 0)] = -1
            positive, negative = self.sampler([kinds])
            keep = positive[0] if is_image_labelled(target) else positive[0] | negative[0]
            keep = torch.where(keep)[0]
            if self.unlabelled == "ignore":  # criteria see them; no loss of the heads does
                ignored = torch.where(kinds < 0)[0]
                ignored = ignored[torch.randperm(len(ignored), device=ignored.device)
                                  [:self.sampler.batch_size_per_image]]
                keep = torch.cat([keep, ignored])
                region_weights[ignored] = 0.0
            human = (matches >= 0) & (matches < len(target["boxes"]))
            over &= ~human  # a positive of a human box is labelled, whatever else it overlaps
            box_weights = region_weights if self.soft_box_regression else torch.where(
                human | (matches < 0), region_weights, 0.0)
            samples.append({
                "boxes": props[keep], "labels": image_labels[keep],
                "deltas": self.box_coder.encode_single(matched_boxes[keep], props[keep]),
                "matched": torch.where(human[keep], matches[keep], -1),
                "weights": region_weights[keep], "box_weights": box_weights[keep],
                "unlabelled": over[keep]})
        return samples

    def federated_weights(self, class_image_counts: torch.Tensor | None) -> torch.Tensor | None:
        """(C,) sampling weights ``counts ** fed_freq_weight_power`` (None: uniform)."""
        if class_image_counts is None:
            return None
        return class_image_counts.float() ** self.fed_freq_weight_power

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                    weights: torch.Tensor | None, class_image_counts: torch.Tensor | None
                    ) -> torch.Tensor:
        """Classification loss of the (R, C + 1) ``logits``: the mean over regions (``weights``
        None: every region weighs 1), or the sum of ``weights`` (R,) x each region's loss over
        the number of regions of weight > 0."""
        num_classes = logits.shape[1] - 1
        if not len(labels):  # only image-labelled images, none with a box left: nothing to learn
            return logits.sum() * 0.0
        if self.loss_type == "softmax":
            if weights is None:
                return F.cross_entropy(logits, labels)
            loss = F.cross_entropy(logits, labels, reduction="none")
        else:  # federated sigmoid: background is "no class is 1"; only the selected columns count
            used = federated_classes(labels, num_classes, self.fed_num_classes,
                                     self.federated_weights(class_image_counts))
            targets = F.one_hot(labels, num_classes + 1)[:, :num_classes].float()
            bias = logits[:, :num_classes] - logits[:, num_classes:]  # relative to background
            loss = F.binary_cross_entropy_with_logits(bias[:, used], targets[:, used],
                                                      reduction="none")  # (R, |used|)
            if weights is None:
                return loss.sum() / len(labels)
            weights = weights[:, None]
        return (weights * loss).sum() / (weights > 0).sum().clamp(min=1)

    def _box_losses(self, logits: torch.Tensor, box_deltas: torch.Tensor,
                    samples: list[dict[str, torch.Tensor]], num_classes: int,
                    class_image_counts: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``loss_cls`` (:meth:`_class_loss`) and ``loss_box_reg``: smooth L1 of the positives'
        deltas, each times its box weight, summed and divided by the same count of regions as
        ``loss_cls`` (all of them when every weight is 1, as before weights existed)."""
        labels = torch.cat([sample["labels"] for sample in samples])
        deltas = torch.cat([sample["deltas"] for sample in samples])
        weights = torch.cat([sample["weights"] for sample in samples])
        box_weights = torch.cat([sample["box_weights"] for sample in samples])
        positive = labels < num_classes
        regression = F.smooth_l1_loss(box_deltas[positive], deltas[positive], beta=1 / 9,
                                      reduction="none")
        if bool((weights == 1).all()):
            class_weights, counted = None, max(1, len(labels))
        else:
            class_weights, counted = weights, (weights > 0).sum().clamp(min=1)
        if not bool((box_weights == 1).all()):
            regression = box_weights[positive, None] * regression
        return {"loss_cls": self._class_loss(logits, labels, class_weights, class_image_counts),
                "loss_box_reg": regression.sum() / counted}

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]], class_embeddings: torch.Tensor,
                targets: list[dict] | None = None, class_image_counts: torch.Tensor | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        num_classes = class_embeddings.shape[0]
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            samples = self._sample(proposals, targets, num_classes)
            boxes = [sample["boxes"] for sample in samples]
        else:
            boxes = proposals
        region = self.box_head(self.box_pooler(features, boxes, image_sizes))
        embeddings = self.classifier.embed(region)
        logits = self.classifier.logits(embeddings, class_embeddings)
        box_deltas = self.box_regressor(region)
        counts = [len(b) for b in boxes]
        if self.training:
            losses = self._box_losses(logits, box_deltas, samples, num_classes,
                                      class_image_counts)
            if self.mask_on:
                losses["loss_mask"] = self._mask_loss(
                    features, boxes, [sample["matched"] for sample in samples], image_sizes,
                    targets)
            results = [{"boxes": b, "labels": sample["labels"], "region_embeddings": e,
                        "logits": g, "weights": sample["weights"],
                        "unlabelled": sample["unlabelled"]}
                       for b, sample, e, g in zip(boxes, samples, embeddings.split(counts),
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

    def _mask_loss(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                   matched: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                   targets: list[dict]) -> torch.Tensor:
        """Mask loss on the positives of human boxes (``matched`` >= 0) of box-labelled images
        (image-labelled ones and pseudo boxes have no mask target)."""
        positive_boxes, positive_matched = [], []
        for image_boxes, image_matched, target in zip(boxes, matched, targets):
            keep = image_matched >= 0
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
