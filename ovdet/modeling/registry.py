"""One fvcore ``Registry`` per component kind, and the builders that read the config's names.

A component registers itself with ``@BACKBONE_REGISTRY.register()`` (etc.) and is then built from
``cfg`` by name; every component also takes plain keyword arguments (``configurable``).
"""
from __future__ import annotations

from typing import Any

from fvcore.common.registry import Registry

from ..config import CfgNode, ConfigError

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Whole models: images (and targets) in, losses or detections out."
BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Image feature extractors built on the shared CLIP trunk."
PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = "Class-agnostic region proposal generators."
ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = "Per-region heads: open-vocabulary classification, boxes, masks."
ROI_MASK_HEAD_REGISTRY = Registry("ROI_MASK_HEAD")
ROI_MASK_HEAD_REGISTRY.__doc__ = "Mask heads on RoI features."


def build_from_registry(registry: Registry, name: str, cfg: CfgNode, *args: Any) -> Any:
    """``registry.get(name)(cfg, *args)``, with an unknown name reported with the known ones."""
    if name not in registry:
        known = ", ".join(sorted(k for k, _ in registry)) or "none registered"
        raise ConfigError(f"no {registry._name.lower()} named {name!r}; known: {known}")
    return registry.get(name)(cfg, *args)


def build_backbone(cfg: CfgNode, *args: Any) -> Any:
    """The backbone named by ``cfg.MODEL.BACKBONE.NAME``."""
    from . import backbone  # noqa: F401  (registers the backbones)

    return build_from_registry(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, cfg, *args)


def build_model(cfg: CfgNode) -> Any:
    """The meta-architecture named by ``cfg.MODEL.META_ARCHITECTURE``, on ``cfg.MODEL.DEVICE``."""
    from . import meta_arch  # noqa: F401  (registers the meta-architectures)

    model = build_from_registry(META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE, cfg)
    return model.to(cfg.MODEL.DEVICE)
