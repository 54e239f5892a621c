# Reproduction of "Study and evaluation of methods for running applications as
# unikernels on ARM architectures" (2018): I/O cost of a unikernel on a
# Solo5-style tender versus a Linux guest under QEMU. Entry point; the stages
# live in workflow/rules/. Everyday use: ./snakemake --cores 4 [target]
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/build.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        QEMU_BIN,
        expand(NATIVE_BENCH, arch=config["archs"]),
        expand(rules.solo5_builtin.output, arch=config["archs"]),
        BLK_RUNS,
        expand(BLK_TABLE, arch=config["archs"], ext=TABLE_EXTS),
        expand(BLK_FIGURE, arch=config["archs"], ext=FIGURE_EXTS),
        expand(OVERHEAD_TABLE, arch=runnable_archs("blk", "solo5-hvt"), ext=TABLE_EXTS),
        expand(NET_TABLE, arch=net_archs(), ext=TABLE_EXTS),
        expand(NET_FIGURE, arch=net_archs(), ext=FIGURE_EXTS),
        expand(CLAIMS_TABLE, ext=TABLE_EXTS),
        PROVENANCE,
    default_target: True


# One experiment at a time: its tables and figures (and what they need).
rule blk:
    input:
        expand(BLK_TABLE, arch=config["archs"], ext=TABLE_EXTS),
        expand(BLK_FIGURE, arch=config["archs"], ext=FIGURE_EXTS),
        expand(OVERHEAD_TABLE, arch=runnable_archs("blk", "solo5-hvt"), ext=TABLE_EXTS),


rule net:
    input:
        expand(NET_TABLE, arch=net_archs(), ext=TABLE_EXTS),
        expand(NET_FIGURE, arch=net_archs(), ext=FIGURE_EXTS),


include: "workflow/rules/archive.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/runtime.smk"


add_code_params(workflow.rules, keyed_by_recipe=CACHE_FED_RULES)
add_benchmarks(workflow.rules, cached=CACHED_RULES)
prepare_first(workflow.rules)
