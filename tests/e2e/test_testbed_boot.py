"""The emulated aarch64 testbed for real: one boot runs every row kind with tiny counts.

Our aarch64 programs (init, benchmarks, tender, unikernels) are built from
the working tree; QEMU, the arm64 kernel and busybox come from the smoke
run's build results (tests/e2e/conftest.py).  The loop device, KVM and the
tap live inside the emulated machine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from unikio import results, testbed

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CROSS_CC = "aarch64-linux-gnu-gcc"


def _make(*args: str) -> None:
    proc = subprocess.run(["make", "-s", *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def testbed_setup(smoke_project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[testbed.Testbed, Path]:
    if shutil.which(CROSS_CC) is None:
        pytest.skip(f"{CROSS_CC} is missing (gcc-aarch64-linux-gnu)")
    build = smoke_project / "results" / "build"
    qemu = build / "qemu" / "bin" / "qemu-system-aarch64"
    kernel_tree = build / "kernel-aarch64" / "tree"
    busybox = build / "busybox-aarch64" / "tree" / "bin" / "busybox"
    out = tmp_path_factory.mktemp("testbed")
    _make("-C", str(REPO / "native" / "guest"), "ARCH=aarch64", f"O={out / 'guest'}")
    _make("-C", str(REPO / "native" / "bench"), "ARCH=aarch64", f"O={out / 'bench'}")
    _make("-C", str(REPO / "native"), "ARCH=aarch64", f"O={out / 'solo5'}")
    binaries = testbed.Binaries.from_build(out / "guest" / "init", busybox, out / "bench", out / "solo5")
    kernels = sorted((kernel_tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        pytest.skip(f"expected one kernel image in {kernel_tree / 'boot'}, found {len(kernels)}")
    testbed.build_base_initramfs(out / "base.initrd", kernel_tree, binaries)
    return testbed.Testbed(qemu=qemu, kernel=kernels[0], base_initrd=out / "base.initrd"), out


def test_one_boot_runs_every_row_kind(testbed_setup: tuple[testbed.Testbed, Path]) -> None:
    tb, out = testbed_setup
    script = testbed.job_script([
        testbed.host_blk_fragment(200, 512, 1),
        testbed.tender_blk_fragment(200, 512, 1, 32),
        testbed.exit_floor_fragment(1000),
        testbed.tender_net_fragment([1, 1472], 1, 50, 1, 32),
    ])
    log = out / "console.log"
    start = time.monotonic()
    run = testbed.run_job(tb, script, out / "work", log, timeout_s=240)
    print(f"testbed boot to UNIKIO-BEGIN {run.boot_s:.1f} s, QEMU run {run.total_s:.1f} s, "
          f"run_job {time.monotonic() - start:.1f} s")
    assert not list((out / "work").iterdir()), "the per-run initrd was left behind"

    assert run.kvm_impl.startswith("kvm_arm64-")  # the testbed kernel said which KVM it started
    host = testbed.blk_rows(run.segments, kind="host-blk", reps=1, block_size=512, console_log=log,
                            kvm_impl=run.kvm_impl)
    tender = testbed.blk_rows(run.segments, kind="tender-blk", reps=1, block_size=512, console_log=log,
                              kvm_impl=run.kvm_impl)
    for row, platform, accel in ((host[0], "host", "none"), (tender[0], "solo5-hvt", "kvm")):
        assert list(row) == results.BLK_COLUMNS
        assert (row["arch"], row["platform"], row["accel"], row["testbed"]) == ("aarch64", platform, accel,
                                                                               "emulated")
        assert row["reads"] == 200 and row["total_ns"] > 0
    assert tender[0]["pread_calls"] == 200 and 0 < tender[0]["pread_ns"] < tender[0]["total_ns"]
    seg = next(s for s in run.segments if s.kind == "tender-blk")
    assert " setup_pread_calls=1 " in seg.text  # blk_bench's read of the block it rewrites

    floor = testbed.exit_floor_result(run.segments, log)
    assert floor["n"] == 1000 and floor["total_ns"] > 0

    rows = testbed.net_rows(run.segments, sizes=[1, 1472], reps=1, console_log=log, kvm_impl=run.kvm_impl)
    assert [r["data_bytes"] for r in rows] == [1, 1472]
    for row in rows:
        assert list(row) == results.NET_COLUMNS
        assert (row["platform"], row["accel"], row["testbed"]) == ("solo5-hvt", "kvm", "emulated")
        assert row["packets"] == 50 and row["lost"] <= 0.01 * 50 and row["pps"] > 0
    # The tender stopped cleanly on SIGTERM at the end of the network runs.
    assert "tender: tender: terminated by signal 15" in run.lines
