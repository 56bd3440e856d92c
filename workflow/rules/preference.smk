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


rule sample:
    """The prompt model of epoch e-1 samples two distinct descriptions per training product."""
    input:
        model=previous_model,
        catalog=rules.ingest.output.catalog,
        products=rules.preference_products.output.products,
    output:
        candidates=f"{PREF}/{{run}}/epoch{{epoch}}/sample/candidates.parquet",
        summary=f"{PREF}/{{run}}/epoch{{epoch}}/sample/summary.json",
    log:
        f"{LOGS}/sample/{{run}}/epoch{{epoch}}.log",
    benchmark:
        f"{BENCH}/sample/{{run}}/epoch{{epoch}}.tsv"
    conda:
        ENV
    params:
        out=parent_of("candidates"),
        overrides=preference_overrides("sample"),
        settings=settings_of(
            preference_overrides("sample"),
            *SAMPLE_SETTINGS,
            "preference.chunk_products",
        ),
    shell:
        "exec caig launch -- sample --model {input.model} --catalog {input.catalog} --products {input.products}"
        " --role train"
        " --epoch {wildcards.epoch} --out {params.out} {params.overrides} 2> {log}"


rule render:
    """Each candidate description becomes an ad image (tiny: the world's renderer; paper: SD1.5 + ControlNet)."""
    input:
        candidates=rules.sample.output.candidates,
        catalog=rules.ingest.output.catalog,
    output:
        ads=directory(f"{PREF}/{{run}}/epoch{{epoch}}/render"),
    log:
        f"{LOGS}/render/{{run}}/epoch{{epoch}}.log",
    benchmark:
        f"{BENCH}/render/{{run}}/epoch{{epoch}}.tsv"
    conda:
        ENV
    params:
        overrides=preference_overrides("render"),
        settings=settings_of(
            preference_overrides("render"),
            *RENDER_SETTINGS,
            "preference.chunk_products",
        ),
    shell:
        "exec caig launch -- render --candidates {input.candidates} --catalog {input.catalog} --out {output.ads}"
        " {params.overrides} 2> {log}"


rule judge:
    """The frozen reward model scores each product's two ads (both orders): the epoch's preference set."""
    input:
        ads=judged_ads,
        catalog=rules.ingest.output.catalog,
        reward_model=lambda wc: reward_model_dir(
            PLAN.method_judge(PLAN.run_method(wc.run))
        ),
    output:
        preferences=f"{PREF}/{{run}}/epoch{{epoch}}/judge/preferences.parquet",
        summary=f"{PREF}/{{run}}/epoch{{epoch}}/judge/summary.json",
    log:
        f"{LOGS}/judge/{{run}}/epoch{{epoch}}.log",
    benchmark:
        f"{BENCH}/judge/{{run}}/epoch{{epoch}}.tsv"
    conda:
        ENV
    params:
        out=parent_of("preferences"),
        overrides=preference_overrides("judge"),
        settings=settings_of(
            preference_overrides("judge"), *JUDGE_SETTINGS, "preference.chunk_products"
        ),
    shell:
        "exec caig launch -- judge --ads {input.ads}/ads.parquet --catalog {input.catalog}"
        " --reward-model {input.reward_model}"
        " --epoch {wildcards.epoch} --out {params.out} {params.overrides} 2> {log}"


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
