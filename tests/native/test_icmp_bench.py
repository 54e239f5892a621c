"""icmp_bench: build, frame layout against a Python reference, and runs against
responders on a veth pair inside a private network namespace."""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import REPO, require_root
from unikio.netns import NetNs, tap_namespace
from unikio.results import parse_net_result

BENCH_SRC = REPO / "native" / "bench"
CROSS_CC = "aarch64-linux-gnu-gcc"
SRC_MAC, DST_MAC = "aa:bb:cc:dd:ee:ff", "02:00:00:00:00:01"


def _make(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(BENCH_SRC), f"O={out}", *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-native")
    r = _make(out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "icmp_bench"


def test_builds_static_x86_64(bench: Path) -> None:
    assert bench.is_file()
    if shutil.which("file"):
        assert "statically linked" in subprocess.run(["file", str(bench)], capture_output=True, text=True).stdout


def test_aarch64_cross_compiles(tmp_path: Path) -> None:
    if shutil.which(CROSS_CC) is None:
        pytest.skip(f"{CROSS_CC} not installed")
    r = _make(tmp_path, "ARCH=aarch64")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "icmp_bench").is_file()


# ---- frame layout


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _reference_frame(size: int, seq: int, ident: int) -> bytes:
    """Echo request as documented in icmp_bench.c: DF, TTL 64, IP id 0, payload 0xa5 ^ i."""
    payload = bytes(0xA5 ^ (i & 0xFF) for i in range(size))
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0,
                     socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = bytes.fromhex(DST_MAC.replace(":", "")) + bytes.fromhex(SRC_MAC.replace(":", "")) + b"\x08\x00"
    return eth + ip + icmp


def _selftest(bench: Path, size: int, seq: int, ident: int) -> bytes:
    r = subprocess.run([str(bench), "--selftest-frame", "--src-mac", SRC_MAC, "--dst-mac", DST_MAC,
                        "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", str(size),
                        "--seq", str(seq), "--id", str(ident)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return bytes.fromhex(r.stdout.strip())


@pytest.mark.parametrize("size", [0, 1, 2, 3, 63, 511, 512, 1471, 1472])
@pytest.mark.parametrize("seq, ident", [(1, 0x1234), (0xFFFF, 0), (0x8000, 0xFFFF)])
def test_frame_matches_python_reference(bench: Path, size: int, seq: int, ident: int) -> None:
    frame = _selftest(bench, size, seq, ident)
    assert frame == _reference_frame(size, seq, ident)
    assert len(frame) == 14 + 20 + 8 + size
    # Independently of the reference: both checksums verify to zero.
    assert _csum(frame[14:34]) == 0
    assert _csum(frame[34:]) == 0


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1"],  # no --count
        ["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1473", "--count", "1"],
        ["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "-1", "--count", "1"],
        ["--ifname", "x", "--src-ip", "10.0.0.300", "--dst-ip", "10.0.0.2", "--size", "1", "--count", "1"],
        ["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1", "--count", "0"],
        ["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1", "--count", "1",
         "--timeout-ms", "0"],
        ["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1", "--count", "1", "--bogus"],
        *(["--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1", "--count", "1",
            "--progress-s", bad] for bad in ("-1", "3601", "x", "", "1.5")),
        ["--selftest-frame", "--src-mac", "aa:bb:cc:dd:ee", "--dst-mac", DST_MAC, "--src-ip", "10.0.0.1",
         "--dst-ip", "10.0.0.2", "--size", "1", "--seq", "1", "--id", "1"],
        ["--selftest-frame", "--src-mac", SRC_MAC, "--dst-mac", DST_MAC, "--src-ip", "10.0.0.1",
         "--dst-ip", "10.0.0.2", "--size", "1", "--seq", "65536", "--id", "1"],
    ],
)
def test_bad_arguments_exit_2_with_usage(bench: Path, args: list[str]) -> None:
    r = subprocess.run([str(bench), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "usage: icmp_bench" in r.stderr
    assert r.stdout == ""


# ---- runs on real interfaces (root): a namespace with a tap and a veth pair

RESPONDER = r'''
import socket, struct, sys, time

ifname, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
me = s.getsockname()[4]
ip_me = socket.inet_aton("10.0.0.2")

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def reply_to(f, seq, ident=None, src=None, eth_dst=None, icmp_type=0, damage=None):
    ip = bytearray(f[14:])
    ip[12:16], ip[16:20] = src or ip[16:20], ip[12:16]
    icmp = ip[20:]
    icmp[0] = icmp_type
    if ident is not None:
        icmp[4:6] = struct.pack("!H", ident)
    icmp[6:8] = struct.pack("!H", seq)
    # Damage before the checksums are computed keeps them valid for it.
    if damage == "payload":
        icmp[8] ^= 0x01                 # one payload bit
    elif damage == "zeros":
        icmp[8:] = bytes(len(icmp) - 8)  # payload zeroed
    elif damage == "short":
        del icmp[-1]                    # one payload byte gone
    ip[2:4] = struct.pack("!H", 20 + len(icmp))
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", csum(bytes(ip[:20])))
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", csum(bytes(icmp)))
    if damage == "csum":
        icmp[2] ^= 0x01                 # ICMP checksum wrong, payload right
    elif damage == "ipcsum":
        ip[10] ^= 0x01                  # IPv4 header checksum wrong
    return (eth_dst or f[6:12]) + me + b"\x08\x00" + bytes(ip[:20]) + bytes(icmp)

print("ready", flush=True)
end = time.monotonic() + 60  # never outlive a broken test
s.settimeout(0.5)
while time.monotonic() < end:
    try:
        f, addr = s.recvfrom(65536)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(f) < 42:
        continue
    if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == ip_me:
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, me, ip_me, f[22:28], f[28:32])
        s.send(f[22:28] + me + b"\x08\x06" + arp)
    elif mode != "arp" and f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 8 and f[30:34] == ip_me:
        seq, ident = struct.unpack("!H", f[40:42])[0], struct.unpack("!H", f[38:40])[0]
        # Decoys first, each wrong in one way only; "decoys" mode never sends the real reply.
        s.send(reply_to(f, (seq + 1000) & 0xffff))
        s.send(reply_to(f, seq, ident=ident ^ 1))
        s.send(reply_to(f, seq, src=socket.inet_aton("10.0.0.3")))
        s.send(reply_to(f, seq, eth_dst=b"\x02" * 6))
        s.send(reply_to(f, seq, icmp_type=8))
        s.send(f[6:12] + me + b"\x88\xb5" + bytes(46))
        if mode == "echo":
            s.send(reply_to(f, seq))
        elif mode.startswith("alt-"):   # odd seq intact, even seq damaged
            s.send(reply_to(f, seq, damage=None if seq % 2 else mode[4:]))
        elif mode != "decoys" and mode != "arp":
            s.send(reply_to(f, seq, damage=mode))
'''


@pytest.fixture
def veth_ns() -> Iterator[NetNs]:
    """The pipeline's namespace plus a veth pair ib0 <-> ib1 in it; the bench uses ib0."""
    require_root()
    with tap_namespace("unikio-test", tap=f"tapb{os.getpid() % 100000}") as ns:
        for cmd in (["link", "add", "ib0", "type", "veth", "peer", "name", "ib1"],
                    ["link", "set", "ib0", "up"], ["link", "set", "ib1", "up"]):
            subprocess.run(["ip", "-n", ns.name, *cmd], check=True, capture_output=True, timeout=30)
        yield ns


@pytest.fixture
def responder(veth_ns: NetNs, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*veth_ns.exec_prefix(), sys.executable, "-c", RESPONDER, "ib1", request.param],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready and proc.stdout.readline().strip() == "ready", "responder did not start"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=20)


def _run(bench: Path, ns: NetNs, ifname: str, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ns.exec_prefix(), str(bench), "--ifname", ifname, "--src-ip", "10.0.0.1",
                           "--dst-ip", "10.0.0.2", *extra], capture_output=True, text=True, timeout=timeout)


PERCENTILES = re.compile(r" pps=\d+\.\d{2} p50_ns=\d+ p90_ns=\d+ p99_ns=\d+\n\Z")


def _timed(stdout: str) -> dict[str, int | float]:
    """The result of a run that received echoes: percentiles last, in order, within [min, max]."""
    assert PERCENTILES.search(stdout), stdout
    res = parse_net_result(stdout)
    assert 0 < res["min_ns"] <= res["p50_ns"] <= res["p90_ns"] <= res["p99_ns"] <= res["max_ns"]
    return res


def _untimed(stdout: str) -> dict[str, int | float]:
    """The result of a run that received nothing: every time and percentile 0."""
    assert PERCENTILES.search(stdout), stdout
    res = parse_net_result(stdout)
    assert res["received"] == 0
    assert res["avg_ns"] == res["min_ns"] == res["max_ns"] == res["pps"] == 0
    assert res["p50_ns"] == res["p90_ns"] == res["p99_ns"] == 0
    return res


def test_no_arp_reply_exits_3_quickly(bench: Path, veth_ns: NetNs) -> None:
    start = time.monotonic()
    r = _run(bench, veth_ns, veth_ns.tap, "--size", "1", "--count", "10", "--timeout-ms", "200",
             "--arp-retries", "3", timeout=30)
    elapsed = time.monotonic() - start
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip() == f"icmp_bench: no ARP reply from 10.0.0.2 on {veth_ns.tap}"
    assert r.stdout == ""
    assert 0.5 <= elapsed < 10


def test_missing_interface_exits_1(bench: Path, veth_ns: NetNs) -> None:
    r = _run(bench, veth_ns, "nosuchif0", "--size", "1", "--count", "1", timeout=30)
    assert r.returncode == 1
    assert "nosuchif0" in r.stderr


@pytest.mark.parametrize("responder", ["arp"], indirect=True)
def test_unanswered_echo_counts_lost_and_exits_4(bench: Path, veth_ns: NetNs, responder: object) -> None:
    start = time.monotonic()
    r = _run(bench, veth_ns, "ib0", "--size", "64", "--count", "5", "--timeout-ms", "100", timeout=30)
    assert r.returncode == 4, r.stderr
    assert time.monotonic() - start < 10
    res = _untimed(r.stdout)
    assert (res["packets"], res["received"], res["lost"], res["corrupt"]) == (5, 0, 5, 0)
    # 1 % of 5 allows no loss: the first one stops the run.
    assert r.stderr == ("icmp_bench: 1 of 5 echoes lost, over --max-loss-pct 1: stopping, "
                        "4 unsent counted as lost\n")


@pytest.mark.parametrize("responder", ["arp"], indirect=True)
def test_hung_guest_fails_in_about_budget_timeouts(bench: Path, veth_ns: NetNs, responder: object) -> None:
    # 1 % of 1000 allows 10 losses: the 11th stops the run after ~1.1 s, not 1000 x 0.1 s.
    start = time.monotonic()
    r = _run(bench, veth_ns, "ib0", "--size", "8", "--count", "1000", "--timeout-ms", "100", timeout=60)
    elapsed = time.monotonic() - start
    assert r.returncode == 4, r.stderr
    assert 1.0 < elapsed < 6
    res = _untimed(r.stdout)
    assert (res["packets"], res["received"], res["lost"], res["corrupt"]) == (1000, 0, 1000, 0)
    assert r.stderr == ("icmp_bench: 11 of 1000 echoes lost, over --max-loss-pct 1: stopping, "
                        "989 unsent counted as lost\n")


@pytest.mark.parametrize("responder", ["arp"], indirect=True)
def test_loss_on_last_echo_has_nothing_to_stop(bench: Path, veth_ns: NetNs, responder: object) -> None:
    r = _run(bench, veth_ns, "ib0", "--size", "8", "--count", "1", "--timeout-ms", "100", timeout=30)
    assert r.returncode == 4
    assert r.stderr == ""
    res = _untimed(r.stdout)
    assert (res["packets"], res["received"], res["lost"]) == (1, 0, 1)


@pytest.mark.parametrize("responder", ["arp"], indirect=True)
def test_loss_within_allowance_exits_0(bench: Path, veth_ns: NetNs, responder: object) -> None:
    r = _run(bench, veth_ns, "ib0", "--size", "0", "--count", "2", "--timeout-ms", "50", "--max-loss-pct", "100")
    assert r.returncode == 0, r.stderr
    assert parse_net_result(r.stdout)["lost"] == 2


@pytest.mark.parametrize("responder", ["echo"], indirect=True)
@pytest.mark.parametrize("size", [0, 1, 1472])
def test_answered_echo_all_received_decoys_ignored(bench: Path, veth_ns: NetNs, responder: object,
                                                   size: int) -> None:
    count = 200
    r = _run(bench, veth_ns, "ib0", "--size", str(size), "--count", str(count))
    assert r.returncode == 0, r.stderr
    res = _timed(r.stdout)
    assert res["size"] == size
    assert (res["packets"], res["received"], res["lost"], res["corrupt"]) == (count, count, 0, 0)
    # Six decoys per echo; the kernel may add a few frames (IPv6 chatter) of its own.
    assert res["ignored"] >= 6 * count
    assert 0 < res["min_ns"] <= res["avg_ns"] <= res["max_ns"] < 1_000_000_000


@pytest.mark.parametrize("responder", ["decoys"], indirect=True)
def test_near_miss_replies_never_match(bench: Path, veth_ns: NetNs, responder: object) -> None:
    # Wrong seq, id, source IP, destination MAC, ICMP type, ethertype: all ignored (not
    # corrupt: none is the reply to our echo), so all lost. 100 % allowed: all 4 are sent.
    r = _run(bench, veth_ns, "ib0", "--size", "32", "--count", "4", "--timeout-ms", "100",
             "--max-loss-pct", "100", timeout=30)
    assert r.returncode == 0, r.stderr
    res = _untimed(r.stdout)
    assert (res["received"], res["lost"], res["corrupt"]) == (0, 4, 0)
    assert res["ignored"] >= 6 * 4


@pytest.mark.parametrize("responder", ["payload", "zeros", "short", "csum", "ipcsum"], indirect=True)
def test_damaged_reply_is_corrupt_never_received(bench: Path, veth_ns: NetNs, responder: object) -> None:
    # Right id and seq, but one payload bit flipped / payload zeroed / one byte short (all with
    # valid checksums), or a wrong ICMP / IPv4 checksum over the right bytes.
    start = time.monotonic()
    r = _run(bench, veth_ns, "ib0", "--size", "32", "--count", "5", "--timeout-ms", "2000",
             "--max-loss-pct", "100", timeout=30)
    assert r.returncode == 0, r.stderr
    res = _untimed(r.stdout)
    assert (res["packets"], res["received"], res["lost"], res["corrupt"]) == (5, 0, 5, 5)
    assert res["ignored"] >= 6 * 5
    # The damaged reply ends the wait: five 2 s timeouts would take 10 s.
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("responder", ["alt-payload", "alt-csum"], indirect=True)
def test_only_intact_replies_are_received_and_timed(bench: Path, veth_ns: NetNs, responder: object) -> None:
    # Odd seqs come back intact, even ones damaged: 5 of 10 lost is within 50 %.
    r = _run(bench, veth_ns, "ib0", "--size", "32", "--count", "10", "--max-loss-pct", "50")
    assert r.returncode == 0, r.stderr
    res = _timed(r.stdout)
    assert (res["packets"], res["received"], res["lost"], res["corrupt"]) == (10, 5, 5, 5)
    assert 0 < res["min_ns"] <= res["avg_ns"] <= res["max_ns"] < 1_000_000_000


@pytest.mark.parametrize("responder", ["alt-csum"], indirect=True)
def test_corruption_over_budget_stops_early(bench: Path, veth_ns: NetNs, responder: object) -> None:
    # 10 % of 100 allows 10 losses; the 11th (seq 22) stops the run: 11 received (odd seqs
    # 1..21), 11 corrupt, and the 78 unsent are lost but not corrupt.
    r = _run(bench, veth_ns, "ib0", "--size", "16", "--count", "100", "--max-loss-pct", "10")
    assert r.returncode == 4, r.stderr
    res = _timed(r.stdout)
    assert (res["packets"], res["received"], res["lost"], res["corrupt"]) == (100, 11, 89, 11)
    assert r.stderr == ("icmp_bench: 11 of 100 echoes lost, over --max-loss-pct 10: stopping, "
                        "78 unsent counted as lost\n")


# ---- progress lines on stderr (for the pipeline's "how far, ETA")

PROGRESS_RE = re.compile(r"progress (\d+)/(\d+) packets")


def test_bad_progress_period_names_the_option(bench: Path) -> None:
    r = subprocess.run([str(bench), "--ifname", "x", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--size", "1",
                        "--count", "1", "--progress-s", "3601"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[0] == "icmp_bench: invalid --progress-s '3601'"
    assert "[--progress-s 10]" in r.stderr.splitlines()[1]


def _count_lasting(bench: Path, ns: NetNs, seconds: float) -> int:
    """--count for a run of about `seconds`: the responder's speed depends on the machine, so measure it."""
    start = time.monotonic()
    r = _run(bench, ns, "ib0", "--size", "8", "--count", "1000")
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    return max(1000, int(seconds * 1000 / elapsed))


@pytest.mark.parametrize("responder", ["echo"], indirect=True)
def test_progress_lines_every_second_between_round_trips(bench: Path, veth_ns: NetNs, responder: object) -> None:
    count = _count_lasting(bench, veth_ns, 2.5)
    start = time.monotonic()
    r = _run(bench, veth_ns, "ib0", "--size", "8", "--count", str(count), "--progress-s", "1")
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert _timed(r.stdout)["packets"] == count
    # Nothing else on stderr, every line newline-terminated.
    assert r.stderr.endswith("\n"), f"{count} packets in {elapsed:.2f} s"
    found = [PROGRESS_RE.fullmatch(ln) for ln in r.stderr[:-1].split("\n")]
    assert all(found), r.stderr
    assert {int(f[2]) for f in found} == {count}
    done = [int(f[1]) for f in found]
    # Never after the last round trip, at most one a second (not one per round trip).
    assert all(0 < d < count for d in done) and done == sorted(set(done)), done
    assert len(done) <= elapsed, (done, elapsed)


@pytest.mark.parametrize("responder", ["echo"], indirect=True)
def test_no_progress_when_off_or_run_shorter_than_period(bench: Path, veth_ns: NetNs, responder: object) -> None:
    count = _count_lasting(bench, veth_ns, 2.5)
    for progress in ([], ["--progress-s", "0"]):   # default 10 s, and never
        r = _run(bench, veth_ns, "ib0", "--size", "8", "--count", str(count), *progress)
        assert r.returncode == 0, r.stderr
        assert _timed(r.stdout)["packets"] == count
        assert r.stderr == "", progress


@pytest.mark.parametrize("responder", ["arp"], indirect=True)
def test_no_progress_after_a_stop_for_loss(bench: Path, veth_ns: NetNs, responder: object) -> None:
    # 11 timeouts of 0.2 s with a 1 s period: progress lines, then the stop, and nothing after it.
    r = _run(bench, veth_ns, "ib0", "--size", "8", "--count", "1000", "--timeout-ms", "200",
             "--progress-s", "1", timeout=60)
    assert r.returncode == 4, r.stderr
    *progress, stop = r.stderr.splitlines()
    assert stop == ("icmp_bench: 11 of 1000 echoes lost, over --max-loss-pct 1: stopping, "
                    "989 unsent counted as lost")
    done = [int(PROGRESS_RE.fullmatch(ln)[1]) for ln in progress]
    assert 1 <= len(done) <= 2 and all(0 < d <= 10 for d in done), r.stderr
