"""The malformed-input corpus, written once per test session (see make_corpus.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus.make_corpus import make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))
