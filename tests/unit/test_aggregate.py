import math

import pandas as pd
import pytest
from unikio import aggregate, results, stats

REFERENCE = pd.DataFrame([
    {"host": "carbon-x1", "arch": "x86_64", "platform": "host", "host_cores": 4, "total_ms": 500.0,
     "pread_syscall_ms": 500.0, "guest_plus_monitor_ms": None},
    {"host": "carbon-x1", "arch": "x86_64", "platform": "qemu-linux-smp", "host_cores": 4,
     "total_ms": 3000.0, "pread_syscall_ms": 800.0, "guest_plus_monitor_ms": 2200.0},
])
# Two original hosts for one arch, and one for another arch that must not appear.
BLK_REFERENCE = pd.DataFrame([
    {"host": "zcu102", "arch": "aarch64", "platform": "host", "host_cores": 4, "total_ms": 1000.0,
     "pread_syscall_ms": 1000.0, "guest_plus_monitor_ms": None},
    {"host": "zcu102", "arch": "aarch64", "platform": "solo5-hvt", "host_cores": 4, "total_ms": 2000.0,
     "pread_syscall_ms": 1500.0, "guest_plus_monitor_ms": 500.0},
    {"host": "xgene1", "arch": "aarch64", "platform": "solo5-hvt", "host_cores": 8, "total_ms": 4000.0,
     "pread_syscall_ms": 3000.0, "guest_plus_monitor_ms": 1000.0},
    {"host": "carbon-x1", "arch": "x86_64", "platform": "solo5-hvt", "host_cores": 4, "total_ms": 800.0,
     "pread_syscall_ms": 600.0, "guest_plus_monitor_ms": 200.0},
])
NET_REFERENCE = pd.DataFrame(
    [{"host": h, "arch": "aarch64", "platform": p, "icmp_data_bytes": s, "packets_per_second": v}
     for h, p, s, v in [
         ("zcu102", "solo5-hvt", 1, 40_000.0), ("zcu102", "solo5-hvt", 1472, 25_000.0),
         ("zcu102", "qemu-linux", 1, 10_000.0),
         ("zcu102", "mirage-solo5", 1, 19_000.0), ("zcu102", "mirage-solo5", 512, 15_000.0),
         ("xgene1", "solo5-hvt", 1, 64_000.0),
         ("xgene1", "mirage-solo5", 1, 29_000.0), ("xgene1", "mirage-solo5", 1024, 17_000.0),
     ]]
    + [{"host": "carbon-x1", "arch": "x86_64", "platform": "solo5-hvt", "icmp_data_bytes": 1,
        "packets_per_second": 90_000.0}]
)
REF_COLUMNS = ["zcu102_pps", "ratio_zcu102", "xgene1_pps", "ratio_xgene1"]


def hardware_kvm(accel, kvm_impl):
    return kvm_impl if kvm_impl is not None else ("kvm_amd" if accel == "kvm" else "")


def runs(totals, pread, platform="qemu-linux-smp", accel="tcg", reads=1000, testbed="native", arch="x86_64",
         block_size=512, provider="", kvm_impl=None):
    rows = [results.blk_row(arch=arch, platform=platform, accel=accel, testbed=testbed, rep=i + 1,
                            host="cpu", result={"reads": reads, "block_size": block_size, "total_ns": t},
                            pread={"pread_calls": reads, "pread_ns": p}, provider=provider,
                            kvm_impl=hardware_kvm(accel, kvm_impl))
            for i, (t, p) in enumerate(zip(totals, pread, strict=True))]
    return pd.DataFrame(rows, columns=results.BLK_COLUMNS)


def net_runs(platform, size, pps, lost, accel="kvm", testbed="native", packets=1000, arch="aarch64",
             provider="", rtt_ns=None, kvm_impl=None):
    """Tidy net rows, one per repetition: pps, lost and (optionally) the mean round trip per run."""
    rtt_ns = rtt_ns or [round(1e9 / p) for p in pps]
    rows = [{"arch": arch, "platform": platform, "provider": provider, "accel": accel, "testbed": testbed,
             "data_bytes": size, "packets": packets, "rep": i + 1, "avg_rtt_ns": r, "min_rtt_ns": r,
             "max_rtt_ns": r, "pps": p, "lost": n, "host": "cpu", "timestamp": "t",
             "kvm_impl": hardware_kvm(accel, kvm_impl), "pipeline_version": "0123456789ab"}
            for i, (p, n, r) in enumerate(zip(pps, lost, rtt_ns, strict=True))]
    return pd.DataFrame(rows, columns=results.NET_COLUMNS)


def test_table_means_spread_breakdown_and_ratio():
    table = aggregate.blk_table(runs([10_000_000, 14_000_000], [4_000_000, 4_000_000], accel="kvm"), REFERENCE,
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
    assert row["note"] == ""


def test_skipped_platform_keeps_its_row_and_reason():
    table = aggregate.blk_table(runs([1, 2], [1, 1]), REFERENCE, "x86_64",
                                ["host", "qemu-linux-smp"], {"host": "needs root"})
    host = table[table["platform"] == "host"].iloc[0]
    assert host["note"] == "not measured: needs root"
    assert host["carbon-x1_total_ms"] == 500.0
    assert math.isnan(host["ratio_carbon-x1"]) and pd.isna(host["runs"]) and pd.isna(host["accel"])


def test_a_skipped_provider_gets_its_own_row_beside_the_measured_one():
    df = pd.concat([runs([10, 12], [5, 5], platform="solo5-hvt", accel="kvm", provider="builtin"),
                    runs([2, 3], [1, 1], platform="solo5-spt", accel="none", provider="builtin")])
    why = "the upstream Solo5 source cannot be fetched from solo5.upstream.git (offline)"
    skipped = {"solo5-hvt (upstream)": why, "solo5-spt (upstream)": why}
    table = aggregate.blk_table(df, BLK_REFERENCE, "x86_64", ["solo5-hvt", "solo5-spt"], skipped)
    assert list(table["platform"]) == ["solo5-hvt (upstream)", "solo5-hvt (builtin)", "solo5-spt (upstream)",
                                       "solo5-spt (builtin)"]
    assert list(table["note"].fillna("")) == [f"not measured: {why}", "", f"not measured: {why}",
                                              "the unikernel as a seccomp-confined process: no VM exits"]
    # The study's solo5-hvt value stands beside both providers; it never measured spt.
    assert list(table["carbon-x1_total_ms"].fillna(0)) == [800.0, 800.0, 0, 0]
    assert list(table["runs"].fillna(0)) == [0, 2, 0, 2]


def test_tcg_and_kvm_rows_are_never_mixed():
    df = pd.concat([runs([10, 20], [1, 1], accel="tcg"), runs([30, 40], [1, 1], accel="kvm")])
    table = aggregate.blk_table(df, REFERENCE, "x86_64", ["qemu-linux-smp"], {})
    assert sorted(table["accel"]) == ["kvm", "tcg"]


def test_blk_ratios_only_for_hardware_rows_and_emulated_rows_last():
    df = pd.concat([
        runs([5_000_000], [4_000_000], platform="solo5-hvt", accel="kvm", testbed="emulated", arch="aarch64",
             provider="builtin"),
        runs([10_000_000, 30_000_000], [6_000_000, 6_000_000], platform="solo5-hvt", accel="kvm",
             arch="aarch64", provider="builtin"),
        runs([40_000_000], [4_000_000], platform="qemu-linux-smp", accel="tcg", arch="aarch64"),
        runs([1, 2], [1, 1], platform="solo5-hvt", accel="kvm"),  # another arch: ignored
    ])
    table = aggregate.blk_table(df, BLK_REFERENCE, "aarch64", ["host", "solo5-hvt", "qemu-linux-smp"],
                                {"host": "no root"})
    assert list(table.columns) == aggregate.BLK_TABLE_COLUMNS + [
        "zcu102_total_ms", "ratio_zcu102", "xgene1_total_ms", "ratio_xgene1"]
    assert list(zip(table["platform"], table["testbed"].fillna(""), strict=True)) == [
        ("host", ""), ("solo5-hvt (builtin)", "native"), ("qemu-linux-smp", "native"),
        ("solo5-hvt (builtin)", "emulated")]
    host, kvm, tcg, emulated = (table.iloc[i] for i in range(4))
    # Not measured: the study's values, no ratio (xgene1 has no host row).
    assert host["zcu102_total_ms"] == 1000.0 and math.isnan(host["xgene1_total_ms"])
    assert math.isnan(host["ratio_zcu102"])
    # KVM on hardware: 20 us per read against 2000 ms / 100,000 = 20 us and 4000 ms / 100,000 = 40 us.
    assert (kvm["runs"], kvm["total_ms"], kvm["us_per_read"]) == (2, 20.0, 20.0)
    assert kvm["total_sd"] == pytest.approx(math.sqrt(200))
    assert kvm["cv_total"] == pytest.approx(math.sqrt(200) / 20)
    assert kvm["ratio_zcu102"] == pytest.approx(1.0) and kvm["ratio_xgene1"] == pytest.approx(0.5)
    # TCG and the emulated testbed: reference kept, ratio empty, a single run has no spread.
    assert tcg["note"] == emulated["note"] == aggregate.NOT_PERFORMANCE
    assert math.isnan(tcg["ratio_zcu102"]) and math.isnan(emulated["ratio_zcu102"])
    assert math.isnan(emulated["ratio_xgene1"]) and emulated["xgene1_total_ms"] == 4000.0
    assert emulated["guest_monitor_ms"] == 1.0 and math.isnan(emulated["total_sd"])
    assert math.isnan(emulated["cv_total"])


def test_blk_ratio_needs_the_studys_block_size():
    table = aggregate.blk_table(runs([10_000_000], [1], platform="solo5-hvt", accel="kvm", arch="aarch64",
                                     block_size=4096), BLK_REFERENCE, "aarch64", ["solo5-hvt"], {})
    assert table.iloc[0]["block_size"] == 4096 and table.iloc[0]["zcu102_total_ms"] == 2000.0
    assert math.isnan(table.iloc[0]["ratio_zcu102"])


def test_writers_and_figure(tmp_path):
    table = aggregate.blk_table(runs([10_000_000, 12_000_000], [4_000_000, 5_000_000]), REFERENCE,
                                "x86_64", ["qemu-linux-smp", "host"], {"host": "no root"})
    aggregate.write_table(table, tmp_path / "blk_x86_64", "caption")
    assert (tmp_path / "blk_x86_64.md").read_text().startswith("caption")
    assert "\\begin{table}" in (tmp_path / "blk_x86_64.tex").read_text()
    back = pd.read_csv(tmp_path / "blk_x86_64.csv", keep_default_na=False, na_values=[""])
    assert list(back["block_size"].astype("Int64")) == [512, pd.NA]
    assert ",512," in (tmp_path / "blk_x86_64.csv").read_text()  # counts stay integers beside empty cells
    fig = aggregate.blk_figure(back, REFERENCE, "x86_64", tmp_path / "fig")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert (tmp_path / "fig.pdf").stat().st_size > 1000
    assert fig.get_suptitle() == "Block reads (x86_64): time per 512-byte O_DIRECT read"
    assert [ax.get_title() for ax in fig.axes] == ["this pipeline: native", "original study: carbon-x1"]
    assert footnotes(fig) == ["not measured: host (no root)"]


def footnotes(fig):
    """Figure-level texts other than the title."""
    return [t.get_text() for t in fig.texts if t.get_text() != fig.get_suptitle()]


def blk_figure_table(second_block_size):
    df = pd.concat([
        runs([10_000_000], [6_000_000], platform="solo5-hvt", accel="kvm", arch="aarch64"),
        runs([40_000_000], [4_000_000], platform="qemu-linux-smp", accel="kvm", arch="aarch64",
             block_size=second_block_size),
        runs([5_000_000], [4_000_000], platform="solo5-hvt", accel="kvm", testbed="emulated", arch="aarch64"),
    ])
    return aggregate.blk_table(df, BLK_REFERENCE, "aarch64", ["host", "solo5-hvt", "qemu-linux-smp"],
                               {"host": "no root"})


def test_blk_figure_panels_and_block_size_in_title(tmp_path):
    fig = aggregate.blk_figure(blk_figure_table(4096), BLK_REFERENCE, "aarch64", tmp_path / "blk")
    for ext in ("png", "pdf"):
        assert (tmp_path / f"blk.{ext}").stat().st_size > 1000
    assert [ax.get_title() for ax in fig.axes] == [
        "this pipeline: native", "this pipeline: emulated testbed\n(not performance results)",
        "original study: zcu102", "original study: xgene1"]
    title = fig.get_suptitle()
    assert "block sizes differ (512 B: solo5-hvt; 4096 B: qemu-linux-smp; the study's: 512-byte)" in title
    assert "512-byte O_DIRECT" not in title
    # Our native panel: µs per read split into pread and the rest, bar by bar.
    native = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in native.patches]
    assert heights == [6.0, 4.0, 4.0, 36.0]  # pread bars (10 and 40 us per read), then the rest
    assert [t.get_text() for t in native.get_xticklabels()] == ["solo5-hvt", "qemu-linux-smp"]
    emulated_labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert emulated_labels == ["solo5-hvt\n[kvm, emulated]"]
    # The study's panel for zcu102 shows its two platforms, in µs per read.
    zcu = fig.axes[2]
    assert [t.get_text() for t in zcu.get_xticklabels()] == ["host", "solo5-hvt"]
    assert [round(p.get_height(), 6) for p in zcu.patches] == [10.0, 15.0, 0.0, 5.0]


def test_blk_figure_title_with_one_block_size(tmp_path):
    fig = aggregate.blk_figure(blk_figure_table(512), BLK_REFERENCE, "aarch64", tmp_path / "blk")
    assert fig.get_suptitle() == "Block reads (aarch64): time per 512-byte O_DIRECT read"
    table = blk_figure_table(512)
    other = table.assign(block_size=table["block_size"].replace(512, 4096))
    fig = aggregate.blk_figure(other, BLK_REFERENCE, "aarch64", tmp_path / "blk")
    assert fig.get_suptitle() == ("Block reads (aarch64): time per 4096-byte O_DIRECT read "
                                        "(the study's: 512-byte)")


def net_table():
    df = pd.concat([
        net_runs("qemu-linux", 1, [1000.0, 3000.0], [0, 0], testbed="emulated"),
        net_runs("solo5-hvt", 1472, [20_000.0, 20_000.0], [0, 5]),
        net_runs("solo5-hvt", 1, [30_000.0, 34_000.0], [2, 0], rtt_ns=[33_000, 29_000]),
        net_runs("qemu-linux", 1, [500.0, 700.0], [1, 1], accel="tcg"),
        net_runs("solo5-hvt", 1, [1.0], [0], arch="x86_64"),  # another arch: ignored
    ])
    return aggregate.net_table(df, NET_REFERENCE, "aarch64", ["qemu-linux", "solo5-hvt", "mirage-solo5", "lwip"],
                               {"mirage-solo5": "needs MirageOS"})


def test_net_table_columns_and_row_order():
    table = net_table()
    assert list(table.columns) == aggregate.NET_TABLE_COLUMNS + REF_COLUMNS
    assert "lost" not in table.columns
    assert [(r.platform, r.accel, r.testbed, r.data_bytes) for r in table.astype(object).fillna("").itertuples()] == [
        ("qemu-linux", "tcg", "native", 1),
        ("solo5-hvt", "kvm", "native", 1),
        ("solo5-hvt", "kvm", "native", 1472),
        ("mirage-solo5", "", "", 1),
        ("mirage-solo5", "", "", 512),
        ("mirage-solo5", "", "", 1024),
        ("lwip", "", "", ""),
        ("qemu-linux", "kvm", "emulated", 1),  # the emulated testbed last
    ]


def test_net_table_means_spread_loss_and_ratios():
    table = net_table()
    small, large = table.iloc[1], table.iloc[2]
    assert (small["runs"], small["packets"]) == (2, 1000)
    assert small["pps"] == 32_000.0
    assert small["pps_sd"] == pytest.approx(math.sqrt(8e6))  # deviations of ±2000 over n - 1 = 1
    assert small["avg_rtt_us"] == 31.0
    assert small["lost_pct"] == pytest.approx(0.1)  # 2 lost of 2 × 1000 sent
    assert small["zcu102_pps"] == 40_000.0 and small["ratio_zcu102"] == pytest.approx(0.8)
    assert small["xgene1_pps"] == 64_000.0 and small["ratio_xgene1"] == pytest.approx(0.5)
    assert small["note"] == ""
    assert large["pps_sd"] == 0.0 and large["lost_pct"] == pytest.approx(0.25)  # 5 of 2000
    assert large["ratio_zcu102"] == pytest.approx(0.8)
    assert math.isnan(large["xgene1_pps"]) and math.isnan(large["ratio_xgene1"])


def test_net_table_no_ratio_for_tcg_or_emulated_rows():
    table = net_table()
    tcg, emulated = table.iloc[0], table.iloc[-1]
    assert (tcg["pps"], tcg["lost_pct"]) == (600.0, 0.1)
    assert emulated["pps"] == 2000.0 and emulated["lost_pct"] == 0.0
    for row in (tcg, emulated):
        assert row["note"] == aggregate.NOT_PERFORMANCE
        assert row["zcu102_pps"] == 10_000.0 and math.isnan(row["xgene1_pps"])
        assert math.isnan(row["ratio_zcu102"]) and math.isnan(row["ratio_xgene1"])


def test_net_table_keeps_the_studys_values_for_unmeasured_platforms():
    table = net_table()
    mirage = table[table["platform"] == "mirage-solo5"]
    assert list(mirage["data_bytes"]) == [1, 512, 1024]  # every size either original host reports
    assert (mirage["note"] == "not measured: needs MirageOS").all()
    assert list(mirage["zcu102_pps"].fillna(0)) == [19_000.0, 15_000.0, 0]
    assert list(mirage["xgene1_pps"].fillna(0)) == [29_000.0, 0, 17_000.0]
    ours = ["runs", "packets", "pps", "pps_sd", "avg_rtt_us", "lost_pct", "ratio_zcu102", "ratio_xgene1"]
    assert mirage[ours].isna().all().all()
    # A platform the study never ran: one row saying why, nothing else.
    lwip = table[table["platform"] == "lwip"].iloc[0]
    assert lwip["note"] == "not measured: no runs" and lwip[["data_bytes"] + REF_COLUMNS].isna().all()


def test_the_full_stack_stand_in_sits_beside_the_studys_mirage_values():
    df = pd.concat([net_runs("lwip-solo5-spt", 1, [10_000, 10_400], [0, 0], accel="none", provider="builtin"),
                    net_runs("solo5-spt", 1, [20_000, 20_400], [0, 0], accel="none", provider="builtin")])
    table = aggregate.net_table(df, NET_REFERENCE, "aarch64", ["solo5-spt", "lwip-solo5-spt", "mirage-solo5"],
                                {"mirage-solo5": "needs MirageOS"})
    lwip = table[table["platform"] == "lwip-solo5-spt (builtin)"].iloc[0]
    assert lwip["note"] == "full-stack unikernel (lwIP) on spt, a stand-in for mirage-solo5"
    assert (lwip["zcu102_pps"], lwip["xgene1_pps"]) == (19_000.0, 29_000.0)
    assert lwip["ratio_zcu102"] == pytest.approx(10_200 / 19_000)
    # mirage-solo5 itself stays, unmeasured, with why; spt has no study value.
    assert (table.loc[table["platform"] == "mirage-solo5", "note"] == "not measured: needs MirageOS").all()
    assert math.isnan(table[table["platform"] == "solo5-spt (builtin)"].iloc[0]["zcu102_pps"])


def test_net_table_with_no_runs_at_all_has_every_column():
    table = aggregate.net_table(pd.DataFrame(columns=results.NET_COLUMNS), NET_REFERENCE, "aarch64",
                                ["solo5-hvt"], {"solo5-hvt": "needs KVM"})
    assert list(table.columns) == aggregate.NET_TABLE_COLUMNS + REF_COLUMNS
    assert list(table["data_bytes"]) == [1, 1472]
    assert list(table["zcu102_pps"]) == [40_000.0, 25_000.0]


def test_net_writers_and_figure(tmp_path):
    aggregate.write_table(net_table(), tmp_path / "net_aarch64", "caption")
    text = (tmp_path / "net_aarch64.csv").read_text()
    assert "lost_pct" in text and ",1472," in text and "1472.0" not in text
    md = (tmp_path / "net_aarch64.md").read_text()
    assert " lost_pct |" in md and "not measured: needs MirageOS" in md
    back = pd.read_csv(tmp_path / "net_aarch64.csv", keep_default_na=False, na_values=[""])
    fig = aggregate.net_figure(back, NET_REFERENCE, "aarch64", tmp_path / "fig")
    for ext in ("png", "pdf"):
        assert (tmp_path / f"fig.{ext}").stat().st_size > 1000
    assert fig.get_suptitle() == "ICMP echo round trips (aarch64)"
    # Our native rows differ 53x (600 and 32,000 pps): that panel is log scale, the others linear.
    assert [ax.get_title() for ax in fig.axes] == [
        "this pipeline: native (log scale)", "this pipeline: emulated testbed\n(not performance results)",
        "original study: zcu102", "original study: xgene1"]
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear", "linear", "linear"]
    # Each unmeasured platform once, with its reason.
    assert footnotes(fig) == ["not measured: mirage-solo5 (needs MirageOS); lwip (no runs)"]
    native, emulated, zcu, xgene = fig.axes
    assert [t.get_text() for t in native.get_xticklabels()] == ["1", "1472"]
    # Bars per label over the sizes: qemu-linux (tcg) only at 1 byte, solo5-hvt at both.
    heights = [p.get_height() for p in native.patches]
    assert heights[0] == 600.0 and math.isnan(heights[1]) and heights[2:] == [32_000.0, 20_000.0]
    assert [p.get_height() for p in emulated.patches] == [2000.0]
    assert [t.get_text() for t in zcu.get_xticklabels()] == ["1", "512", "1472"]
    # One colour per platform in every panel, ours and the study's alike.
    colour = aggregate.platform_colour
    assert native.patches[0].get_facecolor() == zcu.patches[3].get_facecolor()  # qemu-linux: the second of three
    assert {p.get_facecolor() for p in xgene.patches[:2]} == {zcu.patches[0].get_facecolor()}  # solo5-hvt
    assert colour("qemu-linux [tcg, emulated]") == colour("qemu-linux") != colour("solo5-hvt")
    # No legend inside a panel: one figure legend below them, each platform once.
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "qemu-linux", "solo5-hvt", "mirage-solo5", "95% CI (ours)", "not a performance result"]
    assert legend.get_window_extent().y1 < min(ax.get_window_extent().y0 for ax in fig.axes)


def overhead_runs():
    host = runs([2_000_000, 2_000_000], [1_500_000, 1_500_000], platform="host", accel="none")
    host["provider"] = None  # as read back from the CSV: an empty provider is NaN
    return pd.concat([
        runs([3_000_000, 5_000_000], [1_000_000, 1_000_000], platform="solo5-hvt", accel="kvm",
             provider="builtin"),
        host,
        runs([9_000_000], [1_000_000], platform="qemu-linux-smp", accel="kvm"),  # not compared with the floor
        runs([7_000_000], [1_000_000], platform="solo5-hvt", accel="kvm", arch="aarch64", testbed="emulated"),
    ])


def test_overhead_table_per_read_and_over_the_floor():
    table = aggregate.overhead_table(overhead_runs(), "x86_64", {"n": 1000, "total_ns": 1_500_000})
    assert list(table.columns) == aggregate.OVERHEAD_TABLE_COLUMNS
    assert list(table["platform"]) == ["host", "solo5-hvt (builtin)"]
    host, tender = table.iloc[0], table.iloc[1]
    assert (host["runs"], host["total_ns_per_read"], host["pread_ns_per_read"]) == (2, 2000.0, 1500.0)
    assert host["overhead_ns_per_read"] == 500.0 and math.isnan(host["overhead_over_floor"])
    assert (tender["runs"], tender["total_ns_per_read"], tender["pread_ns_per_read"]) == (2, 4000.0, 1000.0)
    assert tender["overhead_ns_per_read"] == 3000.0
    assert tender["exit_floor_ns"] == 1500.0 and tender["overhead_over_floor"] == 2.0
    # spt: a process, no VM exit behind a read, so nothing to put over the exit floor.
    spt = runs([1_100_000, 1_300_000], [1_000_000, 1_200_000], platform="solo5-spt", accel="none",
               provider="builtin")
    table = aggregate.overhead_table(pd.concat([overhead_runs(), spt]), "x86_64", {"n": 1000, "total_ns": 1_500_000})
    row = table[table["platform"] == "solo5-spt (builtin)"].iloc[0]
    assert row["overhead_ns_per_read"] == 100.0 and math.isnan(row["overhead_over_floor"])
    assert row["note"] == "the unikernel as a seccomp-confined process: no VM exits"


def test_overhead_table_other_arch_and_empty():
    table = aggregate.overhead_table(overhead_runs(), "aarch64", {"n": 10, "total_ns": 20_000})
    assert list(zip(table["platform"], table["testbed"], strict=True)) == [("solo5-hvt", "emulated")]
    assert table.iloc[0]["overhead_ns_per_read"] == 6000.0 and table.iloc[0]["overhead_over_floor"] == 3.0
    empty = aggregate.overhead_table(overhead_runs(), "riscv64", {"n": 1, "total_ns": 1})
    assert empty.empty and list(empty.columns) == aggregate.OVERHEAD_TABLE_COLUMNS


def test_software_assisted_kvm_rows_are_marked_like_emulated_ones(tmp_path):
    """kvm_pvm emulates the guest's kernel code: its rows get a note, no ratio, a hatched bar of their own."""
    df = pd.concat([
        runs([10_000_000, 14_000_000], [4_000_000, 4_000_000], platform="solo5-hvt", accel="kvm",
             provider="builtin", kvm_impl="kvm_pvm"),
        runs([20_000_000], [4_000_000], platform="solo5-hvt", accel="kvm", provider="builtin",
             kvm_impl="kvm_amd-nested"),
    ])
    table = aggregate.blk_table(df, BLK_REFERENCE, "x86_64", ["solo5-hvt"], {})
    assert list(zip(table["kvm_impl"], table["runs"], strict=True)) == [("kvm_amd-nested", 1), ("kvm_pvm", 2)]
    hardware, pvm = table.iloc[0], table.iloc[1]
    assert pvm["note"] == "software-assisted KVM (kvm_pvm): not a performance result"
    assert math.isnan(pvm["ratio_carbon-x1"]) and pvm["carbon-x1_total_ms"] == 800.0
    assert hardware["note"] == "" and hardware["ratio_carbon-x1"] == pytest.approx(2.5)  # 20 us against 8 us
    fig = aggregate.blk_figure(table, BLK_REFERENCE, "x86_64", tmp_path / "blk")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "solo5-hvt (builtin)", "solo5-hvt (builtin)\n[kvm_pvm]"]
    assert [p.get_hatch() or "" for p in fig.axes[0].patches] == ["", "//", "", "//"]
    overhead = aggregate.overhead_table(df, "x86_64", {"n": 10, "total_ns": 100})
    assert list(overhead["note"]) == ["", "software-assisted KVM (kvm_pvm): not a performance result"]
    net = aggregate.net_table(net_runs("solo5-hvt", 1, [1000.0], [0], arch="x86_64", kvm_impl="kvm_pvm"),
                              NET_REFERENCE, "x86_64", ["solo5-hvt"], {})
    assert net.iloc[0]["note"].startswith("software-assisted KVM (kvm_pvm)")
    assert math.isnan(net.iloc[0]["ratio_carbon-x1"]) and net.iloc[0]["carbon-x1_pps"] == 90_000.0


def test_tables_name_the_pipeline_versions_of_their_rows():
    df = runs([10, 20], [1, 1])
    df.loc[1, "pipeline_version"] = "fedcba987654+dirty.1234abcd"
    table = aggregate.blk_table(df, REFERENCE, "x86_64", ["qemu-linux-smp"], {})
    versions = table.iloc[0]["pipeline_version"].split()
    assert versions[1] == "fedcba987654+dirty.1234abcd" and len(versions) == 2
    caption = aggregate.caption("blk", df, "x86_64")
    assert caption.endswith(f"Measured by pipeline {versions[0]} fedcba987654+dirty.1234abcd.")
    assert aggregate.caption("blk", df, "aarch64").endswith("Measured by pipeline (no rows).")


def test_rows_measured_on_a_busy_machine_are_marked_with_the_load_seen():
    df = runs([10_000_000, 12_000_000], [4_000_000, 5_000_000], accel="kvm")
    # After the measurement the load holds its own threads: only the load before counts.
    df["load_before"], df["load_after"] = [0.2, 1.3], [3.0, 3.0]
    busy = aggregate.Busy(load_per_core=0.5, cores=2)
    row = aggregate.blk_table(df, REFERENCE, "x86_64", ["qemu-linux-smp"], {}, busy).iloc[0]
    assert row["load_before_max"] == 1.3
    assert row["note"] == "busy machine (1-min load 1.30 on 2 cores)"
    quiet = aggregate.blk_table(df.assign(load_before=[0.2, 0.9]), REFERENCE, "x86_64", ["qemu-linux-smp"], {},
                                busy).iloc[0]
    assert quiet["note"] == "" and quiet["load_before_max"] == 0.9
    net = net_runs("solo5-hvt", 1, [1000.0, 1100.0], [0, 0], arch="x86_64", kvm_impl="kvm_pvm")
    net["load_before"] = [2.5, 0.1]
    note = aggregate.net_table(net, NET_REFERENCE, "x86_64", ["solo5-hvt"], {}, busy).iloc[0]["note"]
    assert note == ("software-assisted KVM (kvm_pvm): not a performance result; "
                    "busy machine (1-min load 2.50 on 2 cores)")


def test_table_statistics_are_those_of_the_one_definition():
    totals = [10_000_000, 12_000_000, 17_000_000]
    row = aggregate.blk_table(runs(totals, [4_000_000] * 3, accel="kvm"), REFERENCE, "x86_64",
                              ["qemu-linux-smp"], {}).iloc[0]
    summary = stats.summary([10.0, 12.0, 17.0])
    assert row["total_median"] == 12.0 and row["runs"] == 3
    assert (row["total_ci_low"], row["total_ci_high"]) == (summary["ci_low"], summary["ci_high"])
    assert row["cv_total"] == pytest.approx(summary["sd"] / 13.0)
    assert row["total_ci_low"] < 13.0 < row["total_ci_high"]
    assert row["pread_ci_low"] == row["pread_ci_high"] == 4.0
