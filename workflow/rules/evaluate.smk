# Evaluation of the preference stage: match rate, mean oracle CTR and RM win rate against epoch 0, per method
# and epoch, on the fixed held-out products. Epoch 0 is evaluated once per initial model (start-<init>), and
# every later epoch of a method is compared with it.


rule evaluate_match:
    """Held-out ads of one (method, epoch): oracle (or annotators') match judgement, oracle CTR, RM win rate."""
    input:
        unpack(match_inputs),
    output:
        folder=directory(f"{MATCH}/{{run}}/epoch{{epoch}}"),
    log:
        f"{LOGS}/evaluate_match/{{run}}/epoch{{epoch}}.log",
    benchmark:
        f"{BENCH}/evaluate_match/{{run}}/epoch{{epoch}}.tsv"
    conda:
        ENV
    params:
        options=match_options,
        overrides=preference_overrides("evaluate-match", "sim"),
        settings=settings_of(
            preference_overrides("evaluate-match", "sim"), *MATCH_SETTINGS
        ),
    shell:
        "caig evaluate-match --model {input.model} --catalog {input.catalog} --products {input.products}"
        " {params.options} --epoch {wildcards.epoch} --out {output.folder} {params.overrides} 2> {log}"


rule preference_report:
    """Match rate over epochs per method (Markdown, CSV, LaTeX), PCPO minus DPO with a paired interval, its
    figure, and a contact sheet of sample ads."""
    input:
        folders=lambda wc: sorted(set(match_folders().values())),
    output:
        markdown=report(
            f"{RUN}/tables/match_rate.md",
            caption="../report/match_rate_table.rst",
            category="Preference",
        ),
        csv=f"{RUN}/tables/match_rate.csv",
        paired=f"{RUN}/tables/match_rate_paired.csv",
        latex=f"{RUN}/tables/match_rate.tex",
        figure=report(
            f"{RUN}/figures/match_rate.png",
            caption="../report/match_rate.rst",
            category="Preference",
        ),
        sheet=report(
            f"{RUN}/figures/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="Preference",
        ),
    log:
        f"{LOGS}/preference_report.log",
    conda:
        ENV
    params:
        runs=lambda wc: shlex.join(
            arg
            for (m, e), path in match_folders().items()
            for arg in ("--run", f"{m}:{e}={path}")
        ),
        tables=lambda wc, output: os.path.dirname(output.markdown),
        figures=lambda wc, output: os.path.dirname(output.figure),
        overrides=stage_overrides("preference-report"),
    shell:
        "caig preference-report --tables {params.tables} --figures {params.figures} {params.runs}"
        " {params.overrides} 2> {log}"


# Synthetic world only: every epoch's preference set against the truth (did the judge teach reward hacking?).
rule judge_audit:
    input:
        preferences=lambda wc: list(preference_sets().values()),
        catalog=rules.ingest.output.catalog,
    output:
        markdown=report(
            f"{RUN}/tables/judge_audit.md",
            caption="../report/judge_audit.rst",
            category="Preference",
        ),
        csv=f"{RUN}/tables/judge_audit.csv",
        latex=f"{RUN}/tables/judge_audit.tex",
    log:
        f"{LOGS}/judge_audit.log",
    conda:
        ENV
    params:
        sets=lambda wc: shlex.join(
            arg
            for (m, e), path in preference_sets().items()
            for arg in ("--preferences", f"{m}:{e}={path}")
        ),
        tables=parent_of("markdown"),
        overrides=stage_overrides("judge-audit"),
        settings=settings_of(stage_overrides("judge-audit"), "sim", "seed"),
    shell:
        "caig judge-audit {params.sets} --catalog {input.catalog} --tables {params.tables}"
        " {params.overrides} 2> {log}"
