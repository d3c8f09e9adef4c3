"""OpenVocabRCNN: a two-stage detector whose classes are CLIP text embeddings.

One CLIP trunk pass per image feeds the pyramid (RPN, RoI heads) and keeps the states that RMA
region tokens re-enter. At inference the head's class probabilities ``p`` are combined with CLIP's
RMA region probabilities ``q`` by a geometric mean, ``p^(1-w) q^w``, with ``w = alpha`` for base
classes (those the detector was trained on) and ``w = beta`` for novel ones (ViLD / F-VLM).

``novel_prior`` chooses ``p`` for novel classes. ``"head"`` is the head's own probability (F-VLM).
``"objectness"`` replaces it by a class-agnostic localisation prior, the geometric mean of the
RPN objectness of the box's proposal and the box's fit to the class's dense CLIP activation map
(:mod:`ovdet.clip.box_fit`): a head trained on base boxes has learnt to call unlabelled novel
objects background (its foreground probability on them is near 0), while RMA alone ranks boxes
inside an object as high as boxes around it.

Inputs: a list of mapper outputs (``ovdet.data.mapper``). Training returns a dict of scalar
losses; inference returns per image ``{"instances": {"boxes": (N, 4) xyxy in original pixels,
"scores": (N,), "classes": (N,) int64 indices into the vocabulary, "masks": (N, H0, W0) bool}}``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import boxes as box_ops

from ...clip import CLIPBundle, CLIPViTTrunk, class_embeddings, load_clip
from ...clip.box_fit import box_fits
from ...clip.rma import box_probabilities
from ...clip.text import DEFAULT_TEMPLATES
from ...config import CfgNode, configurable
from ..registry import (META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY,
                        build_backbone, build_from_registry)


@META_ARCH_REGISTRY.register()
class OpenVocabRCNN(nn.Module):
    """Backbone (CLIP trunk + pyramid), RPN and open-vocabulary RoI heads (module doc).

    Args:
        backbone: a :class:`~ovdet.modeling.backbone.CLIPViTSimpleFPN`.
        proposal_generator: class-agnostic RPN.
        roi_heads: :class:`~ovdet.modeling.roi_heads.OpenVocabROIHeads`.
        clip: the CLIP whose text tower embeds vocabularies (its visual tower is the trunk's).
        templates: prompt templates for class embeddings.
        use_clip_ensemble: combine head and RMA region scores at inference.
        ensemble_weights: (alpha for base classes, beta for novel classes).
        novel_prior: "head" or "objectness" (module doc).
        novel_boxes: "regressed" (the head's class-agnostic regression, for every class) or
            "proposals": novel classes are scored on the RPN proposals themselves, because a box
            regressor trained on base shapes moves novel boxes away from their objects.
        box_fit_exponent: exponent of the box size in the dense box fit (PB-OVD: 0.5).
        score_thresh, nms_thresh, detections_per_image: inference post-processing.
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, proposal_generator: nn.Module, roi_heads: nn.Module,
                 clip: CLIPBundle, templates: Sequence[str] = DEFAULT_TEMPLATES,
                 use_clip_ensemble: bool = True, ensemble_weights: tuple[float, float] = (0.35, 0.65),
                 novel_prior: str = "head", novel_boxes: str = "regressed",
                 box_fit_exponent: float = 0.5,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_image: int = 100) -> None:
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.clip = clip  # a dataclass, not a module: the text tower is frozen and not saved
        self.templates = tuple(templates)
        self.use_clip_ensemble = use_clip_ensemble
        self.ensemble_weights = tuple(ensemble_weights)
        if novel_prior not in ("head", "objectness"):
            raise ValueError(f"novel_prior must be 'head' or 'objectness', got {novel_prior!r}")
        self.novel_prior = novel_prior
        if novel_boxes not in ("regressed", "proposals"):
            raise ValueError(f"novel_boxes must be 'regressed' or 'proposals', got {novel_boxes!r}")
        self.novel_boxes = novel_boxes
        self.box_fit_exponent = box_fit_exponent
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_image = detections_per_image
        mean, std = clip.image_normalization()  # the CLIP's own, in 0-255 units
        self.register_buffer("pixel_mean", torch.tensor(mean).view(3, 1, 1) * 255, False)
        self.register_buffer("pixel_std", torch.tensor(std).view(3, 1, 1) * 255, False)
        self.register_buffer("class_embeddings", torch.zeros(0, backbone.trunk.embed_dim), False)
        self.register_buffer("novel_mask", torch.zeros(0, dtype=torch.bool), False)
        self.vocabulary: list[str] = []
        self.base_names: list[str] = []

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        clip = load_clip(cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED or None)
        backbone = build_backbone(cfg, clip)
        embed_dim = backbone.trunk.embed_dim
        ov = cfg.MODEL.OPEN_VOCAB
        return {"backbone": backbone,
                "proposal_generator": build_from_registry(
                    PROPOSAL_GENERATOR_REGISTRY, cfg.MODEL.PROPOSAL_GENERATOR.NAME, cfg),
                "roi_heads": build_from_registry(ROI_HEADS_REGISTRY, cfg.MODEL.ROI_HEADS.NAME, cfg,
                                                 embed_dim),
                "clip": clip, "templates": tuple(ov.TEMPLATES) or DEFAULT_TEMPLATES,
                "use_clip_ensemble": ov.USE_CLIP_ENSEMBLE,
                "ensemble_weights": (ov.ALPHA_BASE, ov.BETA_NOVEL),
                "novel_prior": ov.NOVEL_PRIOR, "novel_boxes": ov.NOVEL_BOXES,
                "box_fit_exponent": ov.BOX_FIT_EXPONENT,
                "score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
                "nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
                "detections_per_image": cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE}

    # ---- vocabulary -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def trunk(self) -> CLIPViTTrunk:
        return self.backbone.trunk

    def set_vocabulary(self, names: Sequence[str], templates: Sequence[str] | None = None,
                       embeddings: torch.Tensor | None = None) -> None:
        """Classify among ``names`` from now on. Embeddings come from the CLIP text encoder with
        ``templates`` (default: the model's), cached on disk, or are given as ``embeddings``
        (C, D), e.g. from learned prompts. Names the detector was trained on count as base."""
        names = list(names)
        if embeddings is None:
            embeddings = class_embeddings(self.clip, names, templates or self.templates)
        expected = self.class_embeddings.shape[1]
        if embeddings.ndim != 2 or embeddings.shape != (len(names), expected):
            raise ValueError(f"class embeddings must be ({len(names)}, {expected}), "
                             f"got {tuple(embeddings.shape)}")
        self.class_embeddings = F.normalize(embeddings.float(), dim=-1).to(self.device)
        base = set(self.base_names)
        self.novel_mask = torch.tensor([n not in base for n in names], dtype=torch.bool,
                                       device=self.device)
        self.vocabulary = names

    def set_training_vocabulary(self, names: Sequence[str]) -> None:
        """The (base) classes the detector is trained on: its vocabulary, remembered as base."""
        self.base_names = list(names)
        self.set_vocabulary(names)

    def set_base_names(self, names: Sequence[str]) -> None:
        """Which names count as base (trained on), e.g. when loading a checkpoint."""
        self.base_names = list(names)
        if self.vocabulary:
            self.novel_mask = torch.tensor([n not in self.base_names for n in self.vocabulary],
                                           dtype=torch.bool, device=self.device)

    # ---- forward ----------------------------------------------------------------------------
    def preprocess(self, batched_inputs: list[dict]) -> ImageList:
        """Normalise and pad to the backbone's size divisibility: (B, 3, H_pad, W_pad)."""
        divisor = self.backbone.size_divisibility
        images = [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        sizes = [tuple(im.shape[-2:]) for im in images]
        height = -(-max(s[0] for s in sizes) // divisor) * divisor
        width = -(-max(s[1] for s in sizes) // divisor) * divisor
        batch = images[0].new_zeros(len(images), 3, height, width)
        for b, image in enumerate(images):
            batch[b, :, :image.shape[1], :image.shape[2]] = image
        return ImageList(batch, sizes)

    def forward(self, batched_inputs: list[dict]):
        if self.class_embeddings.shape[0] == 0:
            raise RuntimeError("no vocabulary: call set_vocabulary(names) (or "
                               "set_training_vocabulary) first")
        images = self.preprocess(batched_inputs)
        trunk_output, features = self.backbone(images.tensors)
        if self.training:
            targets = [{k: v.to(self.device) for k, v in x["instances"].items()} for x in batched_inputs]
            proposals, losses = self.proposal_generator(images, features, targets)
            losses.update(self.roi_heads(features, proposals, images.image_sizes,
                                         self.class_embeddings, targets))
            return losses
        proposals, objectness = self.proposal_generator.propose_with_scores(images, features)
        head_results = self.roi_heads(features, proposals, images.image_sizes, self.class_embeddings)
        boxes = [r["boxes"] for r in head_results]
        probabilities = [r["probabilities"] for r in head_results]
        if self.use_clip_ensemble:
            novel = bool(self.novel_mask.any())
            if novel and self.novel_boxes == "proposals":
                boxes, probabilities, objectness, allowed = self.novel_on_proposals(
                    boxes, probabilities, proposals, objectness)
            if novel and self.novel_prior == "objectness":
                probabilities = self.with_objectness_prior(trunk_output, boxes, probabilities,
                                                           objectness)
            probabilities = self.ensemble(trunk_output, boxes, probabilities)
            if novel and self.novel_boxes == "proposals":
                probabilities = [p * a for p, a in zip(probabilities, allowed)]
        results = [self.select(b, p) for b, p in zip(boxes, probabilities)]
        if self.roi_heads.mask_on:
            masks = self.roi_heads.predict_masks(features, [d["boxes"] for d in results],
                                                 images.image_sizes)
        outputs = []
        for b, (detections, x) in enumerate(zip(results, batched_inputs)):
            height, width = x["height"], x["width"]
            boxes_original = self.to_original(detections["boxes"], images.image_sizes[b], x)
            instances = {"boxes": boxes_original, "scores": detections["scores"],
                         "classes": detections["classes"]}
            if self.roi_heads.mask_on:
                pasted = paste_masks_in_image(masks[b][:, None], boxes_original, (height, width))
                instances["masks"] = pasted[:, 0] >= 0.5
            outputs.append({"instances": instances})
        return outputs

    def to_original(self, boxes: torch.Tensor, input_size: tuple[int, int], x: dict
                    ) -> torch.Tensor:
        """(N, 4) xyxy boxes in input pixels -> original pixels of image ``x``, clipped."""
        height, width = x["height"], x["width"]
        scale = torch.tensor([width / input_size[1], height / input_size[0]] * 2,
                             device=boxes.device)
        return box_ops.clip_boxes_to_image(boxes * scale, (height, width))

    @torch.no_grad()
    def propose(self, batched_inputs: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Class-agnostic RPN proposals (no vocabulary needed): per image ``{"boxes": (P, 4)
        xyxy in original pixels, "objectness": (P,)}``."""
        images = self.preprocess(batched_inputs)
        _, features = self.backbone(images.tensors)
        proposals, objectness = self.proposal_generator.propose_with_scores(images, features)
        return [{"boxes": self.to_original(p, size, x), "objectness": o}
                for p, o, size, x in zip(proposals, objectness, images.image_sizes, batched_inputs)]

    def clip_probabilities(self, trunk_output, boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per image (P, C) softmax over the vocabulary of the RMA region embeddings of ``boxes``."""
        scale = self.clip.model.logit_scale.exp().to(self.device)
        return box_probabilities(self.trunk, trunk_output, boxes, self.class_embeddings, scale)

    def ensemble(self, trunk_output, boxes: list[torch.Tensor], head: list[torch.Tensor]
                 ) -> list[torch.Tensor]:
        """Geometric mean of head and CLIP probabilities, weight per base/novel class."""
        alpha, beta = self.ensemble_weights
        weight = torch.where(self.novel_mask, beta, alpha).to(self.device)
        clip = self.clip_probabilities(trunk_output, boxes)
        return [p.clamp(min=1e-12) ** (1 - weight) * q.clamp(min=1e-12) ** weight
                for p, q in zip(head, clip)]

    def novel_on_proposals(self, boxes: list[torch.Tensor], probabilities: list[torch.Tensor],
                           proposals: list[torch.Tensor], objectness: list[torch.Tensor]):
        """Candidates for base classes on the regressed boxes and for novel classes on the
        proposals themselves: per image (2P, 4) boxes, (2P, C) probabilities, (2P,) objectness
        and a (2P, C) 0/1 mask of the class columns each candidate may carry."""
        base = (~self.novel_mask).float()
        novel = self.novel_mask.float()
        allowed = [torch.cat([base.expand(len(b), -1), novel.expand(len(p), -1)])
                   for b, p in zip(boxes, proposals)]
        return ([torch.cat([b, p]) for b, p in zip(boxes, proposals)],
                [torch.cat([q, q]) for q in probabilities],
                [torch.cat([o, o]) for o in objectness], allowed)

    def with_objectness_prior(self, trunk_output, boxes: list[torch.Tensor],
                              head: list[torch.Tensor], objectness: list[torch.Tensor]
                              ) -> list[torch.Tensor]:
        """Head probabilities with the novel columns replaced by sqrt(objectness * box fit) times
        the head's probability that the box is *not* a base object (the head vetoes novel labels
        on objects it recognises)."""
        scale = self.clip.model.logit_scale.exp().to(self.device)
        fits = box_fits(self.trunk, trunk_output, boxes, self.class_embeddings, scale,
                        self.box_fit_exponent)
        base = ~self.novel_mask
        return [torch.where(self.novel_mask, (o[:, None] * f).clamp(min=0).sqrt()
                            * (1 - p[:, base].sum(dim=1, keepdim=True)).clamp(min=0), p)
                for p, o, f in zip(head, objectness, fits)]

    def select(self, boxes: torch.Tensor, probabilities: torch.Tensor) -> dict[str, torch.Tensor]:
        """(P, 4) class-agnostic boxes and (P, C) scores -> thresholded, per-class NMS, top-k."""
        proposal, classes = torch.nonzero(probabilities > self.score_thresh, as_tuple=True)
        scores = probabilities[proposal, classes]
        candidate_boxes = boxes[proposal]
        keep = box_ops.remove_small_boxes(candidate_boxes, 1e-2)
        keep = keep[box_ops.batched_nms(candidate_boxes[keep], scores[keep], classes[keep],
                                        self.nms_thresh)][: self.detections_per_image]
        return {"boxes": candidate_boxes[keep], "scores": scores[keep], "classes": classes[keep]}


def add_open_vocab_config(cfg: CfgNode) -> None:
    cfg.MODEL.OPEN_VOCAB = CfgNode()
    cfg.MODEL.OPEN_VOCAB.TEMPLATES = ()  # () = ovdet.clip.text.DEFAULT_TEMPLATES
    cfg.MODEL.OPEN_VOCAB.USE_CLIP_ENSEMBLE = True
    cfg.MODEL.OPEN_VOCAB.ALPHA_BASE = 0.35  # CLIP's weight in the geometric mean, base classes
    cfg.MODEL.OPEN_VOCAB.BETA_NOVEL = 0.65  # the same for novel classes
    # the head-side term of novel classes: "head" (F-VLM) or "objectness" (RPN objectness x
    # dense CLIP box fit; see OpenVocabRCNN)
    cfg.MODEL.OPEN_VOCAB.NOVEL_PRIOR = "head"
    cfg.MODEL.OPEN_VOCAB.BOX_FIT_EXPONENT = 0.5
    # boxes of novel classes: "regressed" (the head's) or "proposals" (the RPN's; see OpenVocabRCNN)
    cfg.MODEL.OPEN_VOCAB.NOVEL_BOXES = "regressed"
