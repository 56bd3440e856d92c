"""The HF-Trainer harness every training stage shares (pre-training, reward model).

- ``stage_settings(cfg, stage)``: a stage's optimisation hyper-parameters from ``cfg.train.<stage>``, checked.
- ``deepspeed_config(...)``: the ZeRO config named by ``train.deepspeed`` (``config/deepspeed/<name>.json``)
  with every HF ``"auto"`` value resolved for a world of N ranks, then validated: the batch arithmetic
  ``train_batch_size = micro * accumulation * N`` here, everything else by DeepSpeed's own parser.
  DeepSpeed's ``DeepSpeedConfig`` reads the world size from a live process group (1 without one), so it
  is given the per-rank view of the batch once the N-rank arithmetic has been checked.
- ``training_arguments(...)``: ``TrainingArguments`` whose ``output_dir`` is the checkpoint folder
  ``<output>.ckpt`` of ``caig.launch.preemption``.
- ``run_training(trainer, output, save)``: train (resuming from the newest checkpoint), save the final
  output atomically on the main rank (ZeRO-3 parameters gathered first), drop the checkpoints.
- ``report_to(cfg)``, ``send_events(trainer, output, fresh=)``, ``ScalarLog``: training curves. HF trainers send
  their logged metrics to ``train.report_to`` (TensorBoard by default, event files in
  ``caig.logs.event_dir(output)``); hand-written loops write the same folder through ``ScalarLog``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from caig.config import REPO_ROOT
from caig.errors import ConfigError
from caig.launch.dist import current, init_distributed
from caig.logs import event_dir, get_logger

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

# transformers' Trainer and caig.launch.preemption (which subclasses its callbacks) are imported where they are
# used: the jobs that only read configure_threads or ScalarLog (sample, judge, evaluate, reward-eval: ~60 per
# tiny run) then skip ~0.7 s of imports each.

DEEPSPEED_DIR = REPO_ROOT / "config" / "deepspeed"
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
AUTO = "auto"
REPORTERS = ("tensorboard", "wandb", "mlflow")  # HF Trainer integrations train.report_to may name

log = get_logger("train")


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class StageSettings:
    """Optimisation hyper-parameters of one training stage (``cfg.train.<stage>``)."""

    learning_rate: float
    epochs: float
    per_device_batch_size: int
    gradient_accumulation_steps: int = 1
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = -1
    head_learning_rate: float | None = (
        None  # output heads (RM heads, LM head) at their own rate; None: the same
    )

    def __post_init__(self) -> None:
        checks = {
            "learning_rate": self.learning_rate > 0,
            "epochs": self.epochs > 0,
            "per_device_batch_size": self.per_device_batch_size >= 1,
            "gradient_accumulation_steps": self.gradient_accumulation_steps >= 1,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "weight_decay": self.weight_decay >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
            "max_steps": self.max_steps == -1 or self.max_steps >= 1,
            "head_learning_rate": self.head_learning_rate is None or self.head_learning_rate > 0,
        }
        bad = [key for key, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"train.<stage>.{bad[0]}={getattr(self, bad[0])!r} is out of range")
        if self.lr_scheduler not in SCHEDULERS:
            raise ConfigError(
                f"train.<stage>.lr_scheduler={self.lr_scheduler!r} (expected one of {SCHEDULERS})"
            )


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def stage_settings(cfg: DictConfig | Mapping[str, Any], stage: str) -> StageSettings:
    """``cfg.train.<stage>`` as StageSettings; ConfigError names a missing, unknown or bad key."""
    train = _plain(cfg.get("train"))
    if not isinstance(train, Mapping) or not isinstance(train.get(stage), Mapping):
        raise ConfigError(f"train.{stage} is missing (expected the `train` config group, e.g. train=tiny)")
    node = dict(train[stage])
    known = set(StageSettings.__dataclass_fields__)
    unknown = sorted(set(node) - known)
    if unknown:
        raise ConfigError(
            f"train.{stage}.{unknown[0]} is not a known setting (expected one of {sorted(known)})"
        )
    try:
        return StageSettings(**node)
    except TypeError as err:
        raise ConfigError(f"train.{stage}: {err}") from err
    except ConfigError as err:
        raise ConfigError(str(err).replace("<stage>", stage)) from None


def harness_setting(cfg: DictConfig | Mapping[str, Any], key: str) -> Any:
    """A harness-wide ``train.<key>`` (deepspeed, precision, seed, ...); ConfigError when missing."""
    train = cfg.get("train")
    if train is None or key not in train:
        raise ConfigError(f"train.{key} is missing")
    return train[key]


# ---------------------------------------------------------------------------------------------- deepspeed
def load_deepspeed_config(name: str | None) -> dict[str, Any] | None:
    """``config/deepspeed/<name>.json`` (or a path to a JSON file); None for ``name`` null/none."""
    if name is None or str(name).lower() in ("null", "none", ""):
        return None
    path = Path(name) if str(name).endswith(".json") else DEEPSPEED_DIR / f"{name}.json"
    if not path.is_file():
        choices = sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json"))
        raise ConfigError(
            f"train.deepspeed={name!r}: no such DeepSpeed config {path} (expected one of {choices})"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"train.deepspeed={name!r}: {path} is not valid JSON: {err}") from err


def _nodes_with_auto(config: Any, prefix: str = "") -> list[str]:
    if isinstance(config, dict):
        return [key for k, v in config.items() for key in _nodes_with_auto(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if config == AUTO else []


def _fill(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Replace ``"auto"`` at ``dotted`` by ``value`` (a key that is absent or set explicitly stays as is)."""
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        if not isinstance(node.get(key), dict):
            return
        node = node[key]
    if node.get(leaf) == AUTO:
        node[leaf] = value


def resolve_deepspeed_config(
    config: Mapping[str, Any],
    *,
    micro_batch: int,
    gradient_accumulation_steps: int,
    world_size: int,
    max_grad_norm: float,
    precision: str,
    hidden_size: int,
) -> dict[str, Any]:
    """A copy of ``config`` with every ``"auto"`` resolved the way HF Trainer resolves it for N ranks.

    Batch keys from the stage settings, clipping from ``max_grad_norm``, bf16/fp16 from ``precision`` and
    the ZeRO bucket sizes from the text model's ``hidden_size`` (h*h, 0.9*h*h, 10*h).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision={precision!r} (expected one of {PRECISIONS})")
    if world_size < 1:
        raise ConfigError(f"world size must be >= 1, got {world_size}")
    resolved = copy.deepcopy(dict(config))
    _fill(resolved, "train_micro_batch_size_per_gpu", micro_batch)
    _fill(resolved, "gradient_accumulation_steps", gradient_accumulation_steps)
    _fill(resolved, "train_batch_size", micro_batch * gradient_accumulation_steps * world_size)
    _fill(resolved, "gradient_clipping", max_grad_norm)
    _fill(resolved, "bf16.enabled", precision == "bf16")
    _fill(resolved, "fp16.enabled", precision == "fp16")
    _fill(resolved, "zero_optimization.reduce_bucket_size", hidden_size * hidden_size)
    _fill(resolved, "zero_optimization.stage3_prefetch_bucket_size", int(0.9 * hidden_size * hidden_size))
    _fill(resolved, "zero_optimization.stage3_param_persistence_threshold", 10 * hidden_size)
    return resolved


def validate_deepspeed_config(config: Mapping[str, Any], world_size: int) -> None:
    """Raise ConfigError unless ``config`` is a complete, consistent DeepSpeed config for ``world_size`` ranks."""
    left = _nodes_with_auto(dict(config))
    if left:
        raise ConfigError(f"DeepSpeed config still has 'auto' values: {', '.join(left)}")
    try:
        micro = int(config["train_micro_batch_size_per_gpu"])
        accumulation = int(config["gradient_accumulation_steps"])
        total = int(config["train_batch_size"])
    except KeyError as err:
        raise ConfigError(f"DeepSpeed config lacks {err.args[0]}") from None
    if total != micro * accumulation * world_size:
        raise ConfigError(
            f"DeepSpeed train_batch_size={total} != train_micro_batch_size_per_gpu={micro} x "
            f"gradient_accumulation_steps={accumulation} x world size {world_size}"
        )
    if config.get("bf16", {}).get("enabled") and config.get("fp16", {}).get("enabled"):
        raise ConfigError("DeepSpeed config enables both bf16 and fp16")
    from deepspeed.runtime.config import DeepSpeedConfig

    per_rank = {**config, "train_batch_size": micro * accumulation}  # DeepSpeedConfig assumes one rank here
    try:
        DeepSpeedConfig(per_rank)
    except (AssertionError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"DeepSpeed rejects the config: {err}") from err


HARNESS = object()  # "the harness's train.deepspeed", as opposed to None (no DeepSpeed)


def deepspeed_config(
    cfg: DictConfig | Mapping[str, Any],
    settings: StageSettings,
    *,
    world_size: int,
    hidden_size: int,
    name: str | None | object = HARNESS,
) -> dict[str, Any] | None:
    """The stage's resolved and validated DeepSpeed config for ``world_size`` ranks, or None without one.

    ``name`` (a file in config/deepspeed/, a JSON path, or None for no DeepSpeed) defaults to the harness's
    ``train.deepspeed``."""
    raw = load_deepspeed_config(harness_setting(cfg, "deepspeed") if name is HARNESS else name)
    if raw is None:
        return None
    resolved = resolve_deepspeed_config(
        raw,
        micro_batch=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        world_size=world_size,
        max_grad_norm=settings.max_grad_norm,
        precision=harness_setting(cfg, "precision"),
        hidden_size=hidden_size,
    )
    validate_deepspeed_config(resolved, world_size)
    return resolved


# ---------------------------------------------------------------------------------------------- arguments
def world_size_from_env() -> int:
    """Ranks of this job: the launcher's WORLD_SIZE (1 when run by hand)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def job_threads(cfg: DictConfig | Mapping[str, Any], command: str | None = None) -> int:
    """CPU threads per rank of a `caig` command: ``train.job_threads[command]`` where the preset names the
    command (the workflow reserves as many cores for its job), else ``train.torch_threads`` (0: torch's default)."""
    per_command = cfg["train"].get("job_threads") or {}
    if command is not None and command in per_command:
        return int(per_command[command])
    return int(harness_setting(cfg, "torch_threads"))


def configure_threads(cfg: DictConfig | Mapping[str, Any], command: str | None = None) -> None:
    """Set the CPU threads per rank of ``command`` (job_threads); 0 keeps torch's default."""
    threads = job_threads(cfg, command)
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # accelerate resets torch's threads unless this is set
        torch.set_num_threads(threads)


def trainer_arguments(
    cfg: DictConfig | Mapping[str, Any],
    settings: StageSettings,
    *,
    hidden_size: int,
    world_size: int | None = None,
    deepspeed: str | None | object = HARNESS,
) -> dict[str, Any]:
    """The keyword arguments every HF trainer here shares (TrainingArguments, TRL's DPOConfig): the stage's
    optimisation settings, the ``train`` harness's precision, seed, workers and activation checkpointing,
    and the resolved DeepSpeed config (``deepspeed``: see ``deepspeed_config``)."""
    world_size = world_size_from_env() if world_size is None else world_size
    precision = harness_setting(cfg, "precision")
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision={precision!r} (expected one of {PRECISIONS})")
    on_cpu = not torch.cuda.is_available()
    if on_cpu and precision == "fp16":
        raise ConfigError("train.precision=fp16 needs a GPU (use fp32 or bf16 on CPU)")
    return {
        "per_device_train_batch_size": settings.per_device_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup_ratio,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": on_cpu,
        "deepspeed": deepspeed_config(
            cfg, settings, world_size=world_size, hidden_size=hidden_size, name=deepspeed
        ),
        "seed": int(harness_setting(cfg, "seed")),
        "save_total_limit": int(harness_setting(cfg, "save_total_limit")),
        "dataloader_num_workers": int(harness_setting(cfg, "dataloader_num_workers")),
        "activation_checkpointing": bool(harness_setting(cfg, "activation_checkpointing")),
        "ddp_find_unused_parameters": False,  # every trained parameter is used; the search costs a graph walk
        "remove_unused_columns": False,
        "report_to": report_to(cfg),
        "disable_tqdm": True,
    }


def training_arguments(
    cfg: DictConfig | Mapping[str, Any],
    stage: str,
    output: str | Path,
    *,
    hidden_size: int,
    world_size: int | None = None,
) -> TrainingArguments:
    """TrainingArguments for ``stage`` writing checkpoints to ``<output>.ckpt`` (see caig.launch.preemption)."""
    from transformers import TrainingArguments

    from caig.launch.preemption import checkpoint_dir

    settings = stage_settings(cfg, stage)
    return TrainingArguments(
        **trainer_arguments(cfg, settings, hidden_size=hidden_size, world_size=world_size),
        output_dir=str(checkpoint_dir(output)),
        logging_steps=int(harness_setting(cfg, "logging_steps")),
        save_strategy="steps",
        save_steps=int(harness_setting(cfg, "save_steps")),
    )


# ---------------------------------------------------------------------------------------------- curves
def report_to(cfg: DictConfig | Mapping[str, Any]) -> list[str]:
    """``train.report_to`` as a list: where training jobs send their curves (a name of ``REPORTERS``, a list of
    them, or "none"); ConfigError for anything else."""
    value = harness_setting(cfg, "report_to")
    value = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"train.report_to={value!r} (expected one of {REPORTERS}, a list of them, or 'none')")
    if names == ["none"]:
        return []
    unknown = [name for name in names if name not in REPORTERS]
    if unknown:
        raise ConfigError(
            f"train.report_to={value!r}: {unknown[0]!r} is not supported (expected one of {REPORTERS}, "
            "a list of them, or 'none')"
        )
    return names


def _start_event_dir(output: str | Path, *, fresh: bool) -> Path:
    """The event folder of ``output``; a fresh start (nothing to resume) drops the curves of an earlier run."""
    folder = event_dir(output)
    if fresh and current().is_main:
        shutil.rmtree(folder, ignore_errors=True)
    return folder


def send_events(trainer: Trainer, output: str | Path, *, fresh: bool) -> None:
    """Point the trainer's TensorBoard writer (if ``report_to`` has one) at ``event_dir(output)``.

    ``fresh``: training starts from scratch, so event files of an earlier run there are removed; a resumed run
    adds its own file beside those of the attempt it resumes.
    """
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(_start_event_dir(output, fresh=fresh))


class ScalarLog:
    """TensorBoard scalars of a hand-written training loop, in ``event_dir(output)``: written on the main rank
    when ``train.report_to`` names tensorboard, nothing otherwise (wandb and mlflow are HF Trainer's only)."""

    def __init__(self, cfg: DictConfig | Mapping[str, Any], output: str | Path, *, fresh: bool) -> None:
        self.writer = None
        if "tensorboard" in report_to(cfg) and current().is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(_start_event_dir(output, fresh=fresh)))

    def add(self, step: int, values: Mapping[str, float]) -> None:
        """Record ``values`` (tag -> number, e.g. ``train/loss``) at ``step``."""
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, float(value), step)
            self.writer.flush()  # a killed job keeps its curve up to here

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- running
def start(cfg: DictConfig | Mapping[str, Any], command: str | None = None) -> None:
    """Common start of a training command: join the launcher's process group, seed, set CPU threads."""
    from transformers import set_seed

    init_distributed()
    set_seed(int(harness_setting(cfg, "seed")))
    configure_threads(cfg, command)


@contextlib.contextmanager
def gathered_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Under ZeRO-3 gather the full parameters on every rank for the duration (others: nothing to do)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield


def run_training(trainer: Trainer, output: str | Path, save: Callable[[Path], None]) -> dict[str, float]:
    """Train with checkpoint/resume through ``<output>.ckpt``, save ``output`` with ``save``, clean up.

    ``save(path)`` runs on the main rank only and must write ``path`` atomically (``caig.io.atomic_path``
    or the models' savers, which are). A preemption signal ends the process after a checkpoint
    (``caig.launch.preemption.Preempted``); the rerun resumes from it. TensorBoard curves go to
    ``caig.logs.event_dir(output)`` (see ``send_events``). Returns the Trainer's metrics.
    """
    from caig.launch.preemption import PreemptionCallback, finish, last_checkpoint

    output = Path(output)
    trainer.add_callback(PreemptionCallback())
    resume = last_checkpoint(output)
    if resume is not None:
        log.info("resuming from %s", resume)
    send_events(trainer, output, fresh=resume is None)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    with gathered_parameters(model):
        if current().is_main:
            save(output)
    if current().backend is not None:
        torch.distributed.barrier()
    finish(output)
    metrics = {key: float(value) for key, value in result.metrics.items() if isinstance(value, int | float)}
    metrics["global_step"] = float(result.global_step)
    metrics["final_loss"] = (
        float(result.training_loss) if math.isfinite(result.training_loss) else float("nan")
    )
    return metrics
