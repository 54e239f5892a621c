"""Injected faults on the smoke profile: every kind of measurement job, stopped, killed and hung for real.

Each case runs Snakemake on one job of a copy of the smoke run, with counts
raised (an override merged over the smoke profile) so that the job is still
measuring when the fault lands. After each: Snakemake exits non-zero and our
one-line error names the cause; no process of the run is left, nor a loop
device, a network namespace, a tap or a disk image; the job's output does not
exist, so nothing takes the failed job as done; and a plain rerun (the smoke
profile) completes. The testbed cases are marked `slow` (a TCG boot each).
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import SMOKE, copy_project, require_root
from unikio import estimate, hostinfo, loopdev

pytestmark = pytest.mark.e2e

KVM_USABLE, KVM_REASON = hostinfo.kvm_status()
X86 = platform.machine() == "x86_64"


@dataclass(frozen=True)
class Kind:
    """A kind of measurement job: its target, what runs it, when it is measuring, and its overrides."""

    name: str
    target: str
    program: str          # the binary (under the project) of the guest, tender or benchmark to kill or stop
    measuring: str        # "process" (program is running) or a console marker in `console`
    console: str
    longer: str           # YAML that makes the measurement last long enough to inject into
    # YAML that shortens the time limit the hang must hit, with {n} for the count: the start-up estimate
    # refuses counts whose job it expects past the limit, so n is sized from the same model (hang_count).
    hang_limit: str
    hang_message: str     # regex of the one-line error once that limit fires
    hang_cost: tuple[str, int, float] = ("", 1, 0.0)  # the estimate's row kind, its units per n, the limit (s)
    needs_kvm: bool = False
    slow: bool = False


# The Linux guest's kinds set both count keys: testbed.* under TCG (an emulated row), blk/net under KVM. Each
# kind keeps only the rows that fit its limits: the start-up estimate refuses counts any planned job cannot meet.
KINDS = [
    Kind("host block", "results/raw/blk/x86_64/host/rep1/row.json", "results/build/native/x86_64/blk_bench",
         "process", "", "blk: {reads: 600000}", "blk: {{platforms: [host], reads: {n}, timeout_s: 8}}",
         r"blk_bench on /dev/loop\d+ ran longer than blk.timeout_s=8 s", ("blk/x86_64/host/native", 1, 8)),
    Kind("unikernel block", "results/raw/blk/x86_64/solo5-hvt/builtin/rep1/row.json",
         "results/build/solo5-builtin/x86_64/tender", "process", "", "blk: {reads: 400000}",
         "blk: {{platforms: [solo5-hvt], reads: {n}, timeout_s: 8}}",
         r"tender on /dev/loop\d+ ran longer than blk.timeout_s=8 s",
         ("blk/x86_64/solo5-hvt/builtin/native", 1, 8), needs_kvm=True),
    # The spt tender is a parent and its confined guest child: both must go, whichever is signalled.
    Kind("spt block", "results/raw/blk/x86_64/solo5-spt/builtin/rep1/row.json",
         "results/build/solo5-builtin/x86_64/spt_tender", "process", "", "blk: {reads: 1000000}",
         "blk: {{platforms: [solo5-spt], reads: {n}, timeout_s: 8}}",
         r"spt_tender on /dev/loop\d+ ran longer than blk.timeout_s=8 s",
         ("blk/x86_64/solo5-spt/builtin/native", 1, 8)),
    Kind("Linux-guest block", "results/raw/blk/x86_64/qemu-linux-smp/rep1/row.json",
         "results/build/qemu/bin/qemu-system-x86_64", "UNIKIO-BEGIN", "results/raw/blk/x86_64/qemu-linux-smp/rep1/"
         "console.log", "archs: [x86_64]\nblk: {reads: 300000}\ntestbed: {blk: {reads: 300000}}",
         "archs: [x86_64]\nblk: {{reads: {n}}}\ntestbed: {{blk: {{reads: {n}}}}}\nguest: {{run_timeout_s: 25}}",
         r"guest run failed: timed out after 25 s", ("blk/x86_64/qemu-linux-smp/{mode}", 1, 25)),
    # A loss budget of a few packets, so a guest that stops answering fails the run in seconds.
    Kind("unikernel net", "results/raw/net/x86_64/solo5-hvt/builtin/rows.json",
         "results/build/solo5-builtin/x86_64/tender", "icmp_bench", "",
         "net: {packets: 60000, max_loss_pct: 0.01}", "net: {packets: 60000, max_loss_pct: 0.01}",
         r"icmp_bench lost \d+ of 60000 packets at size \d+, more than net.max_loss_pct=0.01", needs_kvm=True),
    # A TCG guest misses a reply now and then: the default loss budget, and the job's own time limit for a hang.
    Kind("Linux-guest net", "results/raw/net/x86_64/qemu-linux/rows.json", "results/build/qemu/bin/qemu-system-x86_64",
         "icmp_bench", "", "archs: [x86_64]\nnet: {packets: 300000}\ntestbed: {net: {packets: 300000}}",
         "archs: [x86_64]\nnet: {{packets: {n}}}\ntestbed: {{net: {{packets: {n}}}}}\nguest: {{run_timeout_s: 25}}",
         r"guest run failed: timed out after 25 s", ("net/x86_64/qemu-linux/{mode}", 4, 25)),  # 2 sizes x 2 runs
    Kind("testbed boot", "results/raw/blk/aarch64/host/testbed/rows.json", "results/build/qemu/bin/qemu-system-aarch64",
         "TB-BEGIN", "results/raw/blk/aarch64/host/testbed/console.log",
         "blk: {platforms: [host]}\nnet: {platforms: []}\ntestbed: {blk: {reads: 60000}}",
         "blk: {{platforms: [host]}}\nnet: {{platforms: []}}\ntestbed: {{timeout_s: 12, blk: {{reads: {n}}}}}",
         r"the job ran longer than 12 s after UNIKIO-BEGIN",
         ("blk/aarch64/host/testbed", 2, 12 + 120), slow=True),  # 2 repetitions; the smoke boot limit, 120 s
]


def case(kind: Kind) -> pytest.param:
    marks = [pytest.mark.slow] if kind.slow else []
    return pytest.param(kind, id=kind.name.replace(" ", "-"), marks=marks)


@pytest.fixture(scope="module")
def project(smoke_project, tmp_path_factory) -> Path:
    if not X86:
        pytest.skip("the job targets name x86_64 rows and the emulated aarch64 testbed")
    copy = tmp_path_factory.mktemp("faults") / "project"
    subprocess.run(["cp", "-a", str(smoke_project), str(copy)], check=True)
    return copy


# ------------------------------------------------------------ driving Snakemake


class Run:
    """./snakemake on one target in a session of its own, as a user's terminal would start it."""

    def __init__(self, project: Path, target: str, overrides: str = "", prefix: tuple[str, ...] = ()) -> None:
        self.project = project
        (project / "override.yaml").write_text(overrides or "{}\n")
        self.out = open(project / "fault.out", "w+")  # noqa: SIM115 - closed in finish()
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*prefix, "./snakemake", "--cores", "4", target, *SMOKE, "override.yaml"],
                                     cwd=project, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def finish(self, timeout: float = 300) -> tuple[int, str, float]:
        """(exit status, output, seconds since start) once Snakemake exits; a failure with its output if not."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.out.seek(0)
            pytest.fail(f"Snakemake did not exit within {timeout} s:\n{self.out.read()[-3000:]}")
        self.out.seek(0)
        text = self.out.read()
        self.out.close()
        return code, text, time.monotonic() - self.started


def wait_for(what: str, predicate: Callable[[], object], timeout: float, run: Run) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if run.proc.poll() is not None:
            code, text, _ = run.finish()
            pytest.fail(f"Snakemake exited ({code}) before {what}:\n{text[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {timeout} s")


def pids_of(binary: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "exe") == str(binary):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def measuring(project: Path, kind: Kind) -> Callable[[], list[int]]:
    """A predicate: the pids to hit once the job measures (empty before)."""
    program = project / kind.program
    icmp = project / "results/build/native/x86_64/icmp_bench"

    def check() -> list[int]:
        pids = pids_of(program)
        if not pids:
            return []
        if kind.measuring == "icmp_bench":
            return pids if pids_of(icmp) else []
        if kind.measuring != "process":
            console = project / kind.console
            return pids if console.exists() and kind.measuring in console.read_text(errors="replace") else []
        return pids

    return check


# ------------------------------------------------------------ what must be left


def leftovers(project: Path, kind: Kind | None = None) -> dict[str, list[str]]:
    """Everything a failed run must not leave: the goal is an empty list everywhere."""
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if str(project) in cmdline or exe.startswith(str(project)):
            procs.append(f"{entry.name}: {cmdline[:120]}")
    loops = subprocess.run(["losetup", "--list", "--noheadings", "-O", "NAME,BACK-FILE"], capture_output=True,
                           text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    # In every namespace, the root one included.
    taps = subprocess.run(["ip", "-o", "link", "show", "type", "tun"], capture_output=True, text=True).stdout
    taps += subprocess.run(["ip", "-all", "netns", "exec", "ip", "-o", "link", "show", "type", "tun"],
                           capture_output=True, text=True).stdout
    found = {
        "processes": procs,
        "loop devices": [ln for ln in loops.splitlines() if loopdev.PREFIX in ln],
        "namespaces": [ln for ln in netns.splitlines() if ln.startswith("unikio-")],
        "taps": [ln for ln in taps.splitlines() if "tap100" in ln],
        "disk images": [p.name for p in loopdev.TMPFS_DIR.glob(loopdev.PREFIX + "*")],
        "stats files": [str(p) for p in Path(tempfile.gettempdir()).glob("unikio-stats-*")],
        "testbed initrds": [str(p) for p in (project / "results/raw").glob("*/*/*/testbed/job-*")],
    }
    if kind is not None:
        found["outputs"] = [kind.target] if (project / kind.target).exists() else []
    return found


def settle(project: Path, kind: Kind | None, within: float = 10.0) -> dict[str, list[str]]:
    """Leftovers once the run has had `within` seconds to clean up (the kernel reaps killed VMMs lazily)."""
    deadline = time.monotonic() + within
    while True:
        found = {k: v for k, v in leftovers(project, kind).items() if v}
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def error_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("ERROR in rule ")]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def rerun_completes(project: Path, kind: Kind) -> None:
    code, text, _ = Run(project, kind.target).finish(timeout=600)
    assert code == 0, text[-3000:]
    assert (project / kind.target).is_file()


REPORT: list[str] = []


def record(kind: str, fault: str, message: str, left: dict[str, list[str]], stop_s: float | None) -> None:
    where = f"{stop_s:.1f} s after the fault" if stop_s is not None else ""
    REPORT.append(f"{kind} | {fault} | {message} | {sum(map(len, left.values()))} | {where}")
    print(REPORT[-1])


# ------------------------------------------------------------ the cases


def skip_unless_runnable(kind: Kind) -> None:
    if kind.needs_kvm and not KVM_USABLE:
        pytest.skip(f"the tender needs KVM: {KVM_REASON}")


def inject(project: Path, kind: Kind, overrides: str, act: Callable[[Run, list[int]], None],
           timeout: float) -> tuple[int, str, float]:
    """Start the job, act on it once it measures; (exit status, output, seconds from the fault to the exit)."""
    skip_unless_runnable(kind)
    run = Run(project, kind.target, overrides)
    try:
        pids = wait_for(f"{kind.name} measuring", measuring(project, kind), 180, run)
        time.sleep(1)
        alive = [pid for pid in pids if pid in pids_of(project / kind.program)]
        assert alive, f"{kind.name} finished within a second; raise its counts in `longer`"
        hit = time.monotonic()
        act(run, alive)
        code, text, _ = run.finish(timeout=timeout)
        return code, text, time.monotonic() - hit
    finally:
        # A case that fails half-way must not leave its run to the next case.
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGINT)
            try:
                run.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()


def check_after(project: Path, kind: Kind, fault: str, line: str, stopped_s: float) -> None:
    """Nothing left behind, reported, then a plain rerun completes."""
    left = settle(project, kind)
    record(kind.name, fault, line.split(": ", 1)[1], left, stopped_s)
    assert left == {}
    rerun_completes(project, kind)


@pytest.mark.parametrize("kind", [case(k) for k in KINDS])
@pytest.mark.parametrize("fault", ["SIGINT to the process group", "SIGTERM to Snakemake"])
def test_cancelled_while_measuring(project, kind, fault):
    def cancel(run: Run, _pids: list[int]) -> None:
        if fault.startswith("SIGINT"):
            os.killpg(run.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        else:
            run.proc.send_signal(signal.SIGTERM)

    code, text, stopped_s = inject(project, kind, kind.longer, cancel, timeout=60)
    line = error_line(text)
    assert code != 0 and re.search(r": cancelled by SIG(INT|TERM) \(log: ", line), line
    assert stopped_s < 10, text[-2000:]
    check_after(project, kind, fault, line, stopped_s)


def signal_all(signum: int) -> Callable[[Run, list[int]], None]:
    def act(_run: Run, pids: list[int]) -> None:
        for pid in pids:
            os.kill(pid, signum)
    return act


@pytest.mark.parametrize("kind", [case(k) for k in KINDS])
def test_guest_killed_from_outside(project, kind):
    code, text, stopped_s = inject(project, kind, kind.longer, signal_all(signal.SIGKILL), timeout=120)
    line = error_line(text)
    assert code != 0 and "SIGKILL" in line, line
    check_after(project, kind, "SIGKILL of the guest/tender/QEMU", line, stopped_s)


def hang_overrides(project: Path, kind: Kind) -> str:
    """kind.hang_limit with a count n whose job the pipeline's own estimate puts at half its limit.

    So the start-up check lets it run, it measures for seconds (enough to hang it), and only the hang hits the limit.
    """
    if "{n}" not in kind.hang_limit:
        return kind.hang_limit
    row, units_per_n, limit_s = kind.hang_cost
    verdict = json.loads((project / "results/raw/probe/x86_64/verdict.json").read_text())
    row = row.format(mode="tcg" if verdict["accel"] == "tcg" else "native")
    model = estimate.fit(project / "results").merged_over(estimate.load_model(project / "config/cost_model.yaml"))
    cost = model.rows[row]
    return kind.hang_limit.format(n=max(1, int((limit_s / 2 - cost.job_s) / (cost.unit_s * units_per_n))))


@pytest.mark.parametrize("kind", [case(k) for k in KINDS])
def test_hanging_guest_hits_the_time_limit(project, kind):
    """SIGSTOP: the guest (or tender, benchmark, testbed) stops answering and never exits by itself."""
    code, text, stopped_s = inject(project, kind, hang_overrides(project, kind), signal_all(signal.SIGSTOP),
                                   timeout=180)
    line = error_line(text)
    assert code != 0 and re.search(kind.hang_message, line), line
    check_after(project, kind, "hung (SIGSTOP)", line, stopped_s)


def test_dev_shm_without_room_is_refused_before_any_job(project):
    """/dev/shm as full as it gets: a 1 MiB tmpfs over it, in a mount namespace of the run's own."""
    kind = KINDS[0]
    target = "results/data/blk_runs.csv"
    (project / kind.target).unlink(missing_ok=True)
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$@"', "shm")
    code, text, _ = Run(project, target, "", prefix=prefix).finish(timeout=120)
    assert code != 0
    m = re.search(r"blk.reads x blk.block_size needs a 1 MiB disk image in /dev/shm, which has 1 MiB free.*", text)
    assert m, text[-2000:]
    assert "Job stats" not in text  # refused before planning any job
    left = settle(project, kind)
    record("every block kind", "/dev/shm without room", m.group(0), left, None)
    assert left == {}
    rerun_completes(project, kind)


def test_fetched_file_with_a_wrong_checksum_leaves_nothing(tmp_path):
    """qemu_source from a tarball whose sha256 is not the configured one, in a fresh copy of the project."""
    require_root()
    project = copy_project(tmp_path / "fresh")
    tarball = tmp_path / "qemu-9.9.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(project), "README.md"], check=True)
    target = "results/sources/qemu/lock.json"
    overrides = f"qemu: {{source: tarball, tarball: {{url: '{tarball.as_uri()}', sha256: '{'0' * 64}'}}}}\n"
    code, text, _ = Run(project, target, overrides).finish(timeout=120)
    line = error_line(text)
    assert code != 0 and re.search(r"sha256 of file://\S+ is [0-9a-f]{64}, config says 0{64}; "
                                   r"fix qemu.tarball.sha256 or the URL", line), line
    sources = project / "results/sources/qemu"
    assert not sources.exists() or list(sources.rglob("*")) == []
    left = settle(project, None)
    record("fetch (qemu_source)", "wrong sha256", line.split(": ", 1)[1], left, None)
    assert left == {}
    code, text, _ = Run(project, target).finish(timeout=600)
    assert code == 0, text[-3000:]
    assert json.loads((project / target).read_text())["source"] == "debian"


def test_report(project):
    """The table of the closing note (printed with pytest -s)."""
    print("\nkind | fault | message | leftovers | stopped")
    print("\n".join(REPORT))
