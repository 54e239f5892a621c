import math

import pandas as pd
import pytest
from unikio import aggregate, results

REFERENCE = pd.DataFrame([
    {"host": "carbon-x1", "arch": "x86_64", "platform": "host", "host_cores": 4, "total_ms": 500.0,
     "pread_syscall_ms": 500.0, "guest_plus_monitor_ms": None},
    {"host": "carbon-x1", "arch": "x86_64", "platform": "qemu-linux-smp", "host_cores": 4,
     "total_ms": 3000.0, "pread_syscall_ms": 800.0, "guest_plus_monitor_ms": 2200.0},
])


def runs(totals, pread, platform="qemu-linux-smp", accel="tcg", reads=1000):
    rows = [results.blk_row(arch="x86_64", platform=platform, accel=accel, testbed="native", rep=i + 1,
                            host="cpu", result={"reads": reads, "block_size": 512, "total_ns": t},
                            pread={"pread_calls": reads, "pread_ns": p})
            for i, (t, p) in enumerate(zip(totals, pread, strict=False))]
    return pd.DataFrame(rows, columns=results.BLK_COLUMNS)


def test_table_means_spread_breakdown_and_ratio():
    table = aggregate.blk_table(runs([10_000_000, 14_000_000], [4_000_000, 4_000_000]), REFERENCE,
                                "x86_64", ["qemu-linux-smp"], {})
    row = table.iloc[0]
    assert row["total_ms"] == pytest.approx(12.0)
    assert row["total_sd"] == pytest.approx(math.sqrt(8))
    assert row["pread_ms"] == pytest.approx(4.0)
    assert row["guest_monitor_ms"] == pytest.approx(8.0)
    assert row["us_per_read"] == pytest.approx(12.0)
    # original: 3000 ms / 100,000 reads = 30 us per read
    assert row["ratio_carbon-x1"] == pytest.approx(0.4)
    assert row["carbon-x1_total_ms"] == 3000.0
    assert "emulated" in row["note"]


def test_skipped_platform_keeps_its_row_and_reason():
    table = aggregate.blk_table(runs([1, 2], [1, 1]), REFERENCE, "x86_64",
                                ["host", "qemu-linux-smp"], {"host": "needs root"})
    host = table[table["platform"] == "host"].iloc[0]
    assert host["note"] == "not measured: needs root"
    assert host["carbon-x1_total_ms"] == 500.0


def test_tcg_and_kvm_rows_are_never_mixed():
    df = pd.concat([runs([10, 20], [1, 1], accel="tcg"), runs([30, 40], [1, 1], accel="kvm")])
    table = aggregate.blk_table(df, REFERENCE, "x86_64", ["qemu-linux-smp"], {})
    assert sorted(table["accel"]) == ["kvm", "tcg"]


def test_writers_and_figure(tmp_path):
    table = aggregate.blk_table(runs([10_000_000, 12_000_000], [4_000_000, 5_000_000]), REFERENCE,
                                "x86_64", ["qemu-linux-smp", "host"], {"host": "no root"})
    aggregate.write_table(table, tmp_path / "blk_x86_64", "caption")
    assert (tmp_path / "blk_x86_64.md").read_text().startswith("caption")
    assert "\\begin{table}" in (tmp_path / "blk_x86_64.tex").read_text()
    back = pd.read_csv(tmp_path / "blk_x86_64.csv")
    aggregate.blk_figure(back, REFERENCE, "x86_64", tmp_path / "fig")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert (tmp_path / "fig.pdf").stat().st_size > 1000
