"""Helpers shared by the native tender tests (imported by conftest.py and
the test modules; kept out of conftest.py so a parent conftest can't shadow
it on import). The hvt tender's and spt_tender's tests check the same
behaviour with the same helpers, guest corpora and scenarios."""
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NATIVE = REPO / "native"
GUESTS = Path(__file__).resolve().parent / "guests"
CROSS_CC = "aarch64-linux-gnu-gcc"
# What `make` builds for the spt ("builtin spt") tender.
SPT_TARGETS = ("spt_tender", "blk_bench.spt", "ping_serve.spt")


def run_make(arch, outdir, *extra):
    """Build with the project Makefile; returns CompletedProcess."""
    cmd = ["make", "-C", str(NATIVE), f"ARCH={arch}", f"O={outdir}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def kvm_skip_reason():
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm missing"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return f"/dev/kvm unusable: {e}"
    if os.uname().machine != "x86_64":
        return "end-to-end tests only wired up for x86_64 hosts"
    return None


def tender(build, *args, env=None, timeout=120):
    return subprocess.run([str(build / "tender"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=env)


def spt_tender(build, *args, env=None, timeout=60):
    return subprocess.run([str(build / "spt_tender"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=env)


def have_cross():
    return shutil.which(CROSS_CC) is not None


def make_bench(out):
    """Build native/bench (icmp_bench, blk_bench) into out; returns out."""
    r = subprocess.run(["make", "-C", str(NATIVE / "bench"), f"O={out}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def start_ready(cmd, ready="ready\n", timeout=30):
    """Start a tender and wait until its guest prints the line ready."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ok, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ok or proc.stdout.readline() != ready:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"guest did not get ready: {out!r} {err!r}")
    return proc


# Bad command lines both tenders refuse with one "<tender>: error:" line.
BAD_CLI_ARGS = [
    ["--mem=0"], ["--mem=abc"], ["--mem=999999"], ["--bogus"],
    ["--block:=x"], ["--block:a b=x"], ["--net:x"], ["--stats="],
]


# ---- block devices and the pread accounting window

STATS_RE = re.compile(r"^pread_calls=(\d+) pread_ns=(\d+) "
                      r"setup_pread_calls=(\d+) setup_pread_ns=(\d+)\n$")
OLD_MTIME_NS = 1_000_000_000 * 10**9     # 2001: any write moves it to now


def read_stats(path):
    """(calls, ns, setup_calls, setup_ns) from the tender's stats file."""
    text = path.read_text()
    m = STATS_RE.match(text)
    assert m, repr(text)
    return tuple(int(x) for x in m.groups())


def pattern(k, n):
    """blkwin.c's pattern(k, i) for i < n: never zero, distinct per block."""
    return bytes((i * 13 + k * 31) % 255 + 1 for i in range(n))


def distinct_disk(path, blocks, bs=512):
    """Non-zero content that differs in every block (and from pattern)."""
    data = b"".join(bytes((i * 7 + b * 101) % 251 + 1 for i in range(bs))
                    for b in range(blocks))
    path.write_bytes(data)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return data


def written(path):
    """The file was written to since distinct_disk (even with equal bytes)."""
    return path.stat().st_mtime_ns > OLD_MTIME_NS


def skip_without_odirect(r, path):
    if r.returncode != 0 and "O_DIRECT" in r.stderr:
        pytest.skip(f"filesystem of {path} lacks O_DIRECT: {r.stderr}")


def loopdev(backing, *opts):
    if not shutil.which("losetup"):
        pytest.skip("losetup not available")
    p = subprocess.run(["losetup", *opts, "--find", "--show", str(backing)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot create loop device: {p.stderr.strip()}")
    return p.stdout.strip()


def _after_last_write(disk, before, stats):
    calls, ns, setup_calls, setup_ns = read_stats(stats)
    # Reads before the first and between the writes are all setup.
    assert (calls, setup_calls) == (4, 5)
    assert ns > 0 and setup_ns > 0
    after = disk.read_bytes()
    assert after[512:1024] == pattern(1, 512)
    assert after[1024:1536] == pattern(2, 512)
    assert after[:512] + after[1536:] == before[:512] + before[1536:]


def _einval_moves_nothing(disk, before, stats):
    # An EINVAL write is no completed write; an EINVAL read makes no syscall.
    calls, ns, setup_calls, setup_ns = read_stats(stats)
    assert (calls, setup_calls, setup_ns) == (5, 0, 0) and ns > 0
    assert not written(disk) and disk.read_bytes() == before


def _no_reads_after_last_write(disk, before, stats):
    calls, ns, setup_calls, setup_ns = read_stats(stats)
    assert (calls, ns, setup_calls) == (0, 0, 2) and setup_ns > 0
    assert disk.read_bytes()[1536:2048] == pattern(3, 512)


def _no_block_io(disk, before, stats):
    assert stats.read_text() == ("pread_calls=0 pread_ns=0 "
                                 "setup_pread_calls=0 setup_pread_ns=0\n")


# Scenarios of the scripted guest (guests/blkwin.c) that both tenders must
# account alike: name -> (ops, check(disk, before, stats) after it ran).
WINDOW_CASES = {
    "reads_after_last_write": ("r3,w1,r2,w2,r4", _after_last_write),
    "einval_moves_nothing": ("r3,x,r2,e", _einval_moves_nothing),
    "no_reads_after_last_write": ("r2,w3", _no_reads_after_last_write),
    "no_block_io": ("", _no_block_io),
}


def check_window_case(name, blkwin, window_disk):
    """Run WINDOW_CASES[name] with blkwin(disk, stats, ops) and check it."""
    disk, before, stats = window_disk
    ops, check = WINDOW_CASES[name]
    r = blkwin(disk, stats, ops)
    assert (r.returncode, r.stdout) == (0, "done\n"), r.stdout + r.stderr
    check(disk, before, stats)


def check_short_read(start_blkwin, window_disk):
    """The guest pauses; the file then ends half-way through the two blocks
    it reads last, and the read fails after two counted preads: the hvt
    tender's pread() of both blocks returns 512 bytes, its retry EOF; the
    spt bindings' one pread per block gets the first block, then EOF.
    start_blkwin(disk, stats, ops) starts the guest and waits for "ready"."""
    disk, _, stats = window_disk
    proc = start_blkwin(disk, stats, "r1,w1,p2,t")
    os.truncate(disk, 7 * 512)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, "done\n"), out + err
    calls, ns, setup_calls, _ = read_stats(stats)
    assert (calls, setup_calls) == (2, 1) and ns > 0


# ---- malformed guest ELFs


def ehdr(**kw):
    f = dict(ident=b"\x7fELF\x02\x01\x01\x00" + bytes(8), type=2,
             machine=62, version=1, entry=0x100000, phoff=64, shoff=0,
             flags=0, ehsize=64, phentsize=56, phnum=1, shentsize=0,
             shnum=0, shstrndx=0)
    f.update(kw)
    return struct.pack("<16sHHIQQQIHHHHHH", f["ident"], f["type"],
                       f["machine"], f["version"], f["entry"], f["phoff"],
                       f["shoff"], f["flags"], f["ehsize"], f["phentsize"],
                       f["phnum"], f["shentsize"], f["shnum"], f["shstrndx"])


def phdr(type=1, flags=5, offset=0x1000, vaddr=0x100000, paddr=None,
         filesz=0x10, memsz=0x10, align=0x1000):
    return struct.pack("<IIQQQQQQ", type, flags, offset, vaddr,
                       vaddr if paddr is None else paddr, filesz, memsz,
                       align)


def elf(eh=None, ph=None, size=0x1100):
    """A minimal x86_64 guest ELF: one segment at 1 MiB, entered there."""
    eh = eh if eh is not None else ehdr()
    ph = ph if ph is not None else phdr()
    data = bytearray(size)
    data[:len(eh)] = eh
    data[64:64 + len(ph)] = ph
    return bytes(data)


# Both tenders' checks (native/tender/elf_check.c) refuse each of these.
BAD_ELVES = {
    "empty": b"",
    "short": b"\x7fELF\x02",
    "magic": b"\x7fELG" + elf()[4:],
    "class32": elf(ehdr(ident=b"\x7fELF\x01\x01\x01\x00" + bytes(8))),
    "bigendian": elf(ehdr(ident=b"\x7fELF\x02\x02\x01\x00" + bytes(8))),
    "machine": elf(ehdr(machine=183)),
    "dyn_type": elf(ehdr(type=3)),
    "phentsize": elf(ehdr(phentsize=32)),
    "phnum0": elf(ehdr(phnum=0)),
    "phnum_huge": elf(ehdr(phnum=0xffff)),
    "phoff_oob": elf(ehdr(phoff=0xfffffffffffffff0)),
    "seg_file_oob": elf(ph=phdr(offset=0x1000, filesz=0x100000,
                                memsz=0x100000)),
    "seg_offset_wrap": elf(ph=phdr(offset=0xffffffffffffff00,
                                   filesz=0x200)),
    "seg_below_min": elf(ph=phdr(vaddr=0x1000)),
    "seg_above_mem": elf(ph=phdr(vaddr=0x40000000)),
    "seg_memsz_wrap": elf(ph=phdr(memsz=0xffffffffffff0000)),
    "seg_filesz_gt_memsz": elf(ph=phdr(filesz=0x20, memsz=0x10)),
    "vaddr_ne_paddr": elf(ph=phdr(paddr=0x200000)),
    "entry_outside": elf(ehdr(entry=0x300000)),
    "entry_not_exec": elf(ph=phdr(flags=6)),
    "interp": elf(ph=phdr(type=3)),
}


# ---- network: scripts run with `python -c` inside the test's namespace

# Their common start: arguments IF GUEST_IP MY_IP, an AF_PACKET socket s on
# IF, the Internet checksum, and recv(pred[, timeout]): the next incoming
# frame pred accepts, or None after RECV_TIMEOUT seconds (a script may set
# another value before its first recv).
PACKET_PRELUDE = r'''
import json, socket, struct, sys, time

IF, GUEST_IP, MY_IP = sys.argv[1], sys.argv[2], sys.argv[3]
ip2b = socket.inet_aton
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((IF, 0))
RECV_TIMEOUT = 5.0

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def recv(pred, timeout=None):
    end = time.time() + (RECV_TIMEOUT if timeout is None else timeout)
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            break
        if addr[2] != socket.PACKET_OUTGOING and pred(data):
            return data
    return None
'''

# ping_serve's ARP and ICMP echo, checked from the host side of its tap
# (MY_MAC fixed, so replies must be addressed to it); prints a JSON report.
PING_CHECK = PACKET_PRELUDE + r'''
MY_MAC = bytes.fromhex("020000000001")

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


def ping_check(exec_prefix, tap):
    """PING_CHECK's report for ping_serve at 10.0.0.2 on tap (we are
    10.0.0.1); exec_prefix runs a command in the tap's namespace."""
    h = subprocess.run([*exec_prefix, sys.executable, "-c", PING_CHECK, tap,
                        "10.0.0.2", "10.0.0.1"],
                       capture_output=True, text=True, timeout=120)
    assert h.returncode == 0, h.stderr
    return json.loads(h.stdout)


def check_ping_report(res):
    """Every ARP and echo answered exactly, the others ignored."""
    arp = res["arp"]
    assert arp is not None, "no ARP reply"
    assert (arp["op"], arp["spa"], arp["tpa"]) == (2, "10.0.0.2", "10.0.0.1")
    assert arp["tha"] == arp["eth_dst"] == "020000000001"
    # A locally administered MAC.
    assert arp["eth_src"] == arp["sha"] and int(arp["sha"][:2], 16) & 2
    assert not res["arp_other"] and not res["echo_other"]
    assert len(res["echo"]) == 5
    for e in res["echo"]:
        assert e is not None, res["echo"]
        assert e["ip_csum_ok"] and e["icmp_csum_ok"] and e["payload_ok"], e
        assert (e["type"], e["code"], e["src"], e["dst"]) == (
            0, 0, "10.0.0.2", "10.0.0.1")
        assert (e["eth_dst"], e["eth_src"]) == ("020000000001", arp["sha"])
    assert res["damaged_echo"] == {"ip_csum_ok": True, "icmp_csum_ok": False,
                                   "payload_echoed": True}
