"""Models: one registry per component kind, the contracts they keep, and the components.

Reading any registry registers ovdet's own components (:mod:`ovdet.modeling.registry`); the
component classes are exported lazily, so that ``get_cfg()`` imports no model code.
"""
from ..utils.lazy import lazy_exports
from .registry import (BACKBONE_REGISTRY, CRITERION_REGISTRY, EMBEDDING_SOURCE_REGISTRY,
                       META_ARCH_REGISTRY, PANOPTIC_HEAD_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                       ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY, SCORER_REGISTRY,
                       build_backbone, build_from_registry, build_model)

_LAZY = {"OpenVocabRCNN": ".meta_arch.ov_rcnn", "CLIPViTSimpleFPN": ".backbone.clip_vit_fpn",
         "RPN": ".proposal.rpn", "OpenVocabROIHeads": ".roi_heads.open_vocab_heads",
         "MaskRCNNConvUpsampleHead": ".roi_heads.mask_head", "Vocabulary": ".vocabulary",
         "TemplateEmbeddings": ".vocabulary", "normalize_class_name": ".vocabulary",
         "CLIPEnsembleScorer": ".scoring", "ScoringInputs": ".contracts", "ShapeSpec": ".contracts",
         "MaskCLIPPanopticHead": ".panoptic.branch", "MaskEnsembleScorer": ".panoptic.scoring"}
__all__ = ["BACKBONE_REGISTRY", "CRITERION_REGISTRY", "EMBEDDING_SOURCE_REGISTRY",
           "META_ARCH_REGISTRY", "PANOPTIC_HEAD_REGISTRY", "PROPOSAL_GENERATOR_REGISTRY",
           "ROI_HEADS_REGISTRY", "ROI_MASK_HEAD_REGISTRY", "SCORER_REGISTRY", "build_backbone",
           "build_from_registry", "build_model", *_LAZY]
__getattr__, _ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
