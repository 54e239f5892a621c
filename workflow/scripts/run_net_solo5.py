"""Rule net_solo5_run: a unikernel responder (ping_serve or lwip_serve) on its tender answers our ICMP benchmark."""

import json
from pathlib import Path

from unikio import conditions, job, net

sm = snakemake  # noqa: F821


def body(log):
    p = sm.params
    wc = sm.wildcards
    rows = net.solo5_rows(Path(sm.input.tender), Path(sm.input.guest), Path(sm.input.icmp_bench), wc.arch,
                          wc.platform, wc.provider, p.mem_mb, list(p.sizes), p.reps, p.packets, p.max_loss_pct,
                          Path(sm.output.rows).with_name("console.log"), log,
                          cpu=conditions.measure_cpu(p.measure_cpu))
    Path(sm.output.rows).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


job.run(sm, body)
