"""caig.training: stage settings, DeepSpeed config resolution and validation for N ranks (the paper preset on
8 GPUs), TrainingArguments, and train -> preempt -> resume -> save through the harness."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainerCallback

from caig.config import compose
from caig.errors import ConfigError
from caig.launch.preemption import Preempted, checkpoint_dir, last_checkpoint
from caig.training import (
    load_deepspeed_config,
    resolve_deepspeed_config,
    run_training,
    stage_settings,
    training_arguments,
    validate_deepspeed_config,
)


@pytest.fixture(scope="module")
def paper_cfg():
    return compose(["preset=paper"])


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose(["preset=tiny"])


@pytest.mark.parametrize("stage", ["pretrain", "reward"])
def test_paper_deepspeed_config_resolves_and_validates_for_8_gpus(paper_cfg, stage):
    from caig.training import deepspeed_config

    settings = stage_settings(paper_cfg, stage)
    resolved = deepspeed_config(paper_cfg, settings, world_size=8, hidden_size=4096)
    assert resolved["zero_optimization"]["stage"] == 3
    assert resolved["bf16"]["enabled"] is True and resolved["fp16"]["enabled"] is False
    micro, accumulation = settings.per_device_batch_size, settings.gradient_accumulation_steps
    assert resolved["train_micro_batch_size_per_gpu"] == micro
    assert resolved["train_batch_size"] == micro * accumulation * 8
    assert resolved["zero_optimization"]["reduce_bucket_size"] == 4096 * 4096
    assert resolved["zero_optimization"]["stage3_prefetch_bucket_size"] == int(0.9 * 4096 * 4096)
    assert resolved["zero_optimization"]["stage3_param_persistence_threshold"] == 10 * 4096
    # the same resolved config is wrong for another world size
    with pytest.raises(ConfigError, match="world size 4"):
        validate_deepspeed_config(resolved, 4)


def test_paper_preset_uses_the_papers_pretraining_schedule(paper_cfg):
    settings = stage_settings(paper_cfg, "pretrain")
    assert settings.learning_rate == pytest.approx(2e-6)
    assert settings.epochs == 10 and settings.lr_scheduler == "cosine"


def test_tiny_zero2_validates_for_one_cpu_rank(tiny_cfg):
    raw = load_deepspeed_config(tiny_cfg.train.deepspeed)
    resolved = resolve_deepspeed_config(
        raw,
        micro_batch=16,
        gradient_accumulation_steps=1,
        world_size=1,
        max_grad_norm=1.0,
        precision="fp32",
        hidden_size=64,
    )
    validate_deepspeed_config(resolved, 1)
    assert resolved["zero_optimization"]["stage"] == 2 and resolved["train_batch_size"] == 16
    assert raw["train_batch_size"] == "auto"  # the file's dict is left untouched


def test_unresolved_auto_and_conflicting_precision_are_rejected():
    raw = load_deepspeed_config("zero2")
    with pytest.raises(ConfigError, match="auto"):
        validate_deepspeed_config(raw, 1)
    resolved = resolve_deepspeed_config(
        raw,
        micro_batch=2,
        gradient_accumulation_steps=1,
        world_size=1,
        max_grad_norm=1.0,
        precision="bf16",
        hidden_size=8,
    )
    resolved["fp16"] = {"enabled": True}
    with pytest.raises(ConfigError, match="both bf16 and fp16"):
        validate_deepspeed_config(resolved, 1)


def test_unknown_deepspeed_name_says_what_exists():
    with pytest.raises(ConfigError, match="zero2"):
        load_deepspeed_config("zero9")
    assert load_deepspeed_config(None) is None


def test_stage_settings_name_the_bad_key(tiny_cfg):
    with pytest.raises(ConfigError, match=r"train\.reward\.learning_rate"):
        stage_settings(
            {"train": {"reward": {"learning_rate": -1, "epochs": 1, "per_device_batch_size": 1}}}, "reward"
        )
    with pytest.raises(ConfigError, match=r"train\.reward\.lr"):
        stage_settings({"train": {"reward": {"lr": 1, "epochs": 1, "per_device_batch_size": 1}}}, "reward")
    with pytest.raises(ConfigError, match=r"train\.nothing is missing"):
        stage_settings(tiny_cfg, "nothing")


def test_training_arguments_checkpoint_into_the_outputs_ckpt_folder(tiny_cfg, tmp_path):
    args = training_arguments(tiny_cfg, "pretrain", tmp_path / "model", hidden_size=64, world_size=1)
    assert Path(args.output_dir) == checkpoint_dir(tmp_path / "model")
    assert args.lr_scheduler_type.value == "cosine"
    assert args.deepspeed["train_batch_size"] == args.per_device_train_batch_size
    assert args.remove_unused_columns is False


# ---- the harness end to end: a toy model, no DeepSpeed, SIGTERM mid-run, resume ----------------------


class ToyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}


class SignalAt(TrainerCallback):
    """Sends this process SIGTERM once, at the end of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _toy_trainer(cfg, out: Path, callbacks=()) -> Trainer:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = [{"x": row, "y": row.sum()} for row in x]
    args = training_arguments(cfg, "reward", out, hidden_size=4, world_size=1)
    return Trainer(model=ToyModel(), args=args, train_dataset=data, callbacks=list(callbacks))


def test_run_training_resumes_after_a_preemption_and_cleans_up(tmp_path):
    cfg = compose(
        [
            "preset=tiny",
            "train.deepspeed=null",
            "train.reward.per_device_batch_size=8",
            "train.reward.epochs=2",
            "train.save_steps=100",
        ]
    )
    out = tmp_path / "model"

    def save(path: Path) -> None:
        path.mkdir()
        (path / "done").write_text("ok")

    with pytest.raises(Preempted):
        run_training(_toy_trainer(cfg, out, [SignalAt(3)]), out, save)
    resume = last_checkpoint(out)
    assert resume is not None and resume.name == "checkpoint-3" and not out.exists()
    metrics = run_training(_toy_trainer(cfg, out), out, save)
    assert metrics["global_step"] == 16  # 64 rows / 8 per step * 2 epochs, counted from the checkpoint
    assert (out / "done").read_text() == "ok"
    assert not checkpoint_dir(out).exists()


# ---- training curves: TensorBoard event files beside the output -------------------------------------------


def test_a_default_config_run_writes_its_loss_curve_beside_the_output(tmp_path):
    from caig.logs import event_dir
    from caig.report.curves import read_curve

    cfg = compose(
        [
            "preset=tiny",
            "train.deepspeed=null",
            "train.reward.per_device_batch_size=8",
            "train.reward.epochs=1",
            "train.logging_steps=2",
        ]
    )
    assert cfg.train.report_to == "tensorboard"  # the default, not set above
    out = tmp_path / "model"
    stale = event_dir(out) / "events.out.tfevents.0.stale"
    stale.parent.mkdir()
    stale.write_bytes(b"")  # an earlier run's file: a fresh start drops it

    def save(path: Path) -> None:
        path.mkdir()
        (path / "done").write_text("ok")

    run_training(_toy_trainer(cfg, out), out, save)
    files = list(event_dir(out).glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0] != stale
    curve = read_curve(event_dir(out), "train/loss")
    assert [step for step, _ in curve] == [2, 4, 6, 8]  # 64 rows / 8 per step, a record every 2 steps
    assert all(value > 0 for _, value in curve)
    assert sorted(p.name for p in out.iterdir()) == ["done"]  # the output folder holds the model alone


@pytest.mark.parametrize(
    ("value", "expected"),
    [("tensorboard", ["tensorboard"]), ("none", []), ("[tensorboard,mlflow]", ["tensorboard", "mlflow"])],
)
def test_report_to_takes_a_name_a_list_or_none(value, expected):
    from caig.training import report_to

    assert report_to(compose(["preset=tiny", f"train.report_to={value}"])) == expected


def test_an_unknown_report_to_names_the_key_and_the_choices():
    from caig.training import report_to

    with pytest.raises(ConfigError, match=r"train.report_to=.*'comet'.*tensorboard"):
        report_to(compose(["preset=tiny", "train.report_to=comet"]))


def test_scalar_log_writes_only_when_tensorboard_is_on(tmp_path):
    from caig.logs import event_dir
    from caig.report.curves import read_curve
    from caig.training import ScalarLog

    for value, out in (("tensorboard", tmp_path / "on"), ("none", tmp_path / "off")):
        with ScalarLog(compose(["preset=tiny", f"train.report_to={value}"]), out, fresh=True) as curves:
            curves.add(1, {"train/loss": 2.0})
            curves.add(2, {"train/loss": 1.5})
    assert read_curve(event_dir(tmp_path / "on")) == [(1, 2.0), (2, 1.5)]
    assert not event_dir(tmp_path / "off").exists()
