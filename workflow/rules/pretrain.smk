# Stage 1: the base model (tiny: random init + a tokenizer trained on the study's texts; paper: the local
# LLaVA-v1.6-Vicuna-7B checkpoint, checked) and its e-commerce knowledge pre-training. The pre-trained model
# initialises both the prompt model (preference stage) and the reward model (reward stage).


# Pre-training records of the three task families (the paper's mix, scaled by preset); test products excluded.
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
        settings=settings_of(stage_overrides("pretrain-data"), "pretrain", "seed"),
    shell:
        "caig pretrain-data {params.args} --out {params.out} {params.overrides} 2> {log}"


# The base LLaVA-NeXT: tiny random init with a tokenizer trained on the pre-training texts, or the
# paper's local checkpoint (model.path), checked and written in the same layout.
rule init_model:
    input:
        corpus=rules.pretrain_data.output.corpus if PRESET == "tiny" else [],
    output:
        model=directory(f"{RUN}/models/base"),
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


# E-commerce knowledge pre-training: full fine-tuning under DeepSpeed (tiny: ZeRO-2 on CPU; paper: ZeRO-3,
# 8 GPUs). Checkpoints in models/pretrained.ckpt/; a rerun after a preemption resumes from there.
rule pretrain:
    input:
        data=rules.pretrain_data.output.data,
        base=rules.init_model.output.model,
    output:
        model=directory(f"{RUN}/models/pretrained"),
        metrics=f"{RUN}/pretrain/train_metrics.json",
    log:
        f"{LOGS}/pretrain.log",
    benchmark:
        f"{BENCH}/pretrain.tsv"
    conda:
        ENV
    params:
        overrides=stage_overrides("pretrain"),
        settings=settings_of(
            stage_overrides("pretrain"), "pretrain", "train", "model", "seed"
        ),
    shell:
        "exec caig launch -- pretrain --data {input.data} --base {input.base} --out {output.model}"
        " --metrics {output.metrics} {params.overrides} 2> {log}"
