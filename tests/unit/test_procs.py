"""Children of a job are always stopped, and a job's failure or cancellation is one line (real processes)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from unikio import job, procs, supervise

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO / "workflow" / "scripts"))


def gone(pid: int, within_s: float = 5.0) -> bool:
    """pid has exited (a zombie counts as exited) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_run_stops_the_whole_group_on_timeout(tmp_path):
    pidfile = tmp_path / "pids"
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["sh", "-c", f"sleep 100 & echo $! > {pidfile}; sleep 100"], timeout_s=0.5)
    grandchild = int(pidfile.read_text())
    assert gone(grandchild)
    assert procs.stop_all() == []


def test_run_returns_like_subprocess_run():
    proc = procs.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_s=10, env={"X": "1"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert procs.exit_reason(proc.returncode, proc.stderr) == "status 3: err"
    assert procs.exit_reason(-9) == "killed by SIGKILL"


def test_missing_program_is_an_oserror_naming_it():
    with pytest.raises(FileNotFoundError, match="/no/such/prog"):
        procs.start(["/no/such/prog"])


def test_a_program_relative_to_cwd_is_found_there(tmp_path):
    (tmp_path / "configure.sh").write_text("#!/bin/sh\necho configured\n")
    (tmp_path / "configure.sh").chmod(0o755)
    assert procs.run(["./configure.sh"], timeout_s=10, cwd=tmp_path).stdout == "configured\n"
    with pytest.raises(FileNotFoundError):
        procs.run(["./configure.sh"], timeout_s=10)  # not in this process's directory


def test_child_dies_with_a_job_that_is_sigkilled():
    code = ("from unikio import procs\nimport time\np = procs.start(['sleep', '100'])\nprint(p.pid, flush=True)\n"
            "time.sleep(100)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    child = int(parent.stdout.readline())
    assert not gone(child, within_s=0.3)
    parent.kill()
    parent.wait()
    assert gone(child)


JOB = textwrap.dedent("""
    import sys, time, types
    from pathlib import Path
    from unikio import job, procs
    from unikio.errors import PipelineError
    sm = types.SimpleNamespace(log=[sys.argv[1]], rule="demo", output=sys.argv[3:])

    def body(log):
        what = sys.argv[2]
        if what == "sleep":
            p = procs.start(["sleep", "100"])
            print(p.pid, flush=True)
            time.sleep(100)
        elif what == "enospc":
            raise OSError(28, "No space left on device", "/dev/shm/x")
        elif what == "bug":
            {}["missing"]
        elif what == "partial":
            Path(sm.output[0]).write_text("half a row")
            Path(sm.output[1]).mkdir()
            (Path(sm.output[1]) / "f").write_text("x")
            raise PipelineError("failed after writing")
        log.write("done\\n")

    job.run(sm, body)
""")


def start_job(tmp_path, what, *outputs):
    log = tmp_path / "job.log"
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(log), what, *map(str, outputs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    return proc, log


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cancelled_job_stops_its_children_and_says_so_in_one_line(tmp_path, signum):
    proc, log = start_job(tmp_path, "sleep")
    child = int(proc.stdout.readline())
    start = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - start < 3
    assert proc.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert err.strip().splitlines() == [f"ERROR in rule demo: cancelled by {name} (log: {log})"]
    assert gone(child, within_s=0.5)
    assert f"ERROR: cancelled by {name}" in log.read_text()


@pytest.mark.parametrize("what,line", [
    ("enospc", "No space left on device (/dev/shm/x)"),
    ("bug", "unexpected KeyError: 'missing'"),
])
def test_any_failure_is_one_line_with_the_detail_in_the_log(tmp_path, what, line):
    proc, log = start_job(tmp_path, what)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [f"ERROR in rule demo: {line} (log: {log})"]
    if what == "bug":
        assert "Traceback" in log.read_text()


def test_a_failed_job_leaves_none_of_its_outputs(tmp_path):
    outputs = (tmp_path / "row.json", tmp_path / "tree")
    proc, log = start_job(tmp_path, "partial", *outputs)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and err.strip() == f"ERROR in rule demo: failed after writing (log: {log})"
    assert not any(p.exists() for p in outputs)


CLEANUP = textwrap.dedent("""
    import os, signal, sys, threading, time
    from unikio import job, procs
    job.cancel_on_signals()

    def helper():
        procs.block_cancel_signals()
        time.sleep(5)

    # With helper threads alive the kernel may hand the signal to any thread that does not block it.
    for _ in range(int(sys.argv[1])):
        threading.Thread(target=helper, daemon=True).start()
    time.sleep(0.1)
    try:
        with procs.uninterrupted():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)
            print("cleanup finished", flush=True)
    except job.Cancelled as e:
        print("then", e, flush=True)
""")


@pytest.mark.parametrize("helpers", [0, 3])
def test_a_cleanup_is_not_cut_short_by_a_signal(helpers):
    out = subprocess.run([sys.executable, "-c", CLEANUP, str(helpers)], capture_output=True, text=True, env=ENV,
                         timeout=20).stdout
    assert out.splitlines() == ["cleanup finished", "then cancelled by SIGTERM"]


def test_run_stops_the_child_as_soon_as_its_watch_says_why():
    start = time.monotonic()
    with pytest.raises(procs.Stopped, match="the guest is gone"):
        procs.run(["sleep", "100"], timeout_s=60,
                  watch=lambda: "the guest is gone" if time.monotonic() - start > 0.3 else None)
    assert time.monotonic() - start < 2
    assert procs.stop_all() == []


def test_snakemake_signals_go_to_job_scripts_alone_and_to_shell_rules_whole():
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 14: 13, 15: 14, 16: 99}
    cmdline = {11: "python3 /p/.snakemake/scripts/tmpab.run_blk_qemu.py", 13: "/bin/bash -c set -euo pipefail; make"}
    # The job script stops its own QEMU (12) in order; a shell rule's build goes with its shell.
    assert supervise.cancel_targets(10, parents, cmdline) == [11, 13, 14, 15]


def test_job_describe_names_timeouts():
    exc = subprocess.TimeoutExpired(["icmp_bench", "--count", "5"], 12.5)
    assert job.describe(exc) == "icmp_bench ran longer than 12.5 s"


FAKE_SNAKEMAKE = textwrap.dedent("""
    import signal, subprocess, sys, threading, time
    from pathlib import Path
    from unikio import supervise

    # A job script where Snakemake puts them; it says when SIGTERM reached it.
    scripts = Path(sys.argv[1]) / ".snakemake" / "scripts"
    scripts.mkdir(parents=True)
    job = scripts / "tmp1.job.py"
    job.write_text("import signal, sys, time\\n"
                   "def stop(*_):\\n    open(sys.argv[1], 'w').write('stopped')\\n    sys.exit(3)\\n"
                   "signal.signal(signal.SIGTERM, stop)\\nprint('ready', flush=True)\\ntime.sleep(60)\\n")
    supervise.forward_cancellation()
    jobs_done = threading.Semaphore(0)
    p = subprocess.Popen([sys.executable, str(job), sys.argv[2]], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()

    def executor():  # as Snakemake's executor threads wait for their jobs
        p.wait()
        jobs_done.release()

    waiter = threading.Thread(target=executor, daemon=True)
    waiter.start()
    if sys.argv[3] == "helper-thread":
        # The kernel may pick any thread for a process-wide signal: here, not the sleeping main one.
        threading.Timer(0.3, signal.pthread_kill, (waiter.ident, signal.SIGTERM)).start()
    try:  # as Snakemake's scheduler loop, which catches KeyboardInterrupt, wraps its jobs
        print("running", flush=True)
        jobs_done.acquire()  # where Snakemake's main thread sleeps while jobs run
        print("no cancellation", flush=True)
    except KeyboardInterrupt:
        print("cancelled; job status", p.wait(), flush=True)
""")


@pytest.mark.parametrize("delivered_to", ["process", "helper-thread"])
def test_snakemake_stops_its_jobs_and_cancels_whichever_thread_gets_the_signal(tmp_path, delivered_to):
    marker = tmp_path / "job-saw-sigterm"
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SNAKEMAKE, str(tmp_path), str(marker), delivered_to],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline() == "running\n"
    start = time.monotonic()
    if delivered_to == "process":
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert out == "cancelled; job status 3\n", err
    assert time.monotonic() - start < 5
    assert marker.read_text() == "stopped"


def test_jobs_get_their_sigterm_even_when_snakemake_leaves_at_once(tmp_path):
    # The signal lands before the scheduler's try: the main thread dies of KeyboardInterrupt
    # straight away, and the job must have been stopped by then, not left to sleep on.
    marker = tmp_path / "job-saw-sigterm"
    scheduler = "\ntry:  # as Snakemake's"
    script = FAKE_SNAKEMAKE.replace(scheduler, "\nos.kill(os.getpid(), signal.SIGTERM)" + scheduler)
    assert "os.kill" in script
    script = script.replace("import signal,", "import os, signal,")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(marker), "process"],
                          capture_output=True, text=True, env=ENV, timeout=30)
    assert "KeyboardInterrupt" in proc.stderr and proc.returncode != 0
    assert time.monotonic() - start < 5
    assert marker.read_text() == "stopped"


def test_stderr_lines_arrive_while_the_child_runs(tmp_path):
    """on_stderr_line sees each line when it is written, not at exit; stdout and stderr still come back whole."""
    seen = []
    script = "import sys, time\nfor i in range(3):\n    print(f'progress {i}/3 reads', file=sys.stderr, flush=True)\n" \
             "    time.sleep(0.3)\nprint('RESULT done')\n"
    start = time.monotonic()
    proc = procs.run([sys.executable, "-c", script], timeout_s=10,
                     on_stderr_line=lambda line: seen.append((line, time.monotonic() - start)))
    assert proc.returncode == 0 and proc.stdout == "RESULT done\n"
    assert proc.stderr == "".join(f"progress {i}/3 reads\n" for i in range(3))
    assert [line for line, _ in seen] == [f"progress {i}/3 reads\n" for i in range(3)]
    assert seen[0][1] < 0.25  # the first line came before the child's 0.9 s were over


def test_a_streaming_run_is_stopped_on_timeout_and_by_its_watch(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["sleep", "100"], timeout_s=0.3, on_stderr_line=lambda line: None)
    with pytest.raises(procs.Stopped, match="the guest is gone"):
        procs.run(["sleep", "100"], timeout_s=10, watch=lambda: "the guest is gone", on_stderr_line=lambda line: None)
    assert procs.stop_all() == []


def test_streaming_needs_piped_text():
    with pytest.raises(ValueError, match="on_stderr_line needs text mode"):
        procs.run(["true"], timeout_s=1, stdout=subprocess.DEVNULL, on_stderr_line=lambda line: None)
