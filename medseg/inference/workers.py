"""Run window batches through the network in several threads, results in order.

On a CPU the network's small 3D convolutions, norms and activations scale poorly across
intra-op threads: two batches computed at once, each on half the threads, are 1.19x faster on 2
cores than one batch on both (the abdomen network on a 512x512x256 CT; benchmarks/README.md). PyTorch
releases the GIL in its kernels, and ``torch.set_num_threads`` set inside a thread only applies
to that thread. Checked: ``concurrent.futures`` has no ordered, bounded map (``Executor.map``
submits everything at once, which would hold every window of the volume in memory).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(device: torch.device, workers: int | None) -> int:
    """``None``: two on a CPU with at least two threads, else one (GPUs queue work anyway)."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        return workers
    return 2 if device.type == "cpu" and torch.get_num_threads() >= 2 else 1


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, function(item))`` in the order of ``items``; at most ``workers + 1`` computed
    ahead of the consumer. The workers, and the consumer while it iterates, each get
    ``threads // workers`` torch threads."""
    if workers == 1:
        for item in items:
            yield item, function(item)
        return
    before = torch.get_num_threads()
    threads = max(1, before // workers)
    pending: deque = deque()
    torch.set_num_threads(threads)  # the consumer's own work runs alongside the workers
    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(function, item)))
                if len(pending) > workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()
            torch.set_num_threads(before)
