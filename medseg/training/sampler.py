"""A training data stream that is a pure function of the step: exact resume and DDP equivalence.

Step ``s`` of rank ``r`` (batch ``B``, ``W`` ranks) holds the items at the global positions
``s*B*W + r*B + k``. Position ``p`` is dataset item ``perm_d[p % n]`` of pass ``d = p // n`` (a
permutation drawn from ``seed`` and ``d``), and that item's random transforms are seeded from
``seed`` and ``p``. So:

- a run resumed at step ``s`` sees exactly the batches an uninterrupted run sees, whatever the
  number of loader workers (nothing depends on a worker's random state);
- ``W`` ranks with batch ``B`` see the items, with the same augmentation, that one process with
  batch ``W*B`` sees.

Checked first: torch's and MONAI's ``DistributedSampler`` shard one epoch's permutation but cannot
start mid-epoch and leave the transforms' random state to each worker; ignite's
``ReproducibleBatchSampler`` needs one pass over the data per epoch (our bundles set
``epoch_length`` independently) and also leaves the workers' transform state alone.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from medseg.training.distributed import rank_and_world
from medseg.training.rng import step_seed


class SeededBatchSampler(Sampler):
    """Yield, forever, step after step, this rank's batch of ``(item index, item seed)`` keys.

    Use it as the ``batch_sampler`` of a ``DataLoader`` over ``SeededDataset(dataset)``. Its length
    is one pass over the data (so ``epoch_length`` may be left to the loader); ``set_step`` moves
    the start (``medseg.training.Checkpointer`` calls it on resume).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.num_items = len(dataset)
        if self.num_items == 0:
            raise ValueError("SeededBatchSampler: the dataset is empty")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        default_rank, default_world = rank_and_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.start_step = 0
        self._pass: tuple[int, np.ndarray] | None = None

    def set_step(self, step: int) -> None:
        self.start_step = int(step)

    def __len__(self) -> int:
        return math.ceil(self.num_items / (self.batch_size * self.world_size))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        global_batch = self.batch_size * self.world_size
        while True:
            first = step * global_batch + self.rank * self.batch_size
            yield [self.key(first + k) for k in range(self.batch_size)]
            step += 1

    def key(self, position: int) -> tuple[int, int]:
        """``(dataset index, seed of its random transforms)`` at a global ``position``."""
        data_pass, offset = divmod(position, self.num_items)
        if not self.shuffle:
            return offset, step_seed(self.seed, position)
        if self._pass is None or self._pass[0] != data_pass:
            order = np.random.default_rng([self.seed, data_pass]).permutation(self.num_items)
            self._pass = (data_pass, order)
        return int(self._pass[1][offset]), step_seed(self.seed, position)


class SeededDataset(Dataset):
    """``dataset[index]`` with its random transforms seeded by the key's seed (MONAI's
    ``set_random_state`` on ``dataset.transform``, and torch's generator for transforms that draw
    from it). A lock keeps thread workers from interleaving seed and draw."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        transform = getattr(self.dataset, "transform", None)
        with self._lock:
            if hasattr(transform, "set_random_state"):
                transform.set_random_state(seed=seed)
            torch.manual_seed(seed)
            return self.dataset[index]
