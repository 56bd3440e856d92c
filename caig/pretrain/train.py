"""``caig pretrain``: e-commerce knowledge pre-training, full fine-tuning of LLaVA-NeXT (stage 1).

    caig launch -- pretrain --data pretrain/data.jsonl --base models/base --out models/pretrained

Trains on the instruction records of ``caig pretrain-data`` with HF Trainer under the DeepSpeed config of
``train.deepspeed`` (cosine schedule; ``train.pretrain`` holds the rates, paper: 2e-6 for 10 epochs).
Checkpoints go to ``<out>.ckpt/`` and a rerun resumes from the newest. The output is a plain LLaVA-NeXT
checkpoint (``caig.models.load_llava``) that initialises both the prompt model and the reward model;
``--metrics`` also writes the run's loss curve (every ``train.logging_steps`` steps) and throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from omegaconf import DictConfig
from transformers import Trainer

from caig.errors import InputError
from caig.io import write_json
from caig.launch.dist import current
from caig.logs import get_logger
from caig.models import load_llava, save_pretrained_model
from caig.pretrain.data import read_records, task_counts
from caig.pretrain.sft import InstructionCollator, InstructionDataset
from caig.training import harness_setting, run_training, start, training_arguments

log = get_logger("pretrain")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="pre-training records (JSONL)")
    parser.add_argument("--base", type=Path, required=True, help="model to start from (caig init-model)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--metrics", type=Path, help="also write the run's metrics (JSON)")


def text_hidden_size(model_dir: Path) -> int:
    """The text model's hidden size from a checkpoint's config.json (DeepSpeed bucket sizes need it)."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise InputError(
            "not a model directory (no config.json)", file=model_dir, expected="caig init-model output"
        )
    config = json.loads(config_file.read_text())
    return int(config.get("text_config", config).get("hidden_size"))


def model_dtype(cfg: DictConfig) -> str:
    """Weights in bf16 when training in bf16 (DeepSpeed keeps fp32 master weights), else fp32."""
    return "bfloat16" if harness_setting(cfg, "precision") == "bf16" else "float32"


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    start(cfg, "pretrain")
    records = read_records(args.data)
    # TrainingArguments first: under ZeRO-3 it makes from_pretrained load the weights already partitioned
    training_args = training_arguments(cfg, "pretrain", args.out, hidden_size=text_hidden_size(args.base))
    model, processor = load_llava(args.base, dtype=model_dtype(cfg))
    model.train()
    dataset = InstructionDataset(records, seed=int(cfg.pretrain.seed))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=InstructionCollator(processor, max_length=int(cfg.pretrain.max_length)),
    )
    began = time.perf_counter()
    log.info("pre-training on %d records %s", len(records), task_counts(records))
    metrics = run_training(trainer, args.out, lambda path: save_pretrained_model(model, processor, path))
    metrics["records"] = len(records)
    metrics["loss_curve"] = [
        {"step": entry["step"], "loss": entry["loss"]} for entry in trainer.state.log_history if "loss" in entry
    ]
    metrics["wall_seconds"] = time.perf_counter() - began
    if args.metrics is not None and current().is_main:  # each rank has its own loss; rank 0's is the run's
        write_json(metrics, args.metrics)
    log.info("wrote %s (loss %.4f, %d steps)", args.out, metrics["final_loss"], metrics["global_step"])
