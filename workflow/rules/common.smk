# Shared helpers: config validation, output paths, and the Hydra overrides each stage command gets.
import os
import re
import shlex

from snakemake.utils import validate

from caig.plan import (
    JUDGE_SETTINGS,
    MATCH_SETTINGS,
    RENDER_SETTINGS,
    SAMPLE_SETTINGS,
    WIN_RATE_RM,
    Plan,
)

validate(config, schema="../schemas/config.schema.yaml")
# Which jobs run, which folders methods share, each job's settings digest (caig/plan.py).
PLAN = Plan(config)
stage_overrides = PLAN.stage_overrides

PRESET = config["preset"]
# Every output of this run lives under RUN; a table row's file is RUN/<stage>/...
RUN = f"{config['results']}/{PRESET}"
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"
# The software every rule runs with (documented for --use-conda; the README's setup builds the same in .venv).
ENV = "../../environment.yml"
SOURCE = config["data"]["source"]


def settings_of(overrides, *nodes):
    """A params value: the plan's digest of the Hydra nodes (``nodes``, dotted paths) a job's command reads, as
    it composes them from ``overrides`` (a string, or a function of the wildcards like the rule's own
    ``overrides`` param); Snakemake's params rerun trigger reruns the jobs whose settings changed.
    """
    if callable(overrides):
        return lambda wildcards: PLAN.settings_digest(overrides(wildcards), nodes)
    return PLAN.settings_digest(overrides, nodes)


def one_of(names):
    """A wildcard constraint matching exactly these names (none: a pattern that never matches)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def parent_of(output_key):
    """A params function giving the folder of one output: commands take `--out DIR`."""
    return lambda wildcards, output: os.path.dirname(output[output_key])


def raw_inputs():
    """The catalog and log that ingest validates: the world's, the user's native files, or the importer's."""
    if SOURCE == "synthetic":
        return {
            "catalog": rules.sim_world.output.catalog,
            "log": rules.sim_world.output.log,
        }
    if SOURCE == "native":
        return {"catalog": config["data"]["catalog"], "log": config["data"]["log"]}
    return {
        "catalog": rules.import_data.output.catalog,
        "log": rules.import_data.output.log,
    }


def image_root_arg():
    """Imported datasets name images relative to their image folder; native files may set image_root."""
    root = config["data"].get("image_root")
    if SOURCE in ("alibaba", "cg4ctr"):
        root = config["data"]["images"]
    return f"--image-root {shlex.quote(root)}" if root else ""


def import_args():
    """Layout-specific importer options (image folder, optional captions)."""
    args = ["--images", config["data"]["images"]]
    if config["data"].get("captions"):
        args += ["--captions", config["data"]["captions"]]
    return shlex.join(args)


# ---------------------------------------------------------------------------------------------- pre-training
def pretrain_data_inputs():
    """The user's prepared records (config: pretrain.jsonl), or the catalog and reviewed descriptions: the
    user's (pretrain.descriptions) or, on the synthetic world, its annotators'. Never the click log.
    """
    pretrain = config.get("pretrain", {})
    if pretrain.get("jsonl"):
        return {"jsonl": pretrain["jsonl"]}
    descriptions = pretrain.get("descriptions")
    if not descriptions:
        if SOURCE != "synthetic":
            raise ValueError(
                "pre-training on real data needs reviewed descriptions: set pretrain.descriptions (or prepared "
                "records, pretrain.jsonl) in config/config.yaml (format: docs/pretrain-data.md)"
            )
        descriptions = rules.sim_world.output.reviewed
    return {"catalog": rules.ingest.output.catalog, "descriptions": descriptions}


def pretrain_data_args(wildcards, input):
    if "jsonl" in input.keys():
        return f"--jsonl {shlex.quote(input.jsonl)}"
    return shlex.join(
        ["--catalog", input.catalog, "--descriptions", input.descriptions]
    )


# The base model every stage starts from (models/base): init-model's output or, where
# model.vision_pretrain.enabled (tiny), that model after its vision tower's pre-training, as LLaVA's base
# carries CLIP's (caig vision-pretrain).
VISION_PRETRAIN = PLAN.vision_pretrain


def base_model():
    return (
        rules.vision_pretrain.output.model
        if VISION_PRETRAIN
        else rules.init_model.output.model
    )


# ---------------------------------------------------------------------------------------------- reward model
# One target path per row of the paper's reward-model tables: {REWARD}/<variant or baseline>/metrics.json.
REWARD = f"{RUN}/reward"
RM_VARIANTS = PLAN.rm_variants
RM_BASELINES = PLAN.rm_baselines


def reward_backbone(wildcards):
    """The backbone a reward variant starts from (its config's reward.init: base or pretrained)."""
    return initial_model(PLAN.reward_init(wildcards.variant))


def reward_description_head(wildcards):
    """Where a classifier variant with the side_desc readout reads the description head: the vision
    pre-training's model directory (the base model); nothing for every other variant."""
    return base_model() if PLAN.reads_description_head(wildcards.variant) else []


def reward_overrides(command):
    return lambda wc: PLAN.reward_overrides(
        command, wc.get("variant", wc.get("baseline"))
    )


def reward_metrics():
    return {
        name: f"{REWARD}/{name}/metrics.json" for name in [*RM_VARIANTS, *RM_BASELINES]
    }


def reward_model_dir(name):
    """A trained reward-model variant or baseline (reward_train / baseline_train write the same layout)."""
    if name not in [*RM_VARIANTS, *RM_BASELINES]:
        raise ValueError(
            f"reward model {name!r} is not among the configured reward.variants / reward.baselines"
        )
    return f"{REWARD}/{name}/model"


def reward_table_inputs():
    inputs = {"metrics": list(reward_metrics().values())}
    if SOURCE == "synthetic":
        inputs["ceiling"] = rules.pair_ceiling.output.ceiling
    return inputs


# ---------------------------------------------------------------------------------------------- preference
PREF = f"{RUN}/preference"
METHODS = PLAN.methods


def initial_model(init):
    """Epoch 0: the e-commerce pre-trained prompt model, or the base model without pre-training."""
    return rules.pretrain.output.model if init == "pretrained" else base_model()


def preference_set(method, epoch):
    """The preference set a method trains on in an epoch (epoch 1: its judge folder's)."""
    return (
        f"{PREF}/{PLAN.judge_run(method, epoch)}/epoch{epoch}/judge/preferences.parquet"
    )


def judged_ads(wildcards):
    """The ads a judge job scores: its epoch's, which for epoch 1 live in the method's sample folder."""
    run = PLAN.ads_run(wildcards.run, wildcards.epoch)
    return f"{PREF}/{run}/epoch{wildcards.epoch}/render"


def shards(folder):
    """The K shard folders of a scattered step's output folder (preference.smk's scattergather: generation),
    its other wildcards left to the rule."""
    return gather.generation(f"{folder}.shards/{{scatteritem}}", allow_missing=True)


def preference_sets():
    """Every (method, epoch) preference set of the study, in table order (epoch 1 may be a shared file)."""
    return {(m, e): preference_set(m, e) for m, e in PLAN.trained_epochs()}


def model_of(method, epoch):
    """The prompt model of a method after `epoch` epochs."""
    epoch = int(epoch)
    if epoch == 0:
        return initial_model(PLAN.method_init(method))
    return f"{PREF}/{method}/epoch{epoch}/train/model"


def previous_model(wildcards):
    """The model that samples a run's epoch: epoch e-1 of the run's method."""
    return model_of(PLAN.run_method(wildcards.run), int(wildcards.epoch) - 1)


def preference_overrides(command, *also):
    """Hydra overrides of one command of a run folder's jobs (Plan.preference_overrides)."""
    return lambda wc: PLAN.preference_overrides(
        command, wc.get("run", wc.get("method")), *also
    )


MATCH = f"{RUN}/evaluate/match"
# The synthetic world's oracle judges the tiny study; on real data the rule writes an annotation sheet.
MATCH_JUDGE = "oracle" if SOURCE == "synthetic" else "annotators"


def match_run(method, epoch):
    """The evaluation folder of a method's epoch (epoch 0: shared, Plan.eval0_folders)."""
    return f"{MATCH}/{PLAN.match_run(method, epoch)}/epoch{epoch}"


def match_inputs(wildcards):
    """The evaluated model, and for epochs >= 1 the epoch-0 evaluation (baseline of the RM win rate)."""
    method = PLAN.run_method(wildcards.run, "evaluate-match")
    epoch = int(wildcards.epoch)
    inputs = {
        "model": model_of(method, epoch),
        "catalog": rules.ingest.output.catalog,
        "products": rules.preference_products.output.products,
    }
    if epoch > 0:
        inputs["baseline"] = match_run(method, 0)
        inputs["reward_model"] = reward_model_dir(WIN_RATE_RM)
    return inputs


def match_options(wildcards, input):
    """--baseline/--reward-model for epochs >= 1; the run name recorded in the metrics."""
    # the run folder's name: a method, or for a shared epoch-0 folder its own name (start-<init>), so that
    # folder's files do not depend on which methods the study runs
    options = ["--method", wildcards.run, "--judge", MATCH_JUDGE]
    if "baseline" in input.keys():
        options += ["--baseline", input.baseline, "--reward-model", input.reward_model]
    return shlex.join(options)


def match_folders():
    """Every (method, epoch) evaluation folder of the study, in table order."""
    return {(m, e): match_run(m, e) for m, e in PLAN.evaluated_epochs()}


# ---------------------------------------------------------------------------------------------- online A/B
ONLINE = f"{RUN}/online"


online_overrides = PLAN.online_overrides
online_methods = PLAN.online_methods


def online_inputs(wildcards):
    """The control's epoch-0 evaluation, each compared method's last-epoch evaluation (its own N), and the
    catalog."""
    return {
        "control": match_run(str(PLAN.online["control"]), 0),
        "catalog": rules.ingest.output.catalog,
        **{
            method: match_run(method, PLAN.method_epochs(method))
            for method in online_methods()
        },
    }


# ---------------------------------------------------------------------------------------------- targets
def all_targets():
    return [
        *table_targets(),
        rules.pairs.output.train,
        rules.pairs.output.test,
        rules.benchmark_summary.output.markdown,
    ]


def table_targets():
    """Every table and figure of the run (the `tables` target)."""
    return [
        rules.data_report.output.markdown,
        rules.data_report.output.figure,
        rules.pretrain_report.output.figure,
        rules.training_curves.output.figure,
        *rules.reward_tables.output,
        *rules.preference_report.output,
        *rules.online_table.output,
        *(rules.judge_audit.output if SOURCE == "synthetic" else []),
    ]


def training_curve_runs():
    """The training jobs drawn by training_curves, as `caig training-curves --run` names and outputs: the reward
    model variants, the baselines, and every preference epoch of every method (its epochs joined on one line).
    """
    runs = [(f"reward model/{name}", f"{REWARD}/{name}/model") for name in RM_VARIANTS]
    runs += [(f"baselines/{name}", f"{REWARD}/{name}/model") for name in RM_BASELINES]
    runs += [
        (f"preference/{method}/{epoch}", f"{PREF}/{method}/epoch{epoch}/train")
        for method, epoch in PLAN.trained_epochs()
    ]
    return runs
