"""Rule solo5_upstream: patch and build Solo5's hvt and spt tenders and toolchain, then our two unikernels for each."""

import shutil
from pathlib import Path

from unikio import job, patching, solo5upstream

sm = snakemake  # noqa: F821
APPS = Path("native/unikernels")
# (app, tender ABI) -> the rule's output name.
GUESTS = {("blk_bench", "hvt"): "blk_bench", ("ping_serve", "hvt"): "ping_serve",
          ("blk_bench", "spt"): "blk_bench_spt", ("ping_serve", "spt"): "ping_serve_spt"}


def body(log):
    tree = Path(sm.output.tree)
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(sm.input.tree, tree, symlinks=True)
    solo5upstream.check_patch_targets(tree)
    patching.apply(tree, [Path(p) for p in sm.input.patches], log, misfit_hint=solo5upstream.MISFIT_HINT)
    solo5upstream.build(tree, log, sm.wildcards.arch)
    for (app, abi), name in GUESTS.items():
        solo5upstream.build_app(tree, APPS / app, APPS / app / "manifest.json", Path(getattr(sm.output, name)),
                                sm.wildcards.arch, log, abi=abi)


job.run(sm, body)
