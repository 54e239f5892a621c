"""Rule lwip_upstream: the lwIP unikernel built with upstream Solo5's toolchain, for its hvt and spt tenders."""

from pathlib import Path

from unikio import job, lwipsrc, solo5upstream

sm = snakemake  # noqa: F821


def body(log):
    tree, lwip = Path(sm.input.tree), Path(sm.input.lwip)
    glue = solo5upstream.REPO / "native" / "lwip"
    for abi, out in (("hvt", sm.output.hvt), ("spt", sm.output.spt)):
        solo5upstream.build_app(tree, glue, glue / "manifest.json", Path(out), sm.wildcards.arch, log, abi=abi,
                                extra_sources=lwipsrc.sources(lwip), include_dirs=lwipsrc.include_dirs(lwip))
        log.write(f"built {out}\n")


job.run(sm, body)
