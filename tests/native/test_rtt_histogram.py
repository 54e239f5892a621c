"""icmp_bench's round-trip histogram (native/bench/rtt_histogram.c) through a small C driver:
bucket layout and its relative error, the percentile definition, clamping and the empty case."""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from testkit import REPO

BENCH_SRC = REPO / "native" / "bench"
DRIVER_SRC = Path(__file__).with_name("rtt_histogram_driver.c")
# Documented in rtt_histogram.h: 64 buckets per power of two from 2^6 to 2^34 ns, midpoints.
REL_ERR = 1 / 128
SUB, MIN_EXP, MAX_EXP = 64, 6, 33
BUCKETS = (MAX_EXP - MIN_EXP + 1) * SUB


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    out = tmp_path_factory.mktemp("rtt-hist") / "rtt_histogram_driver"
    r = subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{BENCH_SRC}", "-o", str(out),
                        str(DRIVER_SRC), str(BENCH_SRC / "rtt_histogram.c")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _run(driver: Path, *args: str, values: Sequence[int] = ()) -> str:
    r = subprocess.run([str(driver), *args], input="".join(f"{v}\n" for v in values),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _percentiles(driver: Path, values: list[int], *pcts: int) -> dict[str, int]:
    out = _run(driver, "samples", *(str(p) for p in pcts), values=values)
    return {k: int(v) for k, v in (field.split("=") for field in out.split())}


def _buckets(driver: Path, values: list[int]) -> list[tuple[int, int]]:
    out = _run(driver, "buckets", values=values).splitlines()
    assert len(out) == len(values)
    return [(int(a), int(b)) for a, b in (line.split() for line in out)]


def test_layout_is_fixed(driver: Path) -> None:
    # 1792 counters plus count, min and max, whatever the number of samples.
    assert _run(driver, "layout") == f"buckets={BUCKETS} bytes={8 * (BUCKETS + 3)}\n"
    assert BUCKETS == 1792


def test_every_bucket_edge_within_the_relative_error(driver: Path) -> None:
    edges, want = [], []
    for e in range(MIN_EXP, MAX_EXP + 1):
        width = 1 << (e - MIN_EXP)
        for s in range(SUB):
            low = (SUB + s) * width
            edges += [low, low + width - 1]
            want += [(e - MIN_EXP) * SUB + s] * 2
    got = _buckets(driver, edges)
    assert [b for b, _ in got] == want  # every bucket used, in order, edges on the right side
    worst = max(abs(rep - v) / v for v, (_, rep) in zip(edges, got, strict=True))
    assert worst <= REL_ERR
    assert worst > REL_ERR * 0.99  # the documented bound is tight, not loose


def test_sweep_is_monotonic_and_within_the_relative_error(driver: Path) -> None:
    values = sorted({int(100 * 1.0007 ** i) for i in range(int(math.log(1e10 / 100, 1.0007)) + 1)})
    got = _buckets(driver, values)
    indices = [b for b, _ in got]
    assert indices == sorted(indices)
    assert all(abs(rep - v) / v <= REL_ERR for v, (_, rep) in zip(values, got, strict=True))


def test_values_outside_the_range_clamp_to_the_end_buckets(driver: Path) -> None:
    got = _buckets(driver, [0, 1, 63, 64, 2**34 - 1, 2**34, 10**12, 2**64 - 1])
    assert [b for b, _ in got] == [0, 0, 0, 0, BUCKETS - 1, BUCKETS - 1, BUCKETS - 1, BUCKETS - 1]
    assert got[0][1] == 64 and got[-1][1] == 127 * 2**27 + 2**26


def test_uniform_1_to_1000_us(driver: Path) -> None:
    values = [k * 1000 for k in range(1, 1001)]
    random.Random(1).shuffle(values)  # order of arrival does not matter
    res = _percentiles(driver, values, 0, 50, 90, 99, 100)
    # Exact: the midpoints of the buckets holding the 500th, 900th and 990th smallest samples.
    assert res == {"n": 1000, "min": 1000, "max": 1_000_000, "p0": 1004, "p50": 501_760, "p90": 897_024,
                   "p99": 987_136, "p100": 1_000_000}  # p100's midpoint 1003520 is clamped to max
    for pct, true in ((50, 500_000), (90, 900_000), (99, 990_000)):
        assert abs(res[f"p{pct}"] - true) / true <= REL_ERR


def test_rank_is_ceil_of_q_times_n(driver: Path) -> None:
    # Below 128 ns buckets are 1 ns wide, so the percentile is the sample itself:
    # ceil(0.5 * 10) = 5th, ceil(0.9 * 10) = 9th, ceil(0.99 * 10) = 10th smallest.
    assert _percentiles(driver, list(range(109, 99, -1)), 50, 90, 99) == {
        "n": 10, "min": 100, "max": 109, "p50": 104, "p90": 108, "p99": 109}
    # ceil(0.5 * 7) = 4th, ceil(0.9 * 7) = 7th.
    assert _percentiles(driver, [101, 102, 103, 104, 105, 106, 107], 50, 90) == {
        "n": 7, "min": 101, "max": 107, "p50": 104, "p90": 107}
    assert _percentiles(driver, [77], 0, 50, 99, 100) == {"n": 1, "min": 77, "max": 77, "p0": 77, "p50": 77,
                                                          "p99": 77, "p100": 77}


def test_one_slow_sample_in_a_hundred_is_above_p99(driver: Path) -> None:
    # The 99th smallest of 100 is still fast; with two slow ones it is slow.
    fast, slow = 10_000, 5_000_000
    assert _percentiles(driver, [fast] * 99 + [slow], 50, 90, 99) == {
        "n": 100, "min": fast, "max": slow, "p50": 10_048, "p90": 10_048, "p99": 10_048}
    # The slow bucket's midpoint (5013504) is above the largest sample: clamped to max.
    assert _percentiles(driver, [slow, slow] + [fast] * 98, 50, 90, 99) == {
        "n": 100, "min": fast, "max": slow, "p50": 10_048, "p90": 10_048, "p99": slow}


@pytest.mark.parametrize("values, want", [
    ([10_000] * 50, 10_000),            # bucket midpoint 10048 above the only value
    ([5, 10], 10),                      # below the range: first bucket (64), clamped to max
    ([20 * 10**9, 30 * 10**9], 20 * 10**9),  # above the range: last bucket (~17.1 s), clamped to min
])
def test_percentiles_stay_within_min_and_max(driver: Path, values: list[int], want: int) -> None:
    res = _percentiles(driver, values, 0, 50, 90, 99, 100)
    assert {res[f"p{p}"] for p in (0, 50, 90, 99, 100)} == {want}
    assert res["min"] == min(values) and res["max"] == max(values)


def test_percent_above_100_counts_as_100(driver: Path) -> None:
    # The 198th of 200 (p99) is 100 ns, the 200th (p100) 120 ns.
    assert _percentiles(driver, [100] * 198 + [110, 120], 99, 100, 250) == {
        "n": 200, "min": 100, "max": 120, "p99": 100, "p100": 120, "p250": 120}


def test_empty_histogram_reports_zeros(driver: Path) -> None:
    assert _percentiles(driver, [], 50, 90, 99) == {"n": 0, "min": 0, "max": 0, "p50": 0, "p90": 0, "p99": 0}


def test_random_samples_against_exact_ranks(driver: Path) -> None:
    rng = random.Random(7)
    values = [max(1, int(rng.lognormvariate(math.log(400_000), 0.8))) for _ in range(20_000)]
    values += [rng.randrange(50_000_000, 900_000_000) for _ in range(37)]  # a slow tail
    res = _percentiles(driver, values, 1, 50, 90, 99, 100)
    ordered = sorted(values)
    for pct in (1, 50, 90, 99, 100):
        true = ordered[-(-pct * len(values) // 100) - 1]  # the ceil(pct * n / 100)-th smallest
        assert abs(res[f"p{pct}"] - true) / true <= REL_ERR, pct
    assert res["min"] <= res["p1"] <= res["p50"] <= res["p90"] <= res["p99"] <= res["p100"] <= res["max"]
