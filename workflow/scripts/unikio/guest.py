"""QEMU command construction and boot runner for the benchmark Linux guest.

The guest's init (native/guest/init.c) prints ``UNIKIO-BEGIN`` right before
its job, the job's output, then ``UNIKIO-END status=<rc>`` and powers off;
on failure it prints ``UNIKIO-ERROR <message>``.  :func:`run_guest` drives
one QEMU run and turns that protocol into a :class:`GuestResult` or a
one-line :class:`GuestError` that names the console log.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import hostinfo, procs, progress
from .errors import PipelineError

ARCHES = ("x86_64", "aarch64")
ACCELS = ("kvm", "tcg")

# x86_64 machine type: "pc".  Measured on the development VM (QEMU 7.2 under
# TCG, Debian cloud kernel 6.1.0-56, 256 MiB, 1 vCPU, bench=none, 10 boots
# each, time from QEMU start to UNIKIO-BEGIN):
#   pc                               median 1.64 s (1.53-1.94), 0/10 failed
#   microvm,pit=on,pic=on,rtc=on     median 1.57 s (1.46-2.45), 2/10 hung
#   microvm,pit=on                   10/10 hung
# microvm is only ~0.07 s faster but unusable under TCG: it has no HPET or
# ACPI PM timer, so the kernel must calibrate the TSC against the PIT, which
# under TCG fails depending on host timing ("tsc: Unable to calibrate
# against PIT ... Marking TSC unstable") and the boot then hangs.  Without
# pit=on it never calibrates.  pc boots reliably, so it is used for both
# accelerators (one machine model for every x86_64 measurement).
DEFAULT_X86_MACHINE = "pc"
MACHINE_OPTIONS = {
    "microvm": "microvm,pit=on,pic=on,rtc=on",
    "pc": "pc",
    "virt": "virt",
}
# virtio transport per machine: microvm has no PCI bus (virtio-mmio devices
# announced via ACPI); on arm virt we use the virtio-mmio transports that
# QEMU describes in the device tree.
TRANSPORT = {"microvm": "device", "pc": "pci", "virt": "device"}
CONSOLE = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}
QEMU_BINARY = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64"}
DEFAULT_FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios")
DEFAULT_MAC = "52:54:00:12:34:56"
BASE_APPEND = ("panic=-1", "quiet")

BEGIN = "UNIKIO-BEGIN"
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[^[])")
_END = re.compile(r"UNIKIO-END status=(-?\d+)\s*$")
_ERROR = re.compile(r"UNIKIO-ERROR\s*(.*)$")
_PANIC = "Kernel panic - not syncing"
# QEMU stderr messages after which the VM can never finish (QEMU pauses
# the VM on a KVM internal error instead of exiting, so we stop waiting).
_FATAL_STDERR = (
    "KVM internal error",
    "failed to initialize kvm",
    "Could not access KVM",
)


class GuestError(PipelineError):
    """A guest run failed; the message is one line and names the console log."""


@dataclass(frozen=True)
class GuestResult:
    """Outcome of a successful guest run."""

    status: int
    lines: list[str]
    boot_s: float
    total_s: float
    console_log: Path
    returncode: int = 0
    stderr: str = field(default="", repr=False)


# ------------------------------------------------------------ command line



def default_machine(arch: str) -> str:
    """Machine type used for an architecture (see DEFAULT_X86_MACHINE)."""
    _check_choice("arch", arch, ARCHES)
    return DEFAULT_X86_MACHINE if arch == "x86_64" else "virt"


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def kernel_append(arch: str, job: Mapping[str, object], extra: Sequence[str] = ()) -> str:
    """Kernel command line: serial console, panic/quiet options, then job keys."""
    _check_choice("arch", arch, ARCHES)
    words = [f"console={CONSOLE[arch]}", *BASE_APPEND, *extra]
    for key, value in job.items():
        text = f"{key}={value}"
        if not key or any(c.isspace() for c in text):
            raise ValueError(f"job key/value must not contain whitespace: {text!r}")
        words.append(text)
    return " ".join(words)


def qemu_command(
    *,
    arch: str,
    accel: str,
    kernel: Path | str,
    initrd: Path | str,
    append: str,
    qemu: str | None = None,
    machine: str | None = None,
    firmware_dirs: Sequence[Path | str] = DEFAULT_FIRMWARE_DIRS,
    memory_mb: int = 256,
    smp: int = 1,
    serial: str = "stdio",
    drive: Path | str | None = None,
    tap: str | None = None,
    vhost: bool = False,
    mac: str = DEFAULT_MAC,
    pin_cpu: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Build the QEMU argv for one guest boot.

    ``serial`` is ``"stdio"`` (what :func:`run_guest` expects) or a file
    path.  ``drive`` adds a raw virtio-blk disk (cache=none, aio=threads),
    ``tap`` a virtio-net NIC on that tap device.  ``pin_cpu`` prefixes
    ``taskset -c <cpu>``.
    """
    _check_choice("arch", arch, ARCHES)
    _check_choice("accel", accel, ACCELS)
    machine = machine or default_machine(arch)
    allowed = ("microvm", "pc") if arch == "x86_64" else ("virt",)
    _check_choice(f"machine for {arch}", machine, allowed)
    if memory_mb <= 0 or smp <= 0:
        raise ValueError("memory_mb and smp must be positive")

    cmd: list[str] = []
    if pin_cpu is not None:
        if pin_cpu < 0:
            raise ValueError("pin_cpu must be >= 0")
        cmd += ["taskset", "-c", str(pin_cpu)]
    cmd.append(qemu or QEMU_BINARY[arch])
    for d in firmware_dirs:
        cmd += ["-L", str(d)]

    mopts = MACHINE_OPTIONS[machine]
    if arch == "aarch64":
        if accel == "kvm":
            mopts += ",gic-version=host"
        cmd += ["-M", mopts, "-cpu", "host" if accel == "kvm" else "max"]
    else:
        cmd += ["-M", mopts]
        if accel == "kvm":
            cmd += ["-cpu", "host"]
    cmd += ["-accel", accel, "-m", str(memory_mb), "-smp", str(smp)]
    cmd += ["-nodefaults", "-nographic", "-no-reboot"]
    cmd += ["-serial", "stdio" if serial == "stdio" else f"file:{serial}"]
    cmd += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]

    transport = TRANSPORT[machine]
    if drive is not None:
        if "," in str(drive):
            raise ValueError(f"drive path must not contain ',': {drive}")
        cmd += [
            "-drive",
            f"file={drive},format=raw,if=none,id=d0,cache=none,aio=threads",
            "-device",
            f"virtio-blk-{transport},drive=d0",
        ]
    if tap is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", tap):
            raise ValueError(f"invalid tap interface name: {tap!r}")
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
            raise ValueError(f"invalid MAC address: {mac!r}")
        # romfile= : no PXE option ROM; the kernel is loaded directly.
        rom = ",romfile=" if transport == "pci" else ""
        cmd += [
            "-netdev",
            f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost={'on' if vhost else 'off'}",
            "-device",
            f"virtio-net-{transport},netdev=n0,mac={mac}{rom}",
        ]
    cmd += list(extra_args)
    return cmd


def linux_guest_command(*, arch: str, platform: str, accel: str, qemu: Path | str, kernel: Path | str,
                        initrd: Path | str, job: Mapping[str, object], memory_mb: int, cores: int,
                        drive: Path | str | None = None, tap: str | None = None, vhost: bool = False,
                        firmware_dirs: Sequence[Path | str] = DEFAULT_FIRMWARE_DIRS,
                        one_core_cpu: int = 0) -> list[str]:
    """The Linux guest's QEMU argv for a platform, the same on this host and inside the testbed.

    The block guest gets as many vCPUs as the machine running QEMU has cores
    (the study's smp row); ``qemu-linux-1core`` runs that same guest with the
    whole QEMU process pinned to one CPU, ``one_core_cpu`` (on this host
    measure.cpu, in the testbed its CPU 0). The network guest (``qemu-linux``) gets
    one vCPU: answering pings needs no more, and on a small host a second one
    competes with icmp_bench for the cores (here, 2 cores under TCG: 1,600 to
    5,900 pps with 2 vCPUs, against about 11,000 with one).
    """
    if platform not in ("qemu-linux", "qemu-linux-smp", "qemu-linux-1core"):
        raise ValueError(f"not a Linux-guest platform: {platform!r}")
    return qemu_command(arch=arch, accel=accel, qemu=str(qemu), kernel=kernel, initrd=initrd,
                        append=kernel_append(arch, job), memory_mb=memory_mb,
                        smp=1 if platform == "qemu-linux" else cores, drive=drive, tap=tap,
                        vhost=vhost, firmware_dirs=firmware_dirs,
                        pin_cpu=one_core_cpu if platform == "qemu-linux-1core" else None)


# ------------------------------------------------------------------ runner


def clean_console_line(raw: bytes) -> str:
    """Decode a console line, dropping CR/LF and terminal escape sequences."""
    return _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n")


@dataclass
class _Console:
    """Console lines collected by the reader thread."""

    lines: list[str] = field(default_factory=list)
    begin_at: float | None = None
    begin_index: int | None = None
    end_status: int | None = None
    end_index: int | None = None
    error: str | None = None
    panic: bool = False
    begin_seen: threading.Event = field(default_factory=threading.Event)


def _scan_line(con: _Console, line: str, now: float) -> None:
    """Update marker state for one console line."""
    idx = len(con.lines)
    con.lines.append(line)
    if con.begin_index is None and line.rstrip().endswith(BEGIN):
        con.begin_index, con.begin_at = idx, now
        con.begin_seen.set()
        return
    m = _END.search(line)
    if m and con.end_index is None:
        con.end_index, con.end_status = idx, int(m.group(1))
        return
    m = _ERROR.search(line)
    if m and con.error is None:
        con.error = m.group(1).strip() or "(no message)"
    if _PANIC in line:
        con.panic = True


def _read_stdout(stream: IO[bytes], con: _Console, log: IO[bytes], t0: float,
                 on_line: Callable[[str], object] | None) -> None:
    procs.block_cancel_signals()
    for raw in iter(stream.readline, b""):
        log.write(raw)
        log.flush()
        line = clean_console_line(raw)
        _scan_line(con, line, time.monotonic() - t0)
        if on_line is not None:
            try:
                on_line(line)
            except Exception:  # noqa: BLE001 - progress is never worth a reader that stops draining QEMU
                on_line = None


def _read_stderr(stream: IO[bytes], sink: list[str], fatal: threading.Event) -> None:
    procs.block_cancel_signals()
    for raw in iter(stream.readline, b""):
        text = raw.decode("utf-8", errors="replace")
        sink.append(text)
        if any(p in text for p in _FATAL_STDERR):
            fatal.set()


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


# After its job's own limit the guest's init stops the job and powers off; this bounds that.
POWEROFF_S = 10.0


def run_guest(
    cmd: Sequence[str],
    console_log: Path | str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    on_begin: Callable[[Callable[[str], None], Callable[[], str | None]], None] | None = None,
    check_status: bool = True,
    begin_timeout_s: float | None = None,
    report: progress.Progress | None = None,
    on_line: Callable[[str], object] | None = None,
) -> GuestResult:
    """Run QEMU (serial on stdio), enforce the time limits, parse the markers.

    Without ``begin_timeout_s`` the whole run gets ``timeout_s``; with it, the
    boot gets ``begin_timeout_s`` to reach UNIKIO-BEGIN and the job then gets
    ``timeout_s`` (plus POWEROFF_S to power off).  ``on_begin``, if given, is
    called in a helper thread once the guest printed UNIKIO-BEGIN, with a
    function that sends one line to the guest console (e.g. ``send("quit")``
    for bench=net) and one that says why QEMU is gone (None while it runs),
    so that a benchmark beside the guest stops as soon as the guest does.
    Raises GuestError on a time limit, kernel panic, UNIKIO-ERROR, a missing
    UNIKIO-END, a non-zero QEMU exit status, a failed ``on_begin``, or
    (``check_status``) a non-zero job status.  QEMU is stopped on every way
    out, a cancellation of the job included. ``report`` says where the run is
    while it lasts: booting, then what ``on_line`` (default:
    ``report.bench_line``) makes of each console line, such as a benchmark's
    progress lines.
    """
    log_path = Path(console_log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    con = _Console()
    stderr_lines: list[str] = []
    fatal = threading.Event()

    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        try:
            proc = procs.start(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            raise GuestError(f"cannot start {cmd[0]}: {exc} (console log: {log_path})") from exc
        # Daemon readers: a job that is cancelled never waits for them.
        if on_line is None and report is not None:
            on_line = report.bench_line
        if report is not None:
            report.phase("booting")
        out_t = threading.Thread(target=_read_stdout, args=(proc.stdout, con, log, t0, on_line), daemon=True)
        err_t = threading.Thread(target=_read_stderr, args=(proc.stderr, stderr_lines, fatal), daemon=True)
        out_t.start()
        err_t.start()

        def send(text: str) -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(text.encode() + b"\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                pass  # QEMU is gone: what ended it is reported, not the broken pipe

        def guest_gone() -> str | None:
            return None if proc.poll() is None else f"QEMU exited ({procs.exit_reason(proc.returncode)})"

        def callback() -> None:
            con.begin_seen.wait()
            if proc.poll() is None and on_begin is not None:
                on_begin(send, guest_gone)

        # A Future keeps an exception raised by on_begin for the report below.
        pool = ThreadPoolExecutor(max_workers=1, initializer=procs.block_cancel_signals) if on_begin else None
        cb_future = pool.submit(callback) if pool is not None else None

        def deadline() -> tuple[float, str]:
            if begin_timeout_s is None:
                return t0 + timeout_s, f"timed out after {timeout_s:g} s"
            if con.begin_at is None:
                return t0 + begin_timeout_s, f"did not reach UNIKIO-BEGIN within {begin_timeout_s:g} s"
            return (t0 + con.begin_at + timeout_s + POWEROFF_S,
                    f"the job ran longer than {timeout_s:g} s after UNIKIO-BEGIN")

        reason = None
        booted = False
        try:
            while proc.poll() is None:
                if report is not None:
                    if not booted and con.begin_at is not None:
                        booted = True
                        report.started(f"booted in {con.begin_at:.0f} s, running its job")
                    report.tick()
                if fatal.is_set():
                    time.sleep(0.2)  # let the rest of the message arrive
                    reason = "QEMU reported: " + _first_line(
                        next(s for s in stderr_lines if any(p in s for p in _FATAL_STDERR))
                    )
                    break
                if cb_future is not None and cb_future.done() and cb_future.exception() is not None:
                    # The measurement beside the guest failed: waiting for the guest would only add its time limit.
                    reason = f"the benchmark beside the guest failed: {cb_future.exception()}"
                    break
                limit, why = deadline()
                if time.monotonic() > limit:
                    reason = why
                    break
                time.sleep(0.02)
        finally:
            total = time.monotonic() - t0
            with procs.uninterrupted():
                if proc.poll() is None:
                    procs.stop(proc)
                procs.forget(proc)
                con.begin_seen.set()  # release a callback still waiting
            if pool is not None:
                # The callback sees QEMU gone and stops its own children; a cancellation may still cut this short.
                pool.shutdown(wait=False, cancel_futures=True)
                futures.wait([cb_future], timeout=procs.STOP_WAIT_S)
            with procs.uninterrupted():
                out_t.join(5)
                err_t.join(5)
                if proc.stdin is not None:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass
                stderr_text = "".join(stderr_lines)
                if stderr_text:
                    log.write(b"\n--- qemu stderr ---\n" + stderr_text.encode())

    def fail(why: str) -> GuestError:
        return GuestError(f"guest run failed: {why} (console log: {log_path})")

    if reason is not None:
        raise fail(reason)
    if con.error is not None:
        raise fail(f"UNIKIO-ERROR {con.error}")
    if con.panic:
        raise fail("kernel panic")
    if proc.returncode != 0:
        detail = _first_line(stderr_text)
        how = procs.exit_reason(proc.returncode)
        raise fail(("QEMU was " if proc.returncode < 0 else "QEMU exited with ") + how
                   + (f": {detail}" if detail else ""))
    if con.begin_index is None or con.end_index is None or con.end_status is None:
        raise fail("guest stopped without UNIKIO-BEGIN/UNIKIO-END markers")
    cb_error = cb_future.exception() if cb_future is not None and cb_future.done() else None
    if cb_error is not None:
        raise fail(f"the benchmark beside the guest failed: {cb_error}")
    if check_status and con.end_status != 0:
        raise fail(f"job exited with status {con.end_status}")
    assert con.begin_at is not None
    return GuestResult(
        status=con.end_status,
        lines=con.lines[con.begin_index + 1 : con.end_index],
        boot_s=con.begin_at,
        total_s=total,
        console_log=log_path,
        returncode=proc.returncode,
        stderr=stderr_text,
    )


# --------------------------------------------------------------- KVM probe


def probe_kvm(
    arch: str,
    qemu: str | None,
    kernel: Path | str,
    initrd: Path | str,
    firmware: Sequence[Path | str] = DEFAULT_FIRMWARE_DIRS,
    timeout_s: float = 30.0,
    machine: str | None = None,
    console_log: Path | str | None = None,
    kvm_device: str = "/dev/kvm",
) -> tuple[bool, str]:
    """Decide whether KVM can be used for this guest.

    Requires that /dev/kvm opens read-write, that the guest arch equals the
    host arch, and that a ``bench=none`` boot of this kernel/initrd under
    KVM reaches UNIKIO-END within ``timeout_s``.
    """
    _check_choice("arch", arch, ARCHES)
    try:
        fd = os.open(kvm_device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"{kvm_device} not usable: {exc.strerror or exc}"
    os.close(fd)
    if arch != hostinfo.host_arch():
        return False, f"guest arch {arch} differs from host arch {hostinfo.host_arch()}"
    if console_log is None:
        fd, name = tempfile.mkstemp(prefix=f"kvm-probe-{arch}-", suffix=".log")
        os.close(fd)
        console_log = name
    cmd = qemu_command(
        arch=arch,
        accel="kvm",
        qemu=qemu,
        machine=machine,
        kernel=kernel,
        initrd=initrd,
        append=kernel_append(arch, {"bench": "none"}),
        firmware_dirs=firmware,
    )
    try:
        res = run_guest(cmd, console_log, timeout_s)
    except GuestError as exc:
        return False, f"KVM probe boot failed: {exc}"
    return True, f"KVM probe boot reached UNIKIO-END in {res.total_s:.2f} s"


def choose_accel(policy: str, probe: Callable[[], tuple[bool, str]]) -> tuple[str, str]:
    """The accelerator for a guest under the config's policy (auto|kvm|tcg), with why."""
    if policy == "tcg":
        return "tcg", "accel: tcg in the config"
    usable, reason = probe()
    if usable:
        return "kvm", reason
    if policy == "kvm":
        raise PipelineError(f"accel is kvm but KVM is not usable for this guest ({reason}); set accel: auto or tcg")
    return "tcg", f"KVM not usable, using TCG: {reason}"
