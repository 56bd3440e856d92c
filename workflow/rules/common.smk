# Shared helpers: config validation, output paths, and the Hydra overrides each stage command gets.
import functools
import hashlib
import json
import os
import re
import shlex

from snakemake.utils import validate

from omegaconf import OmegaConf

from caig.config import compose

validate(config, schema="../schemas/config.schema.yaml")

PRESET = config["preset"]
# Every output of this run lives under RUN; a table row's file is RUN/<stage>/...
RUN = f"{config['results']}/{PRESET}"
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"
# The software every rule runs with (documented for --use-conda; the README's setup builds the same in .venv).
ENV = "../../environment.yml"
SOURCE = config["data"]["source"]


def stage_overrides(command):
    """Hydra overrides for one `caig` command: the preset, then config['overrides'][command]."""
    extra = config["overrides"].get(command, [])
    return shlex.join([f"preset={PRESET}", *extra])


@functools.cache
def composed_for(overrides):
    """The config a command composes from its overrides (one shell-quoted string), as plain data."""
    return OmegaConf.to_container(compose(shlex.split(overrides)), resolve=True)


def node_at(tree, path):
    """The value at a dotted path (``preference.sample``) of a composed config; None where it is absent."""
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


@functools.cache
def settings_digest(overrides, nodes):
    chosen = {name: node_at(composed_for(overrides), name) for name in nodes}
    text = json.dumps(chosen, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def settings_of(overrides, *nodes):
    """A params value: a digest of the Hydra nodes (``nodes``, dotted paths) a job's command reads, as it
    composes them from ``overrides`` (a string, or a function of the wildcards like the rule's own
    ``overrides`` param). Editing a file of the config tree changes the digest of exactly the jobs whose
    settings changed, and Snakemake's params rerun trigger reruns them and what depends on them.
    """
    if callable(overrides):
        return lambda wildcards: settings_digest(overrides(wildcards), nodes)
    return settings_digest(overrides, nodes)


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
VISION_PRETRAIN = bool(
    node_at(
        composed_for(stage_overrides("vision-pretrain")),
        "model.vision_pretrain.enabled",
    )
)


def base_model():
    return (
        rules.vision_pretrain.output.model
        if VISION_PRETRAIN
        else rules.init_model.output.model
    )


# ---------------------------------------------------------------------------------------------- reward model
# One target path per row of the paper's reward-model tables: {REWARD}/<variant or baseline>/metrics.json.
REWARD = f"{RUN}/reward"
REWARD_CONFIG = config.get("reward", {})
RM_VARIANTS = REWARD_CONFIG.get(
    "variants",
    ["a_base", "b_pretrained", "c_cls_head", "d_caption", "e_product_info", "f_full"],
)
RM_BASELINES = REWARD_CONFIG.get("baselines", ["vam", "cg4ctr"])


def reward_backbone(wildcards):
    """The backbone a reward variant starts from (its config's reward.init: base or pretrained)."""
    init = composed_for(reward_overrides("reward-train")(wildcards))["reward"]["init"]
    return rules.pretrain.output.model if init == "pretrained" else base_model()


def reward_description_head(wildcards):
    """Where a classifier variant with the side_desc readout reads the description head: the vision
    pre-training's model directory (the base model); nothing for every other variant."""
    node = composed_for(reward_overrides("reward-train")(wildcards))["reward"]
    reads_head = node["kind"] == "classifier" and node.get("readout") == "side_desc"
    return base_model() if reads_head else []


def reward_overrides(command):
    return lambda wildcards: shlex.join(
        [
            f"preset={PRESET}",
            f"reward={wildcards.get('variant', wildcards.get('baseline'))}",
            *config["overrides"].get(command, []),
        ]
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
PREFERENCE = config.get("preference", {})
METHODS = PREFERENCE.get(
    "methods",
    [
        "dpo",
        "pcpo",
        "pcpo_no_textual",
        "pcpo_no_visual",
        "pcpo_no_pretrain",
        "pcpo_vam_rm",
        "pcpo_cg4ctr_rm",
    ],
)
# The reward model behind every method's RM win rate in the match-rate table: the full CAIG RM (one judge for
# all methods, so the column compares them); each method's own judge is its config's preference.reward_model.
WIN_RATE_RM = "f_full"


def method_settings(method):
    """The `preference` node of a method, as its training command composes it."""
    return composed_for(preference_overrides("preference-train")({"method": method}))[
        "preference"
    ]


@functools.cache
def method_epochs(method):
    """N of Algorithm 1 for a method: config.yaml's preference.epochs, else the method's composed
    preference.epochs (the tiny preset runs the paper's 5 for DPO and PCPO, fewer for the other rows).
    """
    return int(PREFERENCE.get("epochs") or method_settings(method)["epochs"])


def method_init(method):
    """`pretrained` or `base`: the method's epoch-0 model."""
    return str(method_settings(method)["init"])


def method_judge(method):
    """The reward model (variant or baseline name) that judges the method's candidates."""
    return str(method_settings(method)["reward_model"])


def init_run(method):
    """The epoch-0 folder of the methods with the same initial model (`start-<init>`)."""
    return f"start-{method_init(method)}"


def start_run(method):
    """The epoch-1 judge folder of the methods with the same initial model and judge."""
    return f"start-{method_init(method)}-{method_judge(method)}"


# What each preference-stage command reads of the composed config: the digest in its `settings` param, and
# what methods must agree on (their `preference.*` parts; the rest is one for all) to share a start folder.
SAMPLE_SETTINGS = (
    "preference.init",
    "preference.dtype",
    "preference.products",
    "preference.sample",
    "generate",
    "model",
    "seed",
)
RENDER_SETTINGS = ("preference.render", "generate", "model", "seed")
JUDGE_SETTINGS = (
    "preference.dtype",
    "preference.judge",
    "preference.reward_model",
    "model",
    "seed",
)
MATCH_SETTINGS = (
    *SAMPLE_SETTINGS,
    "preference.evaluate",
    "preference.judge",
    "sim",
)


def settings_key(method, command, keys):
    """The `preference.*` values among ``keys`` that a method composes for ``command``, as one string."""
    composed = composed_for(preference_overrides(command)({"method": method}))
    chosen = {
        key: node_at(composed, key) for key in keys if key.startswith("preference.")
    }
    return json.dumps(chosen, sort_keys=True, default=str)


@functools.cache
def sharing(candidates, command, keys):
    """Of the methods ``candidates`` (in METHODS order), the largest group that composes the same settings for
    ``command`` (ties: the group of the earliest method): the methods that share one start folder.
    """
    groups = {}
    for method in candidates:
        groups.setdefault(settings_key(method, command, keys), []).append(method)
    return frozenset(max(groups.values(), key=len))


@functools.cache
def sample_folder(method):
    """Where a method's epoch-1 candidates and ads live: start-<init>, shared by the methods with that initial
    model that sample and render alike (same model, seeds and settings: the same files), else the method's own
    folder.
    """
    candidates = tuple(m for m in METHODS if init_run(m) == init_run(method))
    alike = sharing(candidates, "sample", SAMPLE_SETTINGS) & sharing(
        candidates, "render", RENDER_SETTINGS
    )
    shared = method in alike
    return init_run(method) if shared else method


@functools.cache
def judge_folder(method):
    """Where a method's epoch-1 preference set lives: start-<init>-<judge>, shared by the methods that share
    the candidates and judge them alike, else the method's own folder.
    """
    if sample_folder(method) == method:
        return method
    candidates = tuple(
        m
        for m in METHODS
        if start_run(m) == start_run(method) and sample_folder(m) != m
    )
    shared = method in sharing(candidates, "judge", JUDGE_SETTINGS)
    return start_run(method) if shared else method


@functools.cache
def eval0_folder(method):
    """Where a method's epoch-0 match-rate evaluation lives: start-<init>, shared by the largest group of methods
    with that initial model that evaluate alike; start-<init>-<first method> for another such group (e.g. rows
    evaluated on more ads); the method's own folder when no other method evaluates alike.
    """
    candidates = tuple(m for m in METHODS if init_run(m) == init_run(method))
    if method in sharing(candidates, "evaluate-match", MATCH_SETTINGS):
        return init_run(method)
    key = settings_key(method, "evaluate-match", MATCH_SETTINGS)
    alike = [
        m
        for m in candidates
        if settings_key(m, "evaluate-match", MATCH_SETTINGS) == key
    ]
    return f"{init_run(method)}-{alike[0]}" if len(alike) > 1 else method


def run_method(run, command=None):
    """The method whose Hydra config a run folder's jobs compose: the run itself, or for a shared start folder
    the first method that shares it for ``command`` (evaluate-match: evaluate/match/start-<init>; otherwise
    the epoch-1 steps under preference/start-*).
    """
    if not run.startswith("start-"):
        return run
    if command == "evaluate-match":
        return next(m for m in METHODS if eval0_folder(m) == run)
    return next(m for m in METHODS if run in (sample_folder(m), judge_folder(m)))


def initial_model(init):
    """Epoch 0: the e-commerce pre-trained prompt model, or the base model without pre-training."""
    return rules.pretrain.output.model if init == "pretrained" else base_model()


def preference_set(method, epoch):
    """The preference set a method trains on in an epoch (epoch 1: its judge folder's)."""
    run = judge_folder(method) if int(epoch) == 1 else method
    return f"{PREF}/{run}/epoch{epoch}/judge/preferences.parquet"


def judged_ads(wildcards):
    """The ads a judge job scores: its epoch's, which for epoch 1 live in the method's sample folder."""
    run = wildcards.run
    if int(wildcards.epoch) == 1:
        run = sample_folder(run_method(run))
    return f"{PREF}/{run}/epoch{wildcards.epoch}/render"


def shards(folder):
    """The K shard folders of a scattered step's output folder (preference.smk's scattergather: generation),
    its other wildcards left to the rule."""
    return gather.generation(f"{folder}.shards/{{scatteritem}}", allow_missing=True)


def preference_sets():
    """Every (method, epoch) preference set of the study, in table order (epoch 1 may be a shared file)."""
    return {
        (m, e): preference_set(m, e)
        for m in METHODS
        for e in range(1, method_epochs(m) + 1)
    }


def model_of(method, epoch):
    """The prompt model of a method after `epoch` epochs."""
    epoch = int(epoch)
    if epoch == 0:
        return initial_model(method_init(method))
    return f"{PREF}/{method}/epoch{epoch}/train/model"


def previous_model(wildcards):
    """The model that samples a run's epoch: epoch e-1 of the run's method."""
    return model_of(run_method(wildcards.run), int(wildcards.epoch) - 1)


def preference_overrides(command, *also):
    """Hydra overrides for one command of a method's job: preset, method, config['overrides'][c] for each of
    ``also`` (e.g. "sim": the oracle is recomposed from the world's config), then for ``command``.
    """
    return lambda wildcards: shlex.join(
        [
            f"preset={PRESET}",
            f"preference={run_method(wildcards.get('run', wildcards.get('method')), command)}",
            *(
                item
                for name in (*also, command)
                for item in config["overrides"].get(name, [])
            ),
        ]
    )


MATCH = f"{RUN}/evaluate/match"
# The synthetic world's oracle judges the tiny study; on real data the rule writes an annotation sheet.
MATCH_JUDGE = "oracle" if SOURCE == "synthetic" else "annotators"


def match_run(method, epoch):
    """The evaluation folder of a method's epoch (epoch 0: see eval0_folder)."""
    return (
        f"{MATCH}/{eval0_folder(method)}/epoch0"
        if int(epoch) == 0
        else f"{MATCH}/{method}/epoch{epoch}"
    )


def match_inputs(wildcards):
    """The evaluated model, and for epochs >= 1 the epoch-0 evaluation (baseline of the RM win rate)."""
    method, epoch = run_method(wildcards.run, "evaluate-match"), int(wildcards.epoch)
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
    return {
        (m, e): match_run(m, e) for m in METHODS for e in range(method_epochs(m) + 1)
    }


# ---------------------------------------------------------------------------------------------- online A/B
ONLINE = f"{RUN}/online"


def online_overrides():
    """Hydra overrides of `caig online` and `caig online-report`: the preset, the world's overrides (the oracle
    is recomposed from the same sim config as `caig sim`), then config['overrides']['online'].
    """
    extra = [
        *config["overrides"].get("sim", []),
        *config["overrides"].get("online", []),
    ]
    return [f"preset={PRESET}", *extra]


@functools.cache
def online_config():
    """The `online` node of the config `caig online` composes (methods compared, control, labels)."""
    return compose(online_overrides()).online


def online_methods():
    """The configured methods this workflow runs, in table order; the others show as "not run"."""
    return [method for method in online_config().methods if method in METHODS]


def online_inputs(wildcards):
    """The control's epoch-0 evaluation, each compared method's last-epoch evaluation (its own N), and the
    catalog."""
    return {
        "control": match_run(str(online_config().control), 0),
        "catalog": rules.ingest.output.catalog,
        **{
            method: match_run(method, method_epochs(method))
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
        for method in METHODS
        for epoch in range(1, method_epochs(method) + 1)
    ]
    return runs
