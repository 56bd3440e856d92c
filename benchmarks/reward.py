"""Reward-model throughput: training (pairs/s) and symmetric scoring (pairs/s).

    .venv/bin/python benchmarks/reward.py [--steps 10] [--batch 64] [--info]          # tiny preset, CPU
    .venv/bin/python benchmarks/reward.py --full [--batch 4] [--steps 5] [--layers N]  # LLaVA-NeXT-7B, GPU

Tiny (default): the tiny LLaVA-NeXT of ``config/model/tiny.yaml`` (random weights, a tokenizer trained on
the instruction pools), random 64x64 creatives, C_RM prompts with (``--info``) or without product
information. A training step is what ``caig reward-train`` does per batch: collate (concatenate the pair
images, tokenize both orders), forward, backward and an AdamW step; scoring is ``score_pairs`` (both
orders). Warm-up steps are not timed. CPU threads: ``--threads`` (default 1, as in the tiny DAG).

``--full``: the same with the full-size architecture (Vicuna-7B text model + CLIP ViT-L/14-336, the
paper's anyres pinpoints, 336 px creatives, random weights in bf16) on one GPU: training throughput is
forward + backward with activation checkpointing (the optimizer's fp32 states are ZeRO-3-sharded over 8
GPUs in a real run and left out here), reported as pairs/s and tokens/s with an MFU estimate
(6 x parameters x tokens/s over the GPU's peak bf16 FLOP/s, ``--peak-tflops``), plus peak GPU memory.
``--layers`` / ``--vision-layers`` shrink the depths and ``--device cpu`` runs this path without a GPU (smoke
runs only: the figures then say nothing about the real model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from caig.instruct import RM_QUESTIONS, all_instruction_texts, f_instruct  # noqa: E402
from caig.models import build_llava  # noqa: E402
from caig.reward import RewardModel, score_pairs  # noqa: E402
from caig.reward.train import PairCollator, PairExample, head_parameter_groups  # noqa: E402

ATTRIBUTES = {
    "title": "LUXI Ultrathin Laptop 16-inch, navy blue / silver grey, 16GB RAM, 1TB SSD",
    "category": "computers appliances",
    "price": 824.72,
    "rating": 3.9,
    "colors": ["navy blue", "silver grey"],
    "tags": ["16GB RAM", "1TB SSD"],
    "caption": "A computers appliances product in navy blue and silver grey.",
}
# LLaVA-v1.6-Vicuna-7B (transformers LLaVA-NeXT format) and its CLIP ViT-L/14-336 tower
FULL_TEXT = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
}
FULL_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
}
FULL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
FULL_VOCAB = 32064


def creatives(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def model_config(full: bool, layers: int | None, vision_layers: int | None = None) -> dict:
    node = yaml.safe_load((REPO / "config" / "model" / "tiny.yaml").read_text())
    if full:
        node["text"] = dict(FULL_TEXT)
        node["vision"] = dict(FULL_VISION)
        node["image_grid_pinpoints"] = FULL_PINPOINTS
        node["pair_image_size"] = 336
        node["tokenizer"]["vocab_size"] = 8192
        node["dtype"] = "bfloat16"
    if layers:
        node["text"]["num_hidden_layers"] = layers
    if vision_layers:
        node["vision"]["num_hidden_layers"] = vision_layers
    return node


def build(
    full: bool, layers: int | None, vision_layers: int | None, device: torch.device
) -> tuple[RewardModel, object, dict]:
    node = model_config(full, layers, vision_layers)
    corpus = [*all_instruction_texts(), *map(str, ATTRIBUTES.values())] * 3
    if full:  # built in bf16 directly on the GPU; the vocabulary padded to Vicuna's 32,064 rows
        torch.set_default_dtype(torch.bfloat16)
        with torch.device(device):
            backbone, processor = build_llava(node, corpus)
        torch.set_default_dtype(torch.float32)
        backbone.resize_token_embeddings(FULL_VOCAB, mean_resizing=False)
    else:
        backbone, processor = build_llava(node, corpus)
    model = RewardModel(backbone.to(device), point_weight=0.5).to(device)
    return model, processor, node


def examples(n_pairs: int, size: int, info: bool) -> list[list[PairExample]]:
    images = creatives(2 * n_pairs, size)
    paths = []
    folder = REPO / ".cache" / "bench" / f"rm_creatives_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        path = folder / f"{i}.png"
        if not path.exists():
            image.save(path)
        paths.append(str(path))
    shown = ATTRIBUTES if info else {}
    groups = []
    for i in range(n_pairs):
        prompt = f_instruct(RM_QUESTIONS[i % len(RM_QUESTIONS)], shown)
        ctr = (0.02 + 0.001 * (i % 7), 0.03)
        groups.append(
            [
                PairExample(paths[2 * i], paths[2 * i + 1], i % 2, ctr, prompt),
                PairExample(paths[2 * i + 1], paths[2 * i], 1 - i % 2, ctr[::-1], prompt),
            ]
        )
    return groups


def benchmark(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ("cuda" if args.full else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "--full runs on a GPU; for a smoke run of the code path on CPU add --device cpu --layers 1"
        )
    gpu = device.type == "cuda"
    torch.manual_seed(0)
    model, processor, node = build(args.full, args.layers, args.vision_layers, device)
    size = int(node["pair_image_size"])
    groups = examples(args.batch * (args.steps + args.warmup), size, args.info)
    collator = PairCollator(processor, pair_size=size, generative=False)
    params = sum(p.numel() for p in model.parameters())
    if args.full:
        model.backbone.gradient_checkpointing_enable()
        optimizer = None
    else:
        optimizer = torch.optim.AdamW(head_parameter_groups(model, 5e-5, 2e-3))
    model.train()
    tokens = 0
    began = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if gpu:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            began = time.perf_counter()
        batch = collator(groups[step * args.batch : (step + 1) * args.batch]).to(device)
        if args.full:
            batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
        loss = model(**batch).loss
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad()
        else:
            model.zero_grad(set_to_none=True)
        if step >= args.warmup:
            tokens += int(batch["attention_mask"].sum())
    if gpu:
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - began
    trained_pairs = args.steps * args.batch
    result = {
        "preset": "full LLaVA-NeXT-7B (random, bf16)" if args.full else "tiny",
        "device": torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} thread(s)",
        "parameters": params,
        "text_layers": node["text"]["num_hidden_layers"],
        "batch_pairs": args.batch,
        "prompt": "with product information" if args.info else "question only",
        "train_pairs_per_s": trained_pairs / train_seconds,
        "train_examples_per_s": 2 * trained_pairs / train_seconds,
        "train_tokens_per_s": tokens / train_seconds,
        "tokens_per_example": tokens / (2 * trained_pairs),
    }
    if args.full:
        result["train_mfu"] = 6 * params * result["train_tokens_per_s"] / (args.peak_tflops * 1e12)
    if gpu:
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    score_groups = groups[: args.score_pairs]
    lefts = [g[0].left_image for g in score_groups]
    rights = [g[0].right_image for g in score_groups]
    prompts = [g[0].prompt for g in score_groups]
    model.eval()
    if gpu:
        torch.cuda.synchronize()
    began = time.perf_counter()
    score_pairs(model, processor, lefts, rights, prompts, pair_size=size, batch_size=args.batch)
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    result["score_pairs_per_s"] = len(prompts) / seconds
    result["score_tokens_per_s"] = 2 * len(prompts) * result["tokens_per_example"] / seconds
    if args.full:
        result["score_mfu"] = 2 * params * result["score_tokens_per_s"] / (args.peak_tflops * 1e12)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size LLaVA-NeXT-7B on a GPU")
    parser.add_argument("--layers", type=int, help="text-model depth override (smoke runs)")
    parser.add_argument("--vision-layers", type=int, help="vision-tower depth override (smoke runs)")
    parser.add_argument("--device", help="cuda (default with --full) or cpu (smoke runs)")
    parser.add_argument("--batch", type=int, default=None, help="pairs per step (tiny 64, full 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (tiny 10, full 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--score-pairs", type=int, default=None, help="pairs to score (default 4 batches)")
    parser.add_argument("--info", action="store_true", help="C_RM with caption and product information")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (tiny)")
    parser.add_argument("--peak-tflops", type=float, default=312.0, help="GPU peak bf16 TFLOP/s (A100: 312)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    args.batch = args.batch or (4 if args.full else 64)
    args.steps = args.steps or (5 if args.full else 10)
    args.score_pairs = args.score_pairs or 4 * args.batch
    if not args.full:
        torch.set_num_threads(args.threads)
    result = benchmark(args)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>22}: {value:,.3f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
