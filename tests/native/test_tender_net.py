"""ping_serve end-to-end: tender attached to a tap in a private network
namespace; ARP and ICMP echo are exchanged over an AF_PACKET socket."""
import json
import os
import select
import shutil
import subprocess
import sys
import time

import pytest
from tender_common import kvm_skip_reason

HELPER = r'''
import json, socket, struct, sys, time

IF, GUEST_IP, MY_IP = sys.argv[1], sys.argv[2], sys.argv[3]
MY_MAC = bytes.fromhex("020000000001")
ip2b = socket.inet_aton

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((IF, 0))

def recv(pred, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            break
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if pred(data):
            return data
    return None

out = {}
# ARP request who-has GUEST_IP
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MY_MAC, ip2b(MY_IP),
                  bytes(6), ip2b(GUEST_IP))
s.send(b"\xff" * 6 + MY_MAC + b"\x08\x06" + arp)
r = recv(lambda d: d[12:14] == b"\x08\x06" and d[20:22] == b"\x00\x02")
if r:
    (_, _, _, _, op, sha, spa, tha, tpa) = struct.unpack(
        "!HHBBH6s4s6s4s", r[14:42])
    out["arp"] = dict(op=op, sha=sha.hex(), spa=socket.inet_ntoa(spa),
                      tha=tha.hex(), tpa=socket.inet_ntoa(tpa),
                      eth_dst=r[0:6].hex(), eth_src=r[6:12].hex())
    guest_mac = sha
else:
    out["arp"] = None
    guest_mac = b"\xff" * 6

# ARP for some other IP must be ignored
arp2 = arp[:24] + ip2b("10.0.0.77")
s.send(b"\xff" * 6 + MY_MAC + b"\x08\x06" + arp2)
out["arp_other"] = recv(lambda d: d[12:14] == b"\x08\x06", 0.5) is not None

out["echo"] = []
for seq, plen in enumerate([0, 1, 56, 999, 1472]):
    payload = bytes((i * 7 + seq) & 0xff for i in range(plen))
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64,
                      1, 0, ip2b(MY_IP), ip2b(GUEST_IP))
    iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
    s.send(guest_mac + MY_MAC + b"\x08\x00" + iph + icmp)
    r = recv(lambda d: d[12:14] == b"\x08\x00" and d[23] == 1 and
             d[34] == 0 and d[38:40] == struct.pack("!H", 0x1234) and
             d[40:42] == struct.pack("!H", seq))
    if not r:
        out["echo"].append(None)
        continue
    ihl = (r[14] & 15) * 4
    tot = struct.unpack("!H", r[16:18])[0]
    rip = r[14:14 + ihl]
    ric = r[14 + ihl:14 + tot]
    out["echo"].append(dict(
        plen=plen, ip_csum_ok=csum(rip) == 0, icmp_csum_ok=csum(ric) == 0,
        src=socket.inet_ntoa(rip[12:16]), dst=socket.inet_ntoa(rip[16:20]),
        type=ric[0], code=ric[1], payload_ok=ric[8:] == payload,
        eth_dst=r[0:6].hex(), eth_src=r[6:12].hex()))

# A request damaged after its checksum was computed: ping_serve does not sum
# the payload, and its incremental update must keep the checksum wrong.
payload = bytes(range(1, 65))
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 77) + payload
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
icmp = icmp[:8] + bytes([icmp[8] ^ 0x10]) + icmp[9:]
iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 77, 0, 64, 1, 0,
                  ip2b(MY_IP), ip2b(GUEST_IP))
iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
s.send(guest_mac + MY_MAC + b"\x08\x00" + iph + icmp)
r = recv(lambda d: d[12:14] == b"\x08\x00" and d[23] == 1 and d[34] == 0 and
         d[40:42] == struct.pack("!H", 77))
out["damaged_echo"] = None if r is None else dict(
    ip_csum_ok=csum(r[14:34]) == 0, icmp_csum_ok=csum(r[34:]) == 0,
    payload_echoed=r[42:] == icmp[8:])

# Echo to another IP must be ignored
iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 99, 0, 64, 1, 0,
                  ip2b(MY_IP), ip2b("10.0.0.77"))
iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 99)
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
s.send(guest_mac + MY_MAC + b"\x08\x00" + iph + icmp)
out["echo_other"] = recv(lambda d: d[12:14] == b"\x08\x00" and d[23] == 1,
                         0.5) is not None
print(json.dumps(out))
'''


def _sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def test_ping_serve_builds(build_x86):
    assert (build_x86 / "ping_serve.elf").is_file()


def test_ping_serve_netns(build_x86):
    reason = kvm_skip_reason()
    if reason:
        pytest.skip(reason)
    if not shutil.which("ip") or not os.path.exists("/dev/net/tun"):
        pytest.skip("needs iproute2 and /dev/net/tun")
    ns = f"tndr{os.getpid()}"
    r = _sh("ip", "netns", "add", ns, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot create netns: {r.stderr.strip()}")
    proc = None
    try:
        nsx = ["ip", "netns", "exec", ns]
        _sh(*nsx, "ip", "link", "set", "lo", "up")
        _sh(*nsx, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
        _sh(*nsx, "ip", "link", "set", "tap0", "up")
        proc = subprocess.Popen(
            nsx + [str(build_x86 / "tender"), "--net:service=tap0",
                   str(build_x86 / "ping_serve.elf"), "ip=10.0.0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Wait for the guest to come up (it prints once acquired).
        ready, deadline = False, time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                if "ready" in proc.stdout.readline():
                    ready = True
                    break
        assert ready, proc.stderr.read() if proc.poll() is not None else ""
        h = subprocess.run(nsx + [sys.executable, "-c", HELPER, "tap0",
                                  "10.0.0.2", "10.0.0.1"],
                           capture_output=True, text=True, timeout=120)
        assert h.returncode == 0, h.stderr
        res = json.loads(h.stdout)
        arp = res["arp"]
        assert arp is not None, "no ARP reply"
        assert arp["op"] == 2 and arp["spa"] == "10.0.0.2"
        assert arp["tha"] == "020000000001" and arp["tpa"] == "10.0.0.1"
        assert arp["eth_dst"] == "020000000001"
        assert arp["eth_src"] == arp["sha"]
        assert int(arp["sha"][:2], 16) & 2  # locally administered MAC
        assert not res["arp_other"]
        for e in res["echo"]:
            assert e is not None, res["echo"]
            assert e["ip_csum_ok"] and e["icmp_csum_ok"], e
            assert (e["type"], e["code"]) == (0, 0)
            assert e["src"] == "10.0.0.2" and e["dst"] == "10.0.0.1"
            assert e["payload_ok"] and e["eth_dst"] == "020000000001"
            assert e["eth_src"] == arp["sha"]
        assert not res["echo_other"]
        damaged = res["damaged_echo"]
        assert damaged == {"ip_csum_ok": True, "icmp_csum_ok": False,
                           "payload_echoed": True}, damaged
        assert proc.poll() is None, "tender exited early"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _sh("ip", "netns", "delete", ns, check=False)
