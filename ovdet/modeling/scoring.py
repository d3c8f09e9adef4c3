"""Scoring policies: how the RoI head's class probabilities and CLIP's region scores become
detection scores (``SCORER_REGISTRY``; ``MODEL.OPEN_VOCAB.SCORER``).

:class:`CLIPEnsembleScorer` (the default) is the ViLD / F-VLM ensemble: the head's probabilities
``p`` and CLIP's RMA region probabilities ``q`` combine by a geometric mean ``p^(1-w) q^w``, with
``w = alpha`` for base classes (those the detector was trained on) and ``w = beta`` for novel ones.
Two options change the novel classes' side:

* ``novel_prior="objectness"`` replaces ``p`` for novel classes by a class-agnostic localisation
  prior, ``sqrt(RPN objectness x the box's fit to the class's dense CLIP activation map)``
  (:mod:`ovdet.clip.box_fit`), times the head's probability that the box is *not* a base object.
  A head trained on base boxes has learnt to call unlabelled novel objects background (its
  foreground probability on them is near 0), while RMA alone ranks boxes inside an object as high
  as boxes around it.
* ``novel_boxes="proposals"`` scores novel classes on the RPN proposals themselves: a box
  regressor trained on base shapes moves novel boxes away from their objects.
"""
from __future__ import annotations

import torch

from ..clip.box_fit import box_fits
from ..clip.rma import box_probabilities
from ..config import CfgNode, configurable
from .contracts import ScoringInputs
from .registry import SCORER_REGISTRY


@SCORER_REGISTRY.register()
class CLIPEnsembleScorer:
    """The ViLD / F-VLM ensemble with optional novel-class priors (module doc).

    Args:
        use_clip_ensemble: False returns the head's probabilities unchanged.
        ensemble_weights: (alpha for base classes, beta for novel classes): CLIP's weight.
        novel_prior: "head" (F-VLM) or "objectness".
        novel_boxes: "regressed" or "proposals".
        box_fit_exponent: exponent of the box size in the dense box fit (PB-OVD: 0.5).
    """

    inputs = ScoringInputs  # what it scores (mask scorers take MaskScoringInputs)

    @configurable
    def __init__(self, *, use_clip_ensemble: bool = True,
                 ensemble_weights: tuple[float, float] = (0.35, 0.65), novel_prior: str = "head",
                 novel_boxes: str = "regressed", box_fit_exponent: float = 0.5) -> None:
        if novel_prior not in ("head", "objectness"):
            raise ValueError(f"novel_prior must be 'head' or 'objectness', got {novel_prior!r}")
        if novel_boxes not in ("regressed", "proposals"):
            raise ValueError(f"novel_boxes must be 'regressed' or 'proposals', got {novel_boxes!r}")
        self.use_clip_ensemble = use_clip_ensemble
        self.ensemble_weights = tuple(ensemble_weights)
        self.novel_prior = novel_prior
        self.novel_boxes = novel_boxes
        self.box_fit_exponent = box_fit_exponent

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        ov = cfg.MODEL.OPEN_VOCAB
        return {"use_clip_ensemble": ov.USE_CLIP_ENSEMBLE,
                "ensemble_weights": (ov.ALPHA_BASE, ov.BETA_NOVEL),
                "novel_prior": ov.NOVEL_PRIOR, "novel_boxes": ov.NOVEL_BOXES,
                "box_fit_exponent": ov.BOX_FIT_EXPONENT}

    def __call__(self, inputs: ScoringInputs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        boxes, probabilities = inputs.boxes, inputs.probabilities
        if not self.use_clip_ensemble:
            return boxes, probabilities
        novel = bool(inputs.novel_mask.any())
        objectness = inputs.objectness
        if novel and self.novel_boxes == "proposals":
            boxes, probabilities, objectness, allowed = self.novel_on_proposals(
                inputs, boxes, probabilities, objectness)
        if novel and self.novel_prior == "objectness":
            probabilities = self.with_objectness_prior(inputs, boxes, probabilities, objectness)
        probabilities = self.ensemble(inputs, boxes, probabilities)
        if novel and self.novel_boxes == "proposals":
            probabilities = [p * a for p, a in zip(probabilities, allowed)]
        return boxes, probabilities

    def ensemble(self, inputs: ScoringInputs, boxes: list[torch.Tensor],
                 head: list[torch.Tensor]) -> list[torch.Tensor]:
        """Geometric mean of head and CLIP probabilities, weight per base/novel class."""
        alpha, beta = self.ensemble_weights
        weight = torch.where(inputs.novel_mask, beta, alpha).to(inputs.class_embeddings.device)
        clip = self.clip_probabilities(inputs, boxes)
        return [p.clamp(min=1e-12) ** (1 - weight) * q.clamp(min=1e-12) ** weight
                for p, q in zip(head, clip)]

    @staticmethod
    def clip_probabilities(inputs: ScoringInputs, boxes: list[torch.Tensor]
                           ) -> list[torch.Tensor]:
        """Per image (P, C) softmax over the vocabulary of the RMA region embeddings of ``boxes``."""
        return box_probabilities(inputs.trunk, inputs.trunk_output, boxes,
                                 inputs.class_embeddings, inputs.logit_scale)

    @staticmethod
    def novel_on_proposals(inputs: ScoringInputs, boxes: list[torch.Tensor],
                           probabilities: list[torch.Tensor], objectness: list[torch.Tensor]):
        """Candidates for base classes on the regressed boxes and for novel classes on the
        proposals themselves: per image (2P, 4) boxes, (2P, C) probabilities, (2P,) objectness
        and a (2P, C) 0/1 mask of the class columns each candidate may carry."""
        base = (~inputs.novel_mask).float()
        novel = inputs.novel_mask.float()
        allowed = [torch.cat([base.expand(len(b), -1), novel.expand(len(p), -1)])
                   for b, p in zip(boxes, inputs.proposals)]
        return ([torch.cat([b, p]) for b, p in zip(boxes, inputs.proposals)],
                [torch.cat([q, q]) for q in probabilities],
                [torch.cat([o, o]) for o in objectness], allowed)

    def with_objectness_prior(self, inputs: ScoringInputs, boxes: list[torch.Tensor],
                              head: list[torch.Tensor], objectness: list[torch.Tensor]
                              ) -> list[torch.Tensor]:
        """Head probabilities with the novel columns replaced by sqrt(objectness * box fit) times
        the head's probability that the box is *not* a base object (the head vetoes novel labels
        on objects it recognises)."""
        fits = box_fits(inputs.trunk, inputs.trunk_output, boxes, inputs.class_embeddings,
                        inputs.logit_scale, self.box_fit_exponent)
        novel = inputs.novel_mask
        return [torch.where(novel, (o[:, None] * f).clamp(min=0).sqrt()
                            * (1 - p[:, ~novel].sum(dim=1, keepdim=True)).clamp(min=0), p)
                for p, o, f in zip(head, objectness, fits)]
