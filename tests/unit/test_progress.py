"""Progress lines of long jobs: how far, what, elapsed, ETA, at most every interval."""

import io

import pytest
from unikio import progress


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


def make(clock, **kw):
    log, out = io.StringIO(), io.StringIO()
    p = progress.Progress("net x86_64/solo5-hvt", log=log, out=out, clock=clock, every_s=20,
                          **{"runs": 4, "per_run": 1000, "unit": "packets", **kw})
    return p, log, out


def test_durations_read_like_a_person_would_say_them():
    assert [progress.duration(s) for s in (0, 44.6, 60, 200, 3600, 3900, -3)] == [
        "0 s", "45 s", "1 min 00 s", "3 min 20 s", "1 h 00 min", "1 h 05 min", "0 s"]


def test_runs_add_up_and_the_eta_follows_the_rate(clock):
    p, log, out = make(clock)
    clock.t += 5  # boot: no rate yet
    p.begin_run("size 1 B, repetition 1/2")
    clock.t += 10
    p.advance(500)  # 500 packets in 10 s: 3500 left take 70 s
    assert p.done == 500 and p.eta_s() == pytest.approx(70)
    p.end_run()
    assert p.done == 1000
    p.begin_run("size 1472 B, repetition 1/2")
    p.advance(250)
    assert p.done == 1250
    clock.t += 20
    p.tick()
    line = log.getvalue().strip().splitlines()[-1]
    assert line == ("progress net x86_64/solo5-hvt: 1,250/4,000 packets (31%), size 1472 B, repetition 1/2, "
                    "35 s elapsed, ETA 1 min 06 s")
    assert out.getvalue() == log.getvalue()


def test_lines_come_at_most_every_interval_and_force_overrides(clock):
    p, log, _ = make(clock)
    p.begin_run("a")
    for _ in range(100):
        clock.t += 0.5
        p.advance(10)
    assert len(log.getvalue().splitlines()) == 2  # at 20 s and 40 s of the 50 s
    p.tick(force=True)
    assert len(log.getvalue().splitlines()) == 3


def test_a_boot_says_what_it_does_and_the_eta_counts_from_its_end(clock):
    p, log, _ = make(clock, runs=1, per_run=100, unit="reads")
    p.phase("booting")
    clock.t += 25
    p.tick()
    assert log.getvalue() == "progress net x86_64/solo5-hvt: 0 reads, booting, 25 s elapsed\n"
    p.started("booted in 25 s, running its job")
    clock.t += 10
    p.bench_line("progress 50/100 reads")
    assert p.eta_s() == pytest.approx(10)
    assert p.detail == "booted in 25 s, running its job"


def test_only_the_benchmarks_own_progress_lines_count(clock):
    p, _, _ = make(clock)
    assert progress.parse_bench_line("progress 40960/100000 reads\n") == (40960, 100000)
    assert progress.parse_bench_line("RESULT blk reads=2000") is None
    assert progress.parse_bench_line("progress x/100 reads") is None
    assert not p.bench_line("TB-BEGIN kind=host-blk rep=1")
    assert p.bench_line("progress 12/1000 packets") and p.done == 12
    p.advance(5000)  # a run never counts past its size
    assert p.done == 1000


def test_a_build_log_tail_turns_ninja_steps_into_progress(tmp_path, clock):
    log_path = tmp_path / "build.log"
    p, out, _ = make(clock, runs=1, per_run=1, unit="steps")
    poll = progress.build_watch(p, str(log_path))
    poll()  # no file yet: nothing, no error
    log_path.write_text("$ make -j2\n[1/2000] Compiling C object a.o\n[15")
    poll()
    assert (p.done, p.total) == (1, 2000)
    with open(log_path, "a") as f:
        f.write("0/2000] Compiling C object b.o\nwarning: x\n")
    poll()
    assert (p.done, p.total) == (150, 2000)
