"""Loss weighting: every head returns named losses and ``MODEL.LOSS_WEIGHTS`` weighs them in one
place. A loss without a weight counts once; a weight of 0 removes the loss (and its gradient)."""
from __future__ import annotations

from typing import Mapping

import torch

from ..config import ConfigError


def weighted_losses(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]
                    ) -> dict[str, torch.Tensor]:
    """``{name: weights.get(name, 1) * loss}`` without the losses whose weight is 0."""
    return {name: loss * weights.get(name, 1.0) for name, loss in losses.items()
            if weights.get(name, 1.0) != 0}


def check_loss_weight_values(weights: Mapping[str, float]) -> None:
    """``ConfigError`` for a weight that is not a number >= 0."""
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"MODEL.LOSS_WEIGHTS.{name} must be a number >= 0, got {weight!r}")


def check_loss_weight_names(weights: Mapping[str, float], known: set[str]) -> None:
    """``ConfigError`` for a weight that names a loss nobody returns (``known``: the losses)."""
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ConfigError(f"MODEL.LOSS_WEIGHTS names {unknown}, which no head or criterion "
                          f"returns; losses: {sorted(known)}")
