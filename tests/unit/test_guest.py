"""Tests for unikio.guest: QEMU argv, console protocol, parsers, KVM probe."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unikio import guest, progress
from unikio.guest import GuestError

COMMON: dict[str, Any] = {"kernel": "/k/vmlinuz", "initrd": "/k/initrd.gz", "append": "console=x"}


def opt(cmd: list[str], flag: str) -> list[str]:
    """All values given to a QEMU flag."""
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


# ------------------------------------------------------------ command line


def test_x86_tcg_defaults() -> None:
    cmd = guest.qemu_command(arch="x86_64", accel="tcg", **COMMON)
    assert cmd[0] == "qemu-system-x86_64"
    assert opt(cmd, "-M") == ["pc"]
    assert opt(cmd, "-accel") == ["tcg"]
    assert opt(cmd, "-cpu") == []
    assert opt(cmd, "-L") == ["/usr/share/qemu", "/usr/share/seabios"]
    assert opt(cmd, "-m") == ["256"] and opt(cmd, "-smp") == ["1"]
    assert opt(cmd, "-serial") == ["stdio"]
    assert opt(cmd, "-kernel") == ["/k/vmlinuz"]
    assert opt(cmd, "-initrd") == ["/k/initrd.gz"]
    assert opt(cmd, "-append") == ["console=x"]
    for flag in ("-nodefaults", "-nographic", "-no-reboot"):
        assert flag in cmd
    assert "-drive" not in cmd and "-netdev" not in cmd


def test_x86_kvm_uses_host_cpu_and_custom_params() -> None:
    cmd = guest.qemu_command(
        arch="x86_64",
        accel="kvm",
        qemu="/opt/qemu/bin/qemu-system-x86_64",
        firmware_dirs=["/fw"],
        memory_mb=512,
        smp=2,
        serial="/tmp/console.log",
        **COMMON,
    )
    assert cmd[0] == "/opt/qemu/bin/qemu-system-x86_64"
    assert opt(cmd, "-cpu") == ["host"]
    assert opt(cmd, "-accel") == ["kvm"]
    assert opt(cmd, "-L") == ["/fw"]
    assert opt(cmd, "-m") == ["512"] and opt(cmd, "-smp") == ["2"]
    assert opt(cmd, "-serial") == ["file:/tmp/console.log"]


@pytest.mark.parametrize(
    ("accel", "machine", "cpu"),
    [("tcg", "virt", "max"), ("kvm", "virt,gic-version=host", "host")],
)
def test_aarch64_machine_and_cpu(accel: str, machine: str, cpu: str) -> None:
    cmd = guest.qemu_command(arch="aarch64", accel=accel, **COMMON)
    assert cmd[0] == "qemu-system-aarch64"
    assert opt(cmd, "-M") == [machine]
    assert opt(cmd, "-cpu") == [cpu]


@pytest.mark.parametrize(
    ("arch", "machine", "blk", "net"),
    [
        ("x86_64", "pc", "virtio-blk-pci", "virtio-net-pci"),
        ("x86_64", "microvm", "virtio-blk-device", "virtio-net-device"),
        ("aarch64", None, "virtio-blk-device", "virtio-net-device"),
    ],
)
def test_devices_per_machine(arch: str, machine: str | None, blk: str, net: str) -> None:
    cmd = guest.qemu_command(arch=arch, accel="tcg", machine=machine, drive="/dev/loop3", tap="tap0", **COMMON)
    assert opt(cmd, "-drive") == ["file=/dev/loop3,format=raw,if=none,id=d0,cache=none,aio=threads"]
    assert opt(cmd, "-device")[0] == f"{blk},drive=d0"
    assert opt(cmd, "-netdev") == ["tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off"]
    nic = opt(cmd, "-device")[1]
    assert nic.startswith(f"{net},netdev=n0,mac={guest.DEFAULT_MAC}")
    assert nic.endswith(",romfile=") == net.endswith("-pci")


def test_microvm_machine_options() -> None:
    cmd = guest.qemu_command(arch="x86_64", accel="tcg", machine="microvm", **COMMON)
    assert opt(cmd, "-M") == ["microvm,pit=on,pic=on,rtc=on"]


def test_vhost_mac_and_pinning() -> None:
    cmd = guest.qemu_command(
        arch="x86_64",
        accel="kvm",
        tap="tap-bench1",
        vhost=True,
        mac="52:54:00:aa:bb:cc",
        pin_cpu=1,
        extra_args=["-d", "guest_errors"],
        **COMMON,
    )
    assert cmd[:4] == ["taskset", "-c", "1", "qemu-system-x86_64"]
    assert "vhost=on" in opt(cmd, "-netdev")[0]
    assert "mac=52:54:00:aa:bb:cc" in opt(cmd, "-device")[0]
    assert cmd[-2:] == ["-d", "guest_errors"]


def test_only_the_one_core_guest_is_pinned_and_to_the_cpu_given() -> None:
    """qemu-linux-1core: the whole QEMU on one CPU (measure.cpu on the host, CPU 0 by default); the others free."""
    base = {"arch": "x86_64", "accel": "kvm", "qemu": "q", "kernel": "k", "initrd": "i", "job": {"bench": "none"},
            "memory_mb": 256, "cores": 2}
    assert guest.linux_guest_command(platform="qemu-linux-1core", one_core_cpu=1, **base)[:4] == [
        "taskset", "-c", "1", "q"]
    assert guest.linux_guest_command(platform="qemu-linux-1core", **base)[:4] == ["taskset", "-c", "0", "q"]
    for platform in ("qemu-linux-smp", "qemu-linux"):
        assert guest.linux_guest_command(platform=platform, one_core_cpu=1, **base)[0] == "q"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"arch": "riscv64", "accel": "tcg"},
        {"arch": "x86_64", "accel": "hvf"},
        {"arch": "x86_64", "accel": "tcg", "machine": "virt"},
        {"arch": "aarch64", "accel": "tcg", "machine": "pc"},
        {"arch": "x86_64", "accel": "tcg", "tap": "bad name"},
        {"arch": "x86_64", "accel": "tcg", "tap": "t0", "mac": "52:54:00"},
        {"arch": "x86_64", "accel": "tcg", "drive": "/a,b"},
        {"arch": "x86_64", "accel": "tcg", "memory_mb": 0},
        {"arch": "x86_64", "accel": "tcg", "pin_cpu": -1},
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        guest.qemu_command(**COMMON, **kwargs)


def test_kernel_append() -> None:
    job = {"bench": "blk", "dev": "/dev/vda", "reads": 100000, "bs": 512, "reps": 1}
    assert guest.kernel_append("x86_64", job) == (
        "console=ttyS0 panic=-1 quiet bench=blk dev=/dev/vda reads=100000 bs=512 reps=1"
    )
    arm = guest.kernel_append("aarch64", {"bench": "none"}, extra=["loglevel=3"])
    assert arm == "console=ttyAMA0 panic=-1 quiet loglevel=3 bench=none"
    with pytest.raises(ValueError):
        guest.kernel_append("x86_64", {"ip": "10.0.0.2 /24"})
    with pytest.raises(ValueError):
        guest.kernel_append("mips", {})


# ----------------------------------------------------------------- parsers


def test_clean_console_line() -> None:
    raw = b"\x1bc\x1b[?7l\x1b[2JUNIKIO-BEGIN\r\n"
    assert guest.clean_console_line(raw) == "UNIKIO-BEGIN"


# ------------------------------------------------------------------ runner

FAKE_QEMU = r"""
import os, sys, time
args = sys.argv[1:]
mode = args[0] if args and not args[0].startswith("-") else os.environ.get("FAKE_MODE", "ok")
def out(s):
    sys.stdout.write(s + "\n"); sys.stdout.flush()
if mode == "ok":
    out("[    0.1] booting")
    time.sleep(0.2)
    out("\x1bc\x1b[2JUNIKIO-BEGIN")
    out("RESULT blk reads=10 block_size=512 total_ns=1000")
    out("UNIKIO-END status=0")
elif mode == "env":
    out("UNIKIO-BEGIN"); out("X=" + os.environ.get("PREAD_STATS_FILE", "")); out("UNIKIO-END status=0")
elif mode == "status":
    out("UNIKIO-BEGIN"); out("UNIKIO-END status=3")
elif mode == "error":
    out("UNIKIO-ERROR /dev/vda did not appear within 10 s")
elif mode == "panic":
    out("[    1.0] Kernel panic - not syncing: Attempted to kill init!")
elif mode == "hang":
    out("UNIKIO-BEGIN"); time.sleep(60)
elif mode == "qemufail":
    sys.stderr.write("qemu: could not open disk image\n"); sys.exit(1)
elif mode == "nomarkers":
    out("hello")
elif mode == "kvmerr":
    sys.stderr.write("KVM internal error. Suberror: 1\nemulation failure\n")
    sys.stderr.flush(); time.sleep(60)
elif mode == "dies":
    out("UNIKIO-BEGIN"); time.sleep(0.3); sys.exit(7)
elif mode == "progress":
    out("[    0.1] booting"); time.sleep(0.3)
    out("UNIKIO-BEGIN"); time.sleep(0.2)
    for done in (4, 8):
        out(f"progress {done}/10 reads"); time.sleep(0.2)
    out("RESULT blk reads=10 block_size=512 total_ns=1000"); out("UNIKIO-END status=0")
elif mode == "quit":
    out("UNIKIO-BEGIN"); out("NET up if=eth0 ip=10.0.0.2/24")
    line = sys.stdin.readline().strip()
    out("NET end reason=" + line); out("UNIKIO-END status=0")
"""


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Path:
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!{sys.executable}\n{FAKE_QEMU}")
    script.chmod(0o755)
    return script


def test_run_guest_success(fake_qemu: Path, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "console.log"
    res = guest.run_guest([str(fake_qemu), "ok"], log, timeout_s=20)
    assert res.status == 0
    assert res.lines == ["RESULT blk reads=10 block_size=512 total_ns=1000"]
    assert 0.15 < res.boot_s < res.total_s
    assert res.console_log == log
    assert "UNIKIO-END status=0" in log.read_text()


def test_run_guest_passes_env(fake_qemu: Path, tmp_path: Path) -> None:
    res = guest.run_guest([str(fake_qemu), "env"], tmp_path / "c.log", 20, env={"PREAD_STATS_FILE": "/x/y"})
    assert res.lines == ["X=/x/y"]


def test_run_guest_on_begin_sends_line(fake_qemu: Path, tmp_path: Path) -> None:
    sent: list[str] = []

    def on_begin(send: Callable[[str], None], gone: Callable[[], str | None]) -> None:
        assert gone() is None
        sent.append("quit")
        send("quit")

    res = guest.run_guest([str(fake_qemu), "quit"], tmp_path / "c.log", 20, on_begin=on_begin)
    assert sent == ["quit"]
    assert res.lines[-1] == "NET end reason=quit"


def test_run_guest_on_begin_error_reported(fake_qemu: Path, tmp_path: Path) -> None:
    def on_begin(send: Callable[[str], None], _gone: Callable[[], str | None]) -> None:
        send("quit")
        raise RuntimeError("ping failed")

    with pytest.raises(GuestError, match="the benchmark beside the guest failed: ping failed"):
        guest.run_guest([str(fake_qemu), "quit"], tmp_path / "c.log", 20, on_begin=on_begin)


def test_run_guest_tells_the_benchmark_when_the_guest_is_gone(fake_qemu: Path, tmp_path: Path) -> None:
    """A benchmark beside a guest that died learns it at once, and nothing waits for its own limits."""
    seen: list[tuple[str | None, float]] = []

    def on_begin(send: Callable[[str], None], gone: Callable[[], str | None]) -> None:
        start = time.monotonic()
        while gone() is None and time.monotonic() - start < 30:
            time.sleep(0.01)
        seen.append((gone(), time.monotonic() - start))
        send("quit")  # into a closed pipe: ignored

    start = time.monotonic()
    with pytest.raises(GuestError, match="QEMU exited with status 7"):
        guest.run_guest([str(fake_qemu), "dies"], tmp_path / "c.log", 60, on_begin=on_begin)
    assert time.monotonic() - start < 5
    assert seen and seen[0][0] == "QEMU exited (status 7)" and seen[0][1] < 2


def test_run_guest_nonzero_status(fake_qemu: Path, tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="status 3"):
        guest.run_guest([str(fake_qemu), "status"], tmp_path / "c.log", 20)
    res = guest.run_guest([str(fake_qemu), "status"], tmp_path / "c.log", 20, check_status=False)
    assert res.status == 3 and res.lines == []


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("error", "UNIKIO-ERROR /dev/vda did not appear"),
        ("panic", "kernel panic"),
        ("qemufail", "QEMU exited with status 1: qemu: could not open disk image"),
        ("nomarkers", "without UNIKIO-BEGIN/UNIKIO-END"),
    ],
)
def test_run_guest_failures(fake_qemu: Path, tmp_path: Path, mode: str, message: str) -> None:
    log = tmp_path / "c.log"
    with pytest.raises(GuestError) as info:
        guest.run_guest([str(fake_qemu), mode], log, 20)
    text = str(info.value)
    assert message in text
    assert f"console log: {log}" in text
    assert "\n" not in text


def test_run_guest_timeout_kills(fake_qemu: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(GuestError, match=r"timed out after 1 s"):
        guest.run_guest([str(fake_qemu), "hang"], tmp_path / "c.log", 1)
    assert time.monotonic() - start < 10


def test_run_guest_kvm_internal_error_fails_fast(fake_qemu: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(GuestError, match="KVM internal error. Suberror: 1"):
        guest.run_guest([str(fake_qemu), "kvmerr"], tmp_path / "c.log", 30)
    assert time.monotonic() - start < 10
    assert "--- qemu stderr ---" in (tmp_path / "c.log").read_text()


def test_run_guest_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="cannot start"):
        guest.run_guest([str(tmp_path / "nope")], tmp_path / "c.log", 5)


# --------------------------------------------------------------- KVM probe


def test_probe_kvm_without_device(tmp_path: Path) -> None:
    ok, reason = guest.probe_kvm("x86_64", None, "/k", "/i", kvm_device=str(tmp_path / "kvm"))
    assert not ok and "not usable" in reason


def test_probe_kvm_arch_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "kvm"
    dev.write_bytes(b"")
    monkeypatch.setattr(guest.hostinfo, "host_arch", lambda: "x86_64")
    ok, reason = guest.probe_kvm("aarch64", None, "/k", "/i", kvm_device=str(dev))
    assert not ok and "differs" in reason


@pytest.mark.parametrize(("mode", "usable"), [("ok", True), ("kvmerr", False), ("hang", False)])
def test_probe_kvm_boot(
    fake_qemu: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    usable: bool,
) -> None:
    dev = tmp_path / "kvm"
    dev.write_bytes(b"")
    monkeypatch.setattr(guest.hostinfo, "host_arch", lambda: "aarch64")
    monkeypatch.setenv("FAKE_MODE", mode)
    log = tmp_path / "probe.log"
    ok, reason = guest.probe_kvm(
        "aarch64",
        str(fake_qemu),
        "/k",
        "/i",
        timeout_s=2,
        kvm_device=str(dev),
        console_log=log,
    )
    assert ok is usable, reason
    if not usable:
        assert str(log) in reason




def test_run_guest_reports_the_boot_then_the_benchmarks_progress(fake_qemu: Path, tmp_path: Path) -> None:
    log = io.StringIO()
    report = progress.Progress("blk x86_64/qemu-linux-smp repetition 1", runs=1, per_run=10, unit="reads", log=log,
                               out=None, every_s=0.1)
    res = guest.run_guest([str(fake_qemu), "progress"], tmp_path / "c.log", 20, report=report)
    assert res.lines[-1].startswith("RESULT blk") and "progress 8/10 reads" in res.lines  # parsers skip it
    said = log.getvalue().splitlines()
    assert any(", booting, " in line and "0 reads" in line for line in said), said
    assert any("8/10 reads (80%), booted in 0 s, running its job" in line and "ETA" in line for line in said), said


def test_a_failing_progress_handler_does_not_stall_the_guest(fake_qemu: Path, tmp_path: Path) -> None:
    """The console reader must go on draining QEMU whatever the handler does."""
    def broken(line: str) -> None:
        raise ValueError("bad line")

    res = guest.run_guest([str(fake_qemu), "progress"], tmp_path / "c.log", 20, on_line=broken)
    assert res.status == 0 and "UNIKIO-END status=0" in (tmp_path / "c.log").read_text()
