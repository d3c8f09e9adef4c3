"""Class-agnostic region proposals: torchvision's RegionProposalNetwork, built from a config."""
from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import (RegionProposalNetwork, RPNHead,
                                              concat_box_prediction_layers)

from ...config import CfgNode, ConfigError, configurable
from ..contracts import ShapeSpec
from ..registry import PROPOSAL_GENERATOR_REGISTRY
from ..unlabelled import RPN_MODES, check_mode, unlabelled_matches


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(RegionProposalNetwork):
    """torchvision's RPN, one anchor size per pyramid level.

    ``forward(images: ImageList, features: dict[str, (B, C, H_l, W_l)], targets: list[{"boxes":
    (N, 4) xyxy[, "pseudo_boxes": (M, 4) xyxy]}] | None) -> (list of (P_b, 4) xyxy proposals,
    {"loss_objectness", "loss_rpn_box_reg"})``; targets with no boxes are all background. At
    inference, ``propose_with_scores`` also returns the proposals' objectness
    (``PROPOSAL_GENERATOR_REGISTRY``).

    ``unlabelled``: what a target's ``"pseudo_boxes"`` (objects no human labelled,
    :mod:`ovdet.modeling.unlabelled`) are to the RPN. ``"background"`` (default): nothing, their
    anchors are matched to the human boxes alone, as if the pseudo boxes were absent.
    ``"ignore"``: an anchor that would be background but whose best match is a pseudo box at IoU
    >= ``unlabelled_iou`` is left out of the objectness loss (label -1, never sampled).
    ``"positive"``: the pseudo boxes are matched like human boxes (objects, with box regression).
    """

    @configurable
    def __init__(self, *, in_channels: int, anchor_sizes: tuple[int, ...],
                 aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
                 iou_thresholds: tuple[float, float] = (0.3, 0.7), batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, pre_nms_top_n: tuple[int, int] = (2000, 1000),
                 post_nms_top_n: tuple[int, int] = (1000, 1000), nms_thresh: float = 0.7,
                 unlabelled: str = "background", unlabelled_iou: float = 0.5) -> None:
        anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes),
                                  (tuple(aspect_ratios),) * len(anchor_sizes))
        head = RPNHead(in_channels, len(aspect_ratios))
        super().__init__(anchors, head, fg_iou_thresh=iou_thresholds[1],
                         bg_iou_thresh=iou_thresholds[0], batch_size_per_image=batch_size_per_image,
                         positive_fraction=positive_fraction,
                         pre_nms_top_n={"training": pre_nms_top_n[0], "testing": pre_nms_top_n[1]},
                         post_nms_top_n={"training": post_nms_top_n[0], "testing": post_nms_top_n[1]},
                         nms_thresh=nms_thresh)
        self.unlabelled = check_mode(unlabelled, RPN_MODES, "MODEL.RPN.UNLABELLED")
        self.unlabelled_iou = unlabelled_iou

    def assign_targets_to_anchors(self, anchors: list[torch.Tensor], targets: list[dict]
                                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """torchvision's anchor labels (1 object, 0 background, -1 ignored) and matched boxes,
        with the targets' pseudo boxes treated as ``unlabelled`` says (class doc)."""
        if self.unlabelled == "positive":
            targets = [{**t, "boxes": torch.cat([t["boxes"], t["pseudo_boxes"]])}
                       if "pseudo_boxes" in t else t for t in targets]
        labels, matched_boxes = super().assign_targets_to_anchors(anchors, targets)
        if self.unlabelled == "ignore":
            for image_anchors, image_labels, target in zip(anchors, labels, targets):
                if "pseudo_boxes" not in target:
                    continue
                over = unlabelled_matches(image_anchors, target["boxes"], target["pseudo_boxes"],
                                          self.unlabelled_iou) >= 0
                image_labels[over & (image_labels == 0)] = -1
        return labels, matched_boxes

    @torch.no_grad()
    def propose_with_scores(self, images: ImageList, features: dict[str, torch.Tensor]
                            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Inference: per image (P, 4) xyxy proposals and their (P,) objectness probabilities
        (the same proposals as ``forward`` in eval mode)."""
        maps = list(features.values())
        objectness, deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = self.box_coder.decode(deltas, anchors).view(len(anchors), -1, 4)
        return self.filter_proposals(proposals, objectness, images.image_sizes, per_level)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        rpn = cfg.MODEL.RPN
        if len(rpn.ANCHOR_SIZES) != len(input_shape):
            raise ConfigError(f"MODEL.RPN.ANCHOR_SIZES has {len(rpn.ANCHOR_SIZES)} sizes but the "
                              f"backbone has {len(input_shape)} feature maps {list(input_shape)}")
        channels = {shape.channels for shape in input_shape.values()}
        if len(channels) != 1:
            raise ConfigError(f"the RPN needs feature maps of equal channels, got "
                              f"{ {name: s.channels for name, s in input_shape.items()} }")
        return {"in_channels": channels.pop(),
                "anchor_sizes": tuple(rpn.ANCHOR_SIZES), "aspect_ratios": tuple(rpn.ASPECT_RATIOS),
                "iou_thresholds": tuple(rpn.IOU_THRESHOLDS),
                "batch_size_per_image": rpn.BATCH_SIZE_PER_IMAGE,
                "positive_fraction": rpn.POSITIVE_FRACTION,
                "pre_nms_top_n": (rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST),
                "post_nms_top_n": (rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST),
                "nms_thresh": rpn.NMS_THRESH, "unlabelled": rpn.UNLABELLED,
                "unlabelled_iou": rpn.UNLABELLED_IOU}
