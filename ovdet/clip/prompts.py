"""Learned region prompts (PromptDet): context vectors spliced into CLIP's text encoder.

A class name is embedded as the token sequence::

    [SOS] ctx_1 .. ctx_m  <name tokens>  ctx'_1 .. ctx'_n  [<description tokens>] . [EOS]

where ``ctx`` and ``ctx'`` are learned vectors in the token-embedding space (width W of the text
tower) that take the place of word embeddings, ``m`` and ``n`` are configurable (1 and 1 by
default) and the description is optional (LVIS's ``def`` field, a toy category's description).
The text encoder is frozen: only the context vectors learn. They are learned against *region*
embeddings (RMA tokens of boxes; :mod:`ovdet.clip.prompt_learning`), so that the text side matches
regions rather than whole images.

The end-of-text position is exact for names and descriptions of any token length: the sequence is
built token by token and pooled at its own ``[EOS]`` (open_clip's pooling on the built ids).
Sequences longer than the context length lose description tokens first; a name too long to fit
even without its description is a ``ValueError``.

Prompts file (``torch.save``, read with ``weights_only=True``)::

    {"format": "ovdet-region-prompts", "version": 1,
     "clip": {"name": str, "pretrained": str, "text_fingerprint": SHA-1 of the text tower,
              "width": W, "embed_dim": D},
     "num_before": m, "num_after": n, "init": str ("" = N(0, 0.02)),
     "context_before": (m, W) float32, "context_after": (n, W) float32,
     "descriptions": {normalised class name: description},
     "extra": {...}}   # what the learner adds: a background embedding, training report

A file is only used with the CLIP it was learned for (same architecture name and text-tower
weights); another CLIP is a :class:`PromptsMismatchError`.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from ..utils.io import atomic_torch_save
from .load import CLIPBundle

PROMPTS_FORMAT = "ovdet-region-prompts"
PROMPTS_VERSION = 1
INIT_STD = 0.02


class PromptsMismatchError(ValueError):
    """A prompts file learned for another CLIP (architecture or text-tower weights)."""


def _normal_name(name: str) -> str:
    # the vocabulary's normal form, imported lazily (ovdet.modeling imports ovdet.clip)
    from ..modeling.vocabulary import normalize_class_name

    return normalize_class_name(name)


@dataclass
class PromptTokens:
    """The built token sequences of C names: ``ids`` (C, L) int64 (context slots hold 0),
    ``before`` (C, m) and ``after`` (C, n) int64 positions of the context slots, ``eot`` (C,)
    int64 position of each ``[EOS]``."""

    ids: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    eot: torch.Tensor


class RegionPrompts(nn.Module):
    """Learned context vectors for CLIP's text encoder (module doc).

    Args:
        clip: the CLIP whose text encoder embeds the prompts. Its text tower is frozen here
            (``requires_grad`` False on every non-visual parameter): only the context learns.
        num_before, num_after: m and n, the context vectors before and after the name (>= 0,
            not both 0).
        init: "" draws the vectors from N(0, 0.02); otherwise a template such as ``"a {} object"``
            whose m word tokens before ``{}`` and n after it give the initial vectors.
        descriptions: {class name: description}, used for names that have one.
    """

    def __init__(self, clip: CLIPBundle, num_before: int = 1, num_after: int = 1, init: str = "",
                 descriptions: Mapping[str, str] | None = None) -> None:
        super().__init__()
        model, tokenizer = clip.model, clip.tokenizer
        missing = [a for a in ("token_embedding", "positional_embedding", "transformer",
                               "ln_final", "text_projection") if not hasattr(model, a)]
        if missing or not all(hasattr(tokenizer, a) for a in
                              ("encode", "sot_token_id", "eot_token_id", "context_length")):
            raise TypeError(f"region prompts need an open_clip CLIP with its own text transformer "
                            f"and BPE tokenizer; {clip.name} has "
                            f"{type(model).__name__} / {type(tokenizer).__name__}")
        if num_before < 0 or num_after < 0 or num_before + num_after == 0:
            raise ValueError(f"region prompts need num_before, num_after >= 0 and at least one "
                             f"context vector, got {num_before} and {num_after}")
        for name, parameter in model.named_parameters():
            if not name.startswith("visual."):
                parameter.requires_grad_(False)
        self.clip = clip  # a dataclass, not a module: the frozen text tower is not saved here
        self.num_before, self.num_after, self.init = num_before, num_after, init
        width = model.token_embedding.weight.shape[1]
        before, after = self._initial_context(init, width)
        self.context_before = nn.Parameter(before)
        self.context_after = nn.Parameter(after)
        self.descriptions: dict[str, str] = {}
        self.set_descriptions(descriptions or {})
        self.extra: dict[str, Any] = {}

    # ---- building ----------------------------------------------------------------------------
    def _initial_context(self, init: str, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not init:
            return (torch.randn(self.num_before, width) * INIT_STD,
                    torch.randn(self.num_after, width) * INIT_STD)
        if init.count("{}") != 1:
            raise ValueError(f"the prompt init template must hold one '{{}}' where the name goes, "
                             f"got {init!r}")
        head, tail = init.split("{}")
        head_ids, tail_ids = self._encode(head), self._encode(tail)
        if (len(head_ids), len(tail_ids)) != (self.num_before, self.num_after):
            raise ValueError(f"the prompt init template {init!r} has {len(head_ids)} tokens before "
                             f"the name and {len(tail_ids)} after it; the prompts have "
                             f"{self.num_before} and {self.num_after} context vectors")
        table = self.clip.model.token_embedding.weight.detach().float()
        return (table[torch.tensor(head_ids, dtype=torch.long)].clone(),
                table[torch.tensor(tail_ids, dtype=torch.long)].clone())

    def _encode(self, text: str) -> list[int]:
        return list(self.clip.tokenizer.encode(text)) if text.strip() else []

    def set_descriptions(self, descriptions: Mapping[str, str]) -> None:
        """Add or replace descriptions ({class name: text}); an empty text removes one."""
        for name, text in descriptions.items():
            if not isinstance(name, str) or not isinstance(text, str):
                raise ValueError(f"descriptions map class names to strings, got {name!r}: "
                                 f"{text!r}")
            key = _normal_name(name)
            if text.strip():
                self.descriptions[key] = " ".join(text.split())
            else:
                self.descriptions.pop(key, None)

    def tokens(self, names: Sequence[str]) -> PromptTokens:
        """The token sequences of ``names`` (:class:`PromptTokens`), descriptions included."""
        from ..modeling.vocabulary import prompt_name

        tokenizer = self.clip.tokenizer
        length = tokenizer.context_length
        m, n = self.num_before, self.num_after
        rows, befores, afters, eots = [], [], [], []
        for name in names:
            name_ids = self._encode(prompt_name(name))
            if not name_ids:
                raise ValueError(f"class name {name!r} has no tokens")
            period = self._encode(".")
            fixed = 1 + m + len(name_ids) + n + len(period) + 1
            if fixed > length:
                raise ValueError(f"class name {name!r} is {len(name_ids)} tokens: with {m + n} "
                                 f"context vectors it does not fit CLIP's {length}-token context")
            description = self.descriptions.get(_normal_name(name), "")
            description_ids = self._encode(description)[:length - fixed]
            ids = ([tokenizer.sot_token_id] + [0] * m + name_ids + [0] * n + description_ids
                   + period + [tokenizer.eot_token_id])
            start_after = 1 + m + len(name_ids)
            befores.append(list(range(1, 1 + m)))
            afters.append(list(range(start_after, start_after + n)))
            eots.append(len(ids) - 1)
            rows.append(ids + [0] * (length - len(ids)))
        count = len(names)
        return PromptTokens(ids=torch.tensor(rows, dtype=torch.long).reshape(count, length),
                            before=torch.tensor(befores, dtype=torch.long).reshape(count, m),
                            after=torch.tensor(afters, dtype=torch.long).reshape(count, n),
                            eot=torch.tensor(eots, dtype=torch.long))

    # ---- embedding ---------------------------------------------------------------------------
    def forward(self, names: Sequence[str], tokens: PromptTokens | None = None) -> torch.Tensor:
        """``names`` -> (C, D) unit-norm class embeddings (differentiable in the context).
        ``tokens``: ``self.tokens(names)`` when already built (a training loop embeds the same
        names at every step)."""
        if isinstance(names, str) or not len(names):
            raise ValueError("names must be a non-empty list of class names")
        model = self.clip.model
        device = model.token_embedding.weight.device
        tokens = self.tokens(names) if tokens is None else tokens
        ids = tokens.ids.to(device)
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(ids).to(cast_dtype)
        rows = torch.arange(len(names), device=device)[:, None]
        # computed on the text tower's device (a detector moved to a GPU leaves it where it
        # was, but moves these parameters) and returned on the context's
        x = x.index_put((rows.expand_as(tokens.before), tokens.before.to(device)),
                        self.context_before.to(device, cast_dtype).expand(len(names), -1, -1))
        x = x.index_put((rows.expand_as(tokens.after), tokens.after.to(device)),
                        self.context_after.to(device, cast_dtype).expand(len(names), -1, -1))
        x = x + model.positional_embedding.to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        x = text_global_pool(x, ids, model.text_pool_type,
                             eos_token_id=getattr(model, "text_eos_id", None))
        projection = model.text_projection
        if isinstance(projection, nn.Linear):
            x = projection(x)
        elif projection is not None:
            x = x @ projection
        return F.normalize(x.float(), dim=-1).to(self.context_before.device)

    # ---- the file ----------------------------------------------------------------------------
    def clip_identity(self) -> dict[str, Any]:
        """What a prompts file records of its CLIP (module doc)."""
        model = self.clip.model
        return {"name": self.clip.name, "pretrained": str(self.clip.pretrained or ""),
                "text_fingerprint": self.clip.text_fingerprint(),
                "width": int(model.token_embedding.weight.shape[1]),
                "embed_dim": int(self.context_before.shape[1] if model.text_projection is None
                                 else model.text_projection.out_features
                                 if isinstance(model.text_projection, nn.Linear)
                                 else model.text_projection.shape[-1])}

    def to_file_dict(self) -> dict[str, Any]:
        return {"format": PROMPTS_FORMAT, "version": PROMPTS_VERSION,
                "clip": self.clip_identity(), "num_before": self.num_before,
                "num_after": self.num_after, "init": self.init,
                "context_before": self.context_before.detach().cpu().float().clone(),
                "context_after": self.context_after.detach().cpu().float().clone(),
                "descriptions": dict(self.descriptions), "extra": dict(self.extra)}

    def save(self, path: str | Path) -> None:
        """Write the prompts file (module doc) atomically."""
        atomic_torch_save(path, self.to_file_dict())

    @classmethod
    def from_file_dict(cls, data: Any, clip: CLIPBundle, source: str = "prompts") -> RegionPrompts:
        """A :meth:`to_file_dict` dict -> prompts for ``clip`` (checked: module doc)."""
        if not isinstance(data, dict) or data.get("format") != PROMPTS_FORMAT:
            raise ValueError(f"{source} is not an ovdet region prompts file (make one with "
                             "tools/learn_region_prompts.py)")
        if data.get("version") != PROMPTS_VERSION:
            raise ValueError(f"{source} is a version {data.get('version')} prompts file; this "
                             f"ovdet reads version {PROMPTS_VERSION}")
        missing = [k for k in ("clip", "num_before", "num_after", "context_before",
                               "context_after") if k not in data]
        if missing or not isinstance(data["clip"], dict) or not {
                "name", "width", "text_fingerprint"} <= data["clip"].keys():
            raise ValueError(f"{source} is a damaged region prompts file (missing "
                             f"{', '.join(missing) or 'its CLIP identity'})")
        with torch.random.fork_rng(devices=[]):  # loading draws no numbers of the caller's
            prompts = cls(clip, int(data["num_before"]), int(data["num_after"]),
                          descriptions=data.get("descriptions", {}))
        made_for, here = data["clip"], prompts.clip_identity()
        if made_for["name"] != here["name"] or made_for["width"] != here["width"]:
            raise PromptsMismatchError(
                f"{source} was learned for CLIP {made_for['name']} "
                f"({made_for.get('pretrained') or 'no pretrained tag'}); this model's CLIP is "
                f"{here['name']} ({here['pretrained'] or 'no pretrained tag'}). Learn prompts for "
                "this CLIP with tools/learn_region_prompts.py")
        if made_for["text_fingerprint"] != here["text_fingerprint"]:
            raise PromptsMismatchError(
                f"{source} was learned for other {here['name']} weights "
                f"({made_for.get('pretrained') or '?'}, text tower sha1 "
                f"{made_for['text_fingerprint'][:12]}); this model's are "
                f"{here['pretrained'] or '?'} (sha1 {here['text_fingerprint'][:12]}). Learn "
                "prompts for these weights with tools/learn_region_prompts.py")
        with torch.no_grad():
            for attribute in ("context_before", "context_after"):
                value = data[attribute]
                target = getattr(prompts, attribute)
                if not isinstance(value, torch.Tensor) or value.shape != target.shape:
                    raise ValueError(f"{source}: {attribute} must be {tuple(target.shape)}")
                target.copy_(value)
        prompts.init = str(data.get("init", ""))
        prompts.extra = dict(data.get("extra", {}))
        return prompts

    @classmethod
    def load(cls, path: str | Path, clip: CLIPBundle) -> RegionPrompts:
        """Read a prompts file for ``clip``: ``FileNotFoundError`` when it is missing,
        ``ValueError`` when it is not a prompts file, :class:`PromptsMismatchError` when it was
        learned for another CLIP."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"region prompts file {path} does not exist (make it with "
                                    "tools/learn_region_prompts.py --out FILE)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
            raise ValueError(f"{path} is not a region prompts file: torch.load cannot read it "
                             f"({type(error).__name__}; make one with "
                             "tools/learn_region_prompts.py)") from None
        return cls.from_file_dict(data, clip, str(path))
