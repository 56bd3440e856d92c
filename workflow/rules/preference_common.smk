# Paths, methods and epochs of the preference stage and its evaluation (rules/preference.smk,
# rules/evaluate.smk; rules/online.smk reads METHODS, EPOCHS and match_run too).
import functools

from caig.config import compose

PREF = f"{RUN}/preference"
PREFERENCE = config.get("preference", {})
METHODS = PREFERENCE.get(
    "methods", ["dpo", "pcpo", "pcpo_no_textual", "pcpo_no_visual", "pcpo_no_pretrain"]
)
EPOCHS = int(PREFERENCE.get("epochs", {"tiny": 3, "paper": 5}[PRESET]))
# The reward model that judges: the full RM of the reward stage (variant f, + point loss).
REWARD_VARIANT = PREFERENCE.get("reward_variant", "f_full")


@functools.cache
def method_init(method):
    """`pretrained` or `base`: the method's epoch-0 model, read from its Hydra config."""
    cfg = compose(
        [
            f"preset={PRESET}",
            f"preference={method}",
            *config["overrides"].get("preference-train", []),
        ]
    )
    return str(cfg.preference.init)


def start_run(method):
    """The shared folder name of the methods that start from the same epoch-0 model."""
    return f"start-{method_init(method)}"


def run_method(run):
    """The method whose Hydra config a run folder's jobs use (a shared start folder: its first method)."""
    if run.startswith("start-"):
        init = run.removeprefix("start-")
        return next(m for m in METHODS if method_init(m) == init)
    return run


def initial_model(init):
    """Epoch 0: the e-commerce pre-trained prompt model, or the base model without pre-training."""
    return (
        rules.pretrain.output.model
        if init == "pretrained"
        else rules.init_model.output.model
    )


def reward_model_dir():
    """The frozen reward model that judges every epoch."""
    return expand(rules.reward_train.output.model, variant=REWARD_VARIANT)[0]


def candidates_run(method, epoch):
    """Where a method's epoch-`epoch` candidates live (epoch 1: the shared start folder)."""
    return start_run(method) if int(epoch) == 1 else method


def preference_set(method, epoch):
    """The preference set a method trains on in an epoch."""
    return (
        f"{PREF}/{candidates_run(method, epoch)}/epoch{epoch}/judge/preferences.parquet"
    )


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
            f"preference={run_method(wildcards.get('run', wildcards.get('method')))}",
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
    """The evaluation folder of a method's epoch (epoch 0: shared by the methods with the same initial model)."""
    return (
        f"{MATCH}/{start_run(method)}/epoch0"
        if int(epoch) == 0
        else f"{MATCH}/{method}/epoch{epoch}"
    )


def match_inputs(wildcards):
    """The evaluated model, and for epochs >= 1 the epoch-0 evaluation (baseline of the RM win rate)."""
    method, epoch = run_method(wildcards.run), int(wildcards.epoch)
    inputs = {
        "model": model_of(method, epoch),
        "catalog": rules.ingest.output.catalog,
        "products": rules.preference_products.output.products,
    }
    if epoch > 0:
        inputs["baseline"] = match_run(method, 0)
        inputs["reward_model"] = reward_model_dir()
    return inputs


def match_options(wildcards, input):
    """--baseline/--reward-model for epochs >= 1; the method name recorded in the metrics."""
    options = ["--method", run_method(wildcards.run), "--judge", MATCH_JUDGE]
    if "baseline" in input.keys():
        options += ["--baseline", input.baseline, "--reward-model", input.reward_model]
    return shlex.join(options)


def match_folders():
    """Every (method, epoch) evaluation folder of the study, in table order."""
    return {(m, e): match_run(m, e) for m in METHODS for e in range(EPOCHS + 1)}
