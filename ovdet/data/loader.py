"""Data loaders. Training batches are indexed by iteration: batch ``i`` is drawn and augmented from
seeds derived from ``(seed, i)`` alone, so a resumed run sees exactly the batches an uninterrupted
run would, whatever the number of workers.

Two ways to draw training batches from the datasets of ``DATASETS.TRAIN``:

* :class:`IterationBatches` (``DATALOADER.DATASET_RATIOS = ()``): the records of all datasets
  concatenated, each batch drawn from one seeded permutation of the concatenation;
* :class:`MixedIterationBatches` (one ratio per dataset): every batch holds a fixed number of
  images of each dataset (:func:`split_batch`), each dataset drawn from its own seeded
  permutations, epoch by epoch of its own.
"""
from __future__ import annotations

import logging
import math
import numbers
from fractions import Fraction
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError
from .image_io import ImageReadError

logger = logging.getLogger(__name__)

RATIOS_KEY = "DATALOADER.DATASET_RATIOS"


def _map_in_order(records: list[dict], order: np.ndarray, start: int, count: int,
                  mapper: Callable[[dict], dict]) -> list[dict]:
    """Up to ``count`` mapped records ``records[order[start]], records[order[start + 1]], ...``
    (positions wrap around ``order``); unreadable images are logged and replaced by the next
    record, and at most ``len(records)`` records are tried."""
    batch, position = [], start
    while len(batch) < count and position < start + len(records):
        record = records[order[position % len(order)]]
        position += 1
        try:
            batch.append(mapper(record))
        except (ImageReadError, ValueError) as error:
            logger.warning("skipping %s: %s", record.get("file_name"), error)
    return batch


def _seed_augmentations(seed: int, iteration: int) -> None:
    """Seeds the mapper's random transforms of iteration ``iteration``."""
    torch.manual_seed(int(np.random.default_rng([seed, iteration, 1]).integers(2**62)))


class IterationBatches(Dataset):
    """Item ``i`` is the mapped batch of iteration ``i``: ``batch_size`` records drawn without
    replacement from a permutation of the dataset seeded by ``(seed, epoch)``; unreadable images
    are logged and replaced by the next record of the same permutation."""

    def __init__(self, records: list[dict], mapper: Callable[[dict], dict], batch_size: int,
                 seed: int) -> None:
        if not records:
            raise ValueError("the training set is empty")
        self.records, self.mapper, self.batch_size, self.seed = records, mapper, batch_size, seed

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, iteration: int) -> list[dict]:
        per_epoch = max(1, len(self.records) // self.batch_size)
        epoch, step = divmod(iteration, per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.records))
        _seed_augmentations(self.seed, iteration)
        batch = _map_in_order(self.records, order, step * self.batch_size, self.batch_size,
                              self.mapper)
        if not batch:
            raise RuntimeError("no image of the training set could be read")
        return batch


def check_dataset_ratios(ratios: Sequence, num_datasets: int) -> list[float]:
    """``DATALOADER.DATASET_RATIOS`` as floats: one positive finite number per dataset of
    ``DATASETS.TRAIN`` (``num_datasets``), else a :class:`ConfigError` naming the key."""
    if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Sequence):
        raise ConfigError(f"{RATIOS_KEY} must be a list of numbers, one per dataset of "
                          f"DATASETS.TRAIN, got {ratios!r}")
    if len(ratios) != num_datasets:
        raise ConfigError(f"{RATIOS_KEY} {tuple(ratios)} needs one ratio per dataset of "
                          f"DATASETS.TRAIN ({num_datasets}), got {len(ratios)}; or () to draw "
                          "batches from their concatenation")
    for ratio in ratios:
        if (isinstance(ratio, bool) or not isinstance(ratio, numbers.Real)
                or not math.isfinite(ratio) or ratio <= 0):
            raise ConfigError(f"{RATIOS_KEY} must hold positive numbers, got {ratio!r} in "
                              f"{tuple(ratios)}")
    return [float(ratio) for ratio in ratios]


def split_batch(batch_size: int, ratios: Sequence[float]) -> list[int]:
    """How many of ``batch_size`` images each dataset gives, for positive ``ratios``.

    Largest remainder: dataset ``j`` first gets ``floor(B * r_j / sum(r))``; the images left go
    one each to the largest fractional parts ``B * r_j / sum(r) - floor(...)`` (ties: the earlier
    dataset); then, while some dataset has none, it takes one image from the dataset that holds
    the most (ties: the later one), so that every dataset gives at least one. The counts sum to
    ``B``. A :class:`ConfigError` when ``B`` is smaller than the number of datasets (one of them
    would never be drawn). E.g. ``B = 4``: ratios (1, 1) -> [2, 2], (3, 1) -> [3, 1],
    (10, 1, 1) -> [2, 1, 1]."""
    if batch_size < len(ratios):
        raise ConfigError(f"{RATIOS_KEY} mixes {len(ratios)} datasets in every batch, so each "
                          f"process needs at least {len(ratios)} images per batch; it has "
                          f"{batch_size} (SOLVER.IMS_PER_BATCH / number of processes)")
    exact = [Fraction(ratio) for ratio in ratios]  # exact arithmetic: ties are real ties
    quotas = [batch_size * ratio / sum(exact) for ratio in exact]
    counts = [math.floor(quota) for quota in quotas]
    by_fraction = sorted(range(len(ratios)), key=lambda j: (-(quotas[j] - counts[j]), j))
    for j in by_fraction[:batch_size - sum(counts)]:
        counts[j] += 1
    for j in range(len(counts)):
        if counts[j] == 0:
            donor = max(range(len(counts)), key=lambda k: (counts[k], k))
            counts[donor] -= 1
            counts[j] = 1
    return counts


class MixedIterationBatches(Dataset):
    """Item ``i`` is the mapped batch of iteration ``i``, mixed from several datasets: dataset
    ``j`` gives ``n_j`` images (:func:`split_batch` of ``batch_size`` by ``ratios``), drawn
    without replacement from a permutation of that dataset seeded by ``(seed, epoch_j, j)``, where
    ``epoch_j = i // max(1, len(dataset j) // n_j)`` counts the epochs of that dataset alone (a
    small dataset is repeated more often than a large one; one smaller than ``n_j`` gives all its
    records, so the batch is smaller). The batch lists dataset 0's images,
    then dataset 1's, ...; unreadable images are logged and replaced by the next record of the
    same dataset's permutation. Batch ``i`` depends on ``(seed, i)`` only.

    Args:
        datasets: ``(name, records)`` per dataset, in the order of ``ratios``.
        ratios: one positive number per dataset (checked by :func:`check_dataset_ratios`).
    """

    def __init__(self, datasets: Sequence[tuple[str, list[dict]]], ratios: Sequence[float],
                 mapper: Callable[[dict], dict], batch_size: int, seed: int) -> None:
        ratios = check_dataset_ratios(ratios, len(datasets))
        empty = [name for name, records in datasets if not records]
        if empty:
            raise ValueError(f"training datasets {empty} are empty")
        self.datasets = [records for _, records in datasets]
        self.names = [name for name, _ in datasets]
        self.counts = split_batch(batch_size, ratios)
        self.mapper, self.seed = mapper, seed

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, iteration: int) -> list[dict]:
        _seed_augmentations(self.seed, iteration)
        batch = []
        for j, (records, count) in enumerate(zip(self.datasets, self.counts)):
            epoch, step = divmod(iteration, max(1, len(records) // count))
            order = np.random.default_rng([self.seed, epoch, j, 3]).permutation(len(records))
            part = _map_in_order(records, order, step * count, count, self.mapper)
            if not part:
                raise RuntimeError(f"no image of training dataset {self.names[j]!r} could be read")
            batch += part
        return batch


def build_train_loader(datasets: Sequence[tuple[str, list[dict]]], mapper: Callable[[dict], dict],
                       batch_size: int, seed: int, start_iter: int, max_iter: int,
                       num_workers: int, ratios: Sequence[float] = ()) -> Iterator[list[dict]]:
    """Yields the batches of iterations ``start_iter .. max_iter - 1`` in order, from
    ``datasets`` (``(name, records)`` each): drawn from their concatenation
    (:class:`IterationBatches`) when ``ratios`` is empty, else mixed by ``ratios``
    (:class:`MixedIterationBatches`)."""
    if len(ratios):
        dataset: Dataset = MixedIterationBatches(datasets, ratios, mapper, batch_size, seed)
    else:
        dataset = IterationBatches([r for _, records in datasets for r in records], mapper,
                                   batch_size, seed)
    loader = DataLoader(dataset, batch_size=None, sampler=range(start_iter, max_iter),
                        num_workers=num_workers, collate_fn=lambda batch: batch,
                        persistent_workers=False)
    return iter(loader)


def iterate_test_records(records: list[dict], mapper: Callable[[dict], dict], batch_size: int
                         ) -> Iterator[list[dict]]:
    """Mapped test batches in dataset order; unreadable images are logged and skipped."""
    batch = []
    for record in records:
        try:
            batch.append(mapper(record))
        except (ImageReadError, ValueError) as error:
            logger.warning("skipping %s: %s", record.get("file_name"), error)
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
