"""The emulated aarch64 testbed for real: one boot runs every row kind with tiny counts, and the
unikernel rows of solo5-spt and the lwIP unikernel boot as the pipeline runs them.

Our aarch64 programs (init, benchmarks, tenders, unikernels) are built from
the working tree; QEMU, the arm64 kernel and busybox come from the smoke
run's build results (tests/e2e/conftest.py), lwIP's source from its fetch
there when the smoke run had one.  The loop device, KVM and the tap live
inside the emulated machine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from unikio import results, testbed
from unikio.testbed import TestbedError

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CROSS_CC = "aarch64-linux-gnu-gcc"


def _make(*args: str) -> None:
    proc = subprocess.run(["make", "-s", *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@dataclass(frozen=True)
class Setup:
    testbed: testbed.Testbed
    out: Path
    lwip: bool  # whether the image carries the lwIP guests
    binaries: testbed.Binaries
    kernel_tree: Path


@pytest.fixture(scope="module")
def testbed_setup(smoke_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    if shutil.which(CROSS_CC) is None:
        pytest.skip(f"{CROSS_CC} is missing (gcc-aarch64-linux-gnu)")
    build = smoke_project / "results" / "build"
    lwip_src = smoke_project / "results" / "sources" / "lwip" / "tree"
    qemu = build / "qemu" / "bin" / "qemu-system-aarch64"
    kernel_tree = build / "kernel-aarch64" / "tree"
    busybox = build / "busybox-aarch64" / "tree" / "bin" / "busybox"
    out = tmp_path_factory.mktemp("testbed")
    _make("-C", str(REPO / "native" / "guest"), "ARCH=aarch64", f"O={out / 'guest'}")
    _make("-C", str(REPO / "native" / "bench"), "ARCH=aarch64", f"O={out / 'bench'}")
    _make("-C", str(REPO / "native"), "ARCH=aarch64", f"O={out / 'solo5'}")
    lwip = lwip_src.is_dir()
    if lwip:
        _make("-C", str(REPO / "native"), "ARCH=aarch64", f"O={out / 'lwip'}", f"LWIP_SRC={lwip_src}",
              f"{out / 'lwip' / 'lwip_serve.elf'}", f"{out / 'lwip' / 'lwip_serve.spt'}")
    binaries = testbed.Binaries.from_build(out / "guest" / "init", busybox, out / "bench", out / "solo5",
                                           out / "lwip" if lwip else None)
    kernels = sorted((kernel_tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        pytest.skip(f"expected one kernel image in {kernel_tree / 'boot'}, found {len(kernels)}")
    testbed.build_base_initramfs(out / "base.initrd", kernel_tree, binaries)
    return Setup(testbed.Testbed(qemu=qemu, kernel=kernels[0], base_initrd=out / "base.initrd"), out, lwip,
                 binaries, kernel_tree)


def _timings(what: str, run: testbed.TestbedRun, rows: int) -> None:
    print(f"{what}: testbed boot to UNIKIO-BEGIN {run.boot_s:.1f} s, QEMU run {run.total_s:.1f} s, "
          f"{(run.total_s - run.boot_s) / rows:.1f} s per row after the boot")


def test_one_boot_runs_every_row_kind(testbed_setup: Setup) -> None:
    tb, out = testbed_setup.testbed, testbed_setup.out
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


def test_spt_block_row(testbed_setup: Setup) -> None:
    """blk_bench.spt on spt_tender: the pread accounting of the hvt row, no KVM."""
    out = testbed_setup.out
    rows, run = testbed.tender_blk(testbed_setup.testbed, reads=200, block_size=512, reps=2, mem_mb=32,
                                   work_dir=out / "work", console_log=out / "blk-solo5-spt.log", timeout_s=240,
                                   platform="solo5-spt")
    _timings("blk solo5-spt", run, 2)
    assert [r["rep"] for r in rows] == [1, 2]
    for row in rows:
        assert list(row) == results.BLK_COLUMNS
        assert (row["arch"], row["platform"], row["provider"], row["accel"], row["testbed"], row["kvm_impl"]) == (
            "aarch64", "solo5-spt", "builtin", "none", "emulated", "")
        assert (row["reads"], row["block_size"], row["pread_calls"]) == (200, 512, 200)
        assert 0 < row["pread_ns"] < row["total_ns"]
    for seg in run.segments:
        assert " setup_pread_calls=1 " in seg.text  # blk_bench's read of the block it rewrites


@pytest.mark.parametrize("platform, accel", [("solo5-spt", "none"), ("lwip-solo5-hvt", "kvm"),
                                             ("lwip-solo5-spt", "none")])
def test_unikernel_network_row(testbed_setup: Setup, platform: str, accel: str) -> None:
    """ping_serve.spt, and the lwIP unikernel on both tenders, answering icmp_bench on the testbed's tap."""
    if platform.startswith("lwip-") and not testbed_setup.lwip:
        pytest.skip("the smoke run fetched no lwIP source (results/sources/lwip/tree): no lwIP guest to boot")
    out = testbed_setup.out
    rows, run = testbed.tender_net(testbed_setup.testbed, sizes=[1, 1472], reps=1, packets=50, max_loss_pct=1,
                                   mem_mb=32, work_dir=out / "work", console_log=out / f"net-{platform}.log",
                                   timeout_s=240, platform=platform)
    _timings(f"net {platform}", run, 2)
    assert [r["data_bytes"] for r in rows] == [1, 1472]
    for row in rows:
        assert list(row) == results.NET_COLUMNS
        assert (row["platform"], row["provider"], row["accel"], row["testbed"]) == (platform, "builtin", accel,
                                                                                    "emulated")
        assert row["kvm_impl"].startswith("kvm_arm64-") if accel == "kvm" else row["kvm_impl"] == ""
        assert row["packets"] == 50 and row["lost"] <= 0.01 * 50 and row["pps"] > 0
    assert not list((out / "work").iterdir()), "the per-run initrd was left behind"
    # The tender stopped cleanly on SIGTERM at the end of the network runs (relayed with its name).
    tender = testbed.unikernel("net", platform)[0]
    assert f"{tender}: {tender}: terminated by signal 15" in run.lines


# An spt guest that makes a system call of its own: the seccomp filter kills it at once.
ESCAPING_GUEST = r"""
#include "solo5.h"

int solo5_app_main(const struct solo5_start_info *si)
{
    (void)si;
    register long x8 __asm__("x8") = 172; /* getpid on aarch64 */
    register long x0 __asm__("x0");
    __asm__ __volatile__("svc #0" : "=r"(x0) : "r"(x8) : "memory");
    return (int)x0;
}
"""


def test_a_seccomp_kill_in_the_testbed_names_the_syscall(testbed_setup: Setup, tmp_path: Path) -> None:
    """The job relays spt_tender's own line, so the failure says which syscall the guest made."""
    src = tmp_path / "escape.c"
    src.write_text(ESCAPING_GUEST)
    _make("-C", str(REPO / "native"), "ARCH=aarch64", f"O={tmp_path / 'guest'}", f"GUEST_SRC={src}",
          "GUEST_NAME=blk_bench", "guest-spt")
    # The fixture's image with this guest in blk_bench.spt's place.
    binaries = replace(testbed_setup.binaries, blk_bench_spt=tmp_path / "guest" / "blk_bench.spt")
    testbed.build_base_initramfs(tmp_path / "base.initrd", testbed_setup.kernel_tree, binaries)
    tb = replace(testbed_setup.testbed, base_initrd=tmp_path / "base.initrd")
    log = tmp_path / "console.log"
    with pytest.raises(TestbedError) as exc:
        testbed.tender_blk(tb, reads=200, block_size=512, reps=1, mem_mb=32, work_dir=tmp_path / "work",
                           console_log=log, timeout_s=240, platform="solo5-spt")
    assert str(exc.value) == ("testbed tender-blk rep 1 exited with status 159: spt_tender: guest killed by the "
                              f"seccomp filter: it called getpid (syscall 172) (console log: {log})")
