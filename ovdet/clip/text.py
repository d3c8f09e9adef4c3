"""Class embeddings from CLIP's text encoder: template ensembles, cached on disk.

``class_embeddings(clip, names, templates)`` -> (C, D) L2-normalised: for each name, the mean of
the normalised embeddings of every template filled with it, normalised again (CLIP's prompt
ensembling). The on-disk cache is keyed by model name, pretrained source, a fingerprint of the
text tower's weights, the templates and the names; any change is a miss. Entries are written
atomically as ``<cache_dir>/<sha256 key>.pt``.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..utils.io import atomic_torch_save
from .load import CLIPBundle

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a picture of a {}.",
    "there is a {} in the scene.",
    "a close-up photo of a {}.",
    "a {} in the picture.",
)
CACHE_ENV = "OVDET_CACHE"


def default_cache_dir() -> Path:
    """``$OVDET_CACHE/text_embeddings``, default ``~/.cache/ovdet/text_embeddings``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ovdet"
    return Path(root) / "text_embeddings"


@torch.no_grad()
def encode_texts(clip: CLIPBundle, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) L2-normalised CLIP embeddings of ``texts``."""
    device = next(p for n, p in clip.model.named_parameters() if not n.startswith("visual.")).device
    chunks = [clip.model.encode_text(clip.tokenizer(list(texts[i:i + batch_size])).to(device))
              for i in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(chunks).float(), dim=-1)


def _check_inputs(names: Sequence[str], templates: Sequence[str]) -> None:
    if isinstance(names, str) or not names:
        raise ValueError("names must be a non-empty list of class names")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"class names must be non-empty strings, got {bad[:3]}")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("every template must contain '{}' where the class name goes, "
                         f"got {list(templates)[:3]}")


def text_probabilities(embeddings: torch.Tensor, text: torch.Tensor,
                       logit_scale: float | torch.Tensor) -> torch.Tensor:
    """(..., D) image-side CLIP embeddings (unnormalised) and (V, D) unit-norm text embeddings
    -> (..., V): softmax over the V texts of ``logit_scale * cosine similarity``."""
    return (logit_scale * F.normalize(embeddings, dim=-1) @ text.T).softmax(dim=-1)


def compute_class_embeddings(clip: CLIPBundle, names: Sequence[str],
                             templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """(C, D) template-ensembled, L2-normalised class embeddings (no cache)."""
    _check_inputs(names, templates)
    texts = [t.format(name) for name in names for t in templates]
    per_template = encode_texts(clip, texts).view(len(names), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1)


def cache_key(clip: CLIPBundle, names: Sequence[str], templates: Sequence[str]) -> str:
    """The cache key: sha256 of model, pretrained source, text weights, templates and names."""
    payload = {"model": clip.name, "pretrained": str(clip.pretrained),
               "weights": clip.text_fingerprint(), "templates": list(templates), "names": list(names)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def class_embeddings(clip: CLIPBundle, names: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES,
                     cache_dir: str | Path | None = None, use_cache: bool = True) -> torch.Tensor:
    """(C, D) class embeddings, read from the disk cache when present, computed and stored
    otherwise. ``cache_dir`` defaults to :func:`default_cache_dir`."""
    _check_inputs(names, templates)
    if not use_cache:
        return compute_class_embeddings(clip, names, templates)
    path = Path(cache_dir or default_cache_dir()) / f"{cache_key(clip, names, templates)}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):
            path.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
    embeddings = compute_class_embeddings(clip, names, templates)
    atomic_torch_save(path, embeddings)
    return embeddings
