"""One preference epoch: LoRA on the prompt model of epoch e-1, trained with DPO (+ PCPO) on epoch e's
preference set against the epoch-0 reference model, then merged into the model of epoch e.

``caig preference-train --model DIR --reference DIR --preferences FILE --catalog FILE --out DIR
[preference=pcpo|dpo|...]`` writes ``DIR/model`` (a plain LLaVA-NeXT checkpoint: the next epoch's starting
point and the evaluation's policy), ``DIR/adapter`` (the epoch's LoRA adapter) and ``DIR/train.json``
(the logged losses and metrics). Under ``caig launch`` it runs one rank per GPU; ``preference.train.deepspeed``
names a DeepSpeed config (``zero3`` on the paper preset; by default the ``train`` harness's). A preempted run
resumes from ``DIR.ckpt/``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import torch
from omegaconf import DictConfig, OmegaConf

from caig.errors import ConfigError, InputError
from caig.io import atomic_path
from caig.launch.dist import current
from caig.launch.preemption import PreemptionCallback, checkpoint_dir, finish, last_checkpoint
from caig.logs import get_logger

log = get_logger("preference-train")

MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
METRICS_FILE = "train.json"


def mismatch_settings(node: DictConfig) -> Any:
    """The PCPO mismatch settings of a method, or None when the method has no PCPO term."""
    from caig.preference.data import MismatchSettings

    if float(node.weight) == 0:
        return None
    return MismatchSettings(
        weights={kind: float(value) for kind, value in node.mismatch.weights.items()},
        mode=str(node.mismatch.mode),
        mask_ratio=float(node.mismatch.mask_ratio),
        mask_grid=int(node.mismatch.mask_grid),
        mask_fill=tuple(int(v) for v in node.mismatch.mask_fill),
    )


def lora_config(node: DictConfig) -> Any:
    """The LoRA adapter of the policy; ``lm_head`` is never a target (TRL reads its weight directly)."""
    from peft import LoraConfig

    targets = node.target_modules
    targets = str(targets) if isinstance(targets, str) else [str(t) for t in targets]
    if any("lm_head" in t for t in ([targets] if isinstance(targets, str) else targets)):
        raise ConfigError(f"preference.lora.target_modules={targets!r} must not include lm_head")
    return LoraConfig(
        r=int(node.r),
        lora_alpha=int(node.alpha),
        lora_dropout=float(node.dropout),
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def stage_settings(cfg: DictConfig) -> Any:
    """``preference.train`` (without ``deepspeed``) as the harness's checked StageSettings."""
    from caig.training import StageSettings

    node = OmegaConf.to_container(cfg.preference.train, resolve=True)
    node = {key: value for key, value in node.items() if key != "deepspeed"}
    unknown = sorted(set(node) - set(StageSettings.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"preference.train.{unknown[0]} is not a known setting")
    try:
        return StageSettings(**node)
    except ConfigError as err:
        raise ConfigError(str(err).replace("train.<stage>", "preference.train")) from None


def dpo_config(cfg: DictConfig, output_dir: Path, *, hidden_size: int, pairs: int) -> Any:
    """TRL's DPOConfig: ``preference.train`` and ``preference.dpo``, plus the ``train`` harness settings
    (precision, gradient checkpointing, logging, checkpoints, seed); DeepSpeed's "auto" values resolved.

    Logging happens at least four times per epoch of ``pairs`` pairs, so short epochs still record their
    DPO and PCPO metrics."""
    from trl import DPOConfig

    from caig.training import harness_setting, trainer_arguments, world_size_from_env

    settings = stage_settings(cfg)
    save_steps = int(harness_setting(cfg, "save_steps"))
    per_step = settings.per_device_batch_size * settings.gradient_accumulation_steps * world_size_from_env()
    steps = max(1, math.ceil(pairs / per_step) * math.ceil(settings.epochs))
    logging_steps = max(1, min(int(harness_setting(cfg, "logging_steps")), steps // 4))
    return DPOConfig(
        **trainer_arguments(
            cfg, settings, hidden_size=hidden_size, deepspeed=cfg.preference.train.deepspeed
        ),
        output_dir=str(output_dir),
        beta=float(cfg.preference.dpo.beta),
        max_length=None,  # truncation could cut image tokens
        logging_steps=logging_steps,
        save_strategy="steps" if save_steps > 0 else "no",
        save_steps=max(save_steps, 1),
    )


def read_preferences(path: Path) -> pl.DataFrame:
    """The judge's preference set."""
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the preference set ({err})", file=path) from err


def build_trainer(
    cfg: DictConfig, policy: Any, reference: Any, processor: Any, preferences: pl.DataFrame,
    products: dict[str, Any], output_dir: Path, source: str = "preferences",
) -> Any:
    """The PCPOTrainer of one epoch, every hyper-parameter taken from ``cfg.preference``.

    ``products`` must hold every product of ``preferences``; they also form the textual-mismatch pool.
    """
    from caig.preference.data import PCPOCollator, build_preference_dataset, product_text_pool
    from caig.preference.trainer import PCPOTrainer

    method = cfg.preference
    dataset = build_preference_dataset(preferences, products, processor, source)
    collator = PCPOCollator(
        processor, product_text_pool(products), mismatch_settings(method.pcpo), seed=int(cfg.seed)
    )
    return PCPOTrainer(
        model=policy,
        ref_model=reference,
        args=dpo_config(
            cfg, output_dir, hidden_size=int(policy.config.text_config.hidden_size), pairs=len(dataset)
        ),
        data_collator=collator,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(method.lora),
        callbacks=[PreemptionCallback()],
        pcpo_weight=float(method.pcpo.weight),
        pcpo_beta=float(method.pcpo.beta),
    )


def pass_through(
    method: DictConfig, model_dir: Path, reference_dir: Path, preferences_path: Path, out: Path
) -> dict[str, Any]:
    """An epoch without preferences (every pair a tie): the model of epoch e is the model of epoch e-1."""
    log.warning("%s holds no preferences (every pair a tie): the model passes through unchanged", preferences_path)
    summary = {
        "method": str(method.name), "model": str(model_dir), "reference": str(reference_dir),
        "preferences": str(preferences_path), "pairs": 0, "skipped": "no preferences: the model is unchanged",
        "config": OmegaConf.to_container(method, resolve=True), "log_history": [],
    }
    if current().is_main:
        with atomic_path(out) as tmp:
            tmp.mkdir()
            shutil.copytree(model_dir, tmp / MODEL_DIR)
            (tmp / METRICS_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def train_epoch(
    cfg: DictConfig, model_dir: Path, reference_dir: Path, preferences_path: Path, catalog: Path, out: Path,
    image_root: Path | None = None,
) -> dict[str, Any]:
    """Train one epoch and write ``out/{model,adapter,train.json}``; returns the summary written."""
    from peft import PeftModel
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from caig.generate.sampling import load_products
    from caig.models import load_llava, save_pretrained_model

    from caig.training import send_events, start

    start(cfg)  # the launcher's process group, the seed, train.torch_threads CPU threads
    world = current()
    method = cfg.preference
    dtype = str(method.dtype)
    preferences = read_preferences(preferences_path)
    if preferences.height == 0:
        return pass_through(method, model_dir, reference_dir, preferences_path, out)
    wanted = set(preferences.get_column("product_id").to_list()) if "product_id" in preferences.columns else set()
    products = {p.product_id: p for p in load_products(catalog, image_root) if p.product_id in wanted}
    policy, processor = load_llava(model_dir, dtype=dtype)
    reference, _ = load_llava(reference_dir, dtype=dtype)
    trainer = build_trainer(
        cfg, policy, reference, processor, preferences, products, checkpoint_dir(out), str(preferences_path)
    )
    resume = last_checkpoint(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    send_events(trainer, out, fresh=resume is None)  # curves in <out>.tensorboard/
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    adapter_tmp = checkpoint_dir(out) / "adapter-final"
    trainer.save_model(str(adapter_tmp))  # gathers ZeRO-3 shards; saves the adapter only
    summary = {
        "method": str(method.name),
        "model": str(model_dir),
        "reference": str(reference_dir),
        "preferences": str(preferences_path),
        "pairs": len(trainer.train_dataset),
        "world_size": world.world_size,
        "config": OmegaConf.to_container(method, resolve=True),
        "log_history": trainer.state.log_history,
    }
    del trainer, policy, reference
    unset_hf_deepspeed_config()  # or ZeRO-3 would load the base below partitioned (empty) for the merge
    if current().is_main:
        base, _ = load_llava(model_dir, dtype=dtype)
        merged = PeftModel.from_pretrained(base, str(adapter_tmp)).merge_and_unload()
        with atomic_path(out) as tmp:
            tmp.mkdir()
            save_pretrained_model(merged, processor, tmp / MODEL_DIR)
            shutil.copytree(adapter_tmp, tmp / ADAPTER_DIR)
            (tmp / METRICS_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        finish(out)
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="prompt model of the previous epoch")
    parser.add_argument("--reference", type=Path, required=True, help="epoch-0 prompt model (the DPO reference)")
    parser.add_argument("--preferences", type=Path, required=True, help="preferences.parquet from caig judge")
    parser.add_argument("--catalog", type=Path, required=True, help="catalog (.parquet/.csv) or CAIG JSON")
    parser.add_argument("--image-root", type=Path, help="resolve relative image paths against this folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (model/, adapter/, train.json)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    summary = train_epoch(
        cfg, args.model, args.reference, args.preferences, args.catalog, args.out, args.image_root
    )
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    log.info(
        "%s: %d pairs, loss %s -> %s -> %s",
        summary["method"], summary["pairs"], f"{losses[0]:.4f}" if losses else "?",
        f"{losses[-1]:.4f}" if losses else "?", args.out,
    )

