"""Data loaders. Training batches are indexed by iteration: batch ``i`` is drawn and augmented from
seeds derived from ``(seed, i)`` alone, so a resumed run sees exactly the batches an uninterrupted
run would, whatever the number of workers."""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .image_io import ImageReadError

logger = logging.getLogger(__name__)


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
        torch.manual_seed(int(np.random.default_rng([self.seed, iteration, 1]).integers(2**62)))
        batch, position = [], step * self.batch_size
        while len(batch) < self.batch_size and position < step * self.batch_size + len(self.records):
            record = self.records[order[position % len(order)]]
            position += 1
            try:
                batch.append(self.mapper(record))
            except (ImageReadError, ValueError) as error:
                logger.warning("skipping %s: %s", record.get("file_name"), error)
        if not batch:
            raise RuntimeError("no image of the training set could be read")
        return batch


def build_train_loader(records: list[dict], mapper: Callable[[dict], dict], batch_size: int,
                       seed: int, start_iter: int, max_iter: int, num_workers: int
                       ) -> Iterator[list[dict]]:
    """Yields the batches of iterations ``start_iter .. max_iter - 1`` in order."""
    dataset = IterationBatches(records, mapper, batch_size, seed)
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
