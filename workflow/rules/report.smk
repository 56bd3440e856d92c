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


# Loss curves of the reward models and of each preference epoch, read from the TensorBoard event files each
# training job writes beside its output (<output>.tensorboard/, train.report_to). Its inputs are those jobs'
# metric files, so it redraws after any of them reruns; pre-training's curves are pretrain_report's.
rule training_curves:
    input:
        reward=[
            f"{REWARD}/{name}/train_metrics.json"
            for name in [*RM_VARIANTS, *RM_BASELINES]
        ],
        preference=[
            f"{PREF}/{method}/epoch{epoch}/train/train.json"
            for method, epoch in PLAN.trained_epochs()
        ],
    output:
        figure=report(
            f"{RUN}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        f"{LOGS}/training_curves.log",
    conda:
        ENV
    params:
        runs=shlex.join(
            arg
            for name, output in training_curve_runs()
            for arg in ("--run", f"{name}={output}")
        ),
    shell:
        "caig training-curves {params.runs} --out {output.figure} 2> {log}"
