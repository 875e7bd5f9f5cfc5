"""The state of every random generator a training step uses, as a checkpoint entry.

Stored without pickled objects (tensors, ints, tuples) so that ``torch.load(weights_only=True)``
reads it back: numpy's MT19937 key becomes an int64 tensor.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch (every device), numpy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def step_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed drawn from ``seed`` and ``keys`` (a step, a rank, a sample position):
    neighbouring keys give unrelated streams (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class RNGStates:
    """``state_dict``/``load_state_dict`` over torch (CPU and CUDA), numpy and ``random``."""

    def state_dict(self) -> dict[str, Any]:
        kind, key, pos, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "key": torch.from_numpy(key.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"].cpu())
        numpy = state["numpy"]
        key = numpy["key"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", key, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        # A checkpoint written on a GPU machine also resumes on a CPU one, and the other way round.
        if "cuda" in state and torch.cuda.is_available():
            states = state["cuda"][: torch.cuda.device_count()]
            torch.cuda.set_rng_state_all([s.cpu() for s in states])
