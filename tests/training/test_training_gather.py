"""Validation cases gathered over real gloo processes: every case once, in dataset order."""

from __future__ import annotations

import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp
from monai.data import DistributedSampler

from medseg.training.distributed import gather_items


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, cases: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sampler = DistributedSampler(list(range(cases)), even_divisible=True, shuffle=False)
        seen = [f"case{i}" for i in sampler]  # what this rank's evaluator would score
        out.put((rank, seen, gather_items(seen, sampler)))
    finally:
        dist.destroy_process_group()


def test_padded_validation_split_gathers_each_case_once():
    """5 cases on 2 ranks: the sampler pads to 6 (case0 twice); gathered, each case counts once."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, 5, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [seen for _, seen, _ in results] == [["case0", "case2", "case4"], ["case1", "case3", "case0"]]
    expected = [f"case{i}" for i in range(5)]
    assert all(gathered == expected for _, _, gathered in results)
    assert gather_items(["a", "b"]) == ["a", "b"]  # outside a process group: unchanged
