"""What a training run shows while it runs and leaves behind when it ends.

``TrainingReport`` (a handler on the trainer) records loss and learning rate at every iteration
and the validator's metrics after every validation, and on rank 0:

- logs one line every ``log_every`` iterations: iteration, epoch, loss, lr, it/s and ETA;
- writes TensorBoard scalars (MONAI's ``TensorBoardStatsHandler``, always) and MLflow metrics
  (MONAI's ``MLFlowHandler``, when ``mlflow`` is installed and ``MEDSEG_MLFLOW`` is not ``0``;
  ``MLFLOW_TRACKING_URI``, else the SQLite store ``mlflow.db`` beside the report);
- at the end writes ``report.json`` (best metric and its epoch, wall time, speed) and
  ``curves.png`` (loss per iteration with its per-epoch mean; validation metrics per epoch).

Its history is part of the checkpoint (``state_dict``), so a resumed run's report covers the whole run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from medseg.training.distributed import is_main_process
from medseg.typing import PathLike

logger = logging.getLogger(__name__)


class TrainingReport:
    """Track a training run; see the module docstring."""

    def __init__(
        self,
        out_dir: PathLike,
        tensorboard_dir: PathLike | None = None,
        validator: Any = None,
        log_every: int = 25,
        mlflow: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir else None
        self.validator = validator
        self.log_every = max(1, int(log_every))
        self.mlflow = mlflow
        self.losses: list[tuple[int, float]] = []
        self.lrs: list[tuple[int, float]] = []
        self.validations: list[dict[str, float]] = []
        self.seconds = 0.0  # training time of earlier sessions of this run (resumed runs)
        self._started = time.perf_counter()
        self._window = (0, self._started)

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": [list(x) for x in self.losses],
            "lrs": [list(x) for x in self.lrs],
            "validations": self.validations,
            "seconds": self.seconds + time.perf_counter() - self._started,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = [(int(i), float(v)) for i, v in state["losses"]]
        self.lrs = [(int(i), float(v)) for i, v in state["lrs"]]
        self.validations = list(state["validations"])
        self.seconds = float(state["seconds"])
        self._started = time.perf_counter()

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        from medseg.bundle.locate import refuse_shipped

        for folder in (self.out_dir, self.tensorboard_dir):
            if folder is not None:
                refuse_shipped(folder, "the training report")
        self.engine = engine
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self.write)
        if self.validator is not None:
            self.validator.add_event_handler(Events.COMPLETED, self._validated)
        if is_main_process():
            self._attach_trackers(engine)

    def _attach_trackers(self, engine: Any) -> None:
        from monai.handlers import TensorBoardStatsHandler

        loss = step_loss
        if self.tensorboard_dir is not None:
            TensorBoardStatsHandler(
                log_dir=str(self.tensorboard_dir), tag_name="train_loss", output_transform=loss
            ).attach(engine)
            if self.validator is not None:
                TensorBoardStatsHandler(
                    log_dir=str(self.tensorboard_dir), iteration_log=False,
                    global_epoch_transform=lambda _: engine.state.epoch,
                ).attach(self.validator)  # fmt: skip
        if not self.mlflow or os.environ.get("MEDSEG_MLFLOW", "1") == "0":
            return
        try:
            import mlflow  # noqa: F401  (optional: MLflow tracking when the user installed it)
        except ImportError:
            return
        from monai.handlers import MLFlowHandler

        # MLflow 3 dropped the plain-folder store: a SQLite file beside the other logs
        uri = (
            os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{(self.out_dir.parent / 'mlflow.db').resolve()}"
        )
        # One MLflow run for the trainer (loss, lr) and the validator (metrics), named after the folder
        run = self.out_dir.resolve().parent.parent.name
        try:
            MLFlowHandler(
                tracking_uri=uri, run_name=run, output_transform=loss, optimizer_param_names="lr"
            ).attach(engine)
            if self.validator is not None:
                MLFlowHandler(
                    tracking_uri=uri, run_name=run, iteration_log=False, close_on_complete=False,
                    global_epoch_transform=lambda _: engine.state.epoch,
                ).attach(self.validator)  # fmt: skip
        except Exception as err:  # an optional tracker never stops a training
            logger.warning("MLflow tracking off (%s): %s", uri, str(err).splitlines()[0] if str(err) else err)

    def _start(self, engine: Any) -> None:
        self._started = time.perf_counter()
        self._window = (engine.state.iteration, self._started)

    def _iteration(self, engine: Any) -> None:
        it = engine.state.iteration
        self.losses.append((it, step_loss(engine.state.output)))
        self.lrs.append((it, float(engine.optimizer.param_groups[0]["lr"])))
        if it % self.log_every == 0 and is_main_process():
            logger.info(self.progress_line(engine))

    def progress_line(self, engine: Any) -> str:
        it, total = engine.state.iteration, engine.state.max_epochs * engine.state.epoch_length
        first, since = self._window
        speed = (it - first) / max(time.perf_counter() - since, 1e-9)
        eta = (total - it) / speed if speed > 0 else math.inf
        recent = [v for _, v in self.losses[-self.log_every :]]
        return (
            f"iteration {it}/{total} epoch {engine.state.epoch}/{engine.state.max_epochs} "
            f"loss {sum(recent) / len(recent):.4f} lr {self.lrs[-1][1]:.3g} {speed:.2f} it/s "
            f"ETA {_clock(eta)}"
        )

    def _validated(self, validator: Any) -> None:
        metrics = {k: float(v) for k, v in validator.state.metrics.items() if _scalar(v)}
        self.validations.append({"epoch": self.engine.state.epoch, "iteration": self.engine.state.iteration,
                                 **metrics})  # fmt: skip

    def summary(self) -> dict[str, Any]:
        state = self.engine.state
        seconds = self.seconds + time.perf_counter() - self._started
        out: dict[str, Any] = {
            "iterations": state.iteration,
            "epochs": state.epoch,
            "wall_time_s": round(seconds, 1),
            "iterations_per_s": round(state.iteration / seconds, 3) if seconds > 0 else None,
            "final_loss": self.losses[-1][1] if self.losses else None,
        }
        name = getattr(self.validator.state, "key_metric_name", None) if self.validator else None
        scored = [v for v in self.validations if name in v]
        if scored:
            best = max(scored, key=lambda v: v[name])
            out.update(best_metric_name=name, best_metric=best[name], best_epoch=best["epoch"],
                       best_iteration=best["iteration"])  # fmt: skip
        return out

    def write(self, engine: Any = None) -> None:
        if not is_main_process():
            return
        from medseg.io.atomic import atomic_path

        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        with atomic_path(self.out_dir / "report.json") as tmp:
            tmp.write_text(json.dumps({**summary, "validations": self.validations}, indent=2) + "\n")
        with atomic_path(self.out_dir / "curves.png") as tmp:
            self._plot(tmp, self.engine.state.epoch_length)
        logger.info("training report: %s", ", ".join(f"{k} {v}" for k, v in summary.items()))

    def _plot(self, path: Path, epoch_length: int) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        if self.losses:
            its, values = zip(*self.losses, strict=True)
            axes[0].plot(its, values, lw=0.6, alpha=0.4, label="iteration")
            epochs = sorted({(i - 1) // epoch_length for i in its})
            means = [[v for i, v in self.losses if (i - 1) // epoch_length == e] for e in epochs]
            axes[0].plot([(e + 1) * epoch_length for e in epochs], [sum(m) / len(m) for m in means],
                         lw=1.5, label="epoch mean")  # fmt: skip
        axes[0].set(xlabel="iteration", ylabel="training loss", title="loss")
        axes[0].legend()
        names = sorted({k for v in self.validations for k in v} - {"epoch", "iteration"})
        for name in names:
            points = [(v["epoch"], v[name]) for v in self.validations if name in v]
            axes[1].plot(*zip(*points, strict=True), marker="o", label=name)
        axes[1].set(xlabel="epoch", ylabel="metric", title="validation")
        if names:
            axes[1].legend()
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)


def step_loss(output: Any) -> float:
    """The step's loss from a trainer's output: a dict, or a list of per-item dicts (decollated)."""
    if isinstance(output, (list, tuple)):
        output = output[0]
    return float(output["loss"])


def _scalar(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
