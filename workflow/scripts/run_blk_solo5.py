"""Rule blk_solo5_run: one repetition of a unikernel row (solo5-hvt, solo5-spt; either provider) of the block
experiment."""

from pathlib import Path

from unikio import blk, conditions, job, results

sm = snakemake  # noqa: F821


def body(log):
    wc, p = sm.wildcards, sm.params
    row = blk.solo5_row(Path(sm.input.tender), Path(sm.input.guest), wc.arch, wc.platform, int(wc.rep), p.reads,
                        p.block_size, p.timeout_s, p.mem_mb, wc.provider, log,
                        cpu=conditions.measure_cpu(p.measure_cpu))
    results.write_row(Path(sm.output.row), row)
    log.write(f"row: {row}\n")


job.run(sm, body)
