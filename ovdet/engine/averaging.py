"""Weighted averages of detector checkpoints ("model soups", WiSE-FT): one set of weights from
several runs of the same architecture, e.g. two fine-tunings of one pretrained detector.

The average is taken weight by weight: ``sum_i ratio_i * weights_i`` with the ratios scaled to
sum to 1. It is only meaningful for runs that share a starting point (fine-tuned from the same
checkpoint), where the weights stay in one basin of the loss. Floating-point tensors are averaged
(in float64, written back in their own dtype); other tensors (integer buffers such as counters)
are taken from the first checkpoint. Every checkpoint must hold the same weight names and shapes
and have been trained on the same base and stuff names (they decide the base/novel ensemble at
inference).

The result is a checkpoint dict ``{"model", "base_names", "stuff_names"}`` (the names when the
checkpoints have them): no optimizer state and no iteration, so it starts a run
(``MODEL.WEIGHTS``) or is evaluated; it never resumes one.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .checkpoint import CheckpointError, load_checkpoint_file


def normalised_ratios(ratios: Sequence[float]) -> list[float]:
    """``ratios`` scaled to sum to 1; ValueError unless each is finite and >= 0 and their sum is
    positive."""
    bad = [r for r in ratios if not math.isfinite(r) or r < 0]
    if bad or not ratios:
        raise ValueError(f"ratios must be finite and >= 0, got {list(ratios)}")
    largest = max(ratios)
    if largest <= 0:
        raise ValueError(f"ratios must not all be 0, got {list(ratios)}")
    total = math.fsum(r / largest for r in ratios)  # scaled first: no overflow for huge ratios
    return [r / largest / total for r in ratios]


def average_checkpoints(paths: Sequence[str], ratios: Sequence[float]) -> dict[str, Any]:
    """The weighted average (module doc) of the checkpoint files ``paths``, ``ratios`` one per
    file (scaled to sum to 1). ValueError for fewer than two files or ratios that do not match;
    :class:`CheckpointError` for an unreadable file or checkpoints that do not fit each other.
    ``base_names`` / ``stuff_names`` are copied when the checkpoints have them."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    if len(ratios) != len(paths):
        raise ValueError(f"{len(paths)} checkpoints but {len(ratios)} ratios: give one ratio per "
                         "checkpoint")
    ratios = normalised_ratios(ratios)
    first_path = paths[0]
    first = read_weights(first_path)
    model = first["model"]
    sums = {name: ratios[0] * value.double() for name, value in model.items()
            if value.is_floating_point()}
    for path, ratio in zip(paths[1:], ratios[1:]):
        checkpoint = read_weights(path)
        check_same_model(first_path, first, path, checkpoint)
        for name in sums:
            sums[name] += ratio * checkpoint["model"][name].double()
    averaged = {name: sums[name].to(value.dtype) if name in sums else value
                for name, value in model.items()}
    names = {key: first[key] for key in ("base_names", "stuff_names") if key in first}
    return {"model": averaged, **names}


def read_weights(path: str) -> dict[str, Any]:
    """The checkpoint in ``path`` with its ``"model"`` entries as tensors and its
    ``base_names`` / ``stuff_names`` (when present) as lists of names; CheckpointError when they
    are not."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint["model"], dict):
        raise CheckpointError(f"{path}: its 'model' entry is not a dict of weights")
    model = {}
    for name, value in checkpoint["model"].items():
        try:
            model[name] = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise CheckpointError(f"{path}: weight {name} is a {type(value).__name__}, not a "
                                  "tensor") from None
    names = {}
    for key in ("base_names", "stuff_names"):
        if key in checkpoint:
            value = checkpoint[key]
            if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
                raise CheckpointError(f"{path}: {key} is not a list of names")
            names[key] = list(value)
    return {"model": model, **names}


def check_same_model(first_path: str, first: dict[str, Any], path: str,
                     checkpoint: dict[str, Any]) -> None:
    """CheckpointError unless ``checkpoint`` (from ``path``) has the weight names, shapes, kinds
    (floating point or not) and base / stuff names of ``first`` (from ``first_path``); both as
    :func:`read_weights` returns them."""
    names, other = set(first["model"]), set(checkpoint["model"])
    if names != other:
        differences = [f"{', '.join(sorted(keys)[:2])} only in {where}"
                       for keys, where in ((names - other, first_path), (other - names, path))
                       if keys]
        raise CheckpointError(f"{path} and {first_path} hold different weights (e.g. "
                              f"{'; '.join(differences)}): they are not the same architecture")
    for name, value in first["model"].items():
        theirs = checkpoint["model"][name]
        if tuple(value.shape) != tuple(theirs.shape):
            raise CheckpointError(f"{name} has shape {tuple(theirs.shape)} in {path} but "
                                  f"{tuple(value.shape)} in {first_path}: they are not the same "
                                  "architecture")
        if value.is_floating_point() != theirs.is_floating_point():
            raise CheckpointError(f"{name} is {theirs.dtype} in {path} but {value.dtype} in "
                                  f"{first_path}: they are not the same architecture")
    for key in ("base_names", "stuff_names"):
        if first.get(key) != checkpoint.get(key):
            raise CheckpointError(f"{path} and {first_path} were trained on different {key} "
                                  f"({checkpoint.get(key)} vs {first.get(key)}); "
                                  "only runs of one training set can be averaged")
