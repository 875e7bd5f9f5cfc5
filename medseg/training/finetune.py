"""Start a training from another model's weights: load what fits, say what did not, and optionally
hold the loaded weights still for the first iterations while the new layers catch up.

Loading is MONAI's ``copy_model_state`` (tensors whose name and shape match); this module only
finds the weights (a ``.pt`` file, a bundle or a run folder), reports, and freezes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medseg.errors import BundleError
from medseg.training.checkpoint import load_checkpoint
from medseg.training.distributed import unwrap
from medseg.typing import PathLike

logger = logging.getLogger(__name__)


@dataclass
class InitReport:
    source: Path
    loaded: list[str]
    not_loaded: list[str]  # the network's tensors left as initialised (no match in the source)
    unused: list[str] = field(default_factory=list)  # source tensors with no place in the network

    def summary(self) -> str:
        total = len(self.loaded) + len(self.not_loaded)
        text = f"init from {self.source}: loaded {len(self.loaded)} of {total} tensors"
        if self.not_loaded:
            text += f"; new (not in the source, or another shape): {', '.join(self.not_loaded)}"
        if self.unused:
            text += f"; unused from the source: {len(self.unused)}"
        return text


def weights_path(source: PathLike) -> Path:
    """A weights file: ``source`` itself, or ``models/model.pt`` of a bundle (name or folder) or
    of a run folder."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        from medseg.bundle.locate import find_bundle, is_bare_name

        if not is_bare_name(source):
            raise BundleError(f"--init {source}: no such file or folder")
        path = find_bundle(source)
    weights = path / "models" / "model.pt"
    if not weights.is_file():
        raise BundleError(f"--init {source}: has no trained weights ({weights})")
    return weights


def init_weights(network: torch.nn.Module, source: PathLike) -> InitReport:
    """Load into ``network`` every tensor of ``source`` whose name and shape match (in place)."""
    from monai.networks.utils import copy_model_state

    path = weights_path(source)
    state = load_checkpoint(path)
    if isinstance(state.get("model"), dict):
        state = state["model"]  # a full checkpoint (medseg's, or MONAI's CheckpointSaver's)
    model = unwrap(network)
    _, loaded, not_loaded = copy_model_state(model, state, inplace=True)
    if not loaded:
        raise BundleError(f"--init {source}: none of its tensors fit this bundle's network ({path})")
    mine = model.state_dict()
    unused = sorted(k for k, v in state.items() if k not in mine or mine[k].shape != v.shape)
    report = InitReport(path, loaded, not_loaded, unused)
    logger.info(report.summary())
    return report


class FreezeLoaded:
    """Keep the parameters in ``names`` (those ``init_weights`` loaded, optionally narrowed by the
    regular expression ``pattern``, e.g. ``^(convInit|down_layers)`` for SegResNet's encoder)
    unchanged for the first ``iterations`` steps: their gradients are dropped after the backward
    pass, so the optimizer skips them. Works under DDP (the all-reduce has run; every rank drops
    the same ones) and resumes exactly (it depends on the iteration only)."""

    def __init__(
        self, network: torch.nn.Module, names: list[str], iterations: int, pattern: str | None = None
    ):
        rule = re.compile(pattern) if pattern else None
        params = dict(unwrap(network).named_parameters())
        self.params = [params[n] for n in names if n in params and (rule is None or rule.search(n))]
        self.iterations = int(iterations)
        if not self.params:
            raise BundleError(f"--freeze-pattern {pattern}: matches none of the loaded parameters")

    def attach(self, engine: Any) -> None:
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)
        logger.info("%d loaded parameter tensors frozen for the first %d iterations",
                    len(self.params), self.iterations)  # fmt: skip

    def __call__(self, engine: Any) -> None:
        if engine.state.iteration <= self.iterations:
            for param in self.params:
                param.grad = None
