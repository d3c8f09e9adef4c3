"""OpenVocabRCNN: a two-stage detector whose classes are CLIP text embeddings, with an optional
panoptic branch on the same trunk pass.

One CLIP trunk pass per image feeds the pyramid (RPN, RoI heads, the panoptic head) and keeps the
states that RMA region and mask tokens re-enter. Every part is a registered component behind a seam
(:mod:`ovdet.modeling.registry`): backbone, proposal generator, RoI heads (and their mask head),
the vocabulary's embedding source, the scorer that combines the head's and CLIP's scores
(:mod:`ovdet.modeling.scoring`), extra loss criteria, and the panoptic head
(``MODEL.PANOPTIC_ON``; :mod:`ovdet.modeling.panoptic`). ``MODEL.DETECTOR_ON False`` leaves out
the RPN and RoI heads (the panoptic branch alone). A new method is a new component and
config keys, never an edit of this file.

Inputs: a list of mapper outputs (``ovdet.data.mapper``): ``{"image": (3, H, W) uint8, "height",
"width"[, "instances": {"boxes": (N, 4) xyxy, "classes": (N,), "masks": (N, H, W)}][,
"panoptic": {"masks": (S, H, W), "classes": (S,), "void": (H, W)}]}``.
``forward`` in training returns a dict of scalar losses, weighted by ``MODEL.LOSS_WEIGHTS``; in
eval mode it is :meth:`OpenVocabRCNN.inference`, which returns per image ``{"instances":
{"boxes": (N, 4) xyxy in original pixels, "scores": (N,), "classes": (N,) int64 indices into the
vocabulary, "masks": (N, H0, W0) bool}}`` and, with the panoptic branch, ``"panoptic_seg":
(segment ids (H0, W0) int32, [{"id", "category_id", "isthing", "score"}])`` as detectron2 returns
it, ``category_id`` indexing the things then the stuff of the vocabulary.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import boxes as box_ops

from ...clip import CLIPBundle, CLIPViTTrunk, TrunkOutput, class_embeddings, load_clip
from ...config import CfgNode, configurable
from ..contracts import ScoringInputs
from ..panoptic.branch import panoptic_targets
from ..losses import check_loss_weight_names, check_loss_weight_values, weighted_losses
from ..registry import (CRITERION_REGISTRY, EMBEDDING_SOURCE_REGISTRY, META_ARCH_REGISTRY,
                        PANOPTIC_HEAD_REGISTRY, PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY,
                        SCORER_REGISTRY, build_backbone, build_from_registry)
from ..scoring import CLIPEnsembleScorer
from ..vocabulary import (TemplateEmbeddings, Vocabulary, check_class_names,
                          normalize_class_name, prompt_name)
from .config import BUILTIN_LOSSES


@META_ARCH_REGISTRY.register()
class OpenVocabRCNN(nn.Module):
    """Backbone (CLIP trunk + pyramid), proposals, open-vocabulary RoI heads (module doc).

    Args:
        backbone: a ``BACKBONE_REGISTRY`` module on the CLIP trunk.
        proposal_generator: a class-agnostic ``PROPOSAL_GENERATOR_REGISTRY`` module (None: no
            detector; then ``roi_heads`` is None too).
        roi_heads: a ``ROI_HEADS_REGISTRY`` module.
        panoptic_head: a ``PANOPTIC_HEAD_REGISTRY`` module, or None.
        clip: the CLIP whose visual tower is the trunk's (its text tower embeds vocabularies).
        vocabulary: names, base/novel status and embeddings (default: template embeddings).
            The stuff names of panoptic segmentation are a second vocabulary on the same
            embedding source (``stuff_vocabulary``).
        scorer: a ``SCORER_REGISTRY`` policy (default: :class:`CLIPEnsembleScorer`).
        criteria: extra losses on the RoI heads' training results, by name.
        loss_weights: {loss name: weight} (missing: 1; 0 drops the loss).
        score_thresh, nms_thresh, detections_per_image: inference post-processing.
        topk_candidates: at most this many (box, class) candidates, the highest scoring, enter
            the per-class NMS of an image (a 1,203-name vocabulary has over a million).
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, proposal_generator: nn.Module | None,
                 roi_heads: nn.Module | None, clip: CLIPBundle,
                 panoptic_head: nn.Module | None = None, vocabulary: Vocabulary | None = None,
                 scorer=None,
                 criteria: Mapping[str, nn.Module] | None = None,
                 loss_weights: Mapping[str, float] | None = None, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_image: int = 100,
                 topk_candidates: int = 5000) -> None:
        super().__init__()
        if (proposal_generator is None) != (roi_heads is None):
            raise ValueError("give both a proposal generator and RoI heads, or neither")
        if proposal_generator is None and panoptic_head is None:
            raise ValueError("a model with neither detector nor panoptic head predicts nothing: "
                             "set MODEL.DETECTOR_ON or MODEL.PANOPTIC_ON")
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.panoptic_head = panoptic_head
        self.clip = clip  # a dataclass, not a module: the text tower is frozen and not saved
        if vocabulary is None:
            vocabulary = Vocabulary(TemplateEmbeddings(clip=clip), backbone.trunk.embed_dim)
        self.vocabulary = vocabulary
        self.stuff_vocabulary = Vocabulary(vocabulary.source, vocabulary.embeddings.shape[1])
        self.scorer = CLIPEnsembleScorer() if scorer is None else scorer
        if getattr(self.scorer, "inputs", ScoringInputs) is not ScoringInputs:
            raise ValueError(f"the scorer {type(self.scorer).__name__} does not score detections "
                             "(MODEL.OPEN_VOCAB.SCORER names one whose inputs are ScoringInputs, "
                             "e.g. CLIPEnsembleScorer)")
        self.criteria = nn.ModuleDict(dict(criteria or {}))
        # (names, embeddings) of a cacheable source's names that criteria read beyond the
        # vocabulary; not a module, so that the source is registered once (checkpoint keys)
        self._extra_cache: tuple[tuple[str, ...], torch.Tensor] | None = None
        self.loss_weights = dict(loss_weights or {})
        check_loss_weight_values(self.loss_weights)
        self._loss_names_checked = False
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_image = detections_per_image
        self.topk_candidates = topk_candidates
        mean, std = clip.image_normalization()  # the CLIP's own, in 0-255 units
        self.register_buffer("pixel_mean", torch.tensor(mean).view(3, 1, 1) * 255, False)
        self.register_buffer("pixel_std", torch.tensor(std).view(3, 1, 1) * 255, False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        clip = load_clip(cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED or None)
        backbone = build_backbone(cfg, clip)
        shape = backbone.output_shape()
        embed_dim = backbone.trunk.embed_dim
        ov = cfg.MODEL.OPEN_VOCAB
        source = build_from_registry(EMBEDDING_SOURCE_REGISTRY, ov.EMBEDDING_SOURCE, cfg, clip)
        detector = cfg.MODEL.DETECTOR_ON
        # built in this order (detector, then panoptic head): seeded initialisation depends on it
        proposal_generator = build_from_registry(
            PROPOSAL_GENERATOR_REGISTRY, cfg.MODEL.PROPOSAL_GENERATOR.NAME, cfg, shape) \
            if detector else None
        roi_heads = build_from_registry(ROI_HEADS_REGISTRY, cfg.MODEL.ROI_HEADS.NAME, cfg, shape,
                                        embed_dim) if detector else None
        panoptic_head = build_from_registry(PANOPTIC_HEAD_REGISTRY, cfg.MODEL.PANOPTIC.NAME, cfg,
                                            shape, backbone.trunk) \
            if cfg.MODEL.PANOPTIC_ON else None
        return {"backbone": backbone, "proposal_generator": proposal_generator,
                "roi_heads": roi_heads, "panoptic_head": panoptic_head,
                "clip": clip, "vocabulary": Vocabulary(source, embed_dim),
                "scorer": build_from_registry(SCORER_REGISTRY, ov.SCORER, cfg),
                "criteria": {name: build_from_registry(CRITERION_REGISTRY, name, cfg)
                             for name in cfg.MODEL.CRITERIA},
                "loss_weights": dict(cfg.MODEL.LOSS_WEIGHTS),
                "score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
                "nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
                "detections_per_image": cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE,
                "topk_candidates": cfg.MODEL.ROI_HEADS.TOPK_CANDIDATES_TEST}

    # ---- vocabulary -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def trunk(self) -> CLIPViTTrunk:
        return self.backbone.trunk

    @property
    def class_embeddings(self) -> torch.Tensor:
        """(C, D) unit-norm embeddings of the current vocabulary, as last computed (a trainable
        source's are re-computed by ``self.vocabulary()``)."""
        return self.vocabulary.embeddings

    @property
    def novel_mask(self) -> torch.Tensor:
        """(C,) bool: True for the names the detector was not trained on."""
        return self.vocabulary.novel_mask

    @property
    def base_names(self) -> list[str]:
        """The names trained on: things, then stuff (panoptic training)."""
        return list(self.vocabulary.base_names)

    @property
    def stuff_names(self) -> list[str]:
        return list(self.stuff_vocabulary)

    def set_vocabulary(self, names: Sequence[str], templates: Sequence[str] | None = None,
                       embeddings: torch.Tensor | None = None,
                       stuff: Sequence[str] | None = None,
                       stuff_embeddings: torch.Tensor | None = None) -> None:
        """Classify among ``names`` (a list; compared ignoring case, spaces and underscores) from
        now on. Embeddings come from the vocabulary's source, or from CLIP's text encoder with
        ``templates``, or are given as ``embeddings`` (C, D), shape checked. Names the detector
        was trained on count as base. ``stuff``: the amorphous classes of panoptic segmentation
        (None keeps the current ones, except those now named as things; [] removes them); a name
        given in both lists is refused; stuff needs a panoptic head; ``stuff_embeddings`` (S, D)
        go with ``stuff`` as ``embeddings`` go with ``names``."""
        names = check_class_names(names)
        things = {normalize_class_name(n) for n in names}
        if stuff is not None:
            stuff = check_class_names(stuff, "stuff vocabulary") if len(stuff) else []
            both = things & {normalize_class_name(n) for n in stuff}
            if both:
                raise ValueError(f"{sorted(both)} named both as things and as stuff")
            if stuff and self.panoptic_head is None:
                raise ValueError("stuff classes need a panoptic model (MODEL.PANOPTIC_ON True)")
        elif things & {normalize_class_name(n) for n in self.stuff_names}:
            stuff = [n for n in self.stuff_names if normalize_class_name(n) not in things]
        if embeddings is None and templates is not None:
            embeddings = class_embeddings(self.clip, [prompt_name(n) for n in names], templates)
        self.vocabulary.set(names, embeddings)
        if stuff_embeddings is not None and not stuff:
            raise ValueError("stuff_embeddings need their stuff names (stuff=[...])")
        if stuff:
            if stuff_embeddings is None and templates is not None:
                stuff_embeddings = class_embeddings(self.clip, [prompt_name(n) for n in stuff],
                                                    templates)
            self.stuff_vocabulary.set(stuff, stuff_embeddings)
        elif stuff is not None:
            self.stuff_vocabulary.clear()

    def set_training_vocabulary(self, names: Sequence[str],
                                image_counts: Sequence[int] | None = None,
                                stuff: Sequence[str] | None = None) -> None:
        """The (base) classes the detector is trained on: its vocabulary, remembered as base;
        ``image_counts`` (training images per class) weigh the federated loss's sampling (None:
        uniform, until the trainer counts its training set); ``stuff``: the stuff classes the
        panoptic branch is trained on (also remembered as seen)."""
        names = check_class_names(names, "training vocabulary")
        self.set_vocabulary(names, stuff=[] if stuff is None else stuff)
        self.set_base_names(names + list(self.stuff_vocabulary))
        self.vocabulary.set_image_counts(image_counts)

    def set_base_names(self, names: Sequence[str]) -> None:
        """Which names (things or stuff) count as base (trained on), e.g. when loading a
        checkpoint."""
        self.vocabulary.set_base_names(names)
        self.stuff_vocabulary.set_base_names(names)

    def panoptic_vocabulary(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(embeddings (C, D), seen (C,) bool, is_thing (C,) bool)`` of the things, then the
        stuff of the vocabulary: the panoptic branch's class space."""
        things = self.vocabulary()
        parts = [things] + ([self.stuff_vocabulary()] if len(self.stuff_vocabulary) else [])
        seen = torch.cat([~self.vocabulary.novel_mask, ~self.stuff_vocabulary.novel_mask])
        is_thing = torch.arange(len(seen), device=things.device) < len(things)
        return torch.cat(parts), seen, is_thing

    # ---- training ---------------------------------------------------------------------------
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
        """Training: the weighted losses (module doc); eval mode: :meth:`inference`."""
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess(batched_inputs)
        trunk_output, features = self.backbone(images.tensors)
        losses: dict[str, torch.Tensor] = {}
        if self.roi_heads is not None:
            losses = self.detector_losses(batched_inputs, images, features)
        if self.panoptic_head is not None:
            losses = self._merged(losses, self.panoptic_losses(
                batched_inputs, images, trunk_output, features), "the panoptic head")
        if not self._loss_names_checked:
            check_loss_weight_names(self.loss_weights, set(BUILTIN_LOSSES) | set(losses))
            self._loss_names_checked = True
        return weighted_losses(losses, self.loss_weights)

    def detector_losses(self, batched_inputs: list[dict], images: ImageList,
                        features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses of the RPN, the RoI heads and the extra criteria."""
        class_embeddings = self.vocabulary()
        targets = [{k: v.to(self.device) for k, v in x["instances"].items()} for x in batched_inputs]
        proposals, losses = self.proposal_generator(images, features, targets)
        roi_results, roi_losses = self.roi_heads(
            features, proposals, images.image_sizes, class_embeddings, targets=targets,
            class_image_counts=self.vocabulary.image_counts)
        losses = self._merged(losses, roi_losses, "the RoI heads")
        for name, criterion in self.criteria.items():
            extra = self.extra_embeddings(getattr(criterion, "extra_names", ()))
            kwargs = {} if extra is None else {"extra_embeddings": extra}
            if getattr(criterion, "wants_images", False):
                kwargs["images"] = images
            losses = self._merged(losses, criterion(roi_results, class_embeddings, targets,
                                                    **kwargs), f"criterion {name!r}")
        return losses

    def extra_embeddings(self, names: Sequence[str]) -> torch.Tensor | None:
        """(U, D) embeddings, from the vocabulary's source, of those of ``names`` that are not in
        the vocabulary (None when ``names`` is empty; (0, D) when all are in it)."""
        if not names:
            return None
        known = {normalize_class_name(n) for n in self.vocabulary}
        wanted = [n for n in names if normalize_class_name(n) not in known]
        if not wanted:
            return self.vocabulary.embeddings[:0]
        source = self.vocabulary.source
        trainable = any(p.requires_grad for p in source.parameters())
        if trainable and self.training and torch.is_grad_enabled():  # they train with the source
            return F.normalize(source(wanted).float(), dim=-1).to(self.device)
        if self._extra_cache is not None and self._extra_cache[0] == tuple(wanted):
            return self._extra_cache[1].to(self.device)
        with torch.no_grad():
            embeddings = F.normalize(source(wanted).float(), dim=-1).to(self.device)
        if getattr(source, "cacheable", False):
            self._extra_cache = (tuple(wanted), embeddings)
        return embeddings

    def panoptic_losses(self, batched_inputs: list[dict], images: ImageList,
                        trunk_output: TrunkOutput,
                        features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses of the panoptic head on the inputs' ``"panoptic"`` targets."""
        missing = [x.get("file_name", "?") for x in batched_inputs if "panoptic" not in x]
        if missing:
            raise ValueError(f"MODEL.PANOPTIC_ON trains on panoptic datasets (segments of things "
                             f"and stuff); {missing[0]} has no panoptic annotation")
        embeddings, seen, _ = self.panoptic_vocabulary()
        targets = panoptic_targets([x["panoptic"] for x in batched_inputs],
                                   tuple(images.tensors.shape[-2:]), self.device)
        _, losses = self.panoptic_head(features, self.trunk, trunk_output, images.tensors,
                                       embeddings, seen, self.clip_logit_scale, targets=targets)
        return losses

    @property
    def clip_logit_scale(self) -> torch.Tensor:
        return self.clip.model.logit_scale.exp().to(self.device)

    @staticmethod
    def _merged(losses: dict, new: Mapping[str, torch.Tensor], source: str) -> dict:
        clash = sorted(set(losses) & set(new))
        if clash:
            raise ValueError(f"{source} returned losses {clash}, which another part returns too")
        return {**losses, **new}

    # ---- inference --------------------------------------------------------------------------
    def inference(self, batched_inputs: list[dict], do_postprocess: bool = True) -> list[dict]:
        """Detections per image: ``{"instances": ...[, "panoptic_seg": ...]}`` in original pixels
        (module doc); with ``do_postprocess=False``, ``{"boxes", "scores", "classes"[, "masks":
        (N, M, M) mask probabilities inside each box]}`` in the padded input's pixels (and
        ``"panoptic": {"scores": (Q, C), "mask_logits": (Q, h, w)}``)."""
        images = self.preprocess(batched_inputs)
        trunk_output, features = self.backbone(images.tensors)
        detections = self.detect(images, trunk_output, features) \
            if self.roi_heads is not None else [{} for _ in batched_inputs]
        if self.panoptic_head is not None:
            embeddings, seen, _ = self.panoptic_vocabulary()
            results, _ = self.panoptic_head(features, self.trunk, trunk_output, images.tensors,
                                            embeddings, seen, self.clip_logit_scale)
            for image_detections, result in zip(detections, results):
                image_detections["panoptic"] = result
        if not do_postprocess:
            return detections
        return self.postprocess(detections, batched_inputs, images.image_sizes)

    def detect(self, images: ImageList, trunk_output: TrunkOutput,
               features: dict[str, torch.Tensor]) -> list[dict]:
        """Per image ``{"boxes", "scores", "classes"[, "masks"]}`` in the padded input's pixels."""
        boxes, scores = self.scored_candidates(images, trunk_output, features)
        detections = [self.select(b, p) for b, p in zip(boxes, scores)]
        if self.roi_heads.mask_on:
            masks = self.roi_heads.predict_masks(features, [d["boxes"] for d in detections],
                                                 images.image_sizes)
            for image_detections, image_masks in zip(detections, masks):
                image_detections["masks"] = image_masks
        return detections

    def scored_candidates(self, images: ImageList, trunk_output: TrunkOutput,
                          features: dict[str, torch.Tensor]
                          ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Proposals through the RoI heads and the scorer: per image the candidate boxes (P, 4)
        in the padded input's pixels and their scores (P, C) for the current vocabulary."""
        class_embeddings = self.vocabulary()
        proposals, objectness = self.proposal_generator.propose_with_scores(images, features)
        head_results, _ = self.roi_heads(features, proposals, images.image_sizes, class_embeddings)
        return self.scorer(ScoringInputs(
            trunk=self.trunk, trunk_output=trunk_output, proposals=proposals,
            objectness=objectness, boxes=[r["boxes"] for r in head_results],
            probabilities=[r["probabilities"] for r in head_results],
            class_embeddings=class_embeddings, novel_mask=self.vocabulary.novel_mask,
            logit_scale=self.clip_logit_scale))

    def select(self, boxes: torch.Tensor, probabilities: torch.Tensor) -> dict[str, torch.Tensor]:
        """(P, 4) class-agnostic boxes and (P, C) scores -> thresholded, the best
        ``topk_candidates``, per-class NMS, the best ``detections_per_image``."""
        proposal, classes = torch.nonzero(probabilities > self.score_thresh, as_tuple=True)
        scores = probabilities[proposal, classes]
        if len(scores) > self.topk_candidates:
            best = scores.topk(self.topk_candidates).indices
            proposal, classes, scores = proposal[best], classes[best], scores[best]
        candidate_boxes = boxes[proposal]
        keep = box_ops.remove_small_boxes(candidate_boxes, 1e-2)
        keep = keep[box_ops.batched_nms(candidate_boxes[keep], scores[keep], classes[keep],
                                        self.nms_thresh)][: self.detections_per_image]
        return {"boxes": candidate_boxes[keep], "scores": scores[keep], "classes": classes[keep]}

    def postprocess(self, detections: list[dict], batched_inputs: list[dict],
                    image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Detections in input pixels -> ``{"instances": ...}`` in each image's original pixels
        (``height``, ``width``), masks pasted into the image and binarised at 0.5; panoptic
        results -> ``"panoptic_seg"`` (module doc)."""
        outputs = []
        if self.panoptic_head is not None:
            is_thing = self.panoptic_vocabulary()[2]
        for detection, x, size in zip(detections, batched_inputs, image_sizes):
            height, width = x["height"], x["width"]
            output = {}
            if "panoptic" in detection:
                output["panoptic_seg"] = self.panoptic_head.segment(
                    detection["panoptic"], size, (height, width), is_thing)
            if "boxes" not in detection:
                outputs.append(output)
                continue
            boxes = to_original(detection["boxes"], size, (height, width))
            instances = {"boxes": boxes, "scores": detection["scores"],
                         "classes": detection["classes"]}
            if "masks" in detection:
                pasted = paste_masks_in_image(detection["masks"][:, None], boxes, (height, width))
                instances["masks"] = pasted[:, 0] >= 0.5
            outputs.append({"instances": instances, **output})
        return outputs

    @torch.no_grad()
    def propose(self, batched_inputs: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Class-agnostic proposals (no vocabulary needed): per image ``{"boxes": (P, 4)
        xyxy in original pixels, "objectness": (P,)}``."""
        if self.proposal_generator is None:
            raise RuntimeError("this model has no detector (MODEL.DETECTOR_ON False): no proposals")
        images = self.preprocess(batched_inputs)
        _, features = self.backbone(images.tensors)
        proposals, objectness = self.proposal_generator.propose_with_scores(images, features)
        return [{"boxes": to_original(p, size, (x["height"], x["width"])), "objectness": o}
                for p, o, size, x in zip(proposals, objectness, images.image_sizes, batched_inputs)]

    @torch.no_grad()
    def score_proposals(self, batched_inputs: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Every scored candidate of the detector, before :meth:`select`: per image ``{"boxes":
        (P, 4) float xyxy in original pixels, "scores": (P, C)}``, the configured scorer's output
        for the current vocabulary (what :meth:`detect` passes to :meth:`select`: the head's
        probabilities ensembled with CLIP's, novel priors included), without score threshold,
        top-k, small-box removal or NMS. For self-training on image labels: the top-scoring box
        of a class an image is known to hold (:mod:`ovdet.pseudo.self_training`).

        The scorers' boxes are class-agnostic (the ``Scorer`` contract: one box per candidate,
        shared by its C scores); P is the number of proposals, or twice it with
        ``novel_boxes="proposals"`` (regressed boxes, then the proposals themselves; a
        candidate's columns of the other kind score 0). A scorer that returns per-class boxes
        (P, C, 4) gets them back in that shape, in original pixels. Eval mode only (as
        :meth:`inference`); RuntimeError for a model without detector or in training mode."""
        if self.roi_heads is None:
            raise RuntimeError("this model has no detector (MODEL.DETECTOR_ON False): no "
                               "proposals to score")
        if self.training:
            raise RuntimeError("score_proposals is inference: call model.eval() first")
        images = self.preprocess(batched_inputs)
        trunk_output, features = self.backbone(images.tensors)
        boxes, scores = self.scored_candidates(images, trunk_output, features)
        return [{"boxes": to_original(b.reshape(-1, 4), size, (x["height"], x["width"]))
                 .reshape(b.shape), "scores": s}
                for b, s, size, x in zip(boxes, scores, images.image_sizes, batched_inputs)]


def to_original(boxes: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
                ) -> torch.Tensor:
    """(N, 4) xyxy boxes in input pixels -> original pixels (height, width), clipped."""
    height, width = original_size
    scale = torch.tensor([width / input_size[1], height / input_size[0]] * 2, device=boxes.device)
    return box_ops.clip_boxes_to_image(boxes * scale, (height, width))
