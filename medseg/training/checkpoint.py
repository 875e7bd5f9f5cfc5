"""Checkpoints that resume a training exactly, written so that a kill never leaves half a file.

One ``Checkpointer`` handler on the trainer:

- every ``interval`` iterations and at the end, ``checkpoints/checkpoint_it{N}.pt`` holds the model,
  optimizer, LR scheduler, AMP scaler, trainer counters, every random generator's state and the
  state of any other handler given in ``save_dict``; the last ``keep_last`` are kept;
- at the end, ``model.pt`` holds the model's weights alone (what inference loads); after each
  validation that beats the best so far, ``model_best.pt`` too;
- with ``resume``, the latest checkpoint is loaded when the trainer starts (a run without one starts
  from scratch, so a job script can always pass it), and the data stream moves to that step;
- every iteration starts from generators seeded by ``seed``, the step and the rank, so the step's
  randomness (dropout, anything the network draws) does not depend on what ran before;
- SIGTERM (a scheduler pre-empting the job, ``kill``) lets the current iteration finish, saves a
  checkpoint and ends the run without its end-of-training outputs, marking the trainer's state
  (``stopped_by = "SIGTERM"``): nothing done is lost.

Only rank 0 writes; every rank loads. Files are written next to their target and renamed into
place (``medseg.io.atomic``). MONAI's ``CheckpointSaver`` (checked) writes non-atomically, saves no
RNG state and takes no resume action; ignite's ``Checkpoint`` does the keep-last bookkeeping but
not the rest, and would unwrap nothing we need here, so this stays small and self-contained.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from pathlib import Path
from typing import Any

import torch

from medseg.io.atomic import atomic_path
from medseg.training.distributed import is_main_process, rank_and_world, unwrap
from medseg.training.rng import RNGStates, seed_everything, step_seed
from medseg.typing import PathLike

logger = logging.getLogger(__name__)
CHECKPOINT = re.compile(r"checkpoint_it(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely or does not fit the training."""


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never arbitrary
    pickled objects; a file that needs more is refused with a one-line reason."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused to load: it holds more than tensors and plain values (weights_only): {first}"
        ) from None


def latest_checkpoint(save_dir: PathLike) -> Path | None:
    """The checkpoint with the highest iteration under ``save_dir/checkpoints``, if any."""
    found = [
        (int(m.group(1)), p)
        for p in Path(save_dir, "checkpoints").glob("checkpoint_it*.pt")
        if (m := CHECKPOINT.search(p.name))
    ]
    return max(found)[1] if found else None


class Checkpointer:
    """Save and resume the whole training state; see the module docstring."""

    def __init__(
        self,
        save_dir: PathLike,
        save_dict: dict[str, Any],
        interval: int = 50,
        keep_last: int = 2,
        resume: bool = False,
        seed: int = 0,
        validator: Any = None,
        key_metric: str | None = None,
        map_location: Any = None,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.interval = int(interval)
        self.keep_last = int(keep_last)
        self.resume = bool(resume)
        self.seed = int(seed)
        self.validator = validator
        self.key_metric = key_metric
        self.map_location = map_location
        self.best_metric: float | None = None
        self.best_iteration = -1
        self._last_saved = -1
        self._sigterm = False
        self._previous_sigterm: Any = signal.SIG_DFL

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        self.engine = engine
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_STARTED, self.seed_step)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.save_mid_epoch)
        engine.add_event_handler(Events.COMPLETED, self.save_final)
        if self.validator is not None:
            self.validator.add_event_handler(Events.COMPLETED, self.save_best)

    # -- what is saved ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_iteration": self.best_iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_metric = state["best_metric"]
        self.best_iteration = state["best_iteration"]

    def _objects(self) -> dict[str, Any]:
        objects = {
            name: unwrap(obj) if isinstance(obj, torch.nn.Module) else obj
            for name, obj in self.save_dict.items()
        }
        objects.update(trainer=self.engine, rng=RNGStates(), checkpointer=self)
        scaler = getattr(self.engine, "scaler", None)
        if scaler is not None:
            objects["scaler"] = scaler
        return objects

    def _model(self) -> torch.nn.Module:
        return unwrap(self.save_dict.get("model") or self.engine.network)

    # -- events ----------------------------------------------------------------------------------
    def start(self, engine: Any) -> None:
        from ignite.engine import Events

        from medseg.bundle.locate import refuse_shipped

        refuse_shipped(self.save_dir, "checkpoints and weights")
        # A save at the end of an epoch waits for that epoch's other handlers (LR step,
        # validation): registered now, after every handler the trainer attached, it runs last.
        if not engine.has_event_handler(self.save_epoch_end, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save_epoch_end)
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
            for event in (Events.COMPLETED, Events.TERMINATE, Events.EXCEPTION_RAISED):
                if not engine.has_event_handler(self._restore_sigterm, event):
                    engine.add_event_handler(event, self._restore_sigterm)
        if self.resume:
            self.load_latest(engine)
        sampler = getattr(engine.data_loader, "batch_sampler", None)
        if hasattr(sampler, "set_step"):
            sampler.set_step(engine.state.iteration)

    def seed_step(self, engine: Any) -> None:
        seed_everything(step_seed(self.seed, engine.state.iteration, rank_and_world()[0]))

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._sigterm = True

    def _restore_sigterm(self, engine: Any, *_: Any) -> None:
        signal.signal(signal.SIGTERM, self._previous_sigterm)

    def save_mid_epoch(self, engine: Any) -> None:
        if engine.state.iteration % engine.state.epoch_length:  # at an epoch end: save_epoch_end
            self.save_epoch_end(engine)

    def save_epoch_end(self, engine: Any) -> None:
        if self._sigterm:
            self._stop(engine)
        elif engine.state.iteration % self.interval == 0:
            self.save_latest(engine)

    def _stop(self, engine: Any) -> None:
        # Not an exception: one raised through the bundle's "$...run()" expression (Python's eval)
        # makes CPython end the process with SIGINT even after the caller handled it.
        self.save_latest(engine)
        logger.info("SIGTERM: stopped at iteration %d with a checkpoint; continue with resume",
                    engine.state.iteration)  # fmt: skip
        engine.state.stopped_by = "SIGTERM"
        engine.terminate(skip_completed=True)

    def save_latest(self, engine: Any) -> None:
        self._last_saved = engine.state.iteration
        if not is_main_process():
            return
        folder = self.save_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        state = {name: obj.state_dict() for name, obj in self._objects().items()}
        path = folder / f"checkpoint_it{engine.state.iteration:08d}.pt"
        _save(state, path)
        kept = sorted(folder.glob("checkpoint_it*.pt"))
        for old in kept[: max(0, len(kept) - self.keep_last)]:
            old.unlink(missing_ok=True)

    def save_final(self, engine: Any) -> None:
        if self._last_saved != engine.state.iteration:
            self.save_latest(engine)
        if is_main_process():
            _save(self._model().state_dict(), self.save_dir / "model.pt")

    def save_best(self, validator: Any) -> None:
        name = self.key_metric or getattr(validator.state, "key_metric_name", None)
        value = validator.state.metrics.get(name) if name else None
        if value is None:
            return
        value = float(value)
        if self.best_metric is None or value > self.best_metric:
            self.best_metric, self.best_iteration = value, self.engine.state.iteration
            if is_main_process():
                _save(self._model().state_dict(), self.save_dir / "model_best.pt")
                logger.info("best %s %.4f at iteration %d: model_best.pt", name, value, self.best_iteration)

    def load_latest(self, engine: Any) -> None:
        path = latest_checkpoint(self.save_dir)
        if path is None:
            where = self.save_dir / "checkpoints"
            logger.info("resume: no checkpoint under %s; starting from scratch", where)
            return
        state = load_checkpoint(path, self.map_location or "cpu")
        max_epochs = engine.state.max_epochs
        for name, obj in self._objects().items():
            if name not in state:
                if name == "scaler":
                    continue  # a CPU checkpoint resumed with AMP: the scaler starts fresh
                raise CheckpointError(f"{path}: has no {name!r} entry; it was not written by this training")
            obj.load_state_dict(state[name])
        # A larger max_epochs on the command line extends a finished or running training.
        engine.state.max_epochs = max_epochs
        logger.info(
            "resumed from %s at iteration %d (epoch %d)",
            path.name,
            engine.state.iteration,
            engine.state.epoch,
        )


def _save(state: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
