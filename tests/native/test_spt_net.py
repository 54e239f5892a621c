"""ping_serve.spt end-to-end: spt_tender on a tap in a private network
namespace (the pipeline's unikio.netns), answering the same ARP/ICMP checks
as the hvt tender's test and real icmp_bench runs, counted exactly."""
import os
import subprocess
import time

import pytest
from tender_common import check_ping_report, make_bench, ping_check, start_ready
from testkit import require_root, stop_process
from unikio.netns import tap_namespace
from unikio.results import parse_net_result


@pytest.fixture(scope="module")
def icmp_bench(tmp_path_factory):
    return make_bench(tmp_path_factory.mktemp("bench-spt")) / "icmp_bench"


@pytest.fixture
def served(build_spt):
    """ping_serve.spt at 10.0.0.2 on the namespace's tap (host 10.0.0.1)."""
    require_root()
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("needs /dev/net/tun")
    with tap_namespace("unikio-test", tap=f"tspt{os.getpid() % 100000}") as ns:
        proc = start_ready(
            [*ns.exec_prefix(), str(build_spt / "spt_tender"),
             f"--net:service={ns.tap}", str(build_spt / "ping_serve.spt"),
             "ip=10.0.0.2"], ready="ping_serve: ready\n")
        try:
            yield ns, proc
        finally:
            stop_process(proc)


def test_arp_and_echo_replies_are_exact(served):
    ns, proc = served
    check_ping_report(ping_check(ns.exec_prefix(), ns.tap))
    assert proc.poll() is None, "tender exited early"


@pytest.mark.parametrize("size, count", [(56, 500), (1472, 200), (0, 100)])
def test_icmp_bench_every_echo_answered(served, icmp_bench, size, count):
    ns, proc = served
    r = subprocess.run([*ns.exec_prefix(), str(icmp_bench), "--ifname", ns.tap,
                        "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2",
                        "--size", str(size), "--count", str(count)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    res = parse_net_result(r.stdout)
    assert (res["size"], res["packets"], res["received"]) == (size, count,
                                                               count)
    assert (res["lost"], res["corrupt"], res["ignored"]) == (0, 0, 0)
    assert res["min_ns"] > 0
    assert proc.poll() is None, "tender exited early"


def test_idle_guest_sleeps_in_ppoll_and_stops_on_sigterm(served):
    ns, proc = served
    # Idle for a while: a guest spinning instead of waiting in ppoll would
    # burn a whole CPU second per second.
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
        pids = f.read().split()
    # proc is `ip netns exec`, which execs the tender: one child, the guest.
    assert len(pids) == 1, pids
    guest = int(pids[0])

    def cpu_s():
        with open(f"/proc/{guest}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu_s()
    time.sleep(1.0)
    assert cpu_s() - before < 0.2
    start = time.monotonic()
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - start < 5
    assert proc.returncode == 128 + 15, err
    assert err == "spt_tender: terminated by signal 15\n"
