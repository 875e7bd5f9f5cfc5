"""DistributedDataParallel set-up for bundles launched by ``torchrun``: one process per device,
``nccl`` on GPUs and ``gloo`` on CPUs, chosen from the device; rank and world from the environment
torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is there, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}")
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> str:
    """Join the process group torchrun describes (a no-op when already in one); returns the backend.

    Ranks above 0 then log warnings and errors only and show no progress bar: one rank reports.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_backend()
    if "RANK" not in os.environ:
        raise RuntimeError(
            "multi_gpu_train needs torchrun: torchrun --nproc_per_node N -m monai.bundle run "
            "--config_file \"['configs/train.json','configs/multi_gpu_train.json']\""
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend=backend)
    if dist.get_rank() > 0:
        logging.disable(logging.INFO)
        os.environ["TQDM_DISABLE"] = "1"  # tqdm (ignite's ProgressBar) reads its defaults from TQDM_*
    return backend


def destroy_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(
    module: torch.nn.Module, device: torch.device | str | None = None, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """``DistributedDataParallel`` over ``module`` on ``device`` (``device_ids`` only on CUDA).

    ``find_unused_parameters`` for models whose step may leave parameters without a gradient
    (Mask R-CNN's mask head when a batch has no positive proposal).
    """
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device) if device is not None else local_device()
    module = module.to(device)
    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP/DataParallel wrapper (checkpoints hold it without ``module.``)."""
    return (
        getattr(module, "module", module)
        if isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel))
        else module
    )


def gather_items(items: list[Any], sampler: Any = None) -> list[Any]:
    """Every rank's ``items`` (one per validation case, in the order the rank saw them), gathered
    on every rank in dataset order, without the cases a padding ``DistributedSampler``
    (``even_divisible=True``, ``shuffle=False``) repeated so that each rank had as many.
    Outside a process group: ``items`` unchanged."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world == 1:
        return items
    per_rank: list[list[Any]] = [[] for _ in range(world)]
    dist.all_gather_object(per_rank, items)
    total = len(sampler.dataset) if sampler is not None and hasattr(sampler, "dataset") else None
    ordered = []
    for k in range(max(len(r) for r in per_rank)):
        for r in range(world):
            position = r + k * world  # the rank-strided split of DistributedSampler
            if k < len(per_rank[r]) and (total is None or position < total):
                ordered.append(per_rank[r][k])
    return ordered
