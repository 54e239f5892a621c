"""Shared test set-up: import path for the pipeline's modules, common skips."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, namespaces)")


@pytest.fixture
def repo() -> Path:
    return REPO
