import os
import subprocess

import pytest
from testkit import require_root
from unikio import loopdev
from unikio.errors import PipelineError


def attached(backing):
    out = subprocess.run(["losetup", "--list", "--noheadings", "-O", "BACK-FILE"],
                         capture_output=True, text=True, check=True).stdout
    return str(backing) in out


def test_loop_device_is_detached_and_file_removed_even_on_failure(tmp_path):
    require_root()
    with pytest.raises(RuntimeError, match="boom"):
        with loopdev.tmpfs_loop(1 << 20) as dev:
            backing = subprocess.run(["losetup", "--list", "--noheadings", "-O", "BACK-FILE", dev],
                                     capture_output=True, text=True, check=True).stdout.strip()
            assert backing.startswith(str(loopdev.TMPFS_DIR / loopdev.PREFIX))
            assert os.path.getsize(backing) == 1 << 20
            raise RuntimeError("boom")
    assert not os.path.exists(backing)
    assert not attached(backing)


def test_stale_devices_of_dead_runs_are_reaped():
    require_root()
    dead_pid = 2 ** 22 + 1  # above pid_max's default, never alive
    path = loopdev.TMPFS_DIR / f"{loopdev.PREFIX}{dead_pid}-stale.img"
    path.write_bytes(b"\0" * 4096)
    dev = subprocess.run(["losetup", "--find", "--show", str(path)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        removed = loopdev.reap_stale()
        assert dev in removed and not path.exists()
    finally:
        subprocess.run(["losetup", "--detach", dev], capture_output=True, check=False)
        path.unlink(missing_ok=True)


def test_without_root_the_error_says_so(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PipelineError, match="need root"):
        with loopdev.tmpfs_loop(1 << 20):
            pass


@pytest.mark.parametrize("reads,bs,mib", [(1, 512, 1), (2048, 512, 1), (2049, 512, 2), (100000, 512, 49),
                                          (1024, 2048, 2), (1025, 2048, 3)])
def test_disk_has_room_for_every_read(reads, bs, mib):
    assert loopdev.disk_bytes(reads, bs) == mib << 20


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB tmpfs: what /dev/shm looks like when it is nearly full."""
    require_root()
    mnt = tmp_path / "shm"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_full_tmpfs_is_one_sentence_and_leaves_nothing(tiny_tmpfs):
    with pytest.raises(PipelineError) as err:
        with loopdev.tmpfs_loop(4 << 20, tmpfs=tiny_tmpfs):
            pytest.fail("a 4 MiB image cannot fit in 1 MiB")
    assert str(err.value) == (f"{tiny_tmpfs} has no room for the 4 MiB disk image (blk.reads x blk.block_size); "
                              "free space there or lower blk.reads")
    assert list(tiny_tmpfs.iterdir()) == []
    assert not attached(tiny_tmpfs)
