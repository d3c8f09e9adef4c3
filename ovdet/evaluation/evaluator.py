"""The evaluator interface, and how per-rank predictions are gathered on rank 0 through files.

An evaluator sees a dataset in batches::

    evaluator.reset()
    for inputs in loader:              # list[dict], each with at least "image_id" (int)
        outputs = model(inputs)        # list[dict], each {"instances": {...}}
        evaluator.process(inputs, outputs)
    metrics = evaluator.evaluate()     # {} on ranks other than 0

Distributed evaluation gathers through files, so that nothing but a barrier crosses processes:
every rank writes its predictions to ``OUTPUT_DIR/inference/<dataset>_results.rank<R>.json`` (a
JSON list of result entries), waits at ``torch.distributed.barrier()``, and rank 0 concatenates
the files of ranks ``0 .. world_size - 1`` (in rank order) into
``OUTPUT_DIR/inference/<dataset>_results.json``, removes the rank files and evaluates. Without an
initialised ``torch.distributed`` (the single-process case) the process is rank 0 of a world of
size 1. The inference sampler must give every image to exactly one rank: merging concatenates,
it does not deduplicate.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist

from ..utils.io import atomic_write_json, read_json


class DatasetEvaluator(ABC):
    """Accumulates a model's predictions over a dataset and computes metrics from them."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every prediction processed so far (called before a new evaluation)."""

    @abstractmethod
    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Record the predictions of one batch.

        ``inputs[i]`` has at least ``"image_id"`` (int, the dataset's image id); ``outputs[i]``
        is the model's prediction for that image, ``{"instances": {...}}`` (each evaluator
        documents the fields it reads).
        """

    @abstractmethod
    def evaluate(self) -> dict:
        """Metrics over everything processed since the last :meth:`reset`, as
        ``{task: {metric: float}}``; ``{}`` on ranks other than 0."""


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` when torch.distributed is not
    initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_dataset_name(dataset_name: str) -> None:
    """``ValueError`` unless ``dataset_name`` can be part of a file name."""
    if not dataset_name or "/" in dataset_name or os.sep in dataset_name:
        raise ValueError(f"dataset_name must be a non-empty name usable in a file name, "
                         f"got {dataset_name!r}")


def results_path(output_dir: str | os.PathLike, dataset_name: str,
                 rank: int | None = None) -> Path:
    """``output_dir/inference/<dataset_name>_results.json``, or with ``rank`` given the rank's
    file ``output_dir/inference/<dataset_name>_results.rank<rank>.json``."""
    check_dataset_name(dataset_name)
    suffix = "" if rank is None else f".rank{rank}"
    return Path(output_dir) / "inference" / f"{dataset_name}_results{suffix}.json"


def merge_rank_results(rank_files: Sequence[str | os.PathLike],
                       merged_file: str | os.PathLike) -> list[dict]:
    """Concatenate the result lists of ``rank_files`` (in the given order), write them to
    ``merged_file`` atomically, remove the rank files, and return the merged list.

    Each rank file holds a JSON list of result entries (COCO / LVIS results format). Raises
    ``FileNotFoundError`` naming a missing rank file and ``ValueError`` naming a file that is not a
    JSON list; in both cases nothing is written or removed.
    """
    merged: list[dict] = []
    for path in rank_files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"rank results file {path} is missing: did every rank call "
                                    f"evaluate() with the same output_dir?")
        entries = read_json(path, "rank results file")
        if not isinstance(entries, list):
            raise ValueError(f"rank results file {path} holds a {type(entries).__name__}, "
                             f"expected a JSON list of result entries")
        merged.extend(entries)
    atomic_write_json(merged_file, merged)
    for path in rank_files:
        os.remove(path)
    return merged


def gather_results(results: list[dict], dataset_name: str,
                   output_dir: str | os.PathLike | None) -> list[dict] | None:
    """All ranks' result entries on rank 0 (``None`` on other ranks).

    With ``output_dir`` given, this rank's ``results`` go to its rank file, and after a barrier
    (when distributed) rank 0 merges the rank files into ``<dataset_name>_results.json`` (see the
    module docstring). Without ``output_dir`` a single process gets ``results`` back and nothing
    is written; a distributed run needs ``output_dir`` (``ValueError`` otherwise).
    """
    rank, world_size = rank_and_world_size()
    if output_dir is None:
        if world_size > 1:
            raise ValueError("distributed evaluation gathers predictions through files: give the "
                             "evaluator an output_dir")
        return results
    atomic_write_json(results_path(output_dir, dataset_name, rank), results)
    if world_size > 1:
        dist.barrier()
    if rank != 0:
        return None
    rank_files = [results_path(output_dir, dataset_name, r) for r in range(world_size)]
    return merge_rank_results(rank_files, results_path(output_dir, dataset_name))
