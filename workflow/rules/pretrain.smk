# Stage 1: the base model (tiny: random init + a tokenizer trained on the study's texts; paper: the local
# LLaVA-v1.6-Vicuna-7B checkpoint, checked) and its e-commerce knowledge pre-training. The pre-trained model
# initialises both the prompt model (preference stage) and the reward model (reward stage).


# Pre-training records of the three task families (the paper's mix, scaled by preset) from the catalog and
# reviewed descriptions, never the click log; products of the reward model's test split left out.
rule pretrain_data:
    input:
        unpack(lambda wc: pretrain_data_inputs()),
    output:
        data=f"{RUN}/pretrain/data.jsonl",
        corpus=f"{RUN}/pretrain/corpus.txt",
        summary=f"{RUN}/pretrain/summary.json",
    log:
        f"{LOGS}/pretrain_data.log",
    benchmark:
        f"{BENCH}/pretrain_data.tsv"
    conda:
        ENV
    params:
        args=pretrain_data_args,
        out=parent_of("data"),
        overrides=stage_overrides("pretrain-data"),
        settings=settings_of(
            stage_overrides("pretrain-data"),
            "pretrain",
            "seed",
            "data.pairs.test_fraction",
            "data.pairs.seed",
        ),
    shell:
        "caig pretrain-data {params.args} --out {params.out} {params.overrides} 2> {log}"


# The base LLaVA-NeXT: tiny random init with a tokenizer trained on the pre-training texts, or the
# paper's local checkpoint (model.path), checked and written in the same layout. Where its vision tower is
# pre-trained next (model.vision_pretrain), it is written to models/init and models/base is that step's.
rule init_model:
    input:
        corpus=rules.pretrain_data.output.corpus if PRESET == "tiny" else [],
    output:
        model=directory(
            f"{RUN}/models/init" if VISION_PRETRAIN else f"{RUN}/models/base"
        ),
    log:
        f"{LOGS}/init_model.log",
    benchmark:
        f"{BENCH}/init_model.tsv"
    conda:
        ENV
    params:
        corpus=lambda wc, input: f"--corpus {input.corpus}" if input.corpus else "",
        overrides=stage_overrides("init-model"),
        settings=settings_of(stage_overrides("init-model"), "model", "seed"),
    shell:
        "caig init-model {params.corpus} --out {output.model} {params.overrides} 2> {log}"


# The vision tower's pre-training in miniature (model.vision_pretrain; the tiny preset): the tower and the
# projector learn to see from ads of training products rendered over random backgrounds, predicting each
# ad's description tokens, as LLaVA's CLIP tower learnt from captioned photos. Writes the base model.
if VISION_PRETRAIN:

    rule vision_pretrain:
        input:
            model=rules.init_model.output.model,
            catalog=rules.ingest.output.catalog,
        output:
            model=directory(f"{RUN}/models/base"),
            metrics=f"{RUN}/pretrain/vision_metrics.json",
        log:
            f"{LOGS}/vision_pretrain.log",
        benchmark:
            f"{BENCH}/vision_pretrain.tsv"
        priority: 10  # on the critical path: before the jobs that could run beside it
        conda:
            ENV
        threads: PLAN.job_threads("vision-pretrain")
        params:
            overrides=stage_overrides("vision-pretrain"),
            settings=settings_of(
                stage_overrides("vision-pretrain"),
                "model",
                "generate",
                "train.torch_threads",
                "train.job_threads",
                "train.report_to",
                "data.pairs.test_fraction",
                "data.pairs.seed",
                "seed",
            ),
        shell:
            "caig vision-pretrain --model {input.model} --catalog {input.catalog} --out {output.model}"
            " --metrics {output.metrics} {params.overrides} 2> {log}"


# E-commerce knowledge pre-training: full fine-tuning under DeepSpeed (tiny: ZeRO-2 on CPU; paper: ZeRO-3,
# 8 GPUs). Checkpoints in models/pretrained.ckpt/; a rerun after a preemption resumes from there.
rule pretrain:
    input:
        data=rules.pretrain_data.output.data,
        base=base_model(),
    output:
        model=directory(f"{RUN}/models/pretrained"),
        metrics=f"{RUN}/pretrain/train_metrics.json",
    log:
        f"{LOGS}/pretrain.log",
    benchmark:
        f"{BENCH}/pretrain.tsv"
    priority: 10  # on the critical path: before the jobs that could run beside it
    conda:
        ENV
    threads: PLAN.job_threads("pretrain")
    params:
        overrides=stage_overrides("pretrain"),
        settings=settings_of(
            stage_overrides("pretrain"), "pretrain", "train", "model", "seed"
        ),
    shell:
        "exec caig launch -- pretrain --data {input.data} --base {input.base} --out {output.model}"
        " --metrics {output.metrics} {params.overrides} 2> {log}"


# Loss curves of the pre-training steps (and the vision tower's probes), for judging convergence.
rule pretrain_report:
    input:
        stage1=rules.pretrain.output.metrics,
        vision=rules.vision_pretrain.output.metrics if VISION_PRETRAIN else [],
    output:
        figure=report(
            f"{RUN}/figures/pretrain_loss.png",
            caption="../report/pretrain_loss.rst",
            category="Pre-training",
        ),
    log:
        f"{LOGS}/pretrain_report.log",
    conda:
        ENV
    params:
        vision=lambda wc, input: f"--vision {input.vision}" if input.vision else "",
    shell:
        "caig pretrain-report --stage1 {input.stage1} {params.vision} --out {output.figure} 2> {log}"
