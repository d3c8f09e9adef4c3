"""Scoring of mask proposals: the query head's in-vocabulary classes and CLIP's mask classes,
combined as FC-CLIP does (``SCORER_REGISTRY``; ``MODEL.PANOPTIC.SCORER``).

:class:`MaskEnsembleScorer`: with the head's class probabilities ``p`` (softmax over the C
vocabulary classes) and CLIP's ``q`` (RMA or crop mask embeddings against the same text
embeddings), ``p^(1-w) q^w`` with ``w = alpha`` for classes seen in training and ``w = beta`` for
the others, renormalised over the C classes, times ``1 - p(void)``, the query's class-agnostic
objectness.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...config import CfgNode, configurable
from ..registry import SCORER_REGISTRY


@dataclass
class MaskScoringInputs:
    """One image's mask proposals: ``logits`` (Q, C) and ``objectness`` (Q,) logits of the query
    head, ``clip_probabilities`` (Q, C) CLIP's softmax over the vocabulary, ``seen`` (C,) bool."""

    logits: torch.Tensor
    objectness: torch.Tensor
    clip_probabilities: torch.Tensor
    seen: torch.Tensor


@SCORER_REGISTRY.register()
class MaskEnsembleScorer:
    """The FC-CLIP geometric ensemble (module doc).

    Args:
        ensemble_weights: (alpha for seen classes, beta for unseen ones): CLIP's weight.
        use_clip: False scores with the head alone (``p x objectness``).
    """

    inputs = MaskScoringInputs  # what it scores (detection scorers take ScoringInputs)

    @configurable
    def __init__(self, *, ensemble_weights: tuple[float, float] = (0.4, 0.8),
                 use_clip: bool = True) -> None:
        if not all(0 <= w <= 1 for w in ensemble_weights):
            raise ValueError(f"ensemble weights must be in [0, 1], got {tuple(ensemble_weights)}")
        self.ensemble_weights = tuple(ensemble_weights)
        self.use_clip = use_clip

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        p = cfg.MODEL.PANOPTIC
        return {"ensemble_weights": (p.ALPHA_SEEN, p.BETA_UNSEEN),
                "use_clip": cfg.MODEL.OPEN_VOCAB.USE_CLIP_ENSEMBLE}

    def __call__(self, inputs: MaskScoringInputs) -> torch.Tensor:
        """(Q, C) scores in [0, 1]."""
        head = inputs.logits.float().softmax(dim=-1)
        objectness = inputs.objectness.float().sigmoid()[:, None]
        if not self.use_clip:
            return head * objectness
        alpha, beta = self.ensemble_weights
        weight = torch.where(inputs.seen, alpha, beta).to(head)
        combined = (head.clamp(min=1e-12).log() * (1 - weight)
                    + inputs.clip_probabilities.float().clamp(min=1e-12).log() * weight)
        return combined.softmax(dim=-1) * objectness
