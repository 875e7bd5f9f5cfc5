"""A test probe for distributed training: after every step, each rank appends a digest of its
model's weights to ``<folder>/rank<R>.txt`` (imported by the training processes via PYTHONPATH)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class WeightDigest:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        digest = hashlib.sha256()
        for tensor in engine.network.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        rank = os.environ.get("RANK", "0")
        with open(self.folder / f"rank{rank}.txt", "a") as f:
            f.write(f"{engine.state.iteration} {digest.hexdigest()}\n")
