"""Baselines of the paper's RM comparison, trained on the same pairs: ``caig baseline-train``.

- ``VamRanker`` (VAM-style, Wang et al. WWW'21): a CNN scores each creative on its own.
- ``Cg4ctrRanker`` (CG4CTR-style): CNN feature-map tokens and the product title's word embeddings fused by
  attention (title words query the image tokens), then scored.

Both give one score per creative plus a CTR estimate, so a pair is compared as
p_left = sigmoid(score_left - score_right), symmetric by construction. Loss: logistic pairwise loss on the
score difference (weight ``reward.loss.cls_weight``) + ``reward.loss.point_weight`` * squared error of both
CTR estimates (CTRs times ``ctr_scale``, as in the reward model). Pure torch; images are read with PIL.

    caig launch --gpus-per-node 1 -- baseline-train --pairs pairs/train.parquet --catalog data/catalog.parquet \\
        --out reward/vam/model reward=vam

The loop checkpoints to ``<out>.ckpt/`` (``caig.launch.preemption.ResumableLoop``) and resumes from it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from caig.errors import ConfigError, InputError
from caig.instruct import ANSWER_WORDS
from caig.io import atomic_path, write_json
from caig.launch.preemption import ResumableLoop, finish
from caig.logs import get_logger
from caig.pretrain.products import read_catalog
from caig.reward.model import open_image, to_rgb
from caig.reward.train import read_pairs
from caig.training import configure_threads, stage_settings

WEIGHTS_FILE = "ranker.safetensors"
SETTINGS_FILE = "ranker.json"
KINDS = ("vam", "cg4ctr")
_WORD = re.compile(r"[a-z0-9]+")

log = get_logger("baseline-train")


# ---------------------------------------------------------------------------------------------- models
def conv_trunk(channels: Sequence[int]) -> nn.Sequential:
    """3x3 conv + BatchNorm + ReLU + 2x2 max-pool per stage."""
    layers: list[nn.Module] = []
    previous = 3
    for width in channels:
        layers += [
            nn.Conv2d(previous, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        previous = width
    return nn.Sequential(*layers)


class VamRanker(nn.Module):
    """CNN image -> (score, scaled CTR estimate)."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.trunk = conv_trunk(channels)
        self.head = nn.Sequential(
            nn.Linear(channels[-1], channels[-1]), nn.ReLU(), nn.Linear(channels[-1], 2)
        )

    def forward(self, images: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        features = self.trunk(images).mean(dim=(2, 3))
        return self.head(features)


class Cg4ctrRanker(nn.Module):
    """CNN feature-map tokens + hashed title words, fused by multi-head attention -> (score, CTR)."""

    def __init__(self, channels: Sequence[int], buckets: int, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"reward.text.dim={dim} is not a multiple of reward.heads={heads}")
        self.trunk = conv_trunk(channels)
        self.image_proj = nn.Linear(channels[-1], dim)
        self.words = nn.Embedding(buckets, dim, padding_idx=0)
        self.fusion = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def forward(self, images: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        if words is None:
            raise ValueError("the CG4CTR-style ranker needs the title's word ids")
        tokens = self.image_proj(self.trunk(images).flatten(2).transpose(1, 2))  # (B, h*w, dim)
        pad = words == 0
        title = self.words(words)
        empty = pad.all(dim=1)
        safe_pad = pad & ~empty.unsqueeze(1)  # a title without words keeps its (zero) padding slot unmasked
        fused, _ = self.fusion(title, tokens, tokens, need_weights=False)
        keep = (~safe_pad).unsqueeze(-1).float()
        fused = (fused * keep).sum(1) / keep.sum(1)
        title_mean = (title * keep).sum(1) / keep.sum(1)
        return self.head(torch.cat([tokens.mean(1), fused, title_mean], dim=1))


def build_ranker(settings: Mapping[str, Any]) -> nn.Module:
    """The ranker a ``reward`` node (vam / cg4ctr) describes."""
    kind = settings.get("kind")
    channels = [int(c) for c in settings.get("channels", ())]
    if not channels:
        raise ConfigError("reward.channels is missing (conv widths, e.g. [16, 32, 64])")
    if kind == "vam":
        return VamRanker(channels)
    if kind == "cg4ctr":
        text = settings.get("text") or {}
        return Cg4ctrRanker(channels, int(text["buckets"]), int(text["dim"]), int(settings["heads"]))
    raise ConfigError(f"reward.kind={kind!r} is not a baseline (expected one of {KINDS})")


def word_ids(title: str, buckets: int, max_words: int) -> list[int]:
    """Title words hashed (CRC-32) into buckets 1..buckets-1 (0 pads), at most ``max_words``."""
    words = _WORD.findall(title.lower())[:max_words]
    ids = [1 + zlib.crc32(word.encode()) % (buckets - 1) for word in words]
    return ids + [0] * (max_words - len(ids))


# ---------------------------------------------------------------------------------------------- data
class ImageTensors:
    """Creatives as normalised (3, size, size) tensors, read once and cached when ``keep``."""

    MEAN = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
    STD = torch.tensor([0.25, 0.25, 0.25]).view(3, 1, 1)

    def __init__(self, size: int, keep: bool = True) -> None:
        self.size = size
        self.keep = keep
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, path: str) -> torch.Tensor:
        if path in self._cache:
            return self._cache[path]
        image = to_rgb(open_image(path)).resize((self.size, self.size), Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        tensor = (tensor - self.MEAN) / self.STD
        if self.keep:
            self._cache[path] = tensor
        return tensor

    def batch(self, paths: Sequence[str]) -> torch.Tensor:
        return torch.stack([self(path) for path in paths])


def ranker_outputs(
    ranker: nn.Module, images: torch.Tensor, words: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score, scaled CTR estimate) per image."""
    out = ranker(images, words)
    return out[:, 0], out[:, 1]


def pair_loss(
    ranker: nn.Module,
    left: torch.Tensor,
    right: torch.Tensor,
    words: torch.Tensor | None,
    left_better: torch.Tensor,
    ctr: torch.Tensor,
    *,
    cls_weight: float,
    point_weight: float,
    ctr_scale: float,
) -> torch.Tensor:
    """cls_weight * logistic loss of (s_left - s_right) + point_weight * mean ||ctr_hat - ctr_scale * ctr||^2."""
    n = left.shape[0]
    both_words = None if words is None else torch.cat([words, words])
    scores, ctr_hat = ranker_outputs(ranker, torch.cat([left, right]), both_words)
    margin = scores[:n] - scores[n:]
    loss = cls_weight * F.binary_cross_entropy_with_logits(margin, left_better.float())
    if point_weight > 0:
        predicted = torch.stack([ctr_hat[:n], ctr_hat[n:]], dim=1)
        loss = loss + point_weight * ((predicted - ctr * ctr_scale) ** 2).sum(dim=1).mean()
    return loss


@torch.no_grad()
def score_ranker_pairs(
    ranker: nn.Module,
    left_images: Sequence[str],
    right_images: Sequence[str],
    titles: Sequence[str] | None,
    *,
    batch_size: int = 64,
    settings: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """p_left = sigmoid(score_left - score_right) per pair (float64)."""
    settings = settings or getattr(ranker, "settings", {})
    images = ImageTensors(int(settings.get("image_size", 32)), keep=False)
    ranker.eval()
    device = next(ranker.parameters()).device
    out = np.empty(len(left_images), dtype=np.float64)
    for start in range(0, len(left_images), batch_size):
        part = slice(start, start + batch_size)
        words = _words_tensor(titles[part], settings) if titles is not None else None
        words = words.to(device) if words is not None else None
        left, _ = ranker_outputs(ranker, images.batch(left_images[part]).to(device), words)
        right, _ = ranker_outputs(ranker, images.batch(right_images[part]).to(device), words)
        out[part] = torch.sigmoid(left - right).double().cpu().numpy()
    return out


def _words_tensor(titles: Sequence[str], settings: Mapping[str, Any]) -> torch.Tensor | None:
    if settings.get("kind") != "cg4ctr":
        return None
    text = settings["text"]
    return torch.tensor([word_ids(t, int(text["buckets"]), int(text["max_words"])) for t in titles])


# ---------------------------------------------------------------------------------------------- save/load
def save_ranker(ranker: nn.Module, settings: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Weights (safetensors) and settings (JSON), written atomically to ``out_dir``."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in ranker.state_dict().items()},
            str(tmp / WEIGHTS_FILE),
        )
        (tmp / SETTINGS_FILE).write_text(json.dumps(dict(settings), indent=2) + "\n")
    return out_dir


def load_ranker(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Inverse of ``save_ranker``: the ranker (eval mode, with ``.settings``) and its settings."""
    path = Path(path)
    for name in (WEIGHTS_FILE, SETTINGS_FILE):
        if not (path / name).is_file():
            raise InputError(
                f"not a saved baseline: {name} is missing", file=path, expected="caig baseline-train output"
            )
    settings = json.loads((path / SETTINGS_FILE).read_text())
    ranker = build_ranker(settings)
    ranker.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    ranker.settings = settings  # type: ignore[assignment]
    return ranker.eval(), settings


# ---------------------------------------------------------------------------------------------- training
def ranker_settings(cfg: DictConfig) -> dict[str, Any]:
    """The ``reward`` node of a baseline as plain data (saved beside the weights)."""
    node = OmegaConf.to_container(cfg.reward, resolve=True)
    assert isinstance(node, dict)
    if node.get("kind") not in KINDS:
        raise ConfigError(f"reward={node.get('name')} is not a baseline (reward.kind must be one of {KINDS})")
    return {
        key: node[key]
        for key in ("name", "kind", "image_size", "channels", "text", "heads", "loss")
        if key in node
    }


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier of ``step`` (linear warm-up, then the schedule)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return max(0.0, 1 - progress)
    return 1.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="train pairs (Parquet, caig pairs)")
    parser.add_argument("--catalog", type=Path, required=True, help="product catalog (titles for CG4CTR)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--metrics", type=Path, help="also write the run's loss and throughput (JSON)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    settings = ranker_settings(cfg)
    opt = stage_settings(cfg, "baseline")
    configure_threads(cfg)
    seed = int(cfg.train.seed)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pairs = read_pairs(args.pairs)
    products = read_catalog(args.catalog)
    titles = []
    for row, product_id in enumerate(pairs["product_id"].cast(pl.String), start=1):
        if product_id not in products:
            raise InputError(
                f"product {product_id!r} is not in the catalog", file=args.pairs, row=row, column="product_id"
            )
        titles.append(str(products[product_id].attributes.get("title", "")))
    images = ImageTensors(int(settings["image_size"]), keep=cfg.preset == "tiny")
    lefts, rights = pairs["left_image"].to_list(), pairs["right_image"].to_list()
    left_better = torch.tensor((pairs["label"] == ANSWER_WORDS[0]).to_numpy())
    ctr = torch.tensor(pairs.select("left_ctr", "right_ctr").to_numpy(), dtype=torch.float32)
    words = _words_tensor(titles, settings)
    loss_cfg = settings["loss"]

    ranker = build_ranker(settings).to(device).train()
    optimizer = torch.optim.AdamW(ranker.parameters(), lr=opt.learning_rate, weight_decay=opt.weight_decay)
    batch = opt.per_device_batch_size
    per_epoch = math.ceil(pairs.height / batch)
    total = opt.max_steps if opt.max_steps > 0 else math.ceil(opt.epochs * per_epoch)
    warmup = int(opt.warmup_ratio * total)

    def save_state(folder: Path, step: int) -> None:
        torch.save(
            {"ranker": ranker.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
            folder / "state.pt",
        )

    began = time.perf_counter()
    losses: list[float] = []
    with ResumableLoop(args.out, save_every=int(cfg.train.save_steps)) as loop:
        start = 0
        if (checkpoint := loop.resume_from()) is not None:
            state = torch.load(checkpoint / "state.pt", map_location=device)
            ranker.load_state_dict(state["ranker"])
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["step"])
        for step in range(start, total):
            epoch, position = divmod(step, per_epoch)
            order = np.random.default_rng(seed + epoch).permutation(pairs.height)
            rows = order[position * batch : (position + 1) * batch]
            for group in optimizer.param_groups:
                group["lr"] = opt.learning_rate * lr_factor(step, total, warmup, opt.lr_scheduler)
            loss = pair_loss(
                ranker,
                images.batch([lefts[i] for i in rows]).to(device),
                images.batch([rights[i] for i in rows]).to(device),
                None if words is None else words[rows].to(device),
                left_better[rows].to(device),
                ctr[rows].to(device),
                cls_weight=float(loss_cfg["cls_weight"]),
                point_weight=float(loss_cfg["point_weight"]),
                ctr_scale=float(loss_cfg["ctr_scale"]),
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ranker.parameters(), opt.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            loop.step_end(step + 1, save=lambda folder, done=step + 1: save_state(folder, done))
    save_ranker(ranker.cpu(), settings, args.out)
    finish(args.out)
    seconds = time.perf_counter() - began
    trained = max(1, total - start)
    metrics = {
        "variant": settings["name"],
        "steps": total,
        "final_loss": float(np.mean(losses[-max(1, per_epoch // 4) :])) if losses else float("nan"),
        "wall_seconds": seconds,
        "pairs_per_second": trained * batch / seconds if seconds > 0 else float("nan"),
    }
    if args.metrics is not None:
        write_json(metrics, args.metrics)
    log.info(
        "%s: %d steps, loss %.4f, %.1f s -> %s",
        settings["name"],
        total,
        metrics["final_loss"],
        seconds,
        args.out,
    )
