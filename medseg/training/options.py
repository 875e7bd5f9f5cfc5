"""Small training switches as handlers and set-up calls: gradient clipping, early stopping, and
the choice between reproducible and fast GPU kernels."""

from __future__ import annotations

import os
from typing import Any

import torch


def seed_run(seed: int, deterministic: bool = False) -> None:
    """Seed every generator (MONAI's ``set_determinism``); then either reproducible GPU kernels
    (``deterministic``: ``torch.use_deterministic_algorithms``, cuBLAS workspace set, cuDNN without
    autotuning) or the fastest ones (cuDNN autotuning). CPU training is bit-exact either way."""
    from monai.utils import set_determinism

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    set_determinism(seed=seed, use_deterministic_algorithms=deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


class GradientClip:
    """Clip the gradients' global norm to ``max_norm`` after every backward pass (nothing when
    ``max_norm`` is None). With AMP the gradients are unscaled first, as PyTorch documents."""

    def __init__(self, max_norm: float | None = None) -> None:
        self.max_norm = max_norm

    def attach(self, engine: Any) -> None:
        from monai.engines.utils import IterationEvents

        if self.max_norm is not None:
            engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        if getattr(engine, "amp", False) and getattr(engine, "scaler", None) is not None:
            engine.scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)


class EarlyStop:
    """Stop the training when the validator's key metric has not improved by more than
    ``min_delta`` for ``patience`` validations (nothing when ``patience`` is None): ignite's
    ``EarlyStopping`` (``cumulative_delta``: small gains do not move the bar), whose counter this
    puts in the checkpoint, so a resumed run stops where the uninterrupted one would."""

    def __init__(self, patience: int | None = None, validator: Any = None, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.validator = validator
        self.min_delta = float(min_delta)
        self.stopping: Any = None

    def state_dict(self) -> dict[str, Any]:
        if self.stopping is None:
            return {"best": None, "counter": 0}
        return {"best": self.stopping.best_score, "counter": self.stopping.counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.stopping is not None:
            self.stopping.best_score, self.stopping.counter = state["best"], state["counter"]

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events
        from ignite.handlers import EarlyStopping

        if self.patience is None or self.validator is None:
            return
        self.stopping = EarlyStopping(
            self.patience, lambda v: float(v.state.metrics[v.state.key_metric_name]), engine,
            min_delta=self.min_delta, cumulative_delta=True,
        )  # fmt: skip
        self.validator.add_event_handler(Events.COMPLETED, self.stopping)
