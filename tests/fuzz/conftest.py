"""Counts the fuzz executions of a run and reports them after the tests (the README quotes the line)."""

from __future__ import annotations

import pytest
from fuzz.mutate import EXECUTIONS


@pytest.fixture(scope="module", autouse=True)
def small_voxel_budget():
    """A mutated header may declare any size up to the machine's budget (1.6e9 voxels here): a budget
    of a million voxels keeps every read small, and sends large declared sizes through the check."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDSEG_MAX_VOXELS", "1e6")
        yield


def pytest_terminal_summary(terminalreporter) -> None:
    if EXECUTIONS:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(EXECUTIONS.items()))
        total = sum(EXECUTIONS.values())
        terminalreporter.write_line(f"fuzz: {total} reader executions ({counts})")
