# Several machines, one study: the artifacts made by `archive` on several
# hosts, merged side by side into results/merged/ (unikio/merge.py):
#   ./snakemake --cores 4 merge --config 'merge={"artifacts": ["artifacts/"]}'
# Not part of `all`. The parts are made in results/merging/ and published as
# results/merged/ at once by merged_results, so a merge that fails leaves no
# half-written results/merged/.
MERGE = config["merge"]


checkpoint merged_runs:
    input:
        # Inputs, so a new artifact at the same path reruns the merge; unset or missing: one sentence.
        artifacts=lambda wc: unikio_merge.artifact_paths(MERGE["artifacts"]),
    output:
        provenance=MERGING_PROVENANCE,
        blk=MERGING_RUNS.format(experiment="blk"),
        net=MERGING_RUNS.format(experiment="net"),
    log:
        f"{LOGS}/merged_runs.log",
    params:
        artifacts=MERGE["artifacts"],
        labels=MERGE["labels"],
        allow_mismatch=MERGE["allow_mismatch"],
        # The merged provenance names the pipeline that merged.
        pipeline=version.label(PIPELINE),
    script:
        "../scripts/merge_runs.py"


rule merged_table:
    input:
        provenance=MERGING_PROVENANCE,
        runs=MERGING_RUNS,
        reference=lambda wc: unikio_merge.REFERENCES[wc.experiment],
    output:
        csv=MERGING_TABLE.replace("{ext}", "csv"),
        md=MERGING_TABLE.replace("{ext}", "md"),
        tex=MERGING_TABLE.replace("{ext}", "tex"),
    log:
        f"{LOGS}/merged_table_{{experiment}}_{{arch}}.log",
    wildcard_constraints:
        experiment="blk|net",
    script:
        "../scripts/make_merged_table.py"


rule merged_figure:
    input:
        provenance=MERGING_PROVENANCE,
        table=MERGING_TABLE.replace("{ext}", "csv"),
        reference=lambda wc: unikio_merge.REFERENCES[wc.experiment],
    output:
        png=MERGING_FIGURE.replace("{ext}", "png"),
        pdf=MERGING_FIGURE.replace("{ext}", "pdf"),
    log:
        f"{LOGS}/merged_figure_{{experiment}}_{{arch}}.log",
    wildcard_constraints:
        experiment="blk|net",
    script:
        "../scripts/make_merged_figure.py"


rule merged_claims_table:
    input:
        provenance=MERGING_PROVENANCE,
        blk=MERGING_RUNS.format(experiment="blk"),
        net=MERGING_RUNS.format(experiment="net"),
        claims="config/reference/claims.yaml",
    output:
        csv=MERGING_CLAIMS.replace("{ext}", "csv"),
        md=MERGING_CLAIMS.replace("{ext}", "md"),
        tex=MERGING_CLAIMS.replace("{ext}", "tex"),
    log:
        f"{LOGS}/merged_claims_table.log",
    script:
        "../scripts/make_merged_claims.py"


rule merged_hosts_table:
    input:
        provenance=MERGING_PROVENANCE,
    output:
        csv=MERGING_HOSTS.replace("{ext}", "csv"),
        md=MERGING_HOSTS.replace("{ext}", "md"),
    log:
        f"{LOGS}/merged_hosts_table.log",
    script:
        "../scripts/make_merged_hosts.py"


rule merged_results:
    input:
        merged_parts,
    output:
        directory(MERGED),
    log:
        f"{LOGS}/merged_results.log",
    params:
        staging=MERGING,
    script:
        "../scripts/publish_merged.py"


rule merge:
    input:
        MERGED,
