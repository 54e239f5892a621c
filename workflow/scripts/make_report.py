"""Rule report: results/report.html, the study on one self-contained page (verdicts first)."""

from pathlib import Path

from unikio import job, report

sm = snakemake  # noqa: F821


def body(log):
    baseline = sm.params.baseline
    compare = [Path(p) for p in sm.input.compare]
    inputs = report.Inputs(
        claims=Path(sm.input.claims),
        figures=[Path(p) for p in sm.input.figures],
        tables=[Path(p) for p in sm.input.tables],
        provenance=Path(sm.input.provenance),
        captions=report.read_captions([Path(p) for p in sm.input.captions]),
        baseline=baseline,
        compare_table=next((p for p in compare if p.suffix == ".csv"), None),
        compare_figure=next((p for p in compare if p.suffix == ".png"), None),
        merged=Path(sm.params.merged) if sm.params.merged else None,
    )
    out = Path(sm.output[0])
    report.write(inputs, out)
    log.write(f"wrote {out} ({out.stat().st_size} bytes): {len(inputs.figures)} figures, {len(inputs.tables)} tables"
              f"{', A/B against ' + baseline if baseline else ''}"
              f"{', merged runs from ' + sm.params.merged if sm.params.merged else ''}\n")


job.run(sm, body)
