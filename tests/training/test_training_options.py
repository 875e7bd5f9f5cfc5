"""Gradient clipping, early stopping and the determinism switch, on real MONAI/ignite engines."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer

from medseg.training import EarlyStop, GradientClip, seed_run


def _trainer(max_norm, lr=1.0):
    torch.manual_seed(0)
    network = torch.nn.Linear(8, 3)
    data = [{"image": torch.randn(4, 8) * 50, "label": torch.randn(4, 3) * 50}]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr), loss_function=torch.nn.MSELoss(),
        train_handlers=[GradientClip(max_norm)], decollate=False,
    )  # fmt: skip
    return trainer, network, data


@pytest.mark.parametrize("max_norm", [0.01, None])
def test_gradient_clip_bounds_the_sgd_step(max_norm):
    """With SGD at lr 1 the step is minus the (clipped) gradient: its norm is max_norm when
    clipping, and the plain gradient's norm (computed here by autograd) without."""
    trainer, network, data = _trainer(max_norm)
    before = [p.detach().clone() for p in network.parameters()]
    reference = torch.nn.Linear(8, 3)
    reference.load_state_dict(network.state_dict())
    torch.nn.MSELoss()(reference(data[0]["image"]), data[0]["label"]).backward()
    plain = torch.sqrt(sum((p.grad**2).sum() for p in reference.parameters()))
    trainer.run()
    step = torch.sqrt(
        sum(((p.detach() - b) ** 2).sum() for p, b in zip(network.parameters(), before, strict=True))
    )
    expected = plain if max_norm is None else torch.tensor(max_norm)
    assert plain > 1  # so that clipping to 0.01 is a real change
    torch.testing.assert_close(step, expected, rtol=1e-4, atol=1e-6)


def _run_with_metrics(values, patience):
    validator = Engine(lambda engine, batch: None)
    trainer = Engine(lambda engine, batch: None)

    @validator.on(Events.COMPLETED)
    def score(engine):
        engine.state.key_metric_name = "dice"
        engine.state.metrics = {"dice": values[trainer.state.epoch - 1]}

    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: validator.run([0]))
    stop = EarlyStop(patience=patience, validator=validator, min_delta=0.01)
    stop.attach(trainer)
    trainer.run([0], max_epochs=len(values))
    return trainer.state.epoch, stop


def test_early_stop_after_patience_validations_without_improvement():
    # best 0.5 at epoch 2; 0.505 is within min_delta, so epochs 3, 4 and 5 do not improve
    epochs, stop = _run_with_metrics([0.3, 0.5, 0.505, 0.4, 0.45, 0.9, 0.9], patience=3)
    assert epochs == 5 and stop.state_dict() == {"best": 0.5, "counter": 3}
    epochs, _ = _run_with_metrics([0.3, 0.5, 0.505, 0.4, 0.45, 0.9, 0.9], patience=None)
    assert epochs == 7


def test_seed_run_switches_between_reproducible_and_fast_kernels():
    try:
        seed_run(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        first = torch.rand(2)
        seed_run(3, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        assert torch.equal(first, torch.rand(2))
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False
