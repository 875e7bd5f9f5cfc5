"""Fixtures of the bundle location and catalogue tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    """An empty user bundle folder, named by MEDSEG_BUNDLE_DIR for the test."""
    folder = tmp_path / "user_bundles"
    monkeypatch.setenv("MEDSEG_BUNDLE_DIR", str(folder))
    return folder
