"""spt_tender's confinement: the real seccomp filter kills a guest on any
syscall outside the Solo5 API (or an allowed one on another fd, or a block
pread64/pwrite64 other than one whole block inside the device) and the
tender names it; faults, aborts and a scribbled accounting page are
reported without ever crashing or hanging the unconfined parent; malformed
ELFs are refused with one line."""
import os
import re
import struct
import subprocess
import time

import pytest
from tender_common import BAD_CLI_ARGS, BAD_ELVES, ehdr, elf, phdr, spt_tender

SECCOMP_EXIT = 159      # 128 + SIGSYS
FAULT_EXIT = 255


def _evil(build, tmp_path, case, *extra, devices=()):
    disk = tmp_path / "disk.img"
    if not disk.exists():
        disk.write_bytes(bytes(range(256)) * 4096)
    start = time.monotonic()
    r = spt_tender(build, f"--block:storage={disk}", *devices,
                   build / "spt_evil.spt", f"case={case}", *extra,
                   timeout=30)
    return r, time.monotonic() - start


def _killed_msg(name, nr):
    return (f"spt_tender: guest killed by the seccomp filter: it called "
            f"{name} (syscall {nr})\n")


# (case, extra args, syscall name, x86_64 number)
FORBIDDEN = [
    ("openat", (), "openat", 257),
    ("open", (), "open", 2),
    ("execve", (), "execve", 59),
    ("socket", (), "socket", 41),
    ("getpid", (), "getpid", 39),
    ("mmap", (), "mmap", 9),
    ("mprotect", (), "mprotect", 10),
    ("write_stderr", (), "write", 1),
    ("write_fd", ("fd=0",), "write", 1),
    ("write_fd", ("fd=7",), "write", 1),
    ("write_fd_highbits", (), "write", 1),  # fd 1 in the low 32 bits only
    ("write_block", (), "write", 1),        # write on the block fd
    ("read_block", (), "read", 0),          # read on the block fd
    ("read_stdin", (), "read", 0),
    ("pread_stdout", (), "pread64", 17),
    ("ppoll_sigmask", (), "ppoll", 271),    # ppoll, but with a signal mask
    # On the block fd (1 MiB, 512-byte blocks), anything but one whole
    # block inside the device:
    ("pwrite_past_end", (), "pwrite64", 18),        # offset == capacity
    ("pwrite_straddle_end", (), "pwrite64", 18),    # last block + 1
    ("pwrite_huge_offset", (), "pwrite64", 18),     # 2**40: low word 0
    ("pwrite_short", (), "pwrite64", 18),           # half a block
    ("pread_two_blocks", (), "pread64", 17),
    ("pread_short", (), "pread64", 17),     # what a partial retry would be
    ("pread_unaligned", (), "pread64", 17),         # offset 256
    ("pread_len_highbits", (), "pread64", 17),      # 2**32 + 512
    ("pread_negative_offset", (), "pread64", 17),   # -512
    ("pread_past_end", (), "pread64", 17),
]


@pytest.mark.parametrize("case, extra, name, nr", FORBIDDEN,
                         ids=[f"{c}{'-' + e[0] if e else ''}"
                              for c, e, _, _ in FORBIDDEN])
def test_forbidden_syscall_kills_and_is_named(build_spt, tmp_path, case,
                                              extra, name, nr):
    r, took = _evil(build_spt, tmp_path, case, *extra)
    assert r.returncode == SECCOMP_EXIT, (r.returncode, r.stdout, r.stderr)
    assert r.stderr == _killed_msg(name, nr)
    assert r.stdout == ""       # the call never returned to the guest
    assert took < 5


# ---- the block rule: count == block_size, offset <= capacity - block_size,
# offset % block_size == 0, all on 64-bit values, per device


def _at(build, case, devices, **kw):
    start = time.monotonic()
    r = spt_tender(build, *devices, build / "spt_evil.spt", f"case={case}",
                   *(f"{k}={v}" for k, v in kw.items()), timeout=30)
    return r, time.monotonic() - start


def _check(r, took, case, allowed):
    if allowed:
        assert (r.returncode, r.stdout, r.stderr) == (0, f"OK {case}\n", "")
    else:
        nr = 17 if case == "pread_at" else 18
        assert (r.returncode, r.stdout, r.stderr) == (
            SECCOMP_EXIT, "", _killed_msg(case[:-3] + "64", nr))
        assert took < 5


@pytest.mark.parametrize("case", ["pread_at", "pwrite_at"])
@pytest.mark.parametrize("off, allowed", [
    (0, True), (512, True), (1048064, True),    # first, second, last block
    (1048576, False), (1048320, False), (1 << 32, False),
])
def test_whole_blocks_inside_the_device_pass(build_spt, tmp_path, case, off,
                                             allowed):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(range(256)) * 4096)      # 1 MiB
    r, took = _at(build_spt, case, [f"--block:storage={disk}"], off=off)
    _check(r, took, case, allowed)
    assert disk.stat().st_size == 1 << 20


FIVE_GIB = 5 << 30


@pytest.mark.parametrize("off, allowed", [
    ((4 << 30) - 512, True),    # hi < max.hi, lo > max.lo: lo not compared
    (4 << 30, True),            # hi == max.hi, lo 0
    (FIVE_GIB - 512, True),     # the last block: hi == max.hi, lo == max.lo
    (FIVE_GIB, False),          # hi == max.hi, lo > max.lo
    (8 << 30, False),           # hi > max.hi, lo 0
    ((4 << 30) - 256, False),   # hi < max.hi, unaligned
    ((4 << 30) + 256, False),   # hi == max.hi, unaligned
])
@pytest.mark.parametrize("case", ["pread_at", "pwrite_at"])
def test_offsets_compare_as_64_bits(build_spt, tmp_path, case, off, allowed):
    # A sparse 5 GiB file: capacity - block_size = 0x1_3fff_fe00.
    disk = tmp_path / "big.img"
    with open(disk, "wb") as f:
        f.truncate(FIVE_GIB)
    r, took = _at(build_spt, case, [f"--block:storage={disk}"], off=off)
    _check(r, took, case, allowed)
    assert disk.stat().st_size == FIVE_GIB


@pytest.mark.parametrize("blk, off, length, allowed", [
    (0, 8192, 512, True),       # storage: 1 MiB of 512-byte blocks
    (1, 4096, 4096, True),      # other: 8 KiB of 4096-byte blocks
    (1, 0, 512, False),         # storage's block size on other
    (1, 8192, 4096, False),     # past other's end, inside storage's
    (1, 2048, 4096, False),     # 512-aligned, not 4096-aligned
    (0, 0, 4096, False),        # other's block size on storage
])
def test_each_device_has_its_own_geometry(build_spt, tmp_path, blk, off,
                                          length, allowed):
    storage, other = tmp_path / "disk.img", tmp_path / "other.img"
    storage.write_bytes(bytes(1 << 20))
    other.write_bytes(bytes(8192))
    r, took = _at(build_spt, "pread_at", [
        f"--block:storage={storage}", "--block-sector-size:other=4096",
        f"--block:other={other}"], blk=blk, off=off, len=length)
    _check(r, took, "pread_at", allowed)


@pytest.mark.parametrize("off, allowed", [(7 * 512, True), (8 * 512, False)])
def test_largest_filter_64_block_devices(build_spt, tmp_path, off, allowed):
    # 64 devices make the pread64/pwrite64 body ~900 instructions, past a
    # conditional jump's reach; the guest's console write (OK) lies after
    # it. Device k has k + 1 blocks: the last one's geometry must hold.
    devs = []
    for k in range(64):
        p = tmp_path / f"d{k}.img"
        p.write_bytes(bytes(512 * (k + 1)))
        devs.append(f"--block:{'storage' if k == 0 else f'b{k}'}={p}")
    r, took = _at(build_spt, "pread_at", devs, blk=7, off=off)
    _check(r, took, "pread_at", allowed)
    r, took = _at(build_spt, "pread_at", devs, blk=63, off=63 * 512)
    _check(r, took, "pread_at", True)


def test_device_smaller_than_a_block_allows_no_io(build_spt, tmp_path):
    # 100 bytes: capacity 0, so no block fits and the fd traps.
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(bytes(100))
    r, took = _at(build_spt, "pread_at", [f"--block:storage={tiny}"], off=0)
    _check(r, took, "pread_at", False)


def test_pread_on_the_tap_fd_kills(build_spt, tmp_path):
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("a tap needs root and /dev/net/tun")
    tap = f"tse{os.getpid() % 100000}"
    p = subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot create a tap: {p.stderr.strip()}")
    try:
        r, took = _evil(build_spt, tmp_path, "pread_tap",
                        devices=[f"--net:service={tap}"])
    finally:
        subprocess.run(["ip", "link", "delete", tap], capture_output=True)
    assert r.returncode == SECCOMP_EXIT, (r.returncode, r.stderr)
    assert r.stderr == _killed_msg("pread64", 17)
    assert took < 5


def test_other_abi_int80_kills(build_spt, tmp_path):
    r, _ = _evil(build_spt, tmp_path, "int80")
    assert r.returncode == SECCOMP_EXIT
    # i386 getpid (20) through int $0x80: AUDIT_ARCH_I386.
    assert r.stderr == ("spt_tender: guest killed by the seccomp filter: it "
                        "called syscall 20 of another ABI (audit arch "
                        "0x40000003)\n")


def test_x32_syscall_kills(build_spt, tmp_path):
    r, _ = _evil(build_spt, tmp_path, "x32")
    assert r.returncode == SECCOMP_EXIT
    assert r.stderr == ("spt_tender: guest killed by the seccomp filter: it "
                        f"called syscall {0x40000000 | 39}\n")


def test_allowed_calls_run(build_spt, tmp_path):
    r, _ = _evil(build_spt, tmp_path, "ok")
    assert (r.returncode, r.stdout, r.stderr) == (0, "OK ok\n", "")


@pytest.mark.parametrize("case", [
    "api_unaligned_offset", "api_unaligned_size", "api_zero_size",
    "api_past_end", "api_straddle_end", "api_offset_overflow",
    "api_write_past_end", "api_bad_handle", "api_unknown_name",
    "api_net_as_block",
])
def test_api_misuse_returns_einval(build_spt, tmp_path, case):
    r, _ = _evil(build_spt, tmp_path, case)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"OK {case}\n", "")


def test_exit_status_is_the_guests(build_spt, tmp_path):
    r, _ = _evil(build_spt, tmp_path, "exit", "status=42")
    assert (r.returncode, r.stderr) == (42, "")


def test_segv_is_a_guest_fault(build_spt, tmp_path):
    r, _ = _evil(build_spt, tmp_path, "segv")
    assert r.returncode == FAULT_EXIT
    assert r.stderr == ("spt_tender: guest fault: killed by SIGSEGV; guest "
                        "aborted\n")


def test_stack_overflow_hits_the_guard_page(build_spt, tmp_path):
    r, took = _evil(build_spt, tmp_path, "stack_overflow")
    assert r.returncode == FAULT_EXIT
    assert r.stderr == ("spt_tender: guest fault: killed by SIGSEGV; guest "
                        "aborted\n")
    assert took < 5


def test_closed_stdout_never_becomes_a_device_fd(build_spt, tmp_path):
    # With fd 1 closed, the block device must not be opened as fd 1 (the
    # filter allows console writes on fd 1): the tender puts /dev/null there.
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    stats = tmp_path / "stats.txt"
    r = subprocess.run([str(build_spt / "spt_tender"), f"--block:storage={disk}",
                        f"--stats={stats}", str(build_spt / "blk_bench.spt"),
                        "reads=5"], stdout=None, stderr=subprocess.PIPE,
                       text=True, timeout=30, preexec_fn=lambda: os.close(1))
    assert (r.returncode, r.stderr) == (0, "")
    assert stats.read_text().startswith("pread_calls=5 ")
    assert disk.read_bytes() == bytes(4096)


def test_abort(build_spt, tmp_path):
    r, _ = _evil(build_spt, tmp_path, "abort")
    assert r.returncode == FAULT_EXIT
    assert r.stderr == "spt_tender: guest called solo5_abort()\n"


# ---- the accounting page is guest-writable: the parent must not trust it

STATS_RE = re.compile(r"pread_calls=\d+ pread_ns=\d+ setup_pread_calls=\d+ "
                      r"setup_pread_ns=\d+\n")


def test_overwritten_page_gives_no_stats(build_spt, tmp_path):
    stats = tmp_path / "stats.txt"
    r, _ = _evil(build_spt, tmp_path, "acct_garbage", devices=[
        f"--stats={stats}"])
    assert r.returncode == 0 and r.stdout == "OK acct_garbage\n"
    assert r.stderr == ("spt_tender: warning: the guest overwrote its "
                        "accounting page; no stats file written\n")
    assert not stats.exists()


def test_extreme_counters_are_printed_as_is(build_spt, tmp_path):
    stats = tmp_path / "stats.txt"
    r, _ = _evil(build_spt, tmp_path, "acct_huge", devices=[
        f"--stats={stats}"])
    assert r.returncode == 0, r.stderr
    assert stats.read_text() == (
        f"pread_calls={2**64 - 1} pread_ns={2**64 - 2} "
        f"setup_pread_calls={2**63} setup_pread_ns=12345\n")


def test_claimed_kill_and_abort_are_not_believed(build_spt, tmp_path):
    # The page says "seccomp kill" and "abort"; the guest simply exits 7.
    r, _ = _evil(build_spt, tmp_path, "acct_lie")
    assert (r.returncode, r.stderr) == (7, "")


@pytest.mark.parametrize("seed", range(1, 17))
def test_fuzzed_page_never_crashes_the_parent(build_spt, tmp_path, seed):
    stats = tmp_path / "stats.txt"
    r, took = _evil(build_spt, tmp_path, "acct_fuzz", f"seed={seed}",
                    devices=[f"--stats={stats}"])
    assert r.returncode >= 0, f"spt_tender died of signal {-r.returncode}"
    assert took < 5
    lines = r.stderr.splitlines()
    assert all(ln.startswith("spt_tender: ") for ln in lines), r.stderr
    if r.returncode == SECCOMP_EXIT:
        assert "seccomp filter" in r.stderr
    if stats.exists():
        assert STATS_RE.fullmatch(stats.read_text())
    else:
        assert "no stats file written" in r.stderr


# ---- malformed guest ELFs (the hvt tender's corpus, plus spt specifics)

SPT_BAD_ELVES = dict(BAD_ELVES)
del SPT_BAD_ELVES["vaddr_ne_paddr"]     # spt maps by vaddr; paddr is unused
SPT_BAD_ELVES.update({
    "truncated": elf()[:70],
    "phdr_past_file": elf(ehdr(phoff=0x10f0)),
    "aarch64_machine": elf(ehdr(machine=183)),
    # The top 1 MiB of --mem is the tender's stack and boot info.
    "seg_into_stack": elf(ph=phdr(vaddr=0x1e00000, memsz=0x200000)),
    # Where the kernel put the tender and its stack and vDSO.
    "seg_at_tender": elf(ph=phdr(vaddr=0x7f0000000000)),
    "tls": elf(ph=phdr(type=7)),
    "segments_overlap": elf(ehdr(phnum=2), ph=phdr(memsz=0x2000) +
                            phdr(vaddr=0x101000, flags=6)),
})


@pytest.mark.parametrize("name", sorted(SPT_BAD_ELVES))
def test_bad_elf_one_line(build_spt, tmp_path, name):
    p = tmp_path / f"{name}.spt"
    p.write_bytes(SPT_BAD_ELVES[name])
    r = spt_tender(build_spt, "--mem=32", p)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("spt_tender: error:"), r.stderr


@pytest.mark.parametrize("name, start, size", [
    ("seg_into_stack", 0x1e00000, 0x200000),
    ("seg_at_tender", 0x7f0000000000, 0x10),
])
def test_segment_outside_guest_space_is_refused(build_spt, tmp_path, name,
                                                start, size):
    # The guest may only map [1 MiB, --mem - 1 MiB); all of the tender's
    # own mappings lie outside (and MAP_FIXED_NOREPLACE would refuse them).
    p = tmp_path / f"{name}.spt"
    p.write_bytes(SPT_BAD_ELVES[name])
    r = spt_tender(build_spt, "--mem=32", p)
    assert r.returncode == 1
    assert r.stderr == (
        f"spt_tender: error: bad ELF {p}: segment 0 [{start:#x}, +{size:#x}) "
        "outside loadable guest memory [0x100000, 0x1f00000) (try a larger "
        "--mem)\n")


def test_hvt_and_spt_guests_share_the_elf_checks(build_spt, tmp_path):
    # Sanity for the corpus: the same minimal ELF, valid, runs its code
    # (an x86 `hlt`, privileged in a process: SIGSEGV).
    data = bytearray(elf())
    data[0x1000] = 0xF4
    p = tmp_path / "mini.spt"
    p.write_bytes(bytes(data))
    r = spt_tender(build_spt, p)
    assert r.returncode == FAULT_EXIT, r.stderr
    assert "guest fault: killed by SIGSEGV" in r.stderr


def test_entry_not_executable_names_the_entry(build_spt, tmp_path):
    p = tmp_path / "noexec.spt"
    p.write_bytes(elf(ph=phdr(flags=6)))
    r = spt_tender(build_spt, p)
    assert r.stderr == (f"spt_tender: error: bad ELF {p}: entry point "
                        "0x100000 not inside an executable segment\n")


def test_real_guest_is_static_and_linked_at_1mib(build_spt):
    data = (build_spt / "blk_bench.spt").read_bytes()
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    (entry,) = struct.unpack_from("<Q", data, 24)
    assert (e_type, e_machine, entry) == (2, 62, 0x100000)


@pytest.mark.parametrize("args", BAD_CLI_ARGS)
def test_bad_cli(build_spt, tmp_path, args):
    r = spt_tender(build_spt, *args, tmp_path / "x.spt")
    assert r.returncode == 1
    assert r.stderr.startswith("spt_tender: error:"), r.stderr


def test_no_guest_arg(build_spt):
    r = spt_tender(build_spt)
    assert r.returncode == 1 and "no guest ELF given" in r.stderr


def test_missing_tap(build_spt, tmp_path):
    r = spt_tender(build_spt, "--net:service=nosuchtap0",
                   build_spt / "ping_serve.spt")
    assert r.returncode == 1
    assert r.stderr == ("spt_tender: error: net 'service': interface "
                        "'nosuchtap0' does not exist\n")
