# Simulated online A/B test (docs/online-ab.md): each compared method's held-out ads after the last epoch are a
# bucket against the control bucket (the epoch-0 prompt model's ads); a bandit serves them to simulated traffic
# whose clicks come from the world's true CTR. Then the CTR-lift table, from the metrics file alone.
rule online_ab:
    """Bandit-served A/B test of the methods' held-out ads against the epoch-0 ads: CTR lift, impressions."""
    input:
        unpack(online_inputs),
    output:
        metrics=f"{ONLINE}/metrics.json",
        served=f"{ONLINE}/served.parquet",
    log:
        f"{LOGS}/online_ab.log",
    benchmark:
        f"{BENCH}/online_ab.tsv"
    conda:
        ENV
    params:
        ads=lambda wc, input: shlex.join(
            arg
            for method in online_methods()
            for arg in ("--ads", f"{method}={input[method]}")
        ),
        out=parent_of("metrics"),
        overrides=lambda wc: shlex.join(online_overrides()),
        settings=settings_of(shlex.join(online_overrides()), "online", "sim", "seed"),
    shell:
        "caig online --control {input.control} {params.ads} --catalog {input.catalog} --out {params.out}"
        " {params.overrides} 2> {log}"


rule online_table:
    """Online CTR lift by category (Markdown, CSV, LaTeX) beside the paper's, and the separation figure."""
    input:
        metrics=rules.online_ab.output.metrics,
    output:
        markdown=report(
            f"{RUN}/tables/online_lift.md",
            caption="../report/online_lift.rst",
            category="Online A/B",
        ),
        csv=f"{RUN}/tables/online_lift.csv",
        latex=f"{RUN}/tables/online_lift.tex",
        figure=report(
            f"{RUN}/figures/online_separation.png",
            caption="../report/online_separation.rst",
            category="Online A/B",
        ),
    log:
        f"{LOGS}/online_table.log",
    conda:
        ENV
    params:
        tables=parent_of("markdown"),
        figures=parent_of("figure"),
        overrides=lambda wc: shlex.join(online_overrides()),
    shell:
        "caig online-report --metrics {input.metrics} --tables {params.tables} --figures {params.figures}"
        " {params.overrides} 2> {log}"
