# Where the time went: per rule, from every job's benchmark.tsv (or its log's
# "job took" line), and the cost model of the next run's estimate.
rule runtime_table:
    input:
        # After the report and the archive, so their times are this run's.
        rules.archive.input,
        rules.archive.output,
    output:
        csv="results/tables/runtime.csv",
        md="results/tables/runtime.md",
        model="results/cost_model.yaml",
    log:
        f"{LOGS}/runtime_table.log",
    params:
        log_timed=sorted(CACHED_RULES),
        machine=f"{hostinfo.cpu_model()}, {os.cpu_count()} CPUs, {hostinfo.current_kvm_impl()}",
    script:
        "../scripts/make_runtime_table.py"


rule runtime:
    input:
        rules.runtime_table.output,
