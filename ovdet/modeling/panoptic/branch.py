"""The MaskCLIP panoptic branch on the shared trunk: query mask proposals, CLIP mask
classification (RMA mask tokens or masked crops), FC-CLIP scoring and panoptic assembly.

Training (``targets`` given, :mod:`.criterion` for their form): the query head's losses
(``loss_panoptic_{objectness,ce,mask,dice}``) and, when relative mask attention has blocks
(``MODEL.PANOPTIC.RMA_BLOCKS``), the mask tokens' losses on the matched queries' masks:
``loss_rma_ce`` (their CLIP-space embeddings against the training classes' text embeddings) and
``loss_rma_{mask,dice}`` (the refined masks of every RMA block against the matched segments).
CLIP itself stays frozen; only the added parameters train.

Inference: per image ``{"scores": (Q, C), "mask_logits": (Q, h, w)}`` in the padded input's
mask grid (the finest pyramid stride), for :func:`panoptic_segmentation`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...clip.crops import crop_embeddings
from ...clip.rma import MaskTokenRMA
from ...clip.text import text_probabilities
from ...clip.vit import CLIPViTTrunk, TrunkOutput
from ...config import CfgNode, configurable
from ..contracts import ShapeSpec
from ..registry import PANOPTIC_HEAD_REGISTRY, SCORER_REGISTRY, build_from_registry
from .assembly import assemble_panoptic
from .criterion import PanopticCriterion
from .query_head import QueryMaskHead
from .scoring import MaskEnsembleScorer, MaskScoringInputs

CLASSIFIERS = ("rma", "crop")


@PANOPTIC_HEAD_REGISTRY.register()
class MaskCLIPPanopticHead(nn.Module):
    """Query head + CLIP mask classifier + scorer + assembly (module doc).

    Args:
        query_head: the mask proposal head (:class:`QueryMaskHead`).
        rma: mask tokens with relative mask attention, sized for the trunk.
        criterion: matching and losses of the query head.
        scorer: a mask scorer (``SCORER_REGISTRY``, :class:`MaskScoringInputs`).
        classifier: "rma" (mask tokens) or "crop" (masked crops through the whole CLIP).
        crop_size: the crops' side (None: the CLIP's native input size).
        use_refined_masks: segment with the last RMA block's refined masks (when there are RMA
            blocks and the classifier is "rma"), else with the query head's.
        object_mask_threshold, overlap_threshold, mask_threshold: assembly
            (:func:`assemble_panoptic`).
    """

    @configurable
    def __init__(self, *, query_head: QueryMaskHead, rma: MaskTokenRMA,
                 criterion: PanopticCriterion | None = None,
                 scorer: Callable[[MaskScoringInputs], torch.Tensor] | None = None,
                 classifier: str = "rma", crop_size: int | None = None,
                 use_refined_masks: bool = True,
                 object_mask_threshold: float = 0.5, overlap_threshold: float = 0.8,
                 mask_threshold: float = 0.5) -> None:
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if scorer is not None and getattr(scorer, "inputs", None) is not MaskScoringInputs:
            raise ValueError(f"the scorer {type(scorer).__name__} does not score mask proposals "
                             "(MODEL.PANOPTIC.SCORER names one whose inputs are "
                             "MaskScoringInputs, e.g. MaskEnsembleScorer)")
        self.query_head = query_head
        self.rma = rma
        self.criterion = criterion or PanopticCriterion()
        self.scorer = scorer or MaskEnsembleScorer()
        self.classifier = classifier
        self.crop_size = crop_size
        self.use_refined_masks = use_refined_masks
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.mask_threshold = mask_threshold

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec], trunk: CLIPViTTrunk
                    ) -> dict:
        p = cfg.MODEL.PANOPTIC
        try:
            head = QueryMaskHead(input_shape, trunk.embed_dim, num_queries=p.NUM_QUERIES,
                                 hidden_dim=p.HIDDEN_DIM, num_heads=p.NUM_HEADS,
                                 dim_feedforward=p.DIM_FEEDFORWARD, num_layers=p.DEC_LAYERS,
                                 image_stem=p.IMAGE_STEM)
        except ValueError as error:
            raise ValueError(f"{error} (MODEL.PANOPTIC.NUM_QUERIES, HIDDEN_DIM, NUM_HEADS, "
                             "DEC_LAYERS; the finest of MODEL.BACKBONE.STRIDES)") from None
        if trunk.patch_size % head.mask_stride:
            raise ValueError(f"the finest pyramid stride {head.mask_stride} "
                             f"(MODEL.BACKBONE.STRIDES) must divide the patch size "
                             f"{trunk.patch_size} (mask tokens pool masks per patch)")
        try:
            rma = MaskTokenRMA.for_trunk(trunk, bias_blocks=tuple(p.RMA_BLOCKS),
                                         mask_stride=head.mask_stride, refine_dim=p.RMA_DIM,
                                         patch_threshold=p.RMA_PATCH_THRESHOLD)
        except ValueError as error:
            raise ValueError(f"{error} (MODEL.PANOPTIC.RMA_BLOCKS, RMA_DIM, RMA_PATCH_THRESHOLD; "
                             "K is MODEL.CLIP.KEEP_LAST_BLOCKS)") from None
        criterion = PanopticCriterion(
            num_points=p.TRAIN_POINTS, oversample=p.OVERSAMPLE_RATIO, importance=p.IMPORTANCE_RATIO,
            cost_class=p.COST_CLASS, cost_mask=p.COST_MASK, cost_dice=p.COST_DICE,
            void_weight=p.VOID_WEIGHT)
        return {"query_head": head, "rma": rma, "criterion": criterion,
                "scorer": build_from_registry(SCORER_REGISTRY, p.SCORER, cfg),
                "classifier": p.CLASSIFIER, "crop_size": p.CROP_SIZE or None,
                "use_refined_masks": p.USE_REFINED_MASKS,
                "object_mask_threshold": p.OBJECT_MASK_THRESHOLD,
                "overlap_threshold": p.OVERLAP_THRESHOLD, "mask_threshold": p.MASK_THRESHOLD}

    def segment(self, result: dict, input_size: tuple[int, int], original_size: tuple[int, int],
                is_thing: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """One image's inference result -> ``"panoptic_seg"`` at ``original_size`` with this
        head's thresholds (:func:`panoptic_segmentation`)."""
        return panoptic_segmentation(result, input_size, original_size, is_thing,
                                     self.query_head.mask_stride, self.object_mask_threshold,
                                     self.overlap_threshold, self.mask_threshold)

    @property
    def rma_trains(self) -> bool:
        return any(p.requires_grad for p in self.rma.parameters())

    def forward(self, features: dict[str, torch.Tensor], trunk: CLIPViTTrunk,
                trunk_output: TrunkOutput, images: torch.Tensor, class_embeddings: torch.Tensor,
                seen: torch.Tensor, logit_scale: torch.Tensor,
                targets: list[dict] | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """``features``: the pyramid; ``images``: (B, 3, H, W) normalised padded inputs (crops
        are cut from them); ``class_embeddings``: (C, D) unit-norm text embeddings of the
        vocabulary (things, then stuff); ``seen``: (C,) bool, classes trained on;
        ``logit_scale``: CLIP's. Returns ``(results, losses)`` (module doc); training results are
        empty."""
        outputs = self.query_head(features, class_embeddings, images)
        if targets is not None:
            return [], self.losses(outputs, trunk, trunk_output, class_embeddings, logit_scale,
                                   targets)
        mask_logits = list(outputs["masks"])
        if self.classifier == "rma":
            embeddings, refined = self.rma(trunk, trunk_output, mask_logits)
            if refined and self.use_refined_masks:
                mask_logits = refined[-1]
        else:
            embeddings = crop_embeddings(trunk, images, [m > 0 for m in mask_logits],
                                         size=self.crop_size)
        results = []
        for logits, objectness, masks, embedding in zip(outputs["logits"], outputs["objectness"],
                                                        mask_logits, embeddings):
            clip = text_probabilities(embedding, class_embeddings, logit_scale)
            scores = self.scorer(MaskScoringInputs(logits=logits, objectness=objectness,
                                                   clip_probabilities=clip, seen=seen))
            results.append({"scores": scores, "mask_logits": masks})
        return results, {}

    def losses(self, outputs: dict, trunk: CLIPViTTrunk, trunk_output: TrunkOutput,
               class_embeddings: torch.Tensor, logit_scale: torch.Tensor, targets: list[dict]
               ) -> dict[str, torch.Tensor]:
        losses, matches = self.criterion(outputs, targets)
        if not self.rma_trains:
            return losses
        masks = [outputs["masks"][b, rows.to(outputs["masks"].device)].detach()
                 for b, (rows, _) in enumerate(matches)]
        labels = torch.cat([t["classes"][columns.to(t["classes"].device)]
                            for t, (_, columns) in zip(targets, matches)])
        embeddings, refined = self.rma(trunk, trunk_output, masks)
        embeddings = F.normalize(torch.cat(embeddings), dim=-1)
        num_masks = max(1, len(labels))
        logits = logit_scale * embeddings @ class_embeddings.T
        losses["loss_rma_ce"] = F.cross_entropy(logits, labels, reduction="sum") / num_masks
        target_masks = torch.cat([t["masks"][c.to(t["masks"].device)]
                                  for t, (_, c) in zip(targets, matches)])
        voids = torch.cat([t["void"][None].expand(len(c), -1, -1)
                           for t, (_, c) in zip(targets, matches)])
        bce = dice = 0.0
        for block_masks in refined:
            b, d = self.criterion.point_losses(torch.cat(block_masks), target_masks, voids)
            bce, dice = bce + b / num_masks, dice + d / num_masks
        losses["loss_rma_mask"], losses["loss_rma_dice"] = bce, dice
        return losses


def panoptic_segmentation(result: dict, input_size: tuple[int, int],
                          original_size: tuple[int, int], is_thing: torch.Tensor,
                          mask_stride: int, object_mask_threshold: float = 0.5,
                          overlap_threshold: float = 0.8, mask_threshold: float = 0.5
                          ) -> tuple[torch.Tensor, list[dict]]:
    """One image's ``{"scores", "mask_logits": (Q, h, w)}`` (``mask_stride`` input pixels per
    mask pixel) -> ``(segment ids (H0, W0) int32, segments)`` at the original size: masks
    upsampled to the padded input, cropped to the image's ``input_size``, resized to
    ``original_size``, then :func:`assemble_panoptic`."""
    masks = result["mask_logits"][None]
    padded_size = (masks.shape[-2] * mask_stride, masks.shape[-1] * mask_stride)
    masks = F.interpolate(masks, size=padded_size, mode="bilinear", align_corners=False)
    masks = masks[..., :input_size[0], :input_size[1]]
    masks = F.interpolate(masks, size=original_size, mode="bilinear", align_corners=False)[0]
    return assemble_panoptic(result["scores"], masks.sigmoid(), is_thing,
                             object_mask_threshold, overlap_threshold, mask_threshold)


def panoptic_targets(targets: Sequence[dict], padded_size: tuple[int, int],
                     device: torch.device) -> list[dict]:
    """Mapper ``"panoptic"`` targets (image pixels) -> padded to ``padded_size``, the padding
    void, on ``device``."""
    padded = []
    for target in targets:
        masks, void = target["masks"].to(device), target["void"].to(device)
        h, w = void.shape
        pad = (0, padded_size[1] - w, 0, padded_size[0] - h)
        padded.append({"masks": F.pad(masks, pad, value=False),
                       "classes": target["classes"].to(device),
                       "void": F.pad(void, pad, value=True)})
    return padded
