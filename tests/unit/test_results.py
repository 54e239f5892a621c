import re

import pytest
from unikio import results


def test_parse_blk_result_among_other_output():
    text = "booting\nRESULT blk reads=100 block_size=512 total_ns=123456\nbye\n"
    assert results.parse_blk_result(text) == {"reads": 100, "block_size": 512, "total_ns": 123456}


@pytest.mark.parametrize("text", [
    "", "RESULT blk reads=1 block_size=512\n",
    "RESULT blk reads=1 block_size=512 total_ns=5\nRESULT blk reads=1 block_size=512 total_ns=6\n",
    "RESULT blk reads=x block_size=512 total_ns=5\n",
])
def test_parse_blk_result_rejects_malformed(text):
    with pytest.raises(ValueError):
        results.parse_blk_result(text)


def test_parse_pread_stats():
    assert results.parse_pread_stats("pread_calls=7 pread_ns=900\n") == {"pread_calls": 7, "pread_ns": 900}
    with pytest.raises(ValueError):
        results.parse_pread_stats("pread_calls=7\n")


def test_row_has_every_contract_column(tmp_path):
    row = results.blk_row(arch="x86_64", platform="host", accel="none", testbed="native", rep=1,
                          host="cpu", result={"reads": 2, "block_size": 512, "total_ns": 10},
                          pread=None)
    assert list(row) == results.BLK_COLUMNS
    results.write_row(tmp_path / "row.json", row)


def test_parse_exit_floor():
    assert results.parse_exit_floor("exit_floor n=10 total_ns=80000 ns_per_exit=8000\n") == {
        "n": 10, "total_ns": 80000}
    with pytest.raises(ValueError):
        results.parse_exit_floor("exit_floor n=10\n")


def test_parse_pread_stats_reads_the_window_of_the_four_field_line():
    # Monitors write the benchmark window first, then the setup reads before the last write.
    line = "pread_calls=1000 pread_ns=5000 setup_pread_calls=1 setup_pread_ns=70\n"
    assert results.parse_pread_stats(line) == {"pread_calls": 1000, "pread_ns": 5000}


NET = ("RESULT net size=56 packets=1000 received=996 lost=4 corrupt=1 ignored=3 "
       "avg_ns=438603 min_ns=422040 max_ns=501439 pps=2279.96 p50_ns=434176 p90_ns=450560 p99_ns=497664")


def test_parse_net_result_with_corrupt():
    assert results.parse_net_result("icmp_bench: note\n" + NET + "\n") == {
        "size": 56, "packets": 1000, "received": 996, "lost": 4, "corrupt": 1, "ignored": 3,
        "avg_ns": 438603, "min_ns": 422040, "max_ns": 501439, "pps": 2279.96,
        "p50_ns": 434176, "p90_ns": 450560, "p99_ns": 497664,
    }


@pytest.mark.parametrize("lost, corrupt", [(4, 0), (4, 4), (1000, 1000)])
def test_parse_net_result_corrupt_up_to_lost(lost, corrupt):
    line = (f"RESULT net size=0 packets=1000 received={1000 - lost} lost={lost} corrupt={corrupt} ignored=0 "
            + ("avg_ns=500 min_ns=400 max_ns=600 pps=2000000.00 p50_ns=500 p90_ns=580 p99_ns=600" if lost < 1000
               else "avg_ns=0 min_ns=0 max_ns=0 pps=0.00 p50_ns=0 p90_ns=0 p99_ns=0"))
    res = results.parse_net_result(line)
    assert (res["lost"], res["corrupt"]) == (lost, corrupt)


@pytest.mark.parametrize("text, problem", [
    (NET.replace("corrupt=1", "corrupt=5"), "corrupt > lost"),
    (NET.replace("lost=4 corrupt=1", "lost=4"), "malformed"),           # the field is required
    (NET.replace("lost=4 corrupt=1", "corrupt=1 lost=4"), "malformed"),  # right after lost=
    (NET.replace("corrupt=1", "corrupt=-1"), "malformed"),
    (NET.replace("corrupt=1", "corrupt=x"), "malformed"),
    (NET.replace("received=996", "received=997"), "received \\+ lost != packets"),
])
def test_parse_net_result_rejects(text, problem):
    with pytest.raises(ValueError, match=problem):
        results.parse_net_result(text)


def test_parse_net_result_min_and_max_may_be_percentiles():
    # icmp_bench clamps a bucket's value to the exact min and max, so they may coincide.
    line = NET.replace("p50_ns=434176 p90_ns=450560 p99_ns=497664", "p50_ns=422040 p90_ns=422040 p99_ns=501439")
    assert results.parse_net_result(line)["p50_ns"] == 422040


NET_ALL_LOST = ("RESULT net size=8 packets=5 received=0 lost=5 corrupt=0 ignored=0 "
                "avg_ns=0 min_ns=0 max_ns=0 pps=0.00 p50_ns=0 p90_ns=0 p99_ns=0")


def test_parse_net_result_all_lost_has_zero_percentiles():
    res = results.parse_net_result(NET_ALL_LOST)
    assert (res["received"], res["p50_ns"], res["p90_ns"], res["p99_ns"]) == (0, 0, 0, 0)


ORDER = "not min <= p50 <= p90 <= p99 <= max"


@pytest.mark.parametrize("text, problem", [
    # Every percentile is required, in this order, right after pps=.
    (NET.replace(" p50_ns=434176", ""), "malformed"),
    (NET.replace(" p90_ns=450560", ""), "malformed"),
    (NET.replace(" p99_ns=497664", ""), "malformed"),
    (NET.replace(" p50_ns=434176 p90_ns=450560 p99_ns=497664", ""), "malformed"),
    (NET.replace("p50_ns=434176 p90_ns=450560", "p90_ns=450560 p50_ns=434176"), "malformed"),
    (NET.replace("pps=2279.96 p50_ns=434176", "p50_ns=434176 pps=2279.96"), "malformed"),
    (NET.replace("p99_ns=497664", "p99_ns=497664.5"), "malformed"),
    (NET.replace("p90_ns=450560", "p90_ns=-1"), "malformed"),
    (NET + " p999_ns=500000", "malformed"),
    # Out of order, or outside [min, max].
    (NET.replace("p50_ns=434176", "p50_ns=460000"), ORDER),   # p50 > p90
    (NET.replace("p90_ns=450560", "p90_ns=497665"), ORDER),   # p90 > p99
    (NET.replace("p99_ns=497664", "p99_ns=501440"), ORDER),   # p99 > max
    (NET.replace("p50_ns=434176", "p50_ns=422039"), ORDER),   # p50 < min
    (NET.replace("p50_ns=434176 p90_ns=450560 p99_ns=497664", "p50_ns=0 p90_ns=0 p99_ns=0"), ORDER),
    # Nothing received: nothing to take percentiles of.
    (NET_ALL_LOST.replace("p50_ns=0", "p50_ns=1"), "times without received packets"),
    (NET_ALL_LOST.replace("p99_ns=0", "p99_ns=7"), "times without received packets"),
])
def test_parse_net_result_rejects_bad_percentiles(text, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        results.parse_net_result(text)
