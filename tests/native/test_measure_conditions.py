"""A host block row as its job makes it: blk_bench pinned to measure.cpu on a fresh loop device, with the
load and runnable tasks just before and after it in the row."""

import io
import json
import os
import subprocess

import pytest
from tender_common import NATIVE
from testkit import require_root
from unikio import blk, conditions, results


@pytest.fixture(scope="module")
def blk_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-conditions")
    r = subprocess.run(["make", "-C", str(NATIVE / "bench"), f"O={out}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "blk_bench"


def test_host_row_is_pinned_and_records_its_conditions(blk_bench, tmp_path):
    require_root()
    cpu = conditions.measure_cpu("auto")
    log = io.StringIO()
    row = blk.host_row(blk_bench, "x86_64", 2, 200, 512, 60, log, cpu=cpu)
    command = next(ln for ln in log.getvalue().splitlines() if ln.startswith("$ "))
    assert command.startswith(f"$ taskset -c {cpu} {blk_bench} /dev/loop") and command.endswith(" 200 512")
    assert row["pinned_cpu"] == cpu and row["reads"] == 200 and row["rep"] == 2
    for key in ("load_before", "load_after"):
        assert isinstance(row[key], float) and 0 <= row[key] < 10 * (os.cpu_count() or 1), row
    for key in ("runnable_before", "runnable_after"):
        assert isinstance(row[key], int) and row[key] >= 1, row  # the job reading it is running
    results.write_row(tmp_path / "row.json", row)
    written = json.loads((tmp_path / "row.json").read_text())
    assert {c: written[c] for c in results.CONDITION_COLUMNS} == {c: row[c] for c in results.CONDITION_COLUMNS}
    assert written["pinned_cpu"] == cpu


def test_unpinned_host_row_says_so(blk_bench):
    require_root()
    log = io.StringIO()
    row = blk.host_row(blk_bench, "x86_64", 1, 50, 512, 60, log)
    assert row["pinned_cpu"] is None
    assert f"$ {blk_bench} /dev/loop" in log.getvalue()
