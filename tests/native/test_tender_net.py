"""ping_serve end-to-end: tender attached to a tap in a private network
namespace; ARP and ICMP echo are exchanged over an AF_PACKET socket."""
import os
import select
import shutil
import subprocess
import time

import pytest
from tender_common import check_ping_report, kvm_skip_reason, ping_check
from testkit import stop_process


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
        check_ping_report(ping_check(nsx, "tap0"))
        assert proc.poll() is None, "tender exited early"
    finally:
        if proc is not None:
            stop_process(proc)
        _sh("ip", "netns", "delete", ns, check=False)
