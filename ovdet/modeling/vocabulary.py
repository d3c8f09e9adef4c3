"""The detector's vocabulary: class names, which are base, and their embeddings from a source.

* Names are compared after :func:`normalize_class_name` (case, surrounding and repeated
  whitespace, LVIS's ``_`` for spaces as in ``bat_(animal)``), so "Tomato" and "tomato" are one
  class with one base/novel status. Two names with the same normal form are refused.
* Embeddings come from an *embedding source*, itself a module (``EMBEDDING_SOURCE_REGISTRY``):
  :class:`TemplateEmbeddings` (frozen CLIP text tower, template ensemble, cached on disk) by
  default, or :class:`RegionPromptEmbeddings` (learned region prompts from a file, frozen, saved
  in the detector's checkpoint). A source with trainable parameters trains with the detector, is
  saved in its checkpoint, and is re-run at every training step; one without is run once per
  change of names or load of weights.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.load import CLIPBundle
from ..clip.prompts import RegionPrompts
from ..clip.text import DEFAULT_TEMPLATES, class_embeddings
from ..config import CfgNode, ConfigError, configurable
from ..utils.names import normalize_class_name, prompt_name
from .registry import EMBEDDING_SOURCE_REGISTRY


logger = logging.getLogger(__name__)

def check_class_names(names: Any, what: str = "vocabulary") -> list[str]:
    """``names`` as a list, or a ``ValueError`` that says what is wrong: a single string instead of
    a list, an empty list, a name that is not a non-empty string, or two names with the same
    normal form (:func:`normalize_class_name`)."""
    if isinstance(names, (str, bytes)):
        raise ValueError(f"the {what} must be a list of class names, got the single string "
                         f"{names!r}; write [{names!r}] for one class")
    if isinstance(names, (set, frozenset, dict)):
        raise ValueError(f"the {what} must be an ordered list of class names (class i is the "
                         f"i-th name), got a {type(names).__name__}")
    try:
        names = list(names)
    except TypeError:
        raise ValueError(f"the {what} must be a list of class names, got "
                         f"{type(names).__name__}") from None
    if not names:
        raise ValueError(f"the {what} is empty: give at least one class name")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"class names must be non-empty strings, got {bad[:3]}")
    first: dict[str, str] = {}
    clashes = []
    for name in names:
        key = normalize_class_name(name)
        if key in first:
            clashes.append(f"{first[key]!r} and {name!r}")
        first.setdefault(key, name)
    if clashes:
        raise ValueError(f"the {what} names one class twice (names are compared ignoring case, "
                         f"spaces and underscores): {', '.join(clashes[:5])}")
    return names


@EMBEDDING_SOURCE_REGISTRY.register()
class TemplateEmbeddings(nn.Module):
    """CLIP text embeddings of a template ensemble (frozen, no parameters, cached on disk by
    :func:`ovdet.clip.text.class_embeddings`): ``(names) -> (C, D)`` unit norm."""

    cacheable = True

    @configurable
    def __init__(self, *, clip: CLIPBundle, templates: Sequence[str] = DEFAULT_TEMPLATES) -> None:
        super().__init__()
        self.clip = clip  # a dataclass, not a module: the text tower is frozen and not saved
        self.templates = tuple(templates)

    @classmethod
    def from_config(cls, cfg: CfgNode, clip: CLIPBundle) -> dict:
        if cfg.MODEL.OPEN_VOCAB.PROMPTS:
            raise ConfigError(f"MODEL.OPEN_VOCAB.PROMPTS is set ({cfg.MODEL.OPEN_VOCAB.PROMPTS}) "
                              "but the embedding source is TemplateEmbeddings, which ignores it: "
                              "set MODEL.OPEN_VOCAB.EMBEDDING_SOURCE RegionPromptEmbeddings, or "
                              "clear PROMPTS")
        return {"clip": clip, "templates": tuple(cfg.MODEL.OPEN_VOCAB.TEMPLATES) or DEFAULT_TEMPLATES}

    def forward(self, names: list[str]) -> torch.Tensor:
        return class_embeddings(self.clip, [prompt_name(n) for n in names], self.templates)


@EMBEDDING_SOURCE_REGISTRY.register()
class RegionPromptEmbeddings(nn.Module):
    """CLIP text embeddings of learned region prompts (:mod:`ovdet.clip.prompts`), frozen:
    ``(names) -> (C, D)`` unit norm. The prompts file (``MODEL.OPEN_VOCAB.PROMPTS``, learned for
    this CLIP) is read when the model is built (it gives m, n and the descriptions), and the
    context vectors are saved in the detector's checkpoint as frozen parameters: loading a
    checkpoint restores the vectors it was trained with, with a warning when they differ from the
    file's."""

    cacheable = False  # no disk cache: computed once per vocabulary (no trainable parameters)

    @configurable
    def __init__(self, *, clip: CLIPBundle, prompts: RegionPrompts | str) -> None:
        super().__init__()
        if not isinstance(prompts, RegionPrompts):
            prompts = RegionPrompts.load(prompts, clip)
        self.prompts = prompts.requires_grad_(False)
        self._register_load_state_dict_pre_hook(self._warn_if_other_prompts)

    def _warn_if_other_prompts(self, state_dict: dict, prefix: str, *args: Any) -> None:
        for name in ("context_before", "context_after"):
            loaded = state_dict.get(f"{prefix}prompts.{name}")
            current = getattr(self.prompts, name)
            if loaded is not None and (loaded.shape != current.shape
                                       or not torch.equal(loaded.cpu(), current.detach().cpu())):
                logger.warning("the checkpoint's region prompts differ from those of the prompts "
                               "file (MODEL.OPEN_VOCAB.PROMPTS); the checkpoint's are used")
                return

    @classmethod
    def from_config(cls, cfg: CfgNode, clip: CLIPBundle) -> dict:
        path = cfg.MODEL.OPEN_VOCAB.PROMPTS
        if not path:
            raise ConfigError("MODEL.OPEN_VOCAB.EMBEDDING_SOURCE RegionPromptEmbeddings needs a "
                              "prompts file: set MODEL.OPEN_VOCAB.PROMPTS (made by "
                              "tools/learn_region_prompts.py)")
        try:
            return {"clip": clip, "prompts": RegionPrompts.load(path, clip)}
        except (OSError, ValueError) as error:
            raise ConfigError(f"MODEL.OPEN_VOCAB.PROMPTS: {error}") from None

    def forward(self, names: list[str]) -> torch.Tensor:
        return self.prompts(names)


class Vocabulary(nn.Module):
    """Class names, their base/novel status and their (C, D) unit-norm embeddings.

    Reads like the list of names (``len``, iteration, indexing). ``vocabulary()`` returns the
    embeddings: kept until the names change for a cacheable source or given embeddings; for a
    source with trainable parameters, re-computed (with gradients) at every training call; for
    any other source, re-computed once after each switch of mode or load of weights.

    Args:
        source: the embedding source (``EMBEDDING_SOURCE_REGISTRY``).
        embed_dim: D, the width of CLIP's joint space.
    """

    def __init__(self, source: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.source = source
        self.names: list[str] = []
        self.base_names: list[str] = []
        self.register_buffer("embeddings", torch.zeros(0, embed_dim), persistent=False)
        self.register_buffer("novel_mask", torch.zeros(0, dtype=torch.bool), persistent=False)
        self._image_counts: dict[str, float] = {}
        self._given = False
        self._stale = False

    # ---- the list of names ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    # ---- setting ----------------------------------------------------------------------------
    def set(self, names: Sequence[str], embeddings: torch.Tensor | None = None) -> None:
        """Classify among ``names`` from now on, with ``embeddings`` (C, D) if given (shape
        checked, normalised here, never re-computed) or else the source's."""
        names = check_class_names(names)
        expected = (len(names), self.embeddings.shape[1])
        if embeddings is not None and (embeddings.ndim != 2 or tuple(embeddings.shape) != expected):
            raise ValueError(f"class embeddings must be {expected}, got {tuple(embeddings.shape)}")
        given = embeddings is not None
        if embeddings is None:
            with torch.no_grad():
                embeddings = self.source(names)
            if tuple(embeddings.shape) != expected:
                raise ValueError(f"the embedding source {type(self.source).__name__} returned "
                                 f"{tuple(embeddings.shape)} embeddings for {expected[0]} names; "
                                 f"the detector needs {expected}")
        self.embeddings = F.normalize(embeddings.detach().float(), dim=-1).to(self.embeddings.device)
        self._given = given
        self.names = names
        self._stale = False
        self._update_novel_mask()

    def clear(self) -> None:
        """No names (calling the vocabulary then raises)."""
        self.names = []
        self.embeddings = self.embeddings.new_zeros(0, self.embeddings.shape[1])
        self._given = self._stale = False
        self._update_novel_mask()

    def set_base_names(self, names: Sequence[str]) -> None:
        """Which names count as base (trained on); compared in normal form."""
        self.base_names = list(names)
        self._update_novel_mask()

    def set_image_counts(self, counts: Sequence[int] | torch.Tensor | None) -> None:
        """(C,) images of the training set that hold each class of the current names (federated
        loss weights), or None to forget them; they stay with their names across vocabulary
        changes."""
        if counts is None:
            self._image_counts = {}
            return
        counts = torch.as_tensor(counts, dtype=torch.float32)
        if counts.shape != (len(self.names),) or (counts < 0).any():
            raise ValueError(f"image counts must be {len(self.names)} non-negative numbers, got "
                             f"shape {tuple(counts.shape)}")
        self._image_counts = {normalize_class_name(n): float(c)
                              for n, c in zip(self.names, counts)}

    @property
    def image_counts(self) -> torch.Tensor | None:
        """(C,) training images per current name, or None when some name has no count."""
        keys = [normalize_class_name(n) for n in self.names]
        if not keys or any(k not in self._image_counts for k in keys):
            return None
        return torch.tensor([self._image_counts[k] for k in keys], device=self.embeddings.device)

    def _update_novel_mask(self) -> None:
        base = {normalize_class_name(n) for n in self.base_names}
        self.novel_mask = torch.tensor([normalize_class_name(n) not in base for n in self.names],
                                       dtype=torch.bool, device=self.embeddings.device)

    # ---- embeddings -------------------------------------------------------------------------
    def forward(self) -> torch.Tensor:
        """(C, D) unit-norm class embeddings (class doc for when they are re-computed)."""
        if not self.names:
            raise RuntimeError("no vocabulary: call set_vocabulary(names) (or "
                               "set_training_vocabulary) first")
        if self._given or getattr(self.source, "cacheable", False):
            return self.embeddings
        trainable = any(p.requires_grad for p in self.source.parameters())
        if trainable and self.training and torch.is_grad_enabled():
            embeddings = F.normalize(self.source(self.names).float(), dim=-1)
            self.embeddings = embeddings.detach()
            self._stale = True
            return embeddings
        if self._stale:
            with torch.no_grad():
                self.embeddings = F.normalize(self.source(self.names).float(), dim=-1)
            self._stale = False
        return self.embeddings

    def train(self, mode: bool = True) -> "Vocabulary":
        self._stale = True
        return super().train(mode)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._stale = True
        super()._load_from_state_dict(*args, **kwargs)
