# The paper artifact: ./snakemake --cores 4 archive


rule archive:
    input:
        rules.all.input,
        rules.report.output,
    output:
        "results/artifact.tar.gz",
    log:
        f"{LOGS}/archive.log",
    script:
        "../scripts/write_archive.py"
