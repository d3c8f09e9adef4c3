"""Models: registries per component kind and the components registered in them."""
from .registry import (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                       ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY, build_backbone)

__all__ = ["BACKBONE_REGISTRY", "META_ARCH_REGISTRY", "PROPOSAL_GENERATOR_REGISTRY",
           "ROI_HEADS_REGISTRY", "ROI_MASK_HEAD_REGISTRY", "build_backbone"]
