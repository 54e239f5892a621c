import pytest
from unikio import blk, results


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


@pytest.mark.parametrize("reads,bs,mib", [(1, 512, 1), (2048, 512, 1), (2049, 512, 2), (100000, 512, 49)])
def test_disk_has_room_for_every_read(reads, bs, mib):
    assert blk.disk_bytes(reads, bs) == mib << 20


def test_parse_exit_floor():
    assert results.parse_exit_floor("exit_floor n=10 total_ns=80000 ns_per_exit=8000\n") == {
        "n": 10, "total_ns": 80000}
    with pytest.raises(ValueError):
        results.parse_exit_floor("exit_floor n=10\n")
