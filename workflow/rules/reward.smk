# Stage 2: the reward model. One target path per row of the paper's tables:
#   {RUN}/reward/{variant}/metrics.json   variants a_base ... f_full (config/reward/<variant>.yaml)
#   {RUN}/reward/{baseline}/metrics.json  baselines vam, cg4ctr
# reward_train / baseline_train write {RUN}/reward/<name>/model; reward_eval scores the test pairs in one
# order (the paper's metric) and in both; pair_ceiling (synthetic world only) adds the Bayes ceiling;
# reward_tables writes the ablation and comparison tables from the metric files alone.


# One reward-model variant: LLaVA-NeXT on concatenated pair images + C_RM; DeepSpeed; checkpoints in
# model.ckpt/ (resumed after a preemption). The tiny side_desc readout also reads the base model's description
# head (caig vision-pretrain).
rule reward_train:
    input:
        pairs=rules.pairs.output.train,
        catalog=rules.ingest.output.catalog,
        base=reward_backbone,
        description_head=reward_description_head,
    output:
        model=directory(f"{REWARD}/{{variant}}/model"),
        metrics=f"{REWARD}/{{variant}}/train_metrics.json",
    log:
        f"{LOGS}/reward_train/{{variant}}.log",
    benchmark:
        f"{BENCH}/reward_train/{{variant}}.tsv"
    wildcard_constraints:
        variant=one_of(RM_VARIANTS),
    conda:
        ENV
    params:
        description_head=lambda wc, input: (
            f"--description-head {input.description_head}"
            if input.description_head
            else ""
        ),
        overrides=reward_overrides("reward-train"),
        settings=settings_of(
            reward_overrides("reward-train"), "reward", "train", "model", "seed"
        ),
    shell:
        "exec caig launch -- reward-train --pairs {input.pairs} --catalog {input.catalog} --base {input.base}"
        " {params.description_head} --out {output.model} --metrics {output.metrics} {params.overrides}"
        " 2> {log}"


# A baseline of the comparison (VAM, CG4CTR: docs/baselines.md) on the same train pairs; one GPU.
rule baseline_train:
    input:
        pairs=rules.pairs.output.train,
        catalog=rules.ingest.output.catalog,
    output:
        model=directory(f"{REWARD}/{{baseline}}/model"),
        metrics=f"{REWARD}/{{baseline}}/train_metrics.json",
    log:
        f"{LOGS}/baseline_train/{{baseline}}.log",
    benchmark:
        f"{BENCH}/baseline_train/{{baseline}}.tsv"
    wildcard_constraints:
        baseline=one_of(RM_BASELINES),
    conda:
        ENV
    params:
        overrides=reward_overrides("baseline-train"),
        settings=settings_of(
            reward_overrides("baseline-train"), "reward", "train", "seed"
        ),
    shell:
        "exec caig launch --gpus-per-node 1 -- baseline-train --pairs {input.pairs} --catalog {input.catalog}"
        " --out {output.model} --metrics {output.metrics} {params.overrides} 2> {log}"


# Pair accuracy on the test pairs: one order (the paper's Eq. 13) and both orders, product-level bootstrap 95%
# intervals.
rule reward_eval:
    input:
        model=f"{REWARD}/{{variant}}/model",
        pairs=rules.pairs.output.test,
        catalog=rules.ingest.output.catalog,
    output:
        metrics=f"{REWARD}/{{variant}}/metrics.json",
        predictions=f"{REWARD}/{{variant}}/predictions.parquet",
    log:
        f"{LOGS}/reward_eval/{{variant}}.log",
    benchmark:
        f"{BENCH}/reward_eval/{{variant}}.tsv"
    wildcard_constraints:
        variant=one_of([*RM_VARIANTS, *RM_BASELINES]),
    conda:
        ENV
    params:
        overrides=reward_overrides("reward-eval"),
        settings=settings_of(reward_overrides("reward-eval"), "reward", "model", "seed"),
    shell:
        "exec caig launch -- reward-eval --model {input.model} --pairs {input.pairs} --catalog {input.catalog}"
        " --out {output.metrics} --predictions {output.predictions} {params.overrides} 2> {log}"


# The synthetic world's Bayes ceiling on the test pairs, and every model judged by the true order.
rule pair_ceiling:
    input:
        pairs=rules.pairs.output.test,
        truth=rules.sim_world.output.truth,
        predictions=[
            f"{REWARD}/{name}/predictions.parquet"
            for name in [*RM_VARIANTS, *RM_BASELINES]
        ],
    output:
        ceiling=f"{REWARD}/ceiling.json",
    log:
        f"{LOGS}/pair_ceiling.log",
    benchmark:
        f"{BENCH}/pair_ceiling.tsv"
    conda:
        ENV
    params:
        predictions=lambda wc, input: " ".join(
            f"--predictions {name}={path}"
            for name, path in zip([*RM_VARIANTS, *RM_BASELINES], input.predictions)
        ),
        overrides=stage_overrides("pair-ceiling"),
        settings=settings_of(stage_overrides("pair-ceiling"), "reward", "seed"),
    shell:
        "caig pair-ceiling --pairs {input.pairs} --truth {input.truth} --out {output.ceiling}"
        " {params.predictions} {params.overrides} 2> {log}"


# The RM ablation table (rows a-f) and the comparison table (baselines vs CAIG), with the paper's values
# and the Bayes ceiling: Markdown, CSV and LaTeX, from the metric files alone.
rule reward_tables:
    input:
        unpack(lambda wc: reward_table_inputs()),
    output:
        ablation_md=report(
            f"{RUN}/tables/reward_ablation.md",
            caption="../report/reward_ablation.rst",
            category="Reward model",
        ),
        ablation_csv=f"{RUN}/tables/reward_ablation.csv",
        ablation_tex=f"{RUN}/tables/reward_ablation.tex",
        comparison_md=report(
            f"{RUN}/tables/reward_comparison.md",
            caption="../report/reward_comparison.rst",
            category="Reward model",
        ),
        comparison_csv=f"{RUN}/tables/reward_comparison.csv",
        comparison_tex=f"{RUN}/tables/reward_comparison.tex",
    log:
        f"{LOGS}/reward_tables.log",
    conda:
        ENV
    params:
        metrics=lambda wc, input: " ".join(
            f"--metrics {name}={path}"
            for name, path in zip(reward_metrics(), input.metrics)
        ),
        ceiling=lambda wc, input: (
            f"--ceiling {input.ceiling}" if "ceiling" in input.keys() else ""
        ),
        out=parent_of("ablation_md"),
        overrides=stage_overrides("reward-tables"),
    shell:
        "caig reward-tables {params.metrics} {params.ceiling} --out {params.out}"
        " {params.overrides} 2> {log}"
