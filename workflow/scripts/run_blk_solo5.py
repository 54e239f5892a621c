"""Rule blk_solo5_run: one repetition of the solo5-hvt row of the block experiment."""

from pathlib import Path

from unikio import blk, conditions, job, results

sm = snakemake  # noqa: F821


def body(log):
    row = blk.solo5_row(Path(sm.input.tender), Path(sm.input.guest), sm.wildcards.arch, int(sm.wildcards.rep),
                        sm.params.reads, sm.params.block_size, sm.params.timeout_s, sm.params.mem_mb,
                        sm.params.provider, log, cpu=conditions.measure_cpu(sm.params.measure_cpu))
    results.write_row(Path(sm.output.row), row)
    log.write(f"row: {row}\n")


job.run(sm, body)
