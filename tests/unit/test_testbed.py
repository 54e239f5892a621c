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
from unikio import guest, matrix, net, progress, results, testbed
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
    rows = testbed.net_rows(segs, sizes=[1, 1472], reps=1, console_log=LOG, kvm_impl=KVM)
    assert [list(r) for r in rows] == [results.NET_COLUMNS, results.NET_COLUMNS]
    assert [(r["data_bytes"], r["rep"], r["pps"], r["avg_rtt_ns"], r["lost"]) for r in rows] == [
        (1, 1, 715.59, 1397452, 0), (1472, 1, 773.73, 1292447, 0)]
    assert [(r["p50_rtt_ns"], r["p90_rtt_ns"], r["p99_rtt_ns"]) for r in rows] == [
        (1294336, 1703936, 5566096), (1261568, 1376256, 1912320)]
    assert {(r["platform"], r["provider"], r["accel"], r["testbed"], r["arch"], r["kvm_impl"]) for r in rows} == {
        ("solo5-hvt", "builtin", "kvm", "emulated", "aarch64", KVM)}


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


# ------------------------------------------------------ unikernel platforms


def test_binaries_of_the_builds_and_where_the_image_puts_them() -> None:
    native, solo5, lwip = Path("/b/native"), Path("/b/solo5-builtin"), Path("/b/lwip-builtin")
    without = testbed.Binaries.from_build(Path("/b/init"), Path("/b/busybox"), native, solo5)
    assert without.files() == {
        "bin/blk_bench": native / "blk_bench", "bin/icmp_bench": native / "icmp_bench",
        "bin/tender": solo5 / "tender", "bin/kvm_exit_floor": solo5 / "kvm_exit_floor",
        "opt/unikernels/blk_bench.elf": solo5 / "blk_bench.elf",
        "opt/unikernels/ping_serve.elf": solo5 / "ping_serve.elf",
        "bin/spt_tender": solo5 / "spt_tender", "opt/unikernels/blk_bench.spt": solo5 / "blk_bench.spt",
        "opt/unikernels/ping_serve.spt": solo5 / "ping_serve.spt"}
    assert (without.lwip_serve_elf, without.lwip_serve_spt) == (None, None)
    with_lwip = testbed.Binaries.from_build(Path("/b/init"), Path("/b/busybox"), native, solo5, lwip)
    assert with_lwip.files() == {**without.files(), "opt/unikernels/lwip_serve.elf": lwip / "lwip_serve.elf",
                                 "opt/unikernels/lwip_serve.spt": lwip / "lwip_serve.spt"}


def test_base_image_names_the_missing_spt_and_lwip_programs(tmp_path: Path) -> None:
    binaries = testbed.Binaries.from_build(tmp_path / "init", tmp_path / "busybox", tmp_path / "native",
                                           tmp_path / "solo5", tmp_path / "lwip")
    absent = {binaries.spt_tender, binaries.lwip_serve_spt}
    for path in {binaries.init, binaries.busybox, *binaries.files().values()} - absent:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF")
    with pytest.raises(TestbedError) as exc:
        testbed.build_base_initramfs(tmp_path / "base.initrd", tmp_path / "tree", binaries)
    assert str(exc.value) == ("testbed programs missing (build them first): "
                              f"{tmp_path / 'solo5' / 'spt_tender'}, {tmp_path / 'lwip' / 'lwip_serve.spt'}")
    assert not (tmp_path / "base.initrd").exists()


def test_spt_block_fragment_is_the_hvt_job_on_the_spt_tender() -> None:
    spt = testbed.tender_blk_fragment(200, 512, 2, 32, platform="solo5-spt")
    assert ("    /bin/spt_tender --mem=32 --block:storage=/dev/loop0 --block-sector-size:storage=512 \\\n"
            "        --block-direct --stats=/tmp/pread.stats /opt/unikernels/blk_bench.spt reads=200 2>&1\n") in spt
    hvt = testbed.tender_blk_fragment(200, 512, 2, 32)
    assert hvt == testbed.tender_blk_fragment(200, 512, 2, 32, platform="solo5-hvt")
    assert spt == hvt.replace("/bin/tender ", "/bin/spt_tender ").replace("blk_bench.elf", "blk_bench.spt")
    assert "spt" not in hvt


@pytest.mark.parametrize("platform, tender, guest_path", [
    ("solo5-hvt", "tender", "/opt/unikernels/ping_serve.elf"),
    ("solo5-spt", "spt_tender", "/opt/unikernels/ping_serve.spt"),
    ("lwip-solo5-hvt", "tender", "/opt/unikernels/lwip_serve.elf"),
    ("lwip-solo5-spt", "spt_tender", "/opt/unikernels/lwip_serve.spt"),
])
def test_net_fragment_runs_the_platforms_unikernel_on_its_tender(platform: str, tender: str,
                                                                  guest_path: str) -> None:
    fragment = testbed.tender_net_fragment([1], 1, 10, 1, 32, platform=platform)
    assert (f"\n/bin/{tender} --mem=32 --net:service=tap100 {guest_path} ip=10.0.0.2 >/tmp/server.log 2>&1 &\n"
            "tpid=$!\n") in fragment
    # A tender gone early: its exit status and its own output (where a seccomp kill is) go into the frame.
    gone = fragment.index(f'            wait $tpid; echo "the {tender} exited early with status $?:"\n'
                          f"            sed 's/^/{tender}: /; s/UNIKIO/GUEST/g' /tmp/server.log\n")
    assert fragment.index("begin tender-net $rep $size") < gone < fragment.index("end tender-net $rep $rc $size")
    proc = subprocess.run(["sh", "-n"], input=testbed.job_script([fragment]), capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_unikernel_table_and_accel_of_each_platform() -> None:
    assert testbed.unikernel("blk", "solo5-spt") == ("spt_tender", "blk_bench.spt")
    assert testbed.unikernel("net", "lwip-solo5-hvt") == ("tender", "lwip_serve.elf")
    platforms = [(e, p) for e, plats in matrix.UNIKERNEL_PLATFORMS.items() for p in plats]
    assert {(e, p): testbed.unikernel_accel(e, p) for e, p in platforms} == {
        ("blk", "solo5-hvt"): "kvm", ("blk", "solo5-spt"): "none", ("net", "solo5-hvt"): "kvm",
        ("net", "solo5-spt"): "none", ("net", "lwip-solo5-hvt"): "kvm", ("net", "lwip-solo5-spt"): "none"}
    # Every tender and guest of the table is in the image.
    assert {key for e, p in platforms for key in testbed.unikernel(e, p)} <= set(testbed.BIN)


@pytest.mark.parametrize("make", [
    lambda: testbed.tender_blk_fragment(10, 512, 1, 32, platform="lwip-solo5-hvt"),  # lwIP has no block row
    lambda: testbed.tender_blk_fragment(10, 512, 1, 32, platform="host"),
    lambda: testbed.tender_net_fragment([1], 1, 10, 1, 32, platform="qemu-linux"),
    lambda: testbed.blk_rows([], kind="tender-blk", reps=1, block_size=512, console_log=LOG, kvm_impl=KVM,
                             platform="lwip-solo5-spt"),
    lambda: testbed.net_rows([], sizes=[1], reps=1, console_log=LOG, kvm_impl=KVM, platform="solo5-spt-x"),
    lambda: testbed.net_rows([], sizes=[1], reps=1, console_log=LOG, kvm_impl=KVM, kind="tender-blk"),
])
def test_platforms_the_testbed_does_not_run_are_rejected(make) -> None:
    with pytest.raises(ValueError, match="not a"):
        make()


def test_spt_block_rows_have_no_kvm() -> None:
    rows = testbed.blk_rows(testbed.parse_segments(TRANSCRIPT), kind="tender-blk", reps=2, block_size=512,
                            console_log=LOG, kvm_impl=KVM, host="h", platform="solo5-spt")
    assert [{k: v for k, v in r.items() if k not in ("timestamp", "pipeline_version")} for r in rows] == [
        {"arch": "aarch64", "platform": "solo5-spt", "provider": "builtin", "accel": "none", "testbed": "emulated",
         "block_size": 512, "reads": 200, "rep": rep, "total_ns": total, "pread_ns": pread, "pread_calls": 200,
         "host": "h", "kvm_impl": "", "load_before": None, "load_after": None, "runnable_before": None,
         "runnable_after": None}
        for rep, total, pread in ((1, 158243392, 114630176), (2, 172556576, 127788416))]


@pytest.mark.parametrize("platform, accel, kvm_impl", [
    ("solo5-spt", "none", ""), ("lwip-solo5-hvt", "kvm", KVM), ("lwip-solo5-spt", "none", "")])
def test_net_rows_of_the_new_unikernel_platforms(platform: str, accel: str, kvm_impl: str) -> None:
    rows = testbed.net_rows(testbed.parse_segments(TRANSCRIPT), sizes=[1, 1472], reps=1, console_log=LOG,
                            kvm_impl=KVM, platform=platform)
    assert [(r["platform"], r["provider"], r["accel"], r["kvm_impl"], r["data_bytes"], r["avg_rtt_ns"])
            for r in rows] == [(platform, "builtin", accel, kvm_impl, 1, 1397452),
                               (platform, "builtin", accel, kvm_impl, 1472, 1292447)]
    assert all(list(r) == results.NET_COLUMNS for r in rows)


SECCOMP_LINE = "spt_tender: guest killed by the seccomp filter: it called openat (syscall 56)"


def test_a_seccomp_kill_of_a_block_guest_names_the_syscall() -> None:
    # The tender's parent still writes the stats file, which the job prints after it.
    lines = ["TB-BEGIN kind=tender-blk rep=1", "            |      ___|", SECCOMP_LINE,
             "pread_calls=0 pread_ns=0 setup_pread_calls=0 setup_pread_ns=0", "TB-END kind=tender-blk rep=1 status=159"]
    with pytest.raises(TestbedError) as exc:
        testbed.blk_rows(testbed.parse_segments(lines), kind="tender-blk", reps=1, block_size=512,
                         console_log=LOG, kvm_impl=KVM, platform="solo5-spt")
    assert str(exc.value) == f"testbed tender-blk rep 1 exited with status 159: {SECCOMP_LINE} (console log: {LOG})"


def test_a_seccomp_kill_of_a_network_guest_names_the_syscall() -> None:
    """As the job relays it: the tender's output prefixed with its name after icmp_bench found it gone."""
    lines = ["TB-BEGIN kind=tender-net rep=1 size=1", "the spt_tender exited early with status 159:",
             "spt_tender: lwip_serve: ready",
             "spt_tender: spt_tender: guest killed by the seccomp filter: it called syscall 41 of another ABI "
             "(audit arch 0xc000003e)",
             "TB-END kind=tender-net rep=1 size=1 status=72"]
    with pytest.raises(TestbedError) as exc:
        testbed.net_rows(testbed.parse_segments(lines), sizes=[1], reps=1, console_log=LOG, kvm_impl=KVM,
                         platform="lwip-solo5-spt")
    assert str(exc.value) == (
        "testbed tender-net rep 1 size 1 exited with status 72 (the tender exited early): spt_tender: guest killed "
        f"by the seccomp filter: it called syscall 41 of another ABI (audit arch 0xc000003e) (console log: {LOG})")


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


def test_spt_and_lwip_rows_through_a_boot(tmp_path: Path) -> None:
    tb = fake_testbed(tmp_path)
    log = io.StringIO()
    rows, _ = testbed.tender_blk(tb, reads=200, block_size=512, reps=2, mem_mb=32, work_dir=tmp_path / "w",
                                 console_log=tmp_path / "blk.log", timeout_s=30, log=log, platform="solo5-spt")
    assert [(r["platform"], r["accel"], r["kvm_impl"], r["pread_ns"]) for r in rows] == [
        ("solo5-spt", "none", "", 114630176), ("solo5-spt", "none", "", 127788416)]
    assert "/bin/spt_tender --mem=32 --block:storage=/dev/loop0" in log.getvalue()
    log = io.StringIO()
    rows, _ = testbed.tender_net(tb, sizes=[1, 1472], reps=1, packets=50, max_loss_pct=1, mem_mb=32,
                                 work_dir=tmp_path / "w", console_log=tmp_path / "net.log", timeout_s=30, log=log,
                                 platform="lwip-solo5-spt")
    assert [(r["platform"], r["accel"], r["data_bytes"]) for r in rows] == [
        ("lwip-solo5-spt", "none", 1), ("lwip-solo5-spt", "none", 1472)]
    assert "/bin/spt_tender --mem=32 --net:service=tap100 /opt/unikernels/lwip_serve.spt ip=10.0.0.2" in log.getvalue()


def test_run_job_relays_a_seccomp_kill(tmp_path: Path) -> None:
    tb = fake_testbed(tmp_path, status=159, transcript=[
        "TB-BEGIN kind=tender-blk rep=1", SECCOMP_LINE, "TB-END kind=tender-blk rep=1 status=159"])
    with pytest.raises(TestbedError) as exc:
        testbed.tender_blk(tb, reads=200, block_size=512, reps=1, mem_mb=32, work_dir=tmp_path / "w",
                           console_log=tmp_path / "c.log", timeout_s=30, platform="solo5-spt")
    assert str(exc.value) == (f"testbed tender-blk rep 1 exited with status 159: {SECCOMP_LINE} "
                              f"(console log: {tmp_path / 'c.log'})")


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
