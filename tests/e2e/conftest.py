"""One real smoke run per test session, shared by the end-to-end modules."""

import time
from pathlib import Path

import pytest
from testkit import copy_project, require_root, snakemake


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> Path:
    """A copy of the project after a full smoke-profile run (fetch, patch, build, measure, aggregate)."""
    require_root()
    copy = copy_project(tmp_path_factory.mktemp("smoke"))
    start = time.monotonic()
    proc = snakemake(copy)
    print(f"full smoke run: {time.monotonic() - start:.1f} s")
    # What the terminal showed: the plan, progress lines, the end (tests/e2e/test_smoke_run.py).
    (copy / "smoke-run.out").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return copy
