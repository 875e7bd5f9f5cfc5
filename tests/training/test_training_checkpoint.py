"""Checkpoint files: safe loading, generator state, and what a kill leaves behind."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medseg.training import CheckpointError, RNGStates, latest_checkpoint, load_checkpoint


class NotWeights:
    """A pickled object: what a weights_only load must refuse."""

    def __init__(self) -> None:
        self.value = 1


def test_load_refuses_pickled_objects_in_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra": NotWeights()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.rand(3), np.random.rand(3), random.random()
    torch.save({"rng": RNGStates().state_dict()}, tmp_path / "c.pt")
    expected = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    RNGStates().load_state_dict(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random())
    assert torch.equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    assert expected[2:] == got[2:]


def test_latest_checkpoint_is_the_highest_iteration(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for it in (9, 120, 30):
        (folder / f"checkpoint_it{it:08d}.pt").write_bytes(b"")
    (folder / ".tmp-99999-checkpoint_it00000500.pt").write_bytes(b"")  # a killed write: ignored
    assert latest_checkpoint(tmp_path).name == "checkpoint_it00000120.pt"
