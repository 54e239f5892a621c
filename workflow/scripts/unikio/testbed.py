"""The emulated aarch64 testbed: the aarch64 rows of the study on an x86_64 machine.

QEMU emulates (TCG) an arm ``virt`` machine with the virtualization
extensions, so Debian's arm64 kernel starts at EL2 and brings up KVM.  Inside
it we run the block experiment's ``host`` row, the unikernel tender under
that (nested) KVM, the KVM exit floor, and the network experiment's tender
side with icmp_bench on a tap.  The unikernel rows run on either of our
tenders: ``tender`` (solo5-hvt, the guest under that KVM) or ``spt_tender``
(solo5-spt, the guest as a seccomp-confined process, no hardware
virtualization), with our Solo5 guests or the lwIP one.  Everything here is
emulated: the numbers show that the aarch64 code paths work, they are not
performance results.

One boot serves every repetition (and data size) of a row kind.  The
initramfs is a base image (init, busybox, our aarch64 binaries, modules)
followed by a small per-run archive holding ``/job.sh``; the kernel unpacks
concatenated cpio archives as one tree.  The guest's init runs the job with
``bench=script`` and relays its output between UNIKIO-BEGIN and UNIKIO-END.

Every measurement in the job is framed by marker lines, so each result is
attributable to its row kind, repetition and size::

    TB-BEGIN kind=tender-blk rep=2
    RESULT blk reads=200 block_size=512 total_ns=123456
    pread_calls=200 pread_ns=45678
    TB-END kind=tender-blk rep=2 status=0
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import conditions, guest, hostinfo, initramfs, loopdev, matrix, net, procs, progress, results, solo5
from .errors import PipelineError

ARCH = "aarch64"
TESTBED = "emulated"
MACHINE = "virt,virtualization=on"
CPU = "max"
DEFAULT_MEMORY_MB = 1024
DEFAULT_SMP = 2
# Kernel modules beyond what the cloud kernel has built in (KVM is built in).
MODULES = ("loop", "tun")

# Where the base image puts our programs inside the testbed.
BIN = {
    "blk_bench": "bin/blk_bench",
    "icmp_bench": "bin/icmp_bench",
    "tender": "bin/tender",
    "spt_tender": "bin/spt_tender",
    "kvm_exit_floor": "bin/kvm_exit_floor",
    "blk_bench.elf": "opt/unikernels/blk_bench.elf",
    "ping_serve.elf": "opt/unikernels/ping_serve.elf",
    "blk_bench.spt": "opt/unikernels/blk_bench.spt",
    "ping_serve.spt": "opt/unikernels/ping_serve.spt",
    "lwip_serve.elf": "opt/unikernels/lwip_serve.elf",
    "lwip_serve.spt": "opt/unikernels/lwip_serve.spt",
}
# The image carries only our own tenders (upstream Solo5 is built for the host arch only).
PROVIDER = "builtin"
JOB_PATH = "job.sh"
DISK_DIR = "/mnt/disk"
LOOP_DEV = "/dev/loop0"  # a fresh testbed has every loop device free
TAP = "tap100"

KINDS = ("host-blk", "tender-blk", "qemu-blk", "exit-floor", "tender-net", "qemu-net")
PLATFORM = {"host-blk": "host", "tender-blk": "solo5-hvt", "tender-net": "solo5-hvt", "qemu-net": "qemu-linux"}

# Time for a testbed boot (TCG) to reach its job; the job then gets testbed.timeout_s.
DEFAULT_BOOT_TIMEOUT_S = 120.0

# Exit statuses of the job and of the programs it runs, for one-line errors.
EXIT_DISK, EXIT_TAP, EXIT_TENDER_GONE, EXIT_TIMEOUT = 70, 71, 72, 124
_JOB_STATUS = {
    EXIT_DISK: "could not set up the tmpfs loop device",
    EXIT_TAP: "could not set up the tap device",
    EXIT_TIMEOUT: "the job ran past its time limit",
}
_STATUS = {
    "tender-net": {3: "no ARP reply from the unikernel", 4: "more packet loss than net.max_loss_pct",
                   EXIT_TENDER_GONE: "the tender exited early"},
    "qemu-net": {3: "no ARP reply from the Linux guest", 4: "more packet loss than net.max_loss_pct",
                 EXIT_TENDER_GONE: "the nested QEMU exited early"},
    "tender-blk": {255: "guest fault or abort"},
}

# spt_tender's stderr line when its seccomp filter kills the guest (exit status 159); it names the
# syscall ("it called openat (syscall 56)") where it can.
_SECCOMP_KILL = re.compile(r"spt_tender: guest killed by the seccomp filter: .+")
_MARK = re.compile(r"^TB-(BEGIN|END) kind=(\S+)((?: \w+=\S+)*)\s*$")
_KEYVAL = re.compile(r"(\w+)=(\S+)")


class TestbedError(PipelineError):
    """A testbed run failed; the message is one line and names the console log."""

    __test__ = False  # not a pytest test class despite the name


@dataclass(frozen=True)
class Binaries:
    """The aarch64 programs the base image carries (host paths); the lwIP guests only when a row needs them."""

    init: Path
    busybox: Path
    blk_bench: Path
    icmp_bench: Path
    tender: Path
    kvm_exit_floor: Path
    blk_bench_elf: Path
    ping_serve_elf: Path
    spt_tender: Path
    blk_bench_spt: Path
    ping_serve_spt: Path
    lwip_serve_elf: Path | None = None
    lwip_serve_spt: Path | None = None

    def files(self) -> dict[str, Path]:
        """{archive path: host path} of everything but init and busybox."""
        files = {
            BIN["blk_bench"]: self.blk_bench,
            BIN["icmp_bench"]: self.icmp_bench,
            BIN["tender"]: self.tender,
            BIN["kvm_exit_floor"]: self.kvm_exit_floor,
            BIN["blk_bench.elf"]: self.blk_bench_elf,
            BIN["ping_serve.elf"]: self.ping_serve_elf,
            BIN["spt_tender"]: self.spt_tender,
            BIN["blk_bench.spt"]: self.blk_bench_spt,
            BIN["ping_serve.spt"]: self.ping_serve_spt,
        }
        for key, path in (("lwip_serve.elf", self.lwip_serve_elf), ("lwip_serve.spt", self.lwip_serve_spt)):
            if path is not None:
                files[BIN[key]] = path
        return files

    @classmethod
    def from_build(cls, init: Path, busybox: Path, native_dir: Path, solo5_dir: Path,
                   lwip_dir: Path | None = None) -> Binaries:
        """The usual layout: results/build/native/aarch64, results/build/solo5-builtin/aarch64 and
        results/build/lwip-builtin/aarch64 (None: no lwIP row planned)."""
        return cls(init=init, busybox=busybox, blk_bench=native_dir / "blk_bench",
                   icmp_bench=native_dir / "icmp_bench", tender=solo5_dir / "tender",
                   kvm_exit_floor=solo5_dir / "kvm_exit_floor", blk_bench_elf=solo5_dir / "blk_bench.elf",
                   ping_serve_elf=solo5_dir / "ping_serve.elf", spt_tender=solo5_dir / "spt_tender",
                   blk_bench_spt=solo5_dir / "blk_bench.spt", ping_serve_spt=solo5_dir / "ping_serve.spt",
                   lwip_serve_elf=lwip_dir / "lwip_serve.elf" if lwip_dir is not None else None,
                   lwip_serve_spt=lwip_dir / "lwip_serve.spt" if lwip_dir is not None else None)


# ---------------------------------------------------------------- images


def build_base_initramfs(out_path: Path, kernel_tree: Path, binaries: Binaries) -> initramfs.ModulePlan:
    """Write the testbed's base initramfs (no job) and return its module plan."""
    missing = [str(p) for p in (binaries.init, binaries.busybox, *binaries.files().values()) if not Path(p).is_file()]
    if missing:
        raise TestbedError(f"testbed programs missing (build them first): {', '.join(missing)}")
    return initramfs.build_initramfs(Path(out_path), Path(kernel_tree), MODULES, binaries.init,
                                     extra_files=binaries.files(), busybox=binaries.busybox)


def job_archive(script: str) -> bytes:
    """A gzip'd newc archive holding only /job.sh."""
    arc = initramfs.Archive()
    arc.add_file(JOB_PATH, script.encode(), 0o755)
    # Without dirs: the base image already has /, and adding none avoids clobbering its modes.
    return gzip.compress(initramfs.write_newc(list(arc.entries.values())), compresslevel=6, mtime=0)


def write_job_initrd(base: Path, script: str, out_path: Path) -> Path:
    """base image followed by the job archive, written atomically to out_path."""
    return append_archive(base, job_archive(script), out_path)


def append_archive(base: Path, archive: bytes, out_path: Path) -> Path:
    """base image followed by another gzip'd cpio (the kernel unpacks both), written atomically."""
    data = Path(base).read_bytes()
    # Each gzip member must start on a 4-byte boundary for the kernel's unpacker.
    pad = b"\0" * (-len(data) % 4)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data + pad + archive)
    os.replace(tmp, out)
    return out


# The Linux guest and the arm64 build of our QEMU that runs it under the
# testbed's KVM, as in the study (QEMU/KVM on the ARM host).
NESTED = {"qemu": "opt/nested/qemu-system-aarch64", "kernel": "opt/nested/vmlinuz",
          "initrd": "opt/nested/initrd.gz"}


def nested_archive(qemu: Path, kernel: Path, initrd: Path) -> bytes:
    """gzip'd cpio holding the nested QEMU, the guest kernel and the guest's initramfs."""
    arc = initramfs.Archive()
    for key, src, mode in (("qemu", qemu, 0o755), ("kernel", kernel, 0o644), ("initrd", initrd, 0o644)):
        arc.add_file(NESTED[key], Path(src).read_bytes(), mode)
    return arc.to_cpio_gz()


# ---------------------------------------------------------- command line


def kernel_append(script_timeout_s: int) -> str:
    """Kernel command line for a bench=script boot with the job's time limit."""
    return guest.kernel_append(ARCH, {"bench": "script", "script_timeout": int(script_timeout_s)})


def testbed_command(
    *,
    qemu: Path | str,
    kernel: Path | str,
    initrd: Path | str,
    append: str,
    firmware_dirs: Sequence[Path | str] = guest.DEFAULT_FIRMWARE_DIRS,
    memory_mb: int = DEFAULT_MEMORY_MB,
    smp: int = DEFAULT_SMP,
) -> list[str]:
    """QEMU argv of the testbed: emulated arm virt machine at EL2, serial on stdio."""
    if memory_mb <= 0 or smp <= 0:
        raise ValueError("memory_mb and smp must be positive")
    cmd = [str(qemu)]
    for d in firmware_dirs:
        cmd += ["-L", str(d)]
    cmd += ["-M", MACHINE, "-cpu", CPU, "-accel", "tcg", "-m", str(memory_mb), "-smp", str(smp)]
    cmd += ["-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio"]
    cmd += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
    return cmd


# ------------------------------------------------------------ job scripts


def _positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


def unikernel(experiment: str, platform: str) -> tuple[str, str]:
    """(tender, guest) of a unikernel row as BIN keys (our builds); ValueError for a platform the testbed does not
    run."""
    return solo5.builtin_files(experiment, platform)


def unikernel_accel(experiment: str, platform: str) -> str:
    """The accel column of a unikernel row: its tender's (hvt: the testbed's KVM; spt: none)."""
    unikernel(experiment, platform)
    return solo5.accel(matrix.TENDER[platform])


def _disk_mib(reads: int, block_size: int) -> int:
    return loopdev.disk_bytes(reads, block_size) // loopdev.MIB


PRELUDE = f"""\
#!/bin/sh
# Generated by unikio.testbed: one testbed boot's measurements.
/bin/busybox --install -s /bin
export PATH=/bin
# Which KVM this kernel started (VHE or not): every kvm row records it.
echo "TB-KVM $(dmesg | grep -m 1 'mode initialized successfully')"
mkdir -p /tmp {DISK_DIR}
mount -t tmpfs tmpfs /tmp
# begin KIND REP [SIZE] / end KIND REP STATUS [SIZE]: attributable results.
begin() {{ echo "TB-BEGIN kind=$1 rep=$2${{3:+ size=$3}}"; }}
end() {{ echo "TB-END kind=$1 rep=$2${{4:+ size=$4}} status=$3"; }}
cleanup() {{
    [ -n "${{tpid:-}}" ] && kill -9 "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null
    losetup -d {LOOP_DEV} 2>/dev/null
    umount {DISK_DIR} 2>/dev/null
    ip link delete {TAP} 2>/dev/null
    true
}}
trap cleanup EXIT
# A fresh tmpfs file with non-zero content behind {LOOP_DEV} (as the host rows do).
mkdisk() {{
    mount -t tmpfs -o size=$(($1 + 1))m tmpfs {DISK_DIR} &&
    dd if=/dev/urandom of={DISK_DIR}/disk.img bs=1M count=$1 2>/dev/null &&
    losetup {LOOP_DEV} {DISK_DIR}/disk.img
}}
rmdisk() {{
    losetup -d {LOOP_DEV}; rm -f {DISK_DIR}/disk.img; umount {DISK_DIR}
}}
"""


def host_blk_fragment(reads: int, block_size: int, reps: int) -> str:
    """Shell fragment: the host row's blk_bench on a fresh loop device per repetition."""
    _positive(reads=reads, block_size=block_size, reps=reps)
    return f"""\
for rep in $(seq 1 {reps}); do
    mkdisk {_disk_mib(reads, block_size)} || exit {EXIT_DISK}
    begin host-blk $rep
    /{BIN["blk_bench"]} {LOOP_DEV} {reads} {block_size} 2>&1
    rc=$?
    end host-blk $rep $rc
    rmdisk
    [ $rc -eq 0 ] || exit $rc
done
"""


def tender_blk_fragment(reads: int, block_size: int, reps: int, mem_mb: int, platform: str = "solo5-hvt") -> str:
    """Shell fragment: the platform's blk_bench on its tender (O_DIRECT), stats file printed after each result."""
    _positive(reads=reads, block_size=block_size, reps=reps, mem_mb=mem_mb)
    tender, guest_bin = unikernel("blk", platform)
    return f"""\
for rep in $(seq 1 {reps}); do
    mkdisk {_disk_mib(reads, block_size)} || exit {EXIT_DISK}
    rm -f /tmp/pread.stats
    begin tender-blk $rep
    /{BIN[tender]} --mem={mem_mb} --block:storage={LOOP_DEV} --block-sector-size:storage={block_size} \\
        --block-direct --stats=/tmp/pread.stats /{BIN[guest_bin]} reads={reads} 2>&1
    rc=$?
    # Missing stats show up as a parse error; a failing tender says why itself (on stderr, relayed here).
    cat /tmp/pread.stats 2>/dev/null
    end tender-blk $rep $rc
    rmdisk
    [ $rc -eq 0 ] || exit $rc
done
"""


def nested_guest_command(*, platform: str, memory_mb: int, smp: int, job: Mapping[str, object],
                         drive: str | None = None, tap: str | None = None) -> str:
    """The Linux guest's QEMU command inside the testbed, from the same builder as on the host, shell-quoted.

    The arm64 QEMU runs under the testbed's KVM (as on the study's boards),
    with the testbed's CPUs as vCPUs; the kernel needs no firmware files.
    """
    return shlex.join(guest.linux_guest_command(
        arch=ARCH, platform=platform, accel="kvm", qemu=f"/{NESTED['qemu']}", kernel=f"/{NESTED['kernel']}",
        initrd=f"/{NESTED['initrd']}", job=job, memory_mb=memory_mb, cores=smp, drive=drive, tap=tap,
        vhost=False, firmware_dirs=()))


def qemu_blk_fragment(platform: str, reads: int, block_size: int, reps: int, memory_mb: int, smp: int) -> str:
    """Shell fragment: the Linux guest's blk_bench under our arm64 QEMU with the testbed's KVM.

    The guest's console is relayed with its markers renamed, so only this
    job's markers frame the results.
    """
    _positive(reads=reads, block_size=block_size, reps=reps, memory_mb=memory_mb, smp=smp)
    if platform not in ("qemu-linux-smp", "qemu-linux-1core"):
        raise ValueError(f"not a Linux-guest block platform: {platform!r}")
    cmd = nested_guest_command(platform=platform, memory_mb=memory_mb, smp=smp, drive=LOOP_DEV,
                               job={"bench": "blk", "dev": "/dev/vda", "reads": reads, "bs": block_size})
    return f"""\
for rep in $(seq 1 {reps}); do
    mkdisk {_disk_mib(reads, block_size)} || exit {EXIT_DISK}
    rm -f /tmp/pread.stats /tmp/nested.out
    begin qemu-blk $rep
    PREAD_STATS_FILE=/tmp/pread.stats {cmd} </dev/null >/tmp/nested.out 2>&1
    rc=$?
    sed 's/UNIKIO/GUEST/g; s/Kernel panic/guest kernel panic/g; s/^/guest: /' /tmp/nested.out
    grep -o 'RESULT blk.*' /tmp/nested.out
    cat /tmp/pread.stats 2>/dev/null
    end qemu-blk $rep $rc
    rmdisk
    [ $rc -eq 0 ] || exit $rc
done
"""


def exit_floor_fragment(exits: int) -> str:
    """Shell fragment: kvm_exit_floor once."""
    _positive(exits=exits)
    return f"""\
begin exit-floor 1
/{BIN["kvm_exit_floor"]} {exits} 2>&1
rc=$?
end exit-floor 1 $rc
[ $rc -eq 0 ] || exit $rc
"""


def _check_net_args(sizes: Sequence[int], reps: int, packets: int, max_loss_pct: float) -> None:
    _positive(reps=reps, packets=packets)
    if not sizes:
        raise ValueError("sizes must not be empty")
    for size in sizes:
        if not isinstance(size, int) or not 0 <= size <= results.MAX_ICMP_PAYLOAD:
            raise ValueError(f"ICMP data size must be 0..{results.MAX_ICMP_PAYLOAD}, not {size!r}")
    if not 0 <= float(max_loss_pct) <= 100:
        raise ValueError(f"max_loss_pct must be 0..100, not {max_loss_pct!r}")


def _net_fragment(kind: str, server: str, what: str, sizes: Sequence[int], reps: int, packets: int,
                  max_loss_pct: float, ready_s: int) -> str:
    """Shell fragment: start server (answering 10.0.0.2 on the tap) in the background, wait until it
    answers (at most ready_s seconds), then icmp_bench for every size and repetition."""
    _check_net_args(sizes, reps, packets, max_loss_pct)
    host_ip = net.HOST_CIDR.split("/")[0]
    size_words = " ".join(str(s) for s in sizes)
    bench = f"/{BIN['icmp_bench']} --ifname {TAP} --src-ip {host_ip} --dst-ip {net.GUEST_IP}"
    return f"""\
# A persistent tap, so the address is set before the server attaches to it.
tunctl -t {TAP} >/dev/null || exit {EXIT_TAP}
ip addr add {net.HOST_CIDR} dev {TAP} || exit {EXIT_TAP}
ip link set {TAP} up || exit {EXIT_TAP}
{server} >/tmp/server.log 2>&1 &
tpid=$!
waited=0
until {bench} --size 1 --count 1 --arp-retries 1 >/dev/null 2>&1; do
    waited=$((waited + 1))
    kill -0 $tpid 2>/dev/null && [ $waited -lt {ready_s} ] || break
done
# Repetition 1 of every size, then repetition 2, ...: drift during the boot does not land on one size.
for rep in $(seq 1 {reps}); do
    for size in {size_words}; do
        begin {kind} $rep $size
        rc={EXIT_TENDER_GONE}
        if kill -0 $tpid 2>/dev/null; then
            {bench} --size $size --count {packets} --max-loss-pct {float(max_loss_pct):g} 2>&1
            rc=$?
        fi
        # A failure while the server is gone is the server's failure, not the network's.
        if [ $rc -ne 0 ] && ! kill -0 $tpid 2>/dev/null; then
            wait $tpid; echo "the {what} exited early with status $?:"
            sed 's/^/{what}: /; s/UNIKIO/GUEST/g' /tmp/server.log
            rc={EXIT_TENDER_GONE}
        fi
        end {kind} $rep $rc $size
        [ $rc -eq 0 ] || exit $rc
    done
done
# SIGTERM lets the server exit cleanly; SIGKILL if it does not within 10 s.
kill $tpid
( sleep 10; kill -9 $tpid ) >/dev/null 2>&1 &
wait $tpid; tpid=
sed 's/^/{what}: /; s/UNIKIO/GUEST/g; s/Kernel panic/guest kernel panic/g' /tmp/server.log
"""


def tender_net_fragment(sizes: Sequence[int], reps: int, packets: int, max_loss_pct: float, mem_mb: int,
                        platform: str = "solo5-hvt") -> str:
    """Shell fragment: the platform's unikernel (ping_serve or lwip_serve) on its tender behind a tap,
    icmp_bench for every size and repetition; the tender's output is relayed prefixed with its name."""
    _positive(mem_mb=mem_mb)
    tender, guest_bin = unikernel("net", platform)
    server = f"/{BIN[tender]} --mem={mem_mb} --net:service={TAP} /{BIN[guest_bin]} ip={net.GUEST_IP}"
    return _net_fragment("tender-net", server, tender, sizes, reps, packets, max_loss_pct, ready_s=10)


def qemu_net_fragment(sizes: Sequence[int], reps: int, packets: int, max_loss_pct: float, memory_mb: int,
                      timeout_s: int, smp: int) -> str:
    """Shell fragment: the Linux guest (its kernel answers) under our arm64 QEMU with the testbed's KVM,
    virtio-net on the tap (no vhost-net in the testbed)."""
    _positive(memory_mb=memory_mb, timeout_s=timeout_s, smp=smp)
    job = {"bench": "net", "ip": f"{net.GUEST_IP}/{net.HOST_CIDR.split('/')[1]}", "net_timeout": timeout_s}
    server = nested_guest_command(platform="qemu-linux", memory_mb=memory_mb, smp=smp, tap=TAP, job=job)
    return _net_fragment("qemu-net", f"{server} </dev/null", "guest", sizes, reps, packets, max_loss_pct,
                         ready_s=120)


def job_script(fragments: Sequence[str]) -> str:
    """The whole /job.sh: prelude, the fragments in order, then a clean exit."""
    if not fragments:
        raise ValueError("a job needs at least one fragment")
    return PRELUDE + "".join(fragments) + "exit 0\n"


# ----------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Segment:
    """The output of one framed measurement."""

    kind: str
    rep: int
    size: int | None
    status: int
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def label(self) -> str:
        return f"{self.kind} rep {self.rep}" + (f" size {self.size}" if self.size is not None else "")


def _marker(line: str) -> tuple[str, str, dict[str, str]] | None:
    m = _MARK.match(line.strip())
    if not m:
        return None
    return m.group(1), m.group(2), dict(_KEYVAL.findall(m.group(3)))


def parse_segments(lines: Sequence[str]) -> list[Segment]:
    """Framed measurements in a relayed transcript; ValueError for broken framing.

    A segment that began but never ended (the job was killed) is returned
    with status -1, so the caller can say which measurement was cut short.
    """
    segments: list[Segment] = []
    current: tuple[str, dict[str, str], list[str]] | None = None
    for line in lines:
        mark = _marker(line)
        if mark is None:
            if current is not None:
                current[2].append(line)
            continue
        what, kind, keys = mark
        if what == "BEGIN":
            if current is not None:
                raise ValueError(f"TB-BEGIN {kind} inside the unfinished {current[0]} measurement")
            current = (kind, keys, [])
            continue
        # The END must close the open measurement: same kind, rep and size.
        if current is None or current[0] != kind or any(keys.get(k) != v for k, v in current[1].items()):
            raise ValueError(f"unmatched marker line: {line.strip()!r}")
        segments.append(_segment(kind, {**current[1], **keys}, current[2], int(keys.get("status", "-1"))))
        current = None
    if current is not None:
        segments.append(_segment(current[0], current[1], current[2], -1))
    return segments


def _segment(kind: str, keys: Mapping[str, str], lines: list[str], status: int) -> Segment:
    size = keys.get("size")
    return Segment(kind=kind, rep=int(keys.get("rep", "0")), size=int(size) if size is not None else None,
                   status=status, lines=lines)


def _last_message(seg: Segment) -> str:
    # The seccomp kill names the syscall; what follows it (the stats line, the tender's end) says less.
    kill = next((m.group(0).strip() for ln in seg.lines if (m := _SECCOMP_KILL.search(ln))), None)
    if kill is not None:
        return kill
    lines = [ln.strip() for ln in seg.lines if ln.strip()]
    # A program's own complaint says more than its result line.
    for line in reversed(lines):
        if not line.startswith(("RESULT ", "pread_calls=")) and progress.parse_bench_line(line) is None:
            return line
    return lines[-1] if lines else "no message"


def _check(seg: Segment, console_log: Path | str) -> None:
    if seg.status == 0:
        return
    if seg.status < 0:
        why = "was cut short (job killed or timed out)"
    else:
        meaning = _STATUS.get(seg.kind, {}).get(seg.status)
        why = f"exited with status {seg.status}" + (f" ({meaning})" if meaning else "")
    raise TestbedError(f"testbed {seg.label()} {why}: {_last_message(seg)} (console log: {console_log})")


def _of_kind(segments: Sequence[Segment], kind: str, console_log: Path | str) -> list[Segment]:
    mine = [s for s in segments if s.kind == kind]
    for seg in mine:
        _check(seg, console_log)
    return mine


def _expect(found: int, wanted: int, what: str, console_log: Path | str) -> None:
    if found != wanted:
        raise TestbedError(f"testbed produced {found} of {wanted} {what} measurements (console log: {console_log})")


def _bad(seg: Segment, exc: ValueError, console_log: Path | str) -> TestbedError:
    return TestbedError(f"testbed {seg.label()}: {exc} (console log: {console_log})")


def host_label() -> str:
    """The `host` column of testbed rows: what emulated the machine, and on what."""
    return f"QEMU TCG aarch64 -cpu max on {hostinfo.cpu_model()}"


def _accel_provider(kind: str, experiment: str, platform: str) -> tuple[str, str]:
    """The accel and provider columns of a row kind's rows on platform."""
    if kind.startswith("tender-"):
        return unikernel_accel(experiment, platform), PROVIDER
    return ("none" if kind == "host-blk" else "kvm"), ""


def blk_rows(segments: Sequence[Segment], *, kind: str, reps: int, block_size: int, console_log: Path | str,
             kvm_impl: str, host: str | None = None, platform: str | None = None,
             cond: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """blk_runs.csv rows of a block row kind (host-blk, tender-blk, qemu-blk), one per repetition.

    platform: the tender-blk row's (solo5-hvt when None) or the qemu-blk row's.
    cond: the host's conditions around the boot (TestbedRun.conditions), the same for every repetition.
    """
    if kind not in ("host-blk", "tender-blk", "qemu-blk"):
        raise ValueError(f"not a block row kind: {kind!r}")
    platform = platform or PLATFORM[kind]
    accel, provider = _accel_provider(kind, "blk", platform)
    mine = _of_kind(segments, kind, console_log)
    _expect(len(mine), reps, kind, console_log)
    rows = []
    for seg in mine:
        try:
            result = results.parse_blk_result(seg.text)
            if kind == "host-blk":
                # As on the host: the whole timed loop is pread calls.
                pread = {"pread_calls": result["reads"], "pread_ns": result["total_ns"]}
            else:
                pread = results.parse_pread_stats(seg.text)
        except ValueError as exc:
            raise _bad(seg, exc, console_log) from None
        if result["block_size"] != block_size:
            raise TestbedError(f"testbed {seg.label()} read {result['block_size']}-byte blocks, config asks "
                               f"blk.block_size={block_size} (console log: {console_log})")
        rows.append(results.blk_row(
            arch=ARCH, platform=platform, provider=provider, accel=accel, testbed=TESTBED, rep=seg.rep,
            host=host or host_label(), result=result, pread=pread, kvm_impl=kvm_impl if accel == "kvm" else "",
            conditions=dict(cond or {})))
    return rows


def exit_floor_result(segments: Sequence[Segment], console_log: Path | str) -> dict[str, int]:
    """The kvm_exit_floor result of the testbed's KVM."""
    mine = _of_kind(segments, "exit-floor", console_log)
    _expect(len(mine), 1, "exit-floor", console_log)
    try:
        return results.parse_exit_floor(mine[0].text)
    except ValueError as exc:
        raise _bad(mine[0], exc, console_log) from None


def net_rows(segments: Sequence[Segment], *, sizes: Sequence[int], reps: int, console_log: Path | str,
             kvm_impl: str, host: str | None = None, kind: str = "tender-net", platform: str | None = None,
             cond: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """net_runs.csv rows of a network row kind (tender-net, qemu-net), one per (size, repetition).

    platform: the tender-net row's (solo5-hvt when None).
    cond: the host's conditions around the boot (TestbedRun.conditions), the same for every run.
    """
    if kind not in ("tender-net", "qemu-net"):
        raise ValueError(f"not a network row kind: {kind!r}")
    platform = platform or PLATFORM[kind]
    accel, provider = _accel_provider(kind, "net", platform)
    mine = _of_kind(segments, kind, console_log)
    _expect(len(mine), len(sizes) * reps, kind, console_log)
    rows = []
    for seg in mine:
        try:
            result = results.parse_net_result(seg.text)
        except ValueError as exc:
            raise _bad(seg, exc, console_log) from None
        if result["size"] != seg.size:
            raise TestbedError(f"testbed {seg.label()} reported size {result['size']} (console log: {console_log})")
        row = net.row(arch=ARCH, platform=platform, provider=provider, accel=accel, rep=seg.rep, result=result,
                      testbed=TESTBED, kvm_impl=kvm_impl if accel == "kvm" else "")
        row["host"] = host or host_label()
        rows.append({**row, **{c: (cond or {}).get(c) for c in results.CONDITION_COLUMNS}})
    return rows


# ----------------------------------------------------------------- running


@dataclass(frozen=True)
class Testbed:
    """What a testbed boot needs: QEMU, the arm64 kernel and the base image."""

    qemu: Path
    kernel: Path
    base_initrd: Path
    firmware_dirs: tuple[str, ...] = tuple(guest.DEFAULT_FIRMWARE_DIRS)
    memory_mb: int = DEFAULT_MEMORY_MB
    smp: int = DEFAULT_SMP
    boot_timeout_s: float = DEFAULT_BOOT_TIMEOUT_S

    __test__ = False


@dataclass(frozen=True)
class TestbedRun:
    """The relayed lines of one boot, split into measurements."""

    segments: list[Segment]
    boot_s: float
    total_s: float
    console_log: Path
    lines: list[str]
    kvm_impl: str = "kvm_arm64"  # the testbed kernel's KVM (hostinfo.arm64_kvm_mode)
    # This host's load and runnable tasks just before the testbed started and just after it ended
    # (results.CONDITION_COLUMNS): what else ran on the machine that emulates it.
    conditions: dict[str, Any] = field(default_factory=conditions.missing)

    __test__ = False


def follow_markers(report: progress.Progress) -> Callable[[str], None]:
    """A console-line handler: each framed measurement is one run of report, with its progress lines within."""

    def on_line(line: str) -> None:
        mark = _marker(line)
        if mark is None:
            report.bench_line(line)
        elif mark[0] == "BEGIN":
            seg = _segment(mark[1], mark[2], [], 0)
            report.begin_run(f"{seg.label()} in the testbed")
        else:
            report.end_run()

    return on_line


def run_job(testbed: Testbed, script: str, work_dir: Path, console_log: Path, timeout_s: float,
            log: IO[str] | None = None, report: progress.Progress | None = None) -> TestbedRun:
    """Boot the testbed once with this job; every failure is one TestbedError line naming the console log.

    The boot gets ``testbed.boot_timeout_s`` to reach the job, which then gets
    ``timeout_s`` (enforced inside the testbed too).  The per-run initrd is written into work_dir and
    deleted afterwards.  ``report`` follows the job's framed measurements (follow_markers).
    """
    for what, path in (("QEMU", testbed.qemu), ("kernel", testbed.kernel), ("base initramfs", testbed.base_initrd)):
        if not Path(path).is_file():
            raise TestbedError(f"testbed {what} not found: {path}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    initrd = write_job_initrd(testbed.base_initrd, script, work / f"job-{os.getpid()}.initrd")
    cmd = testbed_command(qemu=testbed.qemu, kernel=testbed.kernel, initrd=initrd,
                          append=kernel_append(max(1, int(timeout_s))), firmware_dirs=testbed.firmware_dirs,
                          memory_mb=testbed.memory_mb, smp=testbed.smp)
    if log is not None:
        log.write(f"$ {procs.command_line(cmd)}\n# {JOB_PATH} in that initrd:\n{script}")
        log.flush()
    try:
        # The host's values, not the testbed's own: the testbed's load is only what this job runs in it,
        # while anything else on the host slows the emulation. One boot serves every repetition, so the
        # snapshots frame the whole boot.
        with conditions.around() as cond:
            res = guest.run_guest(cmd, console_log, timeout_s, check_status=False,
                                  begin_timeout_s=testbed.boot_timeout_s, report=report,
                                  on_line=follow_markers(report) if report is not None else None)
    except guest.GuestError as exc:
        raise TestbedError(str(exc).replace("guest run failed", "testbed run failed", 1)) from None
    finally:
        initrd.unlink(missing_ok=True)
    try:
        segments = parse_segments(res.lines)
    except ValueError as exc:
        raise TestbedError(f"testbed transcript is garbled: {exc} (console log: {console_log})") from None
    for seg in segments:
        _check(seg, console_log)
    if res.status != 0:
        tail = next((ln.strip() for ln in reversed(res.lines) if ln.strip()), "no output")
        meaning = _JOB_STATUS.get(res.status)
        raise TestbedError(f"testbed job exited with status {res.status}" + (f" ({meaning})" if meaning else "")
                           + f": {tail} (console log: {console_log})")
    kvm_line = next((ln for ln in res.lines if ln.startswith("TB-KVM")), "")
    if log is not None:
        log.write(f"host conditions around the boot: {cond.values}\n")
    return TestbedRun(segments=segments, boot_s=res.boot_s, total_s=res.total_s, console_log=Path(console_log),
                      lines=res.lines, kvm_impl=hostinfo.arm64_kvm_mode(kvm_line), conditions=cond.values)


def _progress(label: str, runs: int, per_run: int, unit: str, log: IO[str] | None) -> progress.Progress:
    return progress.Progress(f"{label} (testbed)", runs=runs, per_run=per_run, unit=unit, log=log)


def host_blk(testbed: Testbed, *, reads: int, block_size: int, reps: int, work_dir: Path, console_log: Path,
             timeout_s: float, log: IO[str] | None = None) -> tuple[list[dict[str, Any]], TestbedRun]:
    """The block experiment's host row inside the testbed: one boot, every repetition."""
    run = run_job(testbed, job_script([host_blk_fragment(reads, block_size, reps)]), work_dir, console_log,
                  timeout_s, log,
                  report=_progress(f"blk {ARCH}/host", reps, reads, "reads", log))
    return blk_rows(run.segments, kind="host-blk", reps=reps, block_size=block_size,
                    console_log=console_log, kvm_impl=run.kvm_impl, cond=run.conditions), run


def tender_blk(testbed: Testbed, *, reads: int, block_size: int, reps: int, mem_mb: int, work_dir: Path,
               console_log: Path, timeout_s: float, log: IO[str] | None = None, platform: str = "solo5-hvt"
               ) -> tuple[list[dict[str, Any]], TestbedRun]:
    """A unikernel block row (solo5-hvt under the testbed's KVM, or solo5-spt): one boot, every repetition."""
    script = job_script([tender_blk_fragment(reads, block_size, reps, mem_mb, platform)])
    run = run_job(testbed, script, work_dir, console_log, timeout_s, log,
                  report=_progress(f"blk {ARCH}/{platform}", reps, reads, "reads", log))
    return blk_rows(run.segments, kind="tender-blk", reps=reps, block_size=block_size, console_log=console_log,
                    kvm_impl=run.kvm_impl, platform=platform, cond=run.conditions), run


def qemu_blk(testbed: Testbed, *, platform: str, reads: int, block_size: int, reps: int, memory_mb: int,
             work_dir: Path, console_log: Path, timeout_s: float, log: IO[str] | None = None
             ) -> tuple[list[dict[str, Any]], TestbedRun]:
    """A Linux-guest block row under QEMU/KVM inside the testbed: one testbed boot, a guest boot per repetition."""
    script = job_script([qemu_blk_fragment(platform, reads, block_size, reps, memory_mb, testbed.smp)])
    run = run_job(testbed, script, work_dir, console_log, timeout_s, log,
                  report=_progress(f"blk {ARCH}/{platform}", reps, reads, "reads", log))
    return blk_rows(run.segments, kind="qemu-blk", reps=reps, block_size=block_size, console_log=console_log,
                    platform=platform, kvm_impl=run.kvm_impl, cond=run.conditions), run


def qemu_net(testbed: Testbed, *, sizes: Sequence[int], reps: int, packets: int, max_loss_pct: float,
             memory_mb: int, work_dir: Path, console_log: Path, timeout_s: float, log: IO[str] | None = None
             ) -> tuple[list[dict[str, Any]], TestbedRun]:
    """The network experiment's qemu-linux row: the Linux guest under QEMU/KVM inside the testbed."""
    script = job_script([qemu_net_fragment(sizes, reps, packets, max_loss_pct, memory_mb, int(timeout_s),
                                           testbed.smp)])
    run = run_job(testbed, script, work_dir, console_log, timeout_s, log,
                  report=_progress(f"net {ARCH}/qemu-linux", reps * len(sizes), packets, "packets", log))
    return net_rows(run.segments, sizes=sizes, reps=reps, console_log=console_log, kind="qemu-net",
                    kvm_impl=run.kvm_impl, cond=run.conditions), run


def exit_floor(testbed: Testbed, *, exits: int, work_dir: Path, console_log: Path, timeout_s: float,
               log: IO[str] | None = None) -> tuple[dict[str, int], TestbedRun]:
    """kvm_exit_floor under the testbed's KVM."""
    run = run_job(testbed, job_script([exit_floor_fragment(exits)]), work_dir, console_log, timeout_s, log,
                  report=_progress(f"KVM exit floor {ARCH}", 1, exits, "exits", log))
    return exit_floor_result(run.segments, console_log), run


def tender_net(testbed: Testbed, *, sizes: Sequence[int], reps: int, packets: int, max_loss_pct: float,
               mem_mb: int, work_dir: Path, console_log: Path, timeout_s: float, log: IO[str] | None = None,
               platform: str = "solo5-hvt") -> tuple[list[dict[str, Any]], TestbedRun]:
    """A unikernel network row (solo5-hvt, solo5-spt, lwip-solo5-hvt, lwip-solo5-spt): the platform's
    unikernel on its tender, icmp_bench on the testbed's tap."""
    script = job_script([tender_net_fragment(sizes, reps, packets, max_loss_pct, mem_mb, platform)])
    run = run_job(testbed, script, work_dir, console_log, timeout_s, log,
                  report=_progress(f"net {ARCH}/{platform}", reps * len(sizes), packets, "packets", log))
    return net_rows(run.segments, sizes=sizes, reps=reps, console_log=console_log, platform=platform,
                    kvm_impl=run.kvm_impl, cond=run.conditions), run
