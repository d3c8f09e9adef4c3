"""One fvcore ``Registry`` per component kind, the contract each kind keeps, and the builders.

A component registers itself with ``@ROI_HEADS_REGISTRY.register()`` (etc.) and is then built from
a config by name; every component also takes plain keyword arguments (``configurable``). The
contracts are written in each registry's docstring and, checkable, as the ``typing.Protocol``s of
:mod:`ovdet.modeling.contracts`.

ovdet's own components register when a registry is first read (``get``, ``in``, iteration), not
when ``ovdet.modeling`` or a component's ``config`` module is imported: ``get_cfg()`` reads the
small ``config.py`` next to each component and imports no model code, while ``import
ovdet.modeling`` followed by any use of a registry sees every built-in component.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterator

from fvcore.common.registry import Registry

from ..config import CfgNode, ConfigError

# The modules that define ovdet's own components (imported when a registry is first read).
BUILTIN_COMPONENT_MODULES = (
    "ovdet.modeling.backbone.clip_vit_fpn",
    "ovdet.modeling.proposal.rpn",
    "ovdet.modeling.roi_heads.mask_head",
    "ovdet.modeling.roi_heads.open_vocab_heads",
    "ovdet.modeling.roi_heads.contrastive",
    "ovdet.modeling.roi_heads.distillation",
    "ovdet.modeling.vocabulary",
    "ovdet.modeling.scoring",
    "ovdet.modeling.panoptic.scoring",
    "ovdet.modeling.panoptic.branch",
    "ovdet.modeling.meta_arch.ov_rcnn",
)
_builtins_loaded = False


def load_builtin_components() -> None:
    """Register ovdet's own components (idempotent)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # first, so that a component module may read a registry
    try:
        for module in BUILTIN_COMPONENT_MODULES:
            importlib.import_module(module)
    except BaseException:
        _builtins_loaded = False  # the next read tries again and raises the real error
        raise


class ComponentRegistry(Registry):
    """fvcore ``Registry`` that registers ovdet's built-in components before it is first read."""

    def get(self, name: str) -> Any:
        load_builtin_components()
        return super().get(name)

    def __contains__(self, name: str) -> bool:
        load_builtin_components()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        load_builtin_components()
        return super().__iter__()

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(name for name, _ in self)

    @property
    def kind(self) -> str:
        """What the registry holds, for messages: ``"roi_heads"``."""
        return self._name.lower()


def _registry(name: str, contract: str) -> ComponentRegistry:
    registry = ComponentRegistry(name)
    registry.__doc__ = contract
    return registry


META_ARCH_REGISTRY = _registry("META_ARCH", """Whole models (:class:`contracts.MetaArchitecture`).

``model(batched_inputs)``: a list of ``{"image": (3, H, W) uint8, "height", "width"[,
"instances": {"boxes": (N, 4) xyxy, "classes": (N,), "masks": (N, H, W)}]}``; training returns a
dict of weighted scalar losses, eval mode a list of ``{"instances": {...}}``. ``set_vocabulary``,
``set_training_vocabulary`` and ``vocabulary`` (a :class:`~ovdet.modeling.vocabulary.Vocabulary`).
Built as ``cls(cfg)``.""")
BACKBONE_REGISTRY = _registry("BACKBONE", """Image features on the shared CLIP trunk
(:class:`contracts.Backbone`).

``backbone(images (B, 3, H, W) normalised) -> (TrunkOutput, {name: (B, C_l, H/s_l, W/s_l)})``;
``output_shape() -> {name: ShapeSpec(channels, stride)}`` in the order of the returned maps;
``size_divisibility`` (inputs are padded to a multiple of it); ``trunk`` (the
:class:`~ovdet.clip.CLIPViTTrunk`, whose kept states RMA re-enters). Built as ``cls(cfg, clip)``.""")
PROPOSAL_GENERATOR_REGISTRY = _registry("PROPOSAL_GENERATOR", """Class-agnostic proposals
(:class:`contracts.ProposalGenerator`).

``generator(images: ImageList, features, targets) -> (proposals: per image (P, 4) xyxy, losses)``
in training; ``propose_with_scores(images, features) -> (proposals, objectness: per image (P,) in
[0, 1])`` at inference. Built as ``cls(cfg, input_shape)`` with the backbone's
``output_shape()``.""")
ROI_HEADS_REGISTRY = _registry("ROI_HEADS", """Per-region heads (:class:`contracts.ROIHeads`).

``heads(features, proposals, image_sizes, class_embeddings (C, D), targets=None,
class_image_counts=None) -> (results, losses)`` in both modes (``losses`` is empty at inference;
``class_image_counts``: (C,) training images per class, or None). ``results`` per image: training
``{"boxes": (R, 4) sampled proposals, "labels": (R,) in [0, C] (C = background),
"region_embeddings": (R, D) unit norm, "logits": (R, C + 1)}``, optionally with ``"weights": (R,)``
(each region's classification loss weight; 0: left out) and ``"unlabelled": (R,) bool`` (over a
caption pseudo box of an object no human labelled; what ``TeacherDistillation`` distils by
default); inference ``{"boxes": (P, 4)
decoded xyxy, "probabilities": (P, C), "region_embeddings": (P, D)}``, row p for proposal p (the
scorer pairs rows with the proposals and their objectness). ``predict_masks(features, boxes,
image_sizes)`` and ``mask_on``. Built as ``cls(cfg, input_shape, embed_dim)``.""")
ROI_MASK_HEAD_REGISTRY = _registry("ROI_MASK_HEAD", """Mask heads on RoI features
(:class:`contracts.MaskHead`).

``head((R, C, M, M) pooled features) -> (R, 1, 2M, 2M)`` class-agnostic mask logits. Built as
``cls(cfg, in_channels)``.""")
PANOPTIC_HEAD_REGISTRY = _registry("PANOPTIC_HEAD", """Panoptic branches on the shared trunk
(:class:`contracts.PanopticHead`), switched on by ``MODEL.PANOPTIC_ON``.

``head(features, trunk, trunk_output, images (B, 3, H, W) normalised, class_embeddings (C, D)
of things then stuff, seen (C,) bool, logit_scale, targets=None) -> (results, losses)``: training
(``targets`` per image ``{"masks": (S, H, W) bool, "classes": (S,), "void": (H, W) bool}``, padded
input pixels) returns named losses; inference returns per image ``{"scores": (Q, C),
"mask_logits": (Q, h, w)}`` (mask grid of the padded input), which ``head.segment(result,
input_size, original_size, is_thing)`` turns into ``"panoptic_seg"``. Built as
``cls(cfg, input_shape, trunk)``.""")
EMBEDDING_SOURCE_REGISTRY = _registry("EMBEDDING_SOURCE", """Where class embeddings come from
(:class:`contracts.EmbeddingSource`): an ``nn.Module`` whose parameters, if any, train with the
detector and are saved in its checkpoint.

``source(names: list[str]) -> (C, D)`` unit-norm embeddings in CLIP's joint space; ``cacheable``:
whether the result may be kept until the names change (a source with trainable parameters is
recomputed at every training step). Built as ``cls(cfg, clip)``.""")
SCORER_REGISTRY = _registry("SCORER", """Scoring policies: of detections (:class:`contracts.Scorer`),
and of mask proposals (:class:`~ovdet.modeling.panoptic.scoring.MaskScoringInputs` -> (Q, C)).

``scorer(inputs: ScoringInputs) -> (boxes: per image (N, 4), scores: per image (N, C))``:
combines the RoI head's class probabilities with CLIP's region scores (the trunk's kept states,
the proposals and their objectness are in ``inputs``). Thresholds, NMS and top-k come after.
Built as ``cls(cfg)``.""")
CRITERION_REGISTRY = _registry("CRITERION", """Extra training losses (:class:`contracts.Criterion`):
``nn.Module``s (their parameters, if any, train and are saved with the detector), named in
``MODEL.CRITERIA`` and weighted by ``MODEL.LOSS_WEIGHTS`` like every other loss.

``criterion(roi_results, class_embeddings (C, D), targets) -> {"loss_name": scalar}``, with
``roi_results`` the RoI heads' training results (sampled boxes, labels, region embeddings). A
criterion whose ``extra_names`` attribute is non-empty (names beyond the training vocabulary,
e.g. the unseen classes of the zero-shot protocol) is also given ``extra_embeddings=`` their
(U, D) embeddings from the vocabulary's source (names already in the training vocabulary left
out); one whose ``wants_images`` attribute is True is also given ``images=``, the batch as the
backbone saw it (an ``ImageList`` of normalised, padded images), e.g. for a teacher model. Built
as ``cls(cfg)``.""")


def build_from_registry(registry: ComponentRegistry, name: str, cfg: CfgNode, *args: Any) -> Any:
    """``registry.get(name)(cfg, *args)``, with an unknown name reported with the known ones, and
    a component's refusal of its config values (a ``ValueError``) as a :class:`ConfigError` that
    names the component."""
    if name not in registry:
        known = ", ".join(registry.names()) or "none registered"
        raise ConfigError(f"no {registry.kind} named {name!r}; known: {known}")
    try:
        return registry.get(name)(cfg, *args)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{registry.kind} {name}: {error}") from error


def build_backbone(cfg: CfgNode, *args: Any) -> Any:
    """The backbone named by ``cfg.MODEL.BACKBONE.NAME``."""
    return build_from_registry(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, cfg, *args)


def build_model(cfg: CfgNode) -> Any:
    """The meta-architecture named by ``cfg.MODEL.META_ARCHITECTURE``, on ``cfg.MODEL.DEVICE``."""
    model = build_from_registry(META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE, cfg)
    return model.to(cfg.MODEL.DEVICE)
