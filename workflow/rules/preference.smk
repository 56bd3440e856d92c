# Preference stage (Algorithm 1): per method and epoch e >= 1, the prompt model of epoch e-1 samples two
# descriptions per training product (sample), they are rendered into ads (render), the frozen reward model picks
# y+ and y- (judge), and one DPO/PCPO epoch turns the model of epoch e-1 into the model of epoch e
# (preference_train). Each step of each epoch is its own job whose input is the previous epoch's model, so a
# crashed epoch resumes at that epoch and a finished one never reruns.
#
# Epoch 0 of a method is its initial model (`preference.init`: the pre-trained or the base model). Methods that
# share it, and sample alike, share epoch 1's candidates and ads (same model, seeds and settings: the same
# files), kept under start-<init>/; those that also judge alike with the same judge share its preference set,
# under start-<init>-<judge>/ (caig/plan.py: Plan.sample_folders, Plan.judge_folders); a method that differs
# gets its own folder. From epoch 2 on every method has its own folder. Sample, render, judge and train run
# under `caig launch`: one rank per GPU of the node (each handles every N-th product), one process on a CPU.
# Sample, render and judge work in chunks of `preference.chunk_products` products kept in <output>.parts/, so a
# killed attempt resumes at the first unfinished chunk (caig/generate/chunks.py). The chunk size is one of their
# settings: where chunks cut a batch, floats can move in their last bits (the judge's probabilities on CPU).


wildcard_constraints:
    epoch=r"\d+",
    run=r"start-[a-z]+(-[a-z0-9_]+)?|[a-z][a-z0-9_]*",
    method=r"[a-z][a-z0-9_]*",


rule preference_products:
    """The fixed product sets: M training products (every epoch) and the held-out products of the evaluation."""
    input:
        catalog=rules.ingest.output.catalog,
    output:
        products=f"{PREF}/products.parquet",
    log:
        f"{LOGS}/preference_products.log",
    conda:
        ENV
    params:
        overrides=stage_overrides("preference-products"),
        settings=settings_of(
            stage_overrides("preference-products"), "preference", "seed"
        ),
    shell:
        "caig preference-products --catalog {input.catalog} --out {output.products} {params.overrides} 2> {log}"


# Split across jobs (docs/scaling.md, Option B): with K > 1 shards (config scatter.generation, or at run time
# --set-scatter generation=K), `sample`, `render` and `judge` each run as K one-node jobs, shard I of K doing a
# contiguous run of whole chunks in <output>.shards/I-of-K (so each shard resumes on its own and a failed one
# reruns alone), and a CPU rule (sample_gather, render_gather, judge_gather) moves the shards' files into the
# output and assembles it: the same bytes as one job (caig/generate/chunks.py). The shards are temp(): once
# gathered they are removed, and a rerun of a gather whose output was deleted reruns its shards.
scattergather:
    generation=config["scatter"]["generation"],


SHARDS = len(gather.generation("{scatteritem}"))
SAMPLE_DIR = f"{PREF}/{{run}}/epoch{{epoch}}/sample"
RENDER_DIR = f"{PREF}/{{run}}/epoch{{epoch}}/render"
JUDGE_DIR = f"{PREF}/{{run}}/epoch{{epoch}}/judge"
SAMPLE_ARGS = (
    "--model {input.model} --catalog {input.catalog} --products {input.products} --role train"
    " --epoch {wildcards.epoch}"
)
RENDER_ARGS = "--candidates {input.candidates} --catalog {input.catalog}"
JUDGE_ARGS = (
    "--ads {input.ads}/ads.parquet --catalog {input.catalog} --reward-model {input.reward_model}"
    " --epoch {wildcards.epoch}"
)
SAMPLE_INPUTS = dict(
    model=previous_model,
    catalog=rules.ingest.output.catalog,
    products=rules.preference_products.output.products,
)
RENDER_INPUTS = dict(
    candidates=f"{SAMPLE_DIR}/candidates.parquet",
    catalog=rules.ingest.output.catalog,
)
JUDGE_INPUTS = dict(
    ads=judged_ads,
    catalog=rules.ingest.output.catalog,
    reward_model=lambda wc: reward_model_dir(
        PLAN.method_judge(PLAN.run_method(wc.run))
    ),
)
SAMPLE_PARAMS = dict(
    overrides=preference_overrides("sample"),
    settings=settings_of(
        preference_overrides("sample"), *SAMPLE_SETTINGS, "preference.chunk_products"
    ),
)
RENDER_PARAMS = dict(
    overrides=preference_overrides("render"),
    settings=settings_of(
        preference_overrides("render"), *RENDER_SETTINGS, "preference.chunk_products"
    ),
)
JUDGE_PARAMS = dict(
    overrides=preference_overrides("judge"),
    settings=settings_of(
        preference_overrides("judge"), *JUDGE_SETTINGS, "preference.chunk_products"
    ),
)


if SHARDS == 1:

    rule sample:
        """The prompt model of epoch e-1 samples two distinct descriptions per training product."""
        input:
            **SAMPLE_INPUTS,
        output:
            candidates=f"{SAMPLE_DIR}/candidates.parquet",
            summary=f"{SAMPLE_DIR}/summary.json",
        log:
            f"{LOGS}/sample/{{run}}/epoch{{epoch}}.log",
        benchmark:
            f"{BENCH}/sample/{{run}}/epoch{{epoch}}.tsv"
        conda:
            ENV
        params:
            **SAMPLE_PARAMS,
            out=parent_of("candidates"),
        shell:
            f"exec caig launch -- sample {SAMPLE_ARGS} --out {{params.out}} {{params.overrides}} 2> {{log}}"

    rule render:
        """Each candidate description becomes an ad image (tiny: the world's renderer; paper: SD1.5 + ControlNet)."""
        input:
            **RENDER_INPUTS,
        output:
            ads=directory(RENDER_DIR),
        log:
            f"{LOGS}/render/{{run}}/epoch{{epoch}}.log",
        benchmark:
            f"{BENCH}/render/{{run}}/epoch{{epoch}}.tsv"
        conda:
            ENV
        params:
            **RENDER_PARAMS,
        shell:
            f"exec caig launch -- render {RENDER_ARGS} --out {{output.ads}} {{params.overrides}} 2> {{log}}"

    rule judge:
        """The frozen reward model scores each product's two ads (both orders): the epoch's preference set."""
        input:
            **JUDGE_INPUTS,
        output:
            preferences=f"{JUDGE_DIR}/preferences.parquet",
            summary=f"{JUDGE_DIR}/summary.json",
        log:
            f"{LOGS}/judge/{{run}}/epoch{{epoch}}.log",
        benchmark:
            f"{BENCH}/judge/{{run}}/epoch{{epoch}}.tsv"
        conda:
            ENV
        params:
            **JUDGE_PARAMS,
            out=parent_of("preferences"),
        shell:
            f"exec caig launch -- judge {JUDGE_ARGS} --out {{params.out}} {{params.overrides}} 2> {{log}}"

else:

    rule sample:
        """Shard I of K of an epoch's sampling: its run of whole chunks (the GPU work; sample_gather joins them)."""
        input:
            **SAMPLE_INPUTS,
        output:
            shard=temp(directory(f"{SAMPLE_DIR}.shards/{{scatteritem}}")),
        log:
            f"{LOGS}/sample/{{run}}/epoch{{epoch}}-{{scatteritem}}.log",
        benchmark:
            f"{BENCH}/sample/{{run}}/epoch{{epoch}}-{{scatteritem}}.tsv"
        conda:
            ENV
        params:
            **SAMPLE_PARAMS,
        shell:
            f"exec caig launch -- sample {SAMPLE_ARGS} --shard {{wildcards.scatteritem}} --out {{output.shard}}"
            " {params.overrides} 2> {log}"

    rule sample_gather:
        """The epoch's candidates from its K sampling shards (one CPU process; loads no model)."""
        input:
            **SAMPLE_INPUTS,
            shards=shards(SAMPLE_DIR),
        output:
            candidates=f"{SAMPLE_DIR}/candidates.parquet",
            summary=f"{SAMPLE_DIR}/summary.json",
        log:
            f"{LOGS}/sample/{{run}}/epoch{{epoch}}.log",
        conda:
            ENV
        params:
            **SAMPLE_PARAMS,
            out=parent_of("candidates"),
        shell:
            f"caig sample {SAMPLE_ARGS} --gather {{input.shards}} --out {{params.out}} {{params.overrides}} 2> {{log}}"

    rule render:
        """Shard I of K of an epoch's rendering: the ads of its run of whole chunks (render_gather joins them)."""
        input:
            **RENDER_INPUTS,
        output:
            shard=temp(directory(f"{RENDER_DIR}.shards/{{scatteritem}}")),
        log:
            f"{LOGS}/render/{{run}}/epoch{{epoch}}-{{scatteritem}}.log",
        benchmark:
            f"{BENCH}/render/{{run}}/epoch{{epoch}}-{{scatteritem}}.tsv"
        conda:
            ENV
        params:
            **RENDER_PARAMS,
        shell:
            f"exec caig launch -- render {RENDER_ARGS} --shard {{wildcards.scatteritem}} --out {{output.shard}}"
            " {params.overrides} 2> {log}"

    rule render_gather:
        """The epoch's ads from its K render shards: every image moved (renamed), never copied."""
        input:
            **RENDER_INPUTS,
            shards=shards(RENDER_DIR),
        output:
            ads=directory(RENDER_DIR),
        log:
            f"{LOGS}/render/{{run}}/epoch{{epoch}}.log",
        conda:
            ENV
        params:
            **RENDER_PARAMS,
        shell:
            f"caig render {RENDER_ARGS} --gather {{input.shards}} --out {{output.ads}} {{params.overrides}} 2> {{log}}"

    rule judge:
        """Shard I of K of an epoch's judging: the RM's scores of its run of whole chunks (judge_gather joins them)."""
        input:
            **JUDGE_INPUTS,
        output:
            shard=temp(directory(f"{JUDGE_DIR}.shards/{{scatteritem}}")),
        log:
            f"{LOGS}/judge/{{run}}/epoch{{epoch}}-{{scatteritem}}.log",
        benchmark:
            f"{BENCH}/judge/{{run}}/epoch{{epoch}}-{{scatteritem}}.tsv"
        conda:
            ENV
        params:
            **JUDGE_PARAMS,
        shell:
            f"exec caig launch -- judge {JUDGE_ARGS} --shard {{wildcards.scatteritem}} --out {{output.shard}}"
            " {params.overrides} 2> {log}"

    rule judge_gather:
        """The epoch's preference set from the scores of its K judge shards (one CPU process; loads no RM)."""
        input:
            **JUDGE_INPUTS,
            shards=shards(JUDGE_DIR),
        output:
            preferences=f"{JUDGE_DIR}/preferences.parquet",
            summary=f"{JUDGE_DIR}/summary.json",
        log:
            f"{LOGS}/judge/{{run}}/epoch{{epoch}}.log",
        conda:
            ENV
        params:
            **JUDGE_PARAMS,
            out=parent_of("preferences"),
        shell:
            f"caig judge {JUDGE_ARGS} --gather {{input.shards}} --out {{params.out}} {{params.overrides}} 2> {{log}}"


rule preference_train:
    """One DPO/PCPO epoch on the epoch's preference set: LoRA on the model of epoch e-1, reference = epoch 0,
    merged into the model of epoch e."""
    input:
        model=lambda wc: model_of(wc.method, int(wc.epoch) - 1),
        reference=lambda wc: model_of(wc.method, 0),
        preferences=lambda wc: preference_set(wc.method, wc.epoch),
        catalog=rules.ingest.output.catalog,
    output:
        model=directory(f"{PREF}/{{method}}/epoch{{epoch}}/train/model"),
        metrics=f"{PREF}/{{method}}/epoch{{epoch}}/train/train.json",
    log:
        f"{LOGS}/preference_train/{{method}}/epoch{{epoch}}.log",
    benchmark:
        f"{BENCH}/preference_train/{{method}}/epoch{{epoch}}.tsv"
    conda:
        ENV
    params:
        out=parent_of("metrics"),
        overrides=preference_overrides("preference-train"),
        settings=settings_of(
            preference_overrides("preference-train"),
            "preference",
            "train",
            "model",
            "seed",
        ),
    shell:
        "exec caig launch -- preference-train --model {input.model} --reference {input.reference}"
        " --preferences {input.preferences} --catalog {input.catalog} --out {params.out}"
        " {params.overrides} 2> {log}"
