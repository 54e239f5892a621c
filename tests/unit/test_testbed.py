"""Tests for unikio.testbed: QEMU argv, job images and scripts, transcript parsing (no root, no QEMU)."""

from __future__ import annotations

import gzip
import io
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from unikio import guest, net, progress, results, testbed
from unikio.testbed import TestbedError

LOG = "/r/console.log"
KVM = "kvm_arm64-vhe"

# A transcript as the guest init relays it: one boot running all four kinds,
# with kernel noise and the tender's own lines around the framed results.
TRANSCRIPT = """\
[    5.1] loop: module loaded
TB-BEGIN kind=host-blk rep=1
RESULT blk reads=200 block_size=512 total_ns=121800848
TB-END kind=host-blk rep=1 status=0
TB-BEGIN kind=host-blk rep=2
RESULT blk reads=200 block_size=512 total_ns=106913504
TB-END kind=host-blk rep=2 status=0
TB-BEGIN kind=tender-blk rep=1
RESULT blk reads=200 block_size=512 total_ns=158243392
pread_calls=200 pread_ns=114630176
TB-END kind=tender-blk rep=1 status=0
TB-BEGIN kind=tender-blk rep=2
RESULT blk reads=200 block_size=512 total_ns=172556576
pread_calls=200 pread_ns=127788416
TB-END kind=tender-blk rep=2 status=0
TB-BEGIN kind=exit-floor rep=1
exit_floor n=2000 total_ns=357444624 ns_per_exit=178722.3
TB-END kind=exit-floor rep=1 status=0
TB-BEGIN kind=tender-net rep=1 size=1
RESULT net size=1 packets=50 received=50 lost=0 corrupt=0 ignored=0 avg_ns=1397452 min_ns=1017792 \
max_ns=5566096 pps=715.59 p50_ns=1294336 p90_ns=1703936 p99_ns=5566096
TB-END kind=tender-net rep=1 size=1 status=0
TB-BEGIN kind=tender-net rep=1 size=1472
RESULT net size=1472 packets=50 received=50 lost=0 corrupt=0 ignored=0 avg_ns=1292447 min_ns=978320 \
max_ns=1912320 pps=773.73 p50_ns=1261568 p90_ns=1376256 p99_ns=1912320
TB-END kind=tender-net rep=1 size=1472 status=0
tender: ping_serve: ready
tender: tender: terminated by signal 15
""".splitlines()


def opt(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


# ------------------------------------------------------------ command line


def test_command_line_is_an_emulated_arm_host_at_el2() -> None:
    cmd = testbed.testbed_command(qemu="/q/qemu-system-aarch64", kernel="/k/vmlinuz", initrd="/k/i.gz",
                                  append="console=ttyAMA0")
    assert cmd[0] == "/q/qemu-system-aarch64"
    assert opt(cmd, "-M") == ["virt,virtualization=on"]
    assert opt(cmd, "-cpu") == ["max"] and opt(cmd, "-accel") == ["tcg"]
    assert opt(cmd, "-m") == ["1024"] and opt(cmd, "-smp") == ["2"]
    assert opt(cmd, "-L") == ["/usr/share/qemu", "/usr/share/seabios"]
    assert opt(cmd, "-serial") == ["stdio"]
    assert opt(cmd, "-kernel") == ["/k/vmlinuz"] and opt(cmd, "-initrd") == ["/k/i.gz"]
    for flag in ("-nodefaults", "-nographic", "-no-reboot"):
        assert flag in cmd
    assert "-drive" not in cmd and "-netdev" not in cmd


def test_command_line_custom_size_and_bad_values() -> None:
    cmd = testbed.testbed_command(qemu="q", kernel="k", initrd="i", append="a", memory_mb=2048, smp=1,
                                  firmware_dirs=["/fw"])
    assert opt(cmd, "-m") == ["2048"] and opt(cmd, "-smp") == ["1"] and opt(cmd, "-L") == ["/fw"]
    with pytest.raises(ValueError):
        testbed.testbed_command(qemu="q", kernel="k", initrd="i", append="a", memory_mb=0)


def test_kernel_append_runs_the_script_job_with_its_limit() -> None:
    words = testbed.kernel_append(300).split()
    assert words[0] == "console=ttyAMA0"
    assert "bench=script" in words and "script_timeout=300" in words
    assert "panic=-1" in words


# ------------------------------------------------------------ job scripts


def full_script() -> str:
    return testbed.job_script([
        testbed.host_blk_fragment(200, 512, 2),
        testbed.tender_blk_fragment(200, 512, 2, 32),
        testbed.exit_floor_fragment(2000),
        testbed.tender_net_fragment([1, 1472], 3, 50, 1, 32),
    ])


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh to check the syntax")
def test_job_script_is_valid_shell() -> None:
    proc = subprocess.run(["sh", "-n"], input=full_script(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_fragments_run_our_binaries_with_the_row_parameters() -> None:
    script = full_script()
    assert script.startswith("#!/bin/sh\n") and script.endswith("exit 0\n")
    assert "/bin/blk_bench /dev/loop0 200 512" in script
    assert ("--block:storage=/dev/loop0 --block-sector-size:storage=512 \\\n"
            "        --block-direct --stats=/tmp/pread.stats") in script
    assert "/opt/unikernels/blk_bench.elf reads=200" in script
    assert "/bin/kvm_exit_floor 2000" in script
    assert "tunctl -t tap100" in script and "ip addr add 10.0.0.1/24 dev tap100" in script
    assert "--net:service=tap100 /opt/unikernels/ping_serve.elf ip=10.0.0.2" in script
    assert "for size in 1 1472; do" in script and "$(seq 1 3)" in script
    assert "--count 50 --max-loss-pct 1" in script
    # The stats file is printed inside the frame of its repetition.
    tender = testbed.tender_blk_fragment(200, 512, 2, 32)
    assert tender.index("cat /tmp/pread.stats") < tender.index("end tender-blk")
    # Loop devices are always detached, also when a repetition fails.
    assert "trap cleanup EXIT" in script and "losetup -d /dev/loop0" in script


def test_nested_linux_guest_has_the_command_of_the_host_builder() -> None:
    """One builder: the testbed's Linux guest gets what guest.linux_guest_command gives a native one."""
    for platform, pin in (("qemu-linux-smp", ""), ("qemu-linux-1core", "taskset -c 0 ")):
        fragment = testbed.qemu_blk_fragment(platform, 200, 4096, 2, 256, 3)
        cmd = guest.linux_guest_command(
            arch="aarch64", platform=platform, accel="kvm", qemu="/opt/nested/qemu-system-aarch64",
            kernel="/opt/nested/vmlinuz", initrd="/opt/nested/initrd.gz", memory_mb=256, cores=3,
            drive="/dev/loop0", firmware_dirs=(),
            job={"bench": "blk", "dev": "/dev/vda", "reads": 200, "bs": 4096})
        assert f"PREAD_STATS_FILE=/tmp/pread.stats {shlex.join(cmd)} </dev/null" in fragment
        assert shlex.join(cmd).startswith(pin + "/opt/nested/qemu-system-aarch64 ")
        assert opt(cmd, "-smp") == ["3"] and opt(cmd, "-M") == ["virt,gic-version=host"]
        assert "bs=4096" in opt(cmd, "-append")[0] and "console=ttyAMA0" in opt(cmd, "-append")[0]
    net_fragment = testbed.qemu_net_fragment([1], 1, 10, 1, 256, 60, 3)
    cmd = guest.linux_guest_command(
        arch="aarch64", platform="qemu-linux", accel="kvm", qemu="/opt/nested/qemu-system-aarch64",
        kernel="/opt/nested/vmlinuz", initrd="/opt/nested/initrd.gz", memory_mb=256, cores=3, tap="tap100",
        firmware_dirs=(), job={"bench": "net", "ip": "10.0.0.2/24", "net_timeout": 60})
    assert f"{shlex.join(cmd)} </dev/null >/tmp/server.log" in net_fragment
    assert opt(cmd, "-smp") == ["1"]  # the network guest: one vCPU, here as on the host


def test_disk_is_sized_for_every_read() -> None:
    assert "mkdisk 1 " in testbed.host_blk_fragment(200, 512, 1)
    assert "mkdisk 49 " in testbed.host_blk_fragment(100000, 512, 1)
    assert "mkdisk 2 " in testbed.host_blk_fragment(1024, 2048, 1)
    assert "mkdisk 3 " in testbed.host_blk_fragment(1025, 2048, 1)


@pytest.mark.parametrize("make", [
    lambda: testbed.host_blk_fragment(0, 512, 1),
    lambda: testbed.tender_blk_fragment(10, 512, 1, -1),
    lambda: testbed.exit_floor_fragment(True),
    lambda: testbed.tender_net_fragment([], 1, 10, 1, 32),
    lambda: testbed.tender_net_fragment([1473], 1, 10, 1, 32),
    lambda: testbed.tender_net_fragment([1], 1, 10, 101, 32),
    lambda: testbed.job_script([]),
])
def test_bad_parameters_are_rejected(make) -> None:
    with pytest.raises(ValueError):
        make()


# ------------------------------------------------------------- images


def newc_names(data: bytes) -> dict[str, int]:
    """{name: mode} of a newc archive."""
    out, pos = {}, 0
    while True:
        head = data[pos : pos + 110]
        assert head[:6] == b"070701"
        mode, size, namesize = int(head[14:22], 16), int(head[54:62], 16), int(head[94:102], 16)
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return out
        out[name] = mode
        pos += 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)


def test_job_archive_holds_only_the_script() -> None:
    data = gzip.decompress(testbed.job_archive("echo hi\n"))
    names = newc_names(data)
    assert list(names) == ["job.sh"]
    assert stat.S_ISREG(names["job.sh"]) and names["job.sh"] & 0o777 == 0o755
    assert b"echo hi\n" in data


def test_job_initrd_appends_to_the_base_on_a_4_byte_boundary(tmp_path: Path) -> None:
    base = tmp_path / "base.gz"
    base.write_bytes(gzip.compress(b"base archive"))  # odd length on purpose
    out = testbed.write_job_initrd(base, "echo job\n", tmp_path / "run" / "job.initrd")
    data = out.read_bytes()
    n = len(base.read_bytes())
    assert data[:n] == base.read_bytes()
    start = n + (-n % 4)
    assert set(data[n:start]) <= {0}
    assert "job.sh" in newc_names(gzip.decompress(data[start:]))
    assert not list(out.parent.glob("*.tmp"))


# ---------------------------------------------------------------- parsing


def test_segments_of_a_canned_transcript() -> None:
    segs = testbed.parse_segments(TRANSCRIPT)
    assert [(s.kind, s.rep, s.size, s.status) for s in segs] == [
        ("host-blk", 1, None, 0), ("host-blk", 2, None, 0), ("tender-blk", 1, None, 0),
        ("tender-blk", 2, None, 0), ("exit-floor", 1, None, 0), ("tender-net", 1, 1, 0),
        ("tender-net", 1, 1472, 0)]
    assert segs[2].lines == ["RESULT blk reads=200 block_size=512 total_ns=158243392",
                             "pread_calls=200 pread_ns=114630176"]


def test_block_rows_from_the_transcript() -> None:
    segs = testbed.parse_segments(TRANSCRIPT)
    host = testbed.blk_rows(segs, kind="host-blk", reps=2, block_size=512, console_log=LOG, kvm_impl=KVM, host="h")
    tender = testbed.blk_rows(segs, kind="tender-blk", reps=2, block_size=512, console_log=LOG, kvm_impl=KVM, host="h")
    for row in host + tender:
        assert list(row) == results.BLK_COLUMNS
        assert row["arch"] == "aarch64" and row["testbed"] == "emulated" and row["host"] == "h"
    assert {k: host[1][k] for k in ("platform", "provider", "accel", "rep", "reads", "total_ns", "pread_ns",
                                    "pread_calls")} == {
        "platform": "host", "provider": "", "accel": "none", "rep": 2, "reads": 200, "total_ns": 106913504,
        "pread_ns": 106913504, "pread_calls": 200}
    assert {k: tender[0][k] for k in ("platform", "provider", "accel", "rep", "total_ns", "pread_ns",
                                      "pread_calls")} == {
        "platform": "solo5-hvt", "provider": "builtin", "accel": "kvm", "rep": 1, "total_ns": 158243392,
        "pread_ns": 114630176, "pread_calls": 200}


def test_exit_floor_and_net_rows_from_the_transcript() -> None:
    segs = testbed.parse_segments(TRANSCRIPT)
    assert testbed.exit_floor_result(segs, LOG) == {"n": 2000, "total_ns": 357444624}
    rows = testbed.net_rows(segs, sizes=[1, 1472], reps=1, console_log=LOG, kvm_impl=KVM, provider="builtin")
    assert [list(r) for r in rows] == [results.NET_COLUMNS, results.NET_COLUMNS]
    assert [(r["data_bytes"], r["rep"], r["pps"], r["avg_rtt_ns"], r["lost"]) for r in rows] == [
        (1, 1, 715.59, 1397452, 0), (1472, 1, 773.73, 1292447, 0)]
    assert [(r["p50_rtt_ns"], r["p90_rtt_ns"], r["p99_rtt_ns"]) for r in rows] == [
        (1294336, 1703936, 5566096), (1261568, 1376256, 1912320)]
    assert {(r["platform"], r["accel"], r["testbed"], r["arch"]) for r in rows} == {
        ("solo5-hvt", "kvm", "emulated", "aarch64")}


def test_net_row_defaults_to_the_native_testbed() -> None:
    res = {"size": 1, "packets": 1, "avg_ns": 1, "min_ns": 1, "max_ns": 1, "pps": 1.0, "lost": 0,
           "p50_ns": 1, "p90_ns": 1, "p99_ns": 1}
    row = net.row(arch="x86_64", platform="p", provider="", accel="kvm", rep=1, result=res, kvm_impl="kvm_amd")
    assert (row["testbed"], row["kvm_impl"]) == ("native", "kvm_amd")


def test_testbed_rows_name_the_testbed_kernels_kvm() -> None:
    segments = testbed.parse_segments(TRANSCRIPT)
    rows = testbed.blk_rows(segments, kind="tender-blk", reps=2, block_size=512, console_log=LOG,
                            kvm_impl="kvm_arm64-vhe")
    assert {r["kvm_impl"] for r in rows} == {"kvm_arm64-vhe"}
    host = testbed.blk_rows(segments, kind="host-blk", reps=2, block_size=512, console_log=LOG,
                            kvm_impl="kvm_arm64-vhe")
    assert {r["kvm_impl"] for r in host} == {""}  # accel=none: no KVM involved


def test_failed_measurement_is_one_line_naming_the_log() -> None:
    lines = ["TB-BEGIN kind=tender-blk rep=1",
             "tender: error: KVM_ARM_VCPU_INIT: Invalid argument",
             "TB-END kind=tender-blk rep=1 status=1"]
    with pytest.raises(TestbedError) as exc:
        testbed.blk_rows(testbed.parse_segments(lines), kind="tender-blk", reps=1, block_size=512,
                         console_log=LOG, kvm_impl=KVM)
    msg = str(exc.value)
    assert "\n" not in msg and LOG in msg
    assert "tender-blk rep 1 exited with status 1" in msg and "KVM_ARM_VCPU_INIT" in msg


def test_packet_loss_is_explained() -> None:
    lines = ["TB-BEGIN kind=tender-net rep=2 size=1472",
             "RESULT net size=1472 packets=50 received=40 lost=10 corrupt=0 ignored=0 avg_ns=5 min_ns=5 max_ns=5 "
             "pps=200000000.00 p50_ns=5 p90_ns=5 p99_ns=5",
             "TB-END kind=tender-net rep=2 size=1472 status=4"]
    with pytest.raises(TestbedError, match=r"tender-net rep 2 size 1472 exited with status 4 \(more packet loss "
                                           r"than net.max_loss_pct\): RESULT net size=1472 .*lost=10"):
        testbed.net_rows(testbed.parse_segments(lines), sizes=[1472], reps=2, console_log=LOG, kvm_impl=KVM)


def test_cut_short_and_missing_measurements() -> None:
    segs = testbed.parse_segments(["TB-BEGIN kind=tender-net rep=1 size=1", "arp..."])
    assert segs[0].status == -1
    with pytest.raises(TestbedError, match="cut short.*console log"):
        testbed.net_rows(segs, sizes=[1], reps=1, console_log=LOG, kvm_impl=KVM)
    with pytest.raises(TestbedError, match="1 of 2 host-blk"):
        testbed.blk_rows(testbed.parse_segments(TRANSCRIPT[:4]), kind="host-blk", reps=2, block_size=512,
                         console_log=LOG, kvm_impl=KVM)


def test_wrong_block_size_and_missing_stats_are_errors() -> None:
    segs = testbed.parse_segments(TRANSCRIPT)
    with pytest.raises(TestbedError, match="512-byte blocks"):
        testbed.blk_rows(segs, kind="host-blk", reps=2, block_size=4096, console_log=LOG, kvm_impl=KVM)
    no_stats = [ln for ln in TRANSCRIPT if not ln.startswith("pread_calls")]
    with pytest.raises(TestbedError, match="tender-blk rep 1.*pread_calls"):
        testbed.blk_rows(testbed.parse_segments(no_stats), kind="tender-blk", reps=2, block_size=512,
                         console_log=LOG, kvm_impl=KVM)


@pytest.mark.parametrize("lines", [
    ["TB-BEGIN kind=host-blk rep=1", "TB-BEGIN kind=host-blk rep=2"],
    ["TB-END kind=host-blk rep=1 status=0"],
    ["TB-BEGIN kind=host-blk rep=1", "TB-END kind=tender-blk rep=1 status=0"],
    ["TB-BEGIN kind=host-blk rep=1", "TB-END kind=host-blk rep=2 status=0"],
])
def test_broken_framing_is_rejected(lines: list[str]) -> None:
    with pytest.raises(ValueError):
        testbed.parse_segments(lines)


# ------------------------------------------------------ runner (fake QEMU)


FAKE_QEMU = """\
#!{python}
import gzip, sys
args = sys.argv[1:]
initrd = open(args[args.index("-initrd") + 1], "rb").read()
append = args[args.index("-append") + 1]
job = b"job.sh" in gzip.decompress(initrd[initrd.index(b"\\x1f\\x8b", 4):])
print("Booting Linux", flush=True)
print("UNIKIO-BEGIN")
print("job seen" if job else "no job", append)
sys.stdout.write(open({transcript!r}).read())
print("UNIKIO-END status={status}")
"""


def fake_testbed(tmp_path: Path, status: int = 0, transcript: list[str] = TRANSCRIPT) -> testbed.Testbed:
    text = tmp_path / "transcript.txt"
    text.write_text("\n".join(transcript) + "\n")
    qemu = tmp_path / "qemu-system-aarch64"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable, transcript=str(text), status=status))
    qemu.chmod(0o755)
    for name in ("vmlinuz", "base.initrd"):
        (tmp_path / name).write_bytes(gzip.compress(b"base"))
    return testbed.Testbed(qemu=qemu, kernel=tmp_path / "vmlinuz", base_initrd=tmp_path / "base.initrd")


def test_run_job_boots_once_and_removes_its_initrd(tmp_path: Path) -> None:
    tb = fake_testbed(tmp_path)
    work = tmp_path / "work"
    rows, run = testbed.tender_blk(tb, reads=200, block_size=512, reps=2, mem_mb=32, work_dir=work,
                                   console_log=tmp_path / "console.log", timeout_s=30)
    assert [r["total_ns"] for r in rows] == [158243392, 172556576]
    assert "job seen" in run.lines[0] and "script_timeout=30" in run.lines[0]
    assert run.console_log.read_text().startswith("Booting Linux")
    assert list(work.iterdir()) == []


def test_run_job_records_the_testbed_kernels_kvm_and_logs_what_it_ran(tmp_path: Path) -> None:
    tb = fake_testbed(tmp_path, transcript=["TB-KVM [    0.7] kvm [1]: VHE mode initialized successfully",
                                            *TRANSCRIPT])
    log = io.StringIO()
    rows, run = testbed.tender_blk(tb, reads=200, block_size=512, reps=2, mem_mb=32, work_dir=tmp_path / "w",
                                   console_log=tmp_path / "console.log", timeout_s=30, log=log)
    assert run.kvm_impl == "kvm_arm64-vhe" and {r["kvm_impl"] for r in rows} == {"kvm_arm64-vhe"}
    logged = log.getvalue()
    assert logged.startswith(f"$ {tb.qemu} ") and "# job.sh in that initrd:\n#!/bin/sh\n" in logged
    assert "--block-sector-size:storage=512" in logged


def test_run_job_reports_a_failed_job_in_one_line(tmp_path: Path) -> None:
    tb = fake_testbed(tmp_path, status=124, transcript=["script timed out after 30 s"])
    with pytest.raises(TestbedError) as exc:
        testbed.run_job(tb, "exit 0\n", tmp_path / "w", tmp_path / "c.log", 30)
    assert str(exc.value) == (f"testbed job exited with status 124 (the job ran past its time limit): "
                              f"script timed out after 30 s "
                              f"(console log: {tmp_path / 'c.log'})")


def test_run_job_names_what_is_missing(tmp_path: Path) -> None:
    tb = testbed.Testbed(qemu=tmp_path / "nope", kernel=tmp_path / "k", base_initrd=tmp_path / "b")
    with pytest.raises(TestbedError, match="testbed QEMU not found"):
        testbed.run_job(tb, "exit 0\n", tmp_path, tmp_path / "c.log", 1)


def test_each_framed_measurement_is_one_run_of_the_progress():
    """follow_markers: TB-BEGIN starts a run, progress lines move it, TB-END closes it; other lines are ignored."""
    log = io.StringIO()
    report = progress.Progress("blk aarch64/host (testbed)", runs=2, per_run=100, unit="reads", log=log, out=None,
                               every_s=0)
    on_line = testbed.follow_markers(report)
    on_line("TB-BEGIN kind=host-blk rep=1")
    assert report.detail == "host-blk rep 1 in the testbed" and report.done == 0
    on_line("progress 40/100 reads")
    on_line("RESULT blk reads=100 block_size=512 total_ns=5")
    assert report.done == 40
    on_line("TB-END kind=host-blk rep=1 status=0")
    assert report.done == 100
    on_line("TB-BEGIN kind=host-blk rep=2")
    on_line("guest: progress 90/100 reads")  # a nested guest's relayed line is not this job's own
    assert report.done == 100 and report.detail == "host-blk rep 2 in the testbed"
    assert "100/200 reads (50%)" in log.getvalue().splitlines()[-1]
