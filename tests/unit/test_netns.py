"""Network namespaces for the network experiment, and the icmp_bench result line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from testkit import REPO, require_root
from unikio import netns, results
from unikio.errors import PipelineError

PREFIX = "unikio-test"
# A tap name of our own, so an unrelated tap100 on the host cannot confuse "not outside".
TAP = f"tapt{os.getpid() % 100000}"

GOOD = (
    "RESULT net size=1 packets=1000 received=998 lost=2 corrupt=0 ignored=3 "
    "avg_ns=438603 min_ns=422040 max_ns=501439 pps=2279.96 p50_ns=434176 p90_ns=450560 p99_ns=497664"
)


# ---- parse_net_result (no root needed)


def test_parse_good_line_among_other_output() -> None:
    res = results.parse_net_result("icmp_bench: warming up\n" + GOOD + "\n")
    assert res == {
        "size": 1, "packets": 1000, "received": 998, "lost": 2, "corrupt": 0, "ignored": 3,
        "avg_ns": 438603, "min_ns": 422040, "max_ns": 501439, "pps": 2279.96,
        "p50_ns": 434176, "p90_ns": 450560, "p99_ns": 497664,
    }
    assert isinstance(res["avg_ns"], int) and isinstance(res["pps"], float) and isinstance(res["p99_ns"], int)


def test_parse_all_lost() -> None:
    line = ("RESULT net size=0 packets=5 received=0 lost=5 corrupt=0 ignored=0 avg_ns=0 min_ns=0 max_ns=0 pps=0"
            " p50_ns=0 p90_ns=0 p99_ns=0")
    assert results.parse_net_result(line)["lost"] == 5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "RESULT blk reads=1 block_size=2 total_ns=3",
        GOOD + "\n" + GOOD,
        GOOD.replace(" lost=2", ""),
        GOOD.replace("avg_ns=438603", "avg_ns=4.5"),
        GOOD.replace("avg_ns=438603", "avg_ns=-1"),
        GOOD + " extra=1",
        GOOD.replace("pps=2279.96", "pps=nan"),
        GOOD.replace("received=998", "received=999"),  # received + lost != packets
        GOOD.replace("min_ns=422040", "min_ns=500000"),  # min > avg
        GOOD.replace("pps=2279.96", "pps=1000.00"),  # not 1e9 / avg
        GOOD.replace("size=1 ", "size=1473 "),
        "RESULT net size=0 packets=5 received=0 lost=5 corrupt=0 ignored=0 avg_ns=7 min_ns=0 max_ns=0 pps=0"
        " p50_ns=0 p90_ns=0 p99_ns=0",
        GOOD.replace(" p50_ns=434176 p90_ns=450560 p99_ns=497664", ""),  # the line before percentiles
        GOOD.replace("p90_ns=450560", "p90_ns=400000"),  # p90 < p50
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        results.parse_net_result(text)


def test_namespace_owner() -> None:
    assert netns.namespace_owner("unikio-test-123-4", PREFIX) == 123
    assert netns.namespace_owner("unikio-test-123", PREFIX) is None
    assert netns.namespace_owner("unikio-123-4", PREFIX) is None
    assert netns.namespace_owner("unikio-test-123-4", "unikio") is None


def test_not_root_is_a_pipeline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(PipelineError, match="network namespaces need root"):
        with netns.tap_namespace(PREFIX):
            pass


@pytest.mark.parametrize("prefix, tap", [("bad/name", "tap100"), (PREFIX, "a-tap-name-too-long")])
def test_bad_names_rejected(prefix: str, tap: str) -> None:
    with pytest.raises(PipelineError):
        with netns.tap_namespace(prefix, tap=tap):
            pass


# ---- real namespaces (root)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _exists(name: str) -> bool:
    return name in netns.list_namespaces()


@pytest.fixture
def root() -> None:
    require_root()


@pytest.mark.usefixtures("root")
def test_tap_inside_only_and_deleted_after_exit() -> None:
    with netns.tap_namespace(PREFIX, tap=TAP) as ns:
        assert ns.name.startswith(f"{PREFIX}-{os.getpid()}-")
        assert ns.exec_prefix() == ["ip", "netns", "exec", ns.name]
        assert _exists(ns.name)
        inside = _ip("-n", ns.name, "-json", "addr", "show", "dev", TAP)
        assert inside.returncode == 0, inside.stderr
        (link,) = json.loads(inside.stdout)
        assert "UP" in link["flags"]
        assert ("10.0.0.1", 24) in {(a["local"], a["prefixlen"]) for a in link["addr_info"]}
        assert _ip("-n", ns.name, "link", "show", "lo").stdout.count("UP") >= 1
        assert _ip("link", "show", TAP).returncode != 0, "tap visible outside the namespace"
    assert not _exists(ns.name)


@pytest.mark.usefixtures("root")
def test_deleted_after_exception() -> None:
    name = None
    with pytest.raises(RuntimeError, match="boom"):
        with netns.tap_namespace(PREFIX, tap=TAP) as ns:
            name = ns.name
            raise RuntimeError("boom")
    assert name is not None and not _exists(name)


@pytest.mark.usefixtures("root")
def test_processes_inside_are_killed_on_exit() -> None:
    with netns.tap_namespace(PREFIX, tap=TAP) as ns:
        proc = subprocess.Popen([*ns.exec_prefix(), "sleep", "60"])
        time.sleep(0.2)
    assert proc.wait(timeout=20) == -signal.SIGKILL
    assert not _exists(ns.name)


@pytest.mark.usefixtures("root")
def test_deleted_on_sigterm() -> None:
    # A cancelled job (SIGTERM, turned into job.Cancelled) must not leave its namespace behind.
    code = (
        "import sys, time\n"
        "from unikio import job\n"
        "from unikio.netns import tap_namespace\n"
        "job.cancel_on_signals()\n"
        f"with tap_namespace({PREFIX!r}, tap={TAP!r}) as ns:\n"
        "    print(ns.name, flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow" / "scripts"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name and _exists(name)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 1  # the uncaught Cancelled
        assert not _exists(name)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.usefixtures("root")
def test_leftover_of_dead_pid_is_reaped_live_one_kept() -> None:
    stale = f"{PREFIX}-{_dead_pid()}-7"
    live = f"{PREFIX}-{os.getpid()}-999"
    try:
        for name in (stale, live):
            r = _ip("netns", "add", name)
            assert r.returncode == 0, r.stderr
        with netns.tap_namespace(PREFIX, tap=TAP) as ns:
            assert not _exists(stale)
            assert _exists(live)
            assert ns.name not in (stale, live)
    finally:
        for name in (stale, live):
            _ip("netns", "delete", name)
