"""The step-seeded data stream: what each rank gets at each step, and that it resumes anywhere."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose, EnsureTyped, RandGaussianNoised, RandSpatialCropd

from medseg.training import SeededBatchSampler, SeededDataset


def _take(sampler, steps):
    return list(itertools.islice(iter(sampler), steps))


def test_ranks_split_what_one_process_with_their_global_batch_sees():
    data = list(range(7))
    single = _take(SeededBatchSampler(data, batch_size=4, seed=3, rank=0, world_size=1), 5)
    ranks = [_take(SeededBatchSampler(data, batch_size=2, seed=3, rank=r, world_size=2), 5) for r in (0, 1)]
    for step in range(5):
        assert ranks[0][step] + ranks[1][step] == single[step]


def test_each_pass_visits_every_item_once_in_a_new_order():
    data = list(range(6))
    keys = [k for batch in _take(SeededBatchSampler(data, batch_size=3, seed=0), 4) for k in batch]
    passes = [[index for index, _ in keys[i : i + 6]] for i in (0, 6)]
    assert sorted(passes[0]) == sorted(passes[1]) == data
    assert passes[0] != passes[1]
    assert len({seed for _, seed in keys}) == len(keys)  # every position gets its own seed
    plain = [k[0] for b in _take(SeededBatchSampler(data, batch_size=3, shuffle=False), 2) for k in b]
    assert plain == data


def test_set_step_starts_the_stream_where_an_uninterrupted_one_is():
    data = list(range(5))
    whole = _take(SeededBatchSampler(data, batch_size=2, seed=1), 9)
    later = SeededBatchSampler(data, batch_size=2, seed=1)
    later.set_step(4)
    assert _take(later, 5) == whole[4:]
    assert len(later) == 3  # one pass over five items in batches of two


def test_empty_dataset_is_refused():
    with pytest.raises(ValueError, match="empty"):
        SeededBatchSampler([], batch_size=1)


def _volumes():
    rng = np.random.default_rng(0)
    return [{"image": rng.normal(size=(1, 12, 12, 12)).astype(np.float32)} for _ in range(3)]


def _dataset():
    transform = Compose(
        [
            EnsureTyped(keys="image"),
            RandSpatialCropd(keys="image", roi_size=(6, 6, 6), random_size=False),
            RandGaussianNoised(keys="image", prob=1.0, std=0.5),
        ]
    )
    return CacheDataset(_volumes(), transform=transform, progress=False)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_do_not_depend_on_workers_or_on_what_ran_before(num_workers):
    """MONAI random crops and noise, applied per item from the key's seed: the same batches with
    or without worker processes, and a loader started at step 3 repeats steps 3.. exactly."""
    reference = []
    sampler = SeededBatchSampler(range(3), batch_size=2, seed=5)
    loader = DataLoader(SeededDataset(_dataset()), batch_sampler=sampler, num_workers=0)
    for batch, _ in zip(loader, range(6), strict=False):
        reference.append(batch["image"].clone())
    torch.manual_seed(123)  # whatever the global state, the stream does not change
    sampler = SeededBatchSampler(range(3), batch_size=2, seed=5)
    sampler.set_step(3)
    loader = DataLoader(SeededDataset(_dataset()), batch_sampler=sampler, num_workers=num_workers)
    resumed = [batch["image"] for batch, _ in zip(loader, range(3), strict=False)]
    for a, b in zip(reference[3:], resumed, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(reference[0], reference[1])  # the augmentation does draw new values
