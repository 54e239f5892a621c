"""lwip_serve: Debian's lwIP (fetched for real) built as a Solo5 unikernel on our bindings, booted on our KVM
tender with a tap in a private network namespace. Real packets show that it answers ARP and ICMP echo
(icmp_bench, every size up to a full 1500-byte MTU) and that lwIP's stack is what answers: TCP and UDP to
closed ports are refused as lwIP does, which ping_serve (checked the same way) never does."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tender_common import PACKET_PRELUDE, have_cross, kvm_skip_reason, make_bench, run_make
from testkit import apt_index, fetch_lwip, stop_process
from unikio import lwipsrc
from unikio.netns import NetNs, tap_namespace
from unikio.results import parse_net_result

VERSION = "2.1.3+dfsg1-2"
GUEST_IP, HOST_IP = "10.0.0.2", "10.0.0.1"
EM_X86_64, EM_AARCH64 = 62, 183


@pytest.fixture(scope="module")
def lwip_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lwip-src")
    return fetch_lwip(apt_index(tmp), VERSION, tmp)


def _build(arch: str, out: Path, tree: Path, *targets: str) -> str:
    r = run_make(arch, out, f"LWIP_SRC={tree}", *targets)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "warning" not in log.lower(), log
    return log


@pytest.fixture(scope="module")
def build(lwip_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x86_64: tender, ping_serve.elf (for comparison) and lwip_serve.elf, plus icmp_bench."""
    out = tmp_path_factory.mktemp("lwip-x86_64")
    _build("x86_64", out, lwip_tree, "all", str(out / "lwip_serve.elf"))
    return make_bench(out)


def _elf_machine(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return head[4], int.from_bytes(head[18:20], "little")   # (class: 2 = 64-bit, e_machine)


def test_x86_64_build_compiles_every_listed_lwip_file(build: Path, lwip_tree: Path) -> None:
    assert _elf_machine(build / "lwip_serve.elf") == (2, EM_X86_64)
    objs = sorted(p.relative_to(build / "obj" / "lwip") for p in (build / "obj" / "lwip").rglob("*.o"))
    assert objs == sorted(Path(rel).with_suffix(".o") for rel in lwipsrc.source_list())
    ours = sorted(p.name for p in (build / "obj" / "lwip-port").glob("*.o"))
    assert ours == ["lwip_serve.o", "netif_solo5.o", "port.o"]
    # lwIP's code, not ping_serve's, is in the image: its TCP input path is linked in.
    syms = subprocess.run(["nm", str(build / "lwip_serve.elf")], capture_output=True, text=True).stdout
    assert "tcp_input_pcb" in syms and "handle_arp" not in syms


def test_aarch64_builds(lwip_tree: Path, tmp_path: Path) -> None:
    if not have_cross():
        pytest.skip("aarch64-linux-gnu-gcc not installed")
    _build("aarch64", tmp_path, lwip_tree, str(tmp_path / "lwip_serve.elf"))
    assert _elf_machine(tmp_path / "lwip_serve.elf") == (2, EM_AARCH64)


def test_no_lwip_src_means_no_lwip_target(tmp_path: Path) -> None:
    r = run_make("x86_64", tmp_path, str(tmp_path / "lwip_serve.elf"))
    assert r.returncode != 0
    assert "No rule to make target" in r.stderr


# ---- on the KVM tender, with real packets


@pytest.fixture
def ns() -> Iterator[NetNs]:
    reason = kvm_skip_reason()
    if reason:
        pytest.skip(reason)
    with tap_namespace("unikio-lwip", host_cidr=f"{HOST_IP}/24", tap=f"tapl{os.getpid() % 100000}") as n:
        yield n


@contextlib.contextmanager
def _booted(build: Path, guest: str, ns: NetNs) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*ns.exec_prefix(), str(build / "tender"), f"--net:service={ns.tap}",
                             str(build / guest), f"ip={GUEST_IP}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                if "ready" in line:
                    break
        assert line.strip() == f"{guest.removesuffix('.elf')}: ready", (line, proc.poll())
        yield proc
        assert proc.poll() is None, "the tender exited while serving"
    finally:
        stop_process(proc)


@pytest.mark.parametrize("size", [1, 512, 1024, 1472])
def test_answers_arp_and_every_echo(build: Path, ns: NetNs, size: int) -> None:
    count = 500
    with _booted(build, "lwip_serve.elf", ns):
        # icmp_bench resolves the guest by ARP first (exit 3 without a reply), then times the echoes.
        r = subprocess.run([*ns.exec_prefix(), str(build / "icmp_bench"), "--ifname", ns.tap, "--src-ip", HOST_IP,
                            "--dst-ip", GUEST_IP, "--size", str(size), "--count", str(count)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = parse_net_result(r.stdout)
    assert (res["size"], res["packets"], res["received"], res["lost"], res["corrupt"]) == (size, count, count, 0, 0)
    assert 0 < res["min_ns"] <= res["avg_ns"] <= res["max_ns"] < 1_000_000_000


# Run in the namespace: ARP, ICMP echo, a TCP SYN and a UDP datagram to
# closed ports, from the tap's own MAC; prints what came back as JSON.
PROBE = PACKET_PRELUDE + r'''
RECV_TIMEOUT = 3.0
MY_MAC = s.getsockname()[4]

def ipv4(proto, payload, ident):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                    ip2b(MY_IP), ip2b(GUEST_IP))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def from_guest(d, proto):
    return d[12:14] == b"\x08\x00" and d[23] == proto and d[26:30] == ip2b(GUEST_IP)

def ip_fields(r):
    ip = r[14:34]
    return dict(ttl=ip[8], ident=struct.unpack("!H", ip[4:6])[0], ip_csum_ok=csum(ip) == 0,
                src=socket.inet_ntoa(ip[12:16]), dst=socket.inet_ntoa(ip[16:20]), eth_dst=r[0:6].hex())

out = {"my_mac": MY_MAC.hex()}
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MY_MAC, ip2b(MY_IP), bytes(6), ip2b(GUEST_IP))
s.send(b"\xff" * 6 + MY_MAC + b"\x08\x06" + arp)
r = recv(lambda d: d[12:14] == b"\x08\x06" and d[20:22] == b"\x00\x02")
guest_mac = r[22:28] if r else b"\xff" * 6
out["arp"] = r and dict(sha=r[22:28].hex(), spa=socket.inet_ntoa(r[28:32]), tha=r[32:38].hex(),
                        tpa=socket.inet_ntoa(r[38:42]), eth_src=r[6:12].hex(), eth_dst=r[0:6].hex())

# ICMP echo, TTL 64, IP id 0x4242.
payload = bytes(range(56))
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x77, 1) + payload
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
s.send(guest_mac + MY_MAC + b"\x08\x00" + ipv4(1, icmp, 0x4242))
r = recv(lambda d: from_guest(d, 1) and d[34] == 0 and d[38:42] == struct.pack("!HH", 0x77, 1))
out["echo"] = r and dict(ip_fields(r), icmp_csum_ok=csum(r[34:]) == 0, payload_ok=r[42:] == payload)

# TCP SYN to closed port 7 from port 40000, seq 1000.
def tcp(sport, dport, seq, flags):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 8192, 0, 0)
    pseudo = ip2b(MY_IP) + ip2b(GUEST_IP) + struct.pack("!BBH", 0, 6, len(h))
    return h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:]
s.send(guest_mac + MY_MAC + b"\x08\x00" + ipv4(6, tcp(40000, 7, 1000, 0x02), 0x4343))
r = recv(lambda d: from_guest(d, 6) and d[34:38] == struct.pack("!HH", 7, 40000))
if r:
    seg = r[34:]
    pseudo = r[26:30] + r[30:34] + struct.pack("!BBH", 0, 6, len(seg))
    sp, dp, seq, ack, off, flags = struct.unpack("!HHIIBB", seg[:14])
    out["tcp"] = dict(ip_fields(r), seq=seq, ack=ack, flags=flags, tcp_csum_ok=csum(pseudo + seg) == 0)
else:
    out["tcp"] = None

# UDP to closed port 9 from port 40001.
udp_payload = b"anyone on port 9?"
u = struct.pack("!HHHH", 40001, 9, 8 + len(udp_payload), 0) + udp_payload
pseudo = ip2b(MY_IP) + ip2b(GUEST_IP) + struct.pack("!BBH", 0, 17, len(u))
u = u[:6] + struct.pack("!H", csum(pseudo + u) or 0xffff) + u[8:]
sent_ip = ipv4(17, u, 0x4444)
s.send(guest_mac + MY_MAC + b"\x08\x00" + sent_ip)
r = recv(lambda d: from_guest(d, 1) and d[34] == 3)
out["udp"] = r and dict(ip_fields(r), type=r[34], code=r[35], icmp_csum_ok=csum(r[34:]) == 0,
                        quoted_ok=r[42:42 + 28] == sent_ip[:28])
print(json.dumps(out))
'''


def _probe(build: Path, guest: str, ns: NetNs) -> dict:
    with _booted(build, guest, ns):
        r = subprocess.run([*ns.exec_prefix(), sys.executable, "-c", PROBE, ns.tap, GUEST_IP, HOST_IP],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_lwip_answers_what_only_a_full_stack_does(build: Path, ns: NetNs) -> None:
    res = _probe(build, "lwip_serve.elf", ns)
    me = res["my_mac"]
    arp = res["arp"]
    assert arp is not None, "no ARP reply"
    assert (arp["spa"], arp["tha"], arp["tpa"], arp["eth_dst"]) == (GUEST_IP, me, HOST_IP, me)
    assert arp["eth_src"] == arp["sha"]
    guest = arp["sha"]
    addressed = {"src": GUEST_IP, "dst": HOST_IP, "eth_dst": me, "ip_csum_ok": True}
    # Echo: answered in the request's buffer (IP id kept) with lwIP's ICMP_TTL, 255; ping_serve uses 64.
    assert res["echo"] == {**addressed, "ttl": 255, "ident": 0x4242, "icmp_csum_ok": True, "payload_ok": True}
    # TCP SYN to a closed port: RST+ACK, seq = the SYN's ack field (0), ack = its seq + 1 (tcp_rst in tcp_in.c).
    tcp = res["tcp"]
    assert tcp is not None, "no answer to a TCP SYN"
    assert {k: tcp[k] for k in ("src", "dst", "eth_dst", "ip_csum_ok", "ttl")} == {**addressed, "ttl": 255}
    assert (tcp["flags"], tcp["seq"], tcp["ack"], tcp["tcp_csum_ok"]) == (0x14, 0, 1001, True)
    # UDP to a closed port: ICMP port unreachable quoting our IP header and the first 8 bytes of UDP.
    udp = res["udp"]
    assert udp is not None, "no ICMP port unreachable"
    assert (udp["type"], udp["code"], udp["icmp_csum_ok"], udp["quoted_ok"]) == (3, 3, True, True)
    assert (udp["src"], udp["dst"], udp["ttl"]) == (GUEST_IP, HOST_IP, 255)
    assert guest != me


def test_ping_serve_answers_none_of_that(build: Path, ns: NetNs) -> None:
    # The same probe against the minimal responder: ARP and echo only, TTL 64, so the test above tells them apart.
    res = _probe(build, "ping_serve.elf", ns)
    assert res["arp"] is not None and res["arp"]["spa"] == GUEST_IP
    assert res["echo"] is not None and res["echo"]["ttl"] == 64 and res["echo"]["payload_ok"]
    assert res["tcp"] is None and res["udp"] is None
