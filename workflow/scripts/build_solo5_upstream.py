"""Rule solo5_upstream: patch and build Solo5's hvt tender and toolchain, then our two unikernels."""

import shutil
from pathlib import Path

from unikio import job, patching, solo5upstream

sm = snakemake  # noqa: F821
APPS = Path("native/unikernels")


def body(log):
    tree = Path(sm.output.tree)
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(sm.input.tree, tree, symlinks=True)
    solo5upstream.check_patch_targets(tree)
    patching.apply(tree, [Path(p) for p in sm.input.patches], log, misfit_hint=solo5upstream.MISFIT_HINT)
    solo5upstream.build(tree, log, sm.wildcards.arch)
    for app in ("blk_bench", "ping_serve"):
        solo5upstream.build_app(tree, APPS / app, APPS / app / "manifest.json", Path(sm.output[app]),
                                sm.wildcards.arch, log)


job.run(sm, body)
