# Report material that spans the whole run.


rule benchmark_summary:
    """Every job's Snakemake benchmark record (wall time, CPU, peak memory) in one table, slowest first.

    Its inputs are the run's other targets, so it runs last and sees every record under {BENCH}/.
    """
    input:
        lambda wc: table_targets(),
    output:
        markdown=report(
            f"{RUN}/tables/benchmarks.md",
            caption="../report/benchmarks.rst",
            category="Benchmarks",
        ),
        csv=f"{RUN}/tables/benchmarks.csv",
    log:
        f"{LOGS}/benchmark_summary.log",
    conda:
        ENV
    params:
        bench=BENCH,
    shell:
        "caig bench-summary --bench-dir {params.bench} --out {output.markdown} 2> {log}"
