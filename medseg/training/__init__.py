"""Training that resumes exactly and scales out: checkpoints, a step-seeded data stream, DDP set-up.

Wired into the bundles' ``train.json`` (``Checkpointer``, ``SeededBatchSampler``/``SeededDataset``)
and their ``multi_gpu_train.json`` overlays (``init_distributed``, ``wrap_ddp``, ``local_device``).
"""

from medseg.training.cache import cached_dataset
from medseg.training.checkpoint import Checkpointer, CheckpointError, latest_checkpoint, load_checkpoint
from medseg.training.distributed import (
    destroy_distributed,
    init_distributed,
    is_main_process,
    local_device,
    rank_and_world,
    unwrap,
    wrap_ddp,
)
from medseg.training.finetune import FreezeLoaded, init_weights
from medseg.training.options import EarlyStop, GradientClip, seed_run
from medseg.training.report import TrainingReport
from medseg.training.rng import RNGStates, seed_everything, step_seed
from medseg.training.sampler import SeededBatchSampler, SeededDataset

__all__ = [
    "EarlyStop",
    "FreezeLoaded",
    "GradientClip",
    "init_weights",
    "seed_run",
    "CheckpointError",
    "Checkpointer",
    "RNGStates",
    "cached_dataset",
    "SeededBatchSampler",
    "SeededDataset",
    "TrainingReport",
    "destroy_distributed",
    "init_distributed",
    "is_main_process",
    "latest_checkpoint",
    "load_checkpoint",
    "local_device",
    "rank_and_world",
    "seed_everything",
    "step_seed",
    "unwrap",
    "wrap_ddp",
]
