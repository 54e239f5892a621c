"""Shared test set-up: the pipeline's modules are importable as `unikio`."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


@pytest.fixture
def repo() -> Path:
    return REPO
