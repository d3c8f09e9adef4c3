"""Losses of the panoptic branch: query objectness, classes and masks, after Hungarian matching.

Targets per image (padded input pixels, H x W)::

    {"masks": bool (S, H, W), "classes": int64 (S,) in [0, C), "void": bool (H, W)}

``void`` is True where no segment is taught: unlabelled pixels, crowd regions, segments of novel
classes (removed from the training file), padding. Void pixels are ignored by every loss: no
point on them is sampled into a mask loss, and a query left unmatched whose predicted mask lies
mostly (over half) on void is not taught "no object" either: it may be covering a novel thing.

Losses (summed over the final and every auxiliary prediction): ``loss_panoptic_objectness``
(binary cross-entropy: matched queries are segments, the other queries not, weighted
``void_weight``), ``loss_panoptic_ce`` (the matched queries' classes), ``loss_panoptic_mask`` and
``loss_panoptic_dice`` (per matched mask, on points).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .matcher import hungarian_match, point_sample


def mask_point_losses(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits``, ``targets``, ``weights``: (M, K) at matched pairs' points (weights 0 on void).
    Returns the sums over the M masks of the mean BCE and of the dice loss."""
    labelled = weights.sum(-1).clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    bce = (bce * weights).sum(-1) / labelled
    probabilities = logits.sigmoid() * weights
    numerator = 2 * (probabilities * targets).sum(-1)
    denominator = probabilities.sum(-1) + (targets * weights).sum(-1)
    dice = 1 - (numerator + 1) / (denominator + 1)
    return bce.sum(), dice.sum()


def importance_points(logits: torch.Tensor, num_points: int, oversample: float,
                      importance: float) -> torch.Tensor:
    """(M, h, w) mask logits -> (M, num_points, 2) points: the ``importance`` share where the
    prediction is least certain (|logit| smallest) among ``oversample * num_points`` random ones,
    the rest uniformly random."""
    m = logits.shape[0]
    candidates = torch.rand(m, int(oversample * num_points), 2, device=logits.device)
    uncertainty = -point_sample(logits.detach(), candidates).abs()
    chosen = int(importance * num_points)
    top = uncertainty.topk(chosen, dim=1).indices
    uncertain = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
    random = torch.rand(m, num_points - chosen, 2, device=logits.device)
    return torch.cat([uncertain, random], dim=1)


def average_over_ranks(count: int) -> float:
    """``count`` averaged over the processes of a distributed run (itself otherwise), at least 1:
    every rank normalises its mask losses by the same number (Mask2Former's)."""
    if dist.is_available() and dist.is_initialized():
        total = torch.tensor(float(count))
        if dist.get_backend() == "nccl":
            total = total.cuda()
        dist.all_reduce(total)
        count = total.item() / dist.get_world_size()
    return max(1.0, float(count))


def labelled_points(void: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool void maps, (N, K, 2) or (K, 2) points -> (N, K) weights: 1 where no void
    pixel enters the point's bilinear read, else 0."""
    return (point_sample(void.float(), points) == 0).float()


class PanopticCriterion:
    """Matching and losses of the query head (module doc).

    Args:
        num_points: points per mask for the mask losses and the matching.
        oversample, importance: importance sampling of the loss points.
        cost_class, cost_mask, cost_dice: the matching costs' weights (the class cost is
            ``-objectness x p(class)``).
        void_weight: weight of the unmatched queries ("no object") in the objectness loss.
    """

    def __init__(self, num_points: int = 12544, oversample: float = 3.0, importance: float = 0.75,
                 cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 void_weight: float = 0.1) -> None:
        if num_points < 1 or oversample < 1 or not 0 <= importance <= 1:
            raise ValueError(f"need num_points >= 1, oversample >= 1, importance in [0, 1]; got "
                             f"{num_points}, {oversample}, {importance}")
        self.num_points, self.oversample, self.importance = num_points, oversample, importance
        self.costs = (cost_class, cost_mask, cost_dice)
        self.void_weight = void_weight

    def match(self, prediction: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image (query indices, segment indices) for a prediction (``logits`` (B, Q, C),
        ``objectness`` (B, Q), ``masks`` (B, Q, h, w))."""
        masks = prediction["masks"]
        probabilities = prediction["logits"].softmax(-1) * prediction["objectness"].sigmoid()[..., None]
        matches = []
        for b, target in enumerate(targets):
            points = torch.rand(self.num_points, 2, device=masks.device)
            weights = labelled_points(target["void"][None], points)[0]
            matches.append(hungarian_match(
                probabilities[b], point_sample(masks[b], points),
                target["classes"], point_sample(target["masks"].float(), points), weights,
                *self.costs))
        return matches

    def __call__(self, outputs: dict, targets: list[dict]) -> tuple[dict[str, torch.Tensor], list]:
        """``outputs``: the query head's (``logits``, ``objectness``, ``masks``, ``aux``).
        Returns the losses summed over the final and the auxiliary predictions (module doc), and
        the matches of the final prediction (per image (queries, segments))."""
        num_masks = average_over_ranks(sum(len(t["classes"]) for t in targets))
        totals = {"loss_panoptic_objectness": 0.0, "loss_panoptic_ce": 0.0,
                  "loss_panoptic_mask": 0.0, "loss_panoptic_dice": 0.0}
        final_matches: list = []
        for prediction in [*outputs["aux"], outputs]:
            matches = self.match(prediction, targets)
            totals["loss_panoptic_objectness"] += self.objectness_loss(prediction, targets, matches)
            totals["loss_panoptic_ce"] += self.classification_loss(prediction, targets, matches,
                                                                   num_masks)
            bce, dice = self.mask_losses(prediction["masks"], targets, matches)
            totals["loss_panoptic_mask"] += bce / num_masks
            totals["loss_panoptic_dice"] += dice / num_masks
            final_matches = matches
        return totals, final_matches

    def objectness_loss(self, prediction: dict, targets: list[dict], matches: list
                        ) -> torch.Tensor:
        """Weighted binary cross-entropy of the objectness: matched queries 1 (weight 1), the
        others 0 (weight ``void_weight``), except those mostly over void (weight 0)."""
        objectness, masks = prediction["objectness"], prediction["masks"]
        labels = torch.zeros_like(objectness, dtype=torch.float32)
        weights = torch.full_like(labels, self.void_weight)
        for b, (target, (rows, _)) in enumerate(zip(targets, matches)):
            rows = rows.to(labels.device)
            weights[b] *= ~self.mostly_void(masks[b].detach(), target["void"])
            labels[b, rows] = 1.0
            weights[b, rows] = 1.0
        losses = F.binary_cross_entropy_with_logits(objectness.float(), labels, reduction="none")
        return (losses * weights).sum() / weights.sum().clamp(min=1e-6)

    @staticmethod
    def classification_loss(prediction: dict, targets: list[dict], matches: list,
                            num_masks: float) -> torch.Tensor:
        """Cross-entropy of the matched queries' classes, summed over them / ``num_masks``
        (zero, with gradient, without segments)."""
        logits = prediction["logits"]
        chosen = torch.cat([logits[b, rows.to(logits.device)] for b, (rows, _) in enumerate(matches)])
        labels = torch.cat([t["classes"][columns.to(t["classes"].device)]
                            for t, (_, columns) in zip(targets, matches)])
        return F.cross_entropy(chosen.float(), labels, reduction="sum") / num_masks

    def mostly_void(self, masks: torch.Tensor, void: torch.Tensor) -> torch.Tensor:
        """(Q, h, w) mask logits -> (Q,) bool: over half of the predicted mask lies on void."""
        points = torch.rand(min(self.num_points, 4096), 2, device=masks.device)
        with torch.autocast(masks.device.type, enabled=False):  # counts in float32
            on = (point_sample(masks.float(), points) > 0).float()
            on_void = on @ point_sample(void[None].float(), points)[0]
        return on_void > 0.5 * on.sum(-1)

    def mask_losses(self, masks: torch.Tensor, targets: list[dict], matches: list
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums over matched pairs of the point BCE and dice losses."""
        logits, target_masks, voids = [], [], []
        for b, (target, (rows, columns)) in enumerate(zip(targets, matches)):
            logits.append(masks[b, rows.to(masks.device)])
            target_masks.append(target["masks"][columns.to(masks.device)])
            voids.append(target["void"][None].expand(len(rows), -1, -1))
        return self.point_losses(torch.cat(logits), torch.cat(target_masks), torch.cat(voids))

    def point_losses(self, logits: torch.Tensor, targets: torch.Tensor, void: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, h, w) logits against (M, H, W) bool targets and void, at importance-sampled
        points: the summed BCE and dice losses (zero, with gradient, when M = 0)."""
        if logits.shape[0] == 0:
            zero = logits.sum() * 0.0
            return zero, zero
        points = importance_points(logits, self.num_points, self.oversample, self.importance)
        point_logits = point_sample(logits, points)
        point_targets = point_sample(targets.float(), points)
        weights = labelled_points(void, points)
        return mask_point_losses(point_logits, point_targets, weights)
