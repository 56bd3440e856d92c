"""Baselines of the paper's RM comparison, built as their papers and public code describe them:
``caig baseline-train``.

- VAM (Wang et al., WWW'21; the visual-aware ranking model of the CreativeRanking paper): a ResNet scores
  each creative from its pixels alone. Its pooled feature goes through one linear layer of ``feature_dim``
  outputs, and the mean of those outputs is the score.
- CG4CTR (Yang et al., WWW'24; the pipeline's reward model): the creative's image feature and the product
  title's feature, each projected by a two-layer MLP, are fused as two tokens by a small Transformer
  encoder; the two fused tokens, concatenated, go through an MLP whose mean output is the score.

Both are trained as published, on lists of creatives of one product, gathered from the train pairs.
The loss is ``cls_weight`` * the list-wise softmax cross-entropy against softmax(``rank_scale`` *
smoothed CTR), plus ``point_weight`` * the squared error of the score against ``ctr_scale`` * smoothed
CTR. The smoothed CTR is (clicks + a) / (impressions + a + b), with the Beta(a, b) prior fitted to the
train creatives by moments. A pair is judged by p_left = sigmoid(score_left - score_right), which is
symmetric by construction.

The backbone is transformers' ``ResNetModel`` (``reward.backbone.<preset>``; torchvision is never
needed). The paper preset loads pretrained weights from a local directory and never downloads. The tiny
preset builds a small random-init ResNet of the same design. A frozen backbone (CG4CTR's published
setting) has its features computed once, before training. Choices the papers leave open are listed in
docs/baselines.md.

    caig launch --gpus-per-node 1 -- baseline-train --pairs pairs/train.parquet --catalog data/catalog.parquet \\
        --out reward/vam/model reward=vam

The loop checkpoints to ``<out>.ckpt/`` (``caig.launch.preemption.ResumableLoop``) and resumes from it.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import json
import math
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from transformers import ResNetConfig, ResNetModel

from caig.errors import ConfigError, InputError
from caig.io import atomic_path, write_json
from caig.logs import get_logger, progress
from caig.pretrain.products import read_catalog
from caig.reward.model import open_image, to_rgb
from caig.training import ScalarLog, configure_threads, harness_setting, stage_settings

WEIGHTS_FILE = "ranker.safetensors"
SETTINGS_FILE = "ranker.json"
KINDS = ("vam", "cg4ctr")
LIST_COLUMNS = tuple(
    f"{side}_{column}"
    for side in ("left", "right")
    for column in ("creative_id", "image", "impressions", "clicks")
)
LOSS_KEYS = ("cls_weight", "point_weight", "rank_scale", "ctr_scale")
_WORD = re.compile(r"[a-z0-9]+")
_FETCH = {"vam": "microsoft/resnet-18", "cg4ctr": "microsoft/resnet-50"}

log = get_logger("baseline-train")


# ---------------------------------------------------------------------------------------------- backbone
def resnet_checkpoint(path: Any, key: str, kind: str) -> Path:
    """The local directory of a transformers ResNet checkpoint; ConfigError naming ``key`` and the path."""
    fetch = (
        f"on a machine with internet run `hf download {_FETCH[kind]} --local-dir <dir>`, "
        f"copy <dir> here and set {key}.path=<dir>"
    )
    if not path:
        raise ConfigError(f"{key}.path is not set (a local transformers ResNet checkpoint; {fetch})")
    directory = Path(str(path)).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"{key}.path={str(path)!r} does not exist ({fetch})")
    config = directory / "config.json"
    if not config.is_file():
        raise ConfigError(
            f"{key}.path={str(path)!r} has no config.json (expected a transformers ResNet; {fetch})"
        )
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "resnet":
        raise ConfigError(
            f"{key}.path={str(path)!r} holds a {model_type!r} checkpoint (expected model_type 'resnet')"
        )
    return directory


def load_backbone(node: Mapping[str, Any], key: str, kind: str) -> ResNetModel:
    """The ResNet a backbone node names: ``source: random`` builds one from the ``resnet`` sizes (a
    ``ResNetConfig``), ``source: pretrained`` loads the local checkpoint at ``path`` (no network)."""
    source = node.get("source")
    if source == "random":
        sizes = node.get("resnet")
        if not isinstance(sizes, Mapping):
            raise ConfigError(
                f"{key}.resnet is missing (ResNetConfig sizes: embedding_size, hidden_sizes, depths)"
            )
        try:
            return ResNetModel(ResNetConfig(**sizes))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}.resnet={dict(sizes)!r}: {err}") from err
    if source == "pretrained":
        directory = resnet_checkpoint(node.get("path"), key, kind)
        return ResNetModel.from_pretrained(str(directory), local_files_only=True)
    raise ConfigError(f"{key}.source={source!r} (expected random or pretrained)")


def architecture_of(backbone: ResNetModel) -> dict[str, Any]:
    """The backbone's ResNetConfig as plain data (saved beside the weights; no class labels)."""
    config = backbone.config.to_dict()
    for key in ("id2label", "label2id", "architectures", "transformers_version", "_name_or_path", "dtype"):
        config.pop(key, None)
    return config


# ---------------------------------------------------------------------------------------------- models
def mlp(widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU (-> Dropout when ``dropout`` > 0) per consecutive pair of ``widths``."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Ranker(nn.Module, abc.ABC):
    """Scores creatives one at a time: ``features`` (the ResNet's pooled output), then ``score``.

    A frozen backbone (``trainable`` false) gets no gradients and stays in eval mode, so its BatchNorm
    statistics are the checkpoint's own.
    """

    def __init__(self, backbone: ResNetModel, trainable: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.trainable = trainable
        backbone.requires_grad_(trainable)

    @property
    def feature_size(self) -> int:
        return int(self.backbone.config.hidden_sizes[-1])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=images).pooler_output.flatten(1)

    @abc.abstractmethod
    def start_scores_at(self, value: float) -> None:
        """Shift the untrained scores to ``value`` (the mean point target), so the point-wise loss does not
        spend the first steps of a short run on the offset."""

    @abc.abstractmethod
    def score(self, features: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) scores of N creatives' features (and, for CG4CTR, their products' title word ids)."""

    def forward(self, images: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.features(images), words)

    def train(self, mode: bool = True) -> Ranker:
        super().train(mode)
        if not self.trainable:
            self.backbone.eval()
        return self


class VamRanker(Ranker):
    """VAM: pooled ResNet feature -> Linear(``feature_dim``); the mean of its outputs is the score."""

    def __init__(self, backbone: ResNetModel, trainable: bool, *, feature_dim: int) -> None:
        super().__init__(backbone, trainable)
        self.fc = nn.Linear(self.feature_size, feature_dim)

    def score(self, features: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(features).mean(dim=-1)

    def start_scores_at(self, value: float) -> None:
        with torch.no_grad():
            self.fc.bias.fill_(value)


class Cg4ctrRanker(Ranker):
    """CG4CTR: image and title features projected to one width, fused by a Transformer encoder over the two
    tokens, concatenated -> MLP; the mean of its outputs is the score. The title feature is the mean of its
    hashed words' embeddings."""

    def __init__(
        self,
        backbone: ResNetModel,
        trainable: bool,
        *,
        buckets: int,
        word_dim: int,
        projection: Sequence[int],
        layers: int,
        heads: int,
        ffn: int,
        fusion_dropout: float,
        head: Sequence[int],
        dropout: float,
    ) -> None:
        super().__init__(backbone, trainable)
        width = projection[-1]
        if width % heads:
            raise ConfigError(
                f"reward.projection[-1]={width} is not a multiple of reward.fusion.heads={heads}"
            )
        self.words = nn.EmbeddingBag(buckets, word_dim, mode="mean", padding_idx=0)
        self.image_proj = mlp([self.feature_size, *projection], dropout)
        self.title_proj = mlp([word_dim, *projection], dropout)
        layer = nn.TransformerEncoderLayer(
            width, heads, ffn, fusion_dropout, activation="gelu", batch_first=True
        )
        self.fusion = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = mlp([2 * width, *head], 0.0)

    def score(self, features: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        if words is None:
            raise ValueError("the CG4CTR ranker needs the title's word ids")
        tokens = torch.stack([self.image_proj(features), self.title_proj(self.words(words))], dim=1)
        return self.head(self.fusion(tokens).flatten(1)).mean(dim=-1)

    def start_scores_at(self, value: float) -> None:
        with torch.no_grad():  # the head's last BatchNorm shift: mean(ReLU(N(value, 1))) ~ value, value >> 1
            self.head[-2].bias.fill_(value)


def build_ranker(settings: Mapping[str, Any], backbone: ResNetModel | None = None) -> Ranker:
    """The ranker a baseline's settings (``ranker_settings``) describe, on ``backbone`` or on the one its
    ``backbone`` node names."""
    kind = settings.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"reward.kind={kind!r} is not a baseline (expected one of {KINDS})")
    node = settings["backbone"]
    if backbone is None:
        backbone = load_backbone(node, f"reward.backbone.{settings.get('preset')}", kind)
    trainable = bool(node["trainable"])
    if kind == "vam":
        return VamRanker(backbone, trainable, feature_dim=int(settings["feature_dim"]))
    text, fusion = settings["text"], settings["fusion"]
    for name in ("projection", "head"):
        if not settings[name]:
            raise ConfigError(f"reward.{name}={settings[name]!r} (expected at least one layer width)")
    return Cg4ctrRanker(
        backbone,
        trainable,
        buckets=int(text["buckets"]),
        word_dim=int(text["dim"]),
        projection=[int(w) for w in settings["projection"]],
        layers=int(fusion["layers"]),
        heads=int(fusion["heads"]),
        ffn=int(fusion["ffn"]),
        fusion_dropout=float(fusion["dropout"]),
        head=[int(w) for w in settings["head"]],
        dropout=float(settings["dropout"]),
    )


def word_ids(title: str, buckets: int, max_words: int) -> list[int]:
    """Title words hashed (CRC-32) into buckets 1..buckets-1 (0 pads), at most ``max_words``."""
    words = _WORD.findall(title.lower())[:max_words]
    ids = [1 + zlib.crc32(word.encode()) % (buckets - 1) for word in words]
    return ids + [0] * (max_words - len(ids))


def title_words(titles: Sequence[str], settings: Mapping[str, Any]) -> torch.Tensor | None:
    """(len(titles), max_words) word ids for CG4CTR; None for VAM, which reads no text."""
    if settings.get("kind") != "cg4ctr":
        return None
    text = settings["text"]
    return torch.tensor(
        [word_ids(t, int(text["buckets"]), int(text["max_words"])) for t in titles], dtype=torch.long
    ).reshape(len(titles), int(text["max_words"]))


# ---------------------------------------------------------------------------------------------- images
class CreativeImages:
    """Creatives as normalised (3, crop, crop) tensors: resized to ``resize`` x ``resize``, then a random
    crop (training, as VAM's) or the centre crop (features and scoring). The resized pixels are cached when
    ``keep``."""

    def __init__(self, node: Mapping[str, Any], keep: bool = True) -> None:
        self.resize, self.crop = int(node["resize"]), int(node["crop"])
        self.mean = torch.tensor([float(v) for v in node["mean"]]).view(3, 1, 1)
        self.std = torch.tensor([float(v) for v in node["std"]]).view(3, 1, 1)
        self.keep = keep
        self._cache: dict[str, torch.Tensor] = {}

    def resized(self, path: str) -> torch.Tensor:
        """(3, resize, resize) uint8 pixels."""
        if path in self._cache:
            return self._cache[path]
        image = to_rgb(open_image(path)).resize((self.resize, self.resize), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        if self.keep:
            self._cache[path] = pixels
        return pixels

    def __call__(self, path: str, rng: np.random.Generator | None = None) -> torch.Tensor:
        span = self.resize - self.crop
        top, left = (rng.integers(0, span + 1, size=2) if rng is not None else (span // 2, span // 2))
        pixels = self.resized(path)[:, top : top + self.crop, left : left + self.crop]
        return (pixels.float() / 255.0 - self.mean) / self.std

    def batch(self, paths: Sequence[str], rng: np.random.Generator | None = None) -> torch.Tensor:
        return torch.stack([self(path, rng) for path in paths])


# ---------------------------------------------------------------------------------------------- data
def beta_prior(impressions: np.ndarray, clicks: np.ndarray) -> tuple[float, float]:
    """Beta(a, b) fitted to the creatives' CTRs by the method of moments (the CTR smoothing of both papers'
    code)."""
    ctr = clicks / impressions
    mean = float(ctr.mean()) if ctr.size else float("nan")
    var = float(ctr.var(ddof=1)) if ctr.size > 1 else float("nan")
    if not (0 < mean < 1 and 0 < var < mean * (1 - mean)):
        raise InputError(
            f"cannot fit the CTR prior: {ctr.size} creatives, mean CTR {mean:.4g}, variance {var:.4g}",
            expected="at least two creatives whose CTRs differ",
        )
    strength = mean * (1 - mean) / var - 1
    return mean * strength, (1 - mean) * strength


@dataclass(frozen=True)
class CreativeLists:
    """The train creatives grouped by product (lists of >= 2), with smoothed CTRs and the product titles."""

    images: list[list[str]]
    ctr: list[np.ndarray]
    titles: list[str]
    prior: tuple[float, float]

    @property
    def creatives(self) -> int:
        return sum(len(images) for images in self.images)


def creative_lists(
    pairs: pl.DataFrame, titles: Mapping[str, str], *, file: str | Path | None = None
) -> CreativeLists:
    """Every creative of the pairs once (its summed impressions and clicks), grouped by product."""
    missing = [name for name in LIST_COLUMNS if name not in pairs.columns]
    if missing:
        raise InputError(f"lacks column {missing[0]!r}", file=file, expected="pairs from caig pairs")
    sides = [
        pairs.select(
            pl.col("product_id").cast(pl.String),
            pl.col(f"{side}_creative_id").cast(pl.String).alias("creative_id"),
            pl.col(f"{side}_image").alias("image"),
            pl.col(f"{side}_impressions").cast(pl.Float64).alias("impressions"),
            pl.col(f"{side}_clicks").cast(pl.Float64).alias("clicks"),
        )
        for side in ("left", "right")
    ]
    creatives = pl.concat(sides).unique("creative_id", keep="first").sort("product_id", "creative_id")
    unknown = [pid for pid in creatives["product_id"].unique(maintain_order=True) if pid not in titles]
    if unknown:
        raise InputError(f"product {unknown[0]!r} is not in the catalog", file=file, column="product_id")
    prior = beta_prior(creatives["impressions"].to_numpy(), creatives["clicks"].to_numpy())
    smoothed = creatives.with_columns(
        ((pl.col("clicks") + prior[0]) / (pl.col("impressions") + prior[0] + prior[1])).alias("ctr")
    )
    images, ctr, product_titles = [], [], []
    for (product_id,), group in smoothed.group_by("product_id", maintain_order=True):
        if group.height < 2:
            continue
        images.append(group["image"].to_list())
        ctr.append(group["ctr"].to_numpy().astype(np.float32))
        product_titles.append(titles[str(product_id)])
    if not images:
        raise InputError("no product has two creatives", file=file, expected="pairs from caig pairs")
    return CreativeLists(images, ctr, product_titles, prior)


class ListBatches(torch.utils.data.Dataset):
    """Training step ``s`` -> its batch of lists: a seeded permutation of the products per epoch, and per
    list up to ``list_size`` of its creatives drawn at random (VAM samples its lists the same way).

    A batch holds ``slots`` (B, L) for the creatives present, their smoothed ``ctr`` (B, L), ``lists``
    (B,) and, per creative present (row-major), ``rows`` (its list's row) and either ``pixels`` (randomly
    cropped) or, for a frozen backbone, ``index`` into the precomputed features.
    """

    def __init__(
        self,
        lists: CreativeLists,
        images: CreativeImages,
        *,
        list_size: int,
        batch_size: int,
        seed: int,
        frozen: bool,
    ) -> None:
        self.lists, self.images = lists, images
        self.list_size, self.batch_size, self.seed, self.frozen = list_size, batch_size, seed, frozen
        self.per_epoch = math.ceil(len(lists.images) / batch_size)
        starts = np.cumsum([0] + [len(images) for images in lists.images])
        self.first = starts[:-1]  # index of each list's first creative in the flat order
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            rng = np.random.default_rng([self.seed, epoch])
            self._orders = {epoch: rng.permutation(len(self.lists.images))}
        return self._orders[epoch]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        epoch, position = divmod(step, self.per_epoch)
        lists = self.order(epoch)[position * self.batch_size : (position + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, epoch, position])
        width = min(self.list_size, max(len(self.lists.images[i]) for i in lists))
        slots = torch.zeros(len(lists), width, dtype=torch.bool)
        ctr = torch.zeros(len(lists), width)
        rows, chosen = [], []
        for row, i in enumerate(lists):
            size = len(self.lists.images[i])
            picks = np.sort(rng.choice(size, min(size, self.list_size), replace=False))
            slots[row, : len(picks)] = True
            ctr[row, : len(picks)] = torch.from_numpy(self.lists.ctr[i][picks])
            rows += [row] * len(picks)
            chosen += [(int(i), int(k)) for k in picks]
        batch = {"slots": slots, "ctr": ctr, "lists": torch.from_numpy(lists), "rows": torch.tensor(rows)}
        if self.frozen:
            batch["index"] = torch.tensor([int(self.first[i]) + k for i, k in chosen])
        else:
            batch["pixels"] = self.images.batch([self.lists.images[i][k] for i, k in chosen], rng)
        return batch


@torch.no_grad()
def encode_all(
    ranker: Ranker, images: CreativeImages, paths: Sequence[str], *, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Pooled backbone features of every image (centre crop), on the CPU: a frozen backbone's inputs."""
    ranker.eval()
    out = [
        ranker.features(images.batch(paths[start : start + batch_size]).to(device)).float().cpu()
        for start in range(0, len(paths), batch_size)
    ]
    ranker.train()
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------- loss, scoring
def list_loss(
    scores: torch.Tensor,
    slots: torch.Tensor,
    ctr: torch.Tensor,
    *,
    cls_weight: float,
    point_weight: float,
    rank_scale: float,
    ctr_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, list-wise, point-wise) loss of (B, L) scores, ``slots`` marking the creatives present:
    cross-entropy of softmax(scores) against softmax(rank_scale * ctr) per list, and the mean squared error
    of the scores against ctr_scale * ctr."""
    absent = ~slots
    target = torch.softmax((ctr * rank_scale).masked_fill(absent, -math.inf), dim=1)
    log_p = torch.log_softmax(scores.masked_fill(absent, -math.inf), dim=1).masked_fill(absent, 0.0)
    ranking = -(target * log_p).sum(dim=1).mean()
    point = ((scores - ctr * ctr_scale)[slots] ** 2).mean()
    return cls_weight * ranking + point_weight * point, ranking, point


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
    """p_left = sigmoid(score_left - score_right) per pair (float64), each creative centre-cropped."""
    settings = settings or getattr(ranker, "settings", {})
    images = CreativeImages(settings["backbone"]["image"], keep=False)
    ranker.eval()
    device = next(ranker.parameters()).device
    out = np.empty(len(left_images), dtype=np.float64)
    for start in progress(range(0, len(left_images), batch_size), desc="scoring pairs", unit="batch"):
        part = slice(start, start + batch_size)
        words = title_words(titles[part], settings) if titles is not None else None
        words = words.to(device) if words is not None else None
        left = ranker(images.batch(left_images[part]).to(device), words)
        right = ranker(images.batch(right_images[part]).to(device), words)
        out[part] = torch.sigmoid(left - right).double().cpu().numpy()
    return out


# ---------------------------------------------------------------------------------------------- save/load
def save_ranker(ranker: Ranker, settings: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Weights (safetensors) and settings with the backbone's architecture (JSON), written atomically; the
    saved ranker loads without the backbone's original checkpoint."""
    out_dir = Path(out_dir)
    saved = {**settings, "backbone_architecture": architecture_of(ranker.backbone)}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in ranker.state_dict().items()},
            str(tmp / WEIGHTS_FILE),
        )
        (tmp / SETTINGS_FILE).write_text(json.dumps(saved, indent=2) + "\n")
    return out_dir


def load_ranker(path: str | Path) -> tuple[Ranker, dict[str, Any]]:
    """Inverse of ``save_ranker``: the ranker (eval mode, with ``.settings``) and its settings."""
    path = Path(path)
    for name in (WEIGHTS_FILE, SETTINGS_FILE):
        if not (path / name).is_file():
            raise InputError(
                f"not a saved baseline: {name} is missing", file=path, expected="caig baseline-train output"
            )
    settings = json.loads((path / SETTINGS_FILE).read_text())
    if "backbone_architecture" not in settings:
        raise InputError(
            "not a saved ResNet baseline: backbone_architecture is missing",
            file=path / SETTINGS_FILE,
            expected="caig baseline-train output (retrain baselines saved by an older version)",
        )
    backbone = ResNetModel(ResNetConfig.from_dict(settings["backbone_architecture"]))
    ranker = build_ranker(settings, backbone)
    ranker.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    ranker.settings = settings  # type: ignore[assignment]
    return ranker.eval(), settings


# ---------------------------------------------------------------------------------------------- settings
def _at(node: Mapping[str, Any], dotted: str, prefix: str = "reward") -> Any:
    value: Any = node
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            raise ConfigError(f"{prefix}.{dotted} is missing")
        value = value[part]
    return value


_KIND_KEYS = {
    "vam": ("feature_dim",),
    "cg4ctr": ("text", "projection", "fusion", "head", "dropout"),
}


def ranker_settings(cfg: DictConfig) -> dict[str, Any]:
    """The baseline's ``reward`` node with the backbone of the run's preset (``reward.backbone.<preset>``),
    checked, as plain data (saved beside the weights)."""
    node = OmegaConf.to_container(cfg.reward, resolve=True)
    assert isinstance(node, dict)
    kind = node.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"reward={node.get('name')} is not a baseline (reward.kind must be one of {KINDS})")
    preset = str(cfg.preset)
    backbone = _at(node, f"backbone.{preset}")
    key = f"reward.backbone.{preset}"
    for name in ("source", "trainable", "image"):
        _at(backbone, name, key)
    image = backbone["image"]
    resize, crop = int(_at(image, "resize", f"{key}.image")), int(_at(image, "crop", f"{key}.image"))
    if not 0 < crop <= resize:
        raise ConfigError(f"{key}.image: crop={crop} must be positive and at most resize={resize}")
    for name in ("mean", "std"):
        if len(_at(image, name, f"{key}.image")) != 3:
            raise ConfigError(f"{key}.image.{name}={image[name]!r} (expected three values, R G B)")
    if int(_at(node, "list_size")) < 2:
        raise ConfigError(f"reward.list_size={node['list_size']} (expected >= 2 creatives per list)")
    for name in LOSS_KEYS:
        if float(_at(node, f"loss.{name}")) < 0:
            raise ConfigError(f"reward.loss.{name}={node['loss'][name]} (expected >= 0)")
    settings = {
        "name": node.get("name"),
        "kind": kind,
        "preset": preset,
        "list_size": int(node["list_size"]),
        "loss": node["loss"],
        "backbone": backbone,
    }
    for name in _KIND_KEYS[kind]:
        settings[name] = _at(node, name)
    return settings


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


# ---------------------------------------------------------------------------------------------- training
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="train pairs (Parquet, caig pairs)")
    parser.add_argument("--catalog", type=Path, required=True, help="product catalog (titles for CG4CTR)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--metrics", type=Path, help="also write the run's loss curve and throughput (JSON)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    # Imported here, not above: judges that only load a ranker (caig.reward.judging) skip transformers' Trainer.
    from caig.launch.preemption import ResumableLoop, finish
    from caig.reward.train import read_pairs

    settings = ranker_settings(cfg)
    opt = stage_settings(cfg, "baseline")
    configure_threads(cfg)
    seed = int(cfg.train.seed)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda" and harness_setting(cfg, "precision") == "bf16"
    products = read_catalog(args.catalog)
    titles = {pid: str(product.attributes.get("title", "")) for pid, product in products.items()}
    lists = creative_lists(read_pairs(args.pairs), titles, file=args.pairs)
    images = CreativeImages(settings["backbone"]["image"], keep=cfg.preset == "tiny")
    words = title_words(lists.titles, settings)
    loss_cfg = {name: float(settings["loss"][name]) for name in LOSS_KEYS}

    ranker = build_ranker(settings)
    mean_ctr = float(np.mean(np.concatenate(lists.ctr)))
    ranker.start_scores_at(loss_cfg["ctr_scale"] * mean_ctr)
    ranker = ranker.to(device).train()
    frozen = not ranker.trainable
    features = None
    if frozen:
        paths = [path for group in lists.images for path in group]
        features = encode_all(ranker, images, paths, batch_size=4 * opt.per_device_batch_size, device=device)
    backbone_params = [p for p in ranker.backbone.parameters() if p.requires_grad]
    head_params = [p for name, p in ranker.named_parameters() if not name.startswith("backbone.")]
    rates = [opt.learning_rate, opt.head_learning_rate or opt.learning_rate]
    groups = [
        {"params": params, "lr": rate}
        for params, rate in zip((backbone_params, head_params), rates, strict=True)
        if params
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=opt.weight_decay)
    base_rates = [group["lr"] for group in optimizer.param_groups]
    batches = ListBatches(
        lists,
        images,
        list_size=settings["list_size"],
        batch_size=opt.per_device_batch_size,
        seed=seed,
        frozen=frozen,
    )
    per_epoch = batches.per_epoch
    total = opt.max_steps if opt.max_steps > 0 else math.ceil(opt.epochs * per_epoch)
    warmup = int(opt.warmup_ratio * total)
    log.info(
        "%s: %d lists (%d creatives, CTR prior Beta(%.2f, %.2f)), %d steps of %d lists, backbone %s",
        settings["name"], len(lists.images), lists.creatives, *lists.prior, total, opt.per_device_batch_size,
        "frozen" if frozen else "trained",
    )

    history: list[list[float]] = []  # per step: total, list-wise, point-wise loss

    def save_state(folder: Path, step: int) -> None:
        state = {"ranker": ranker.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
        torch.save({**state, "history": history}, folder / "state.pt")

    began = time.perf_counter()
    with ResumableLoop(args.out, save_every=int(cfg.train.save_steps)) as loop:
        start = 0
        if (checkpoint := loop.resume_from()) is not None:
            state = torch.load(checkpoint / "state.pt", map_location=device)
            ranker.load_state_dict(state["ranker"])
            optimizer.load_state_dict(state["optimizer"])
            start, history[:] = int(state["step"]), state["history"]
        curves = ScalarLog(cfg, args.out, fresh=checkpoint is None)  # <out>.tensorboard/
        logging_steps = int(harness_setting(cfg, "logging_steps"))
        loader = torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=range(start, total),
            num_workers=int(harness_setting(cfg, "dataloader_num_workers")),
            pin_memory=device.type == "cuda",
        )
        for step, batch in enumerate(loader, start=start):
            for group, rate in zip(optimizer.param_groups, base_rates, strict=True):
                group["lr"] = rate * lr_factor(step, total, warmup, opt.lr_scheduler)
            slots, ctr = batch["slots"].to(device), batch["ctr"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                if features is not None:
                    feats = features[batch["index"]].to(device)
                else:
                    feats = ranker.features(batch["pixels"].to(device))
                per_image = None if words is None else words[batch["lists"]][batch["rows"]].to(device)
                flat = ranker.score(feats, per_image).float()
            scores = flat.new_zeros(slots.shape)
            scores[slots] = flat
            loss, ranking, point = list_loss(scores, slots, ctr, **loss_cfg)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ranker.parameters(), opt.max_grad_norm)
            optimizer.step()
            history.append([loss.item(), ranking.item(), point.item()])
            if (step + 1) % logging_steps == 0 or step + 1 == total:  # means since the last record, as HF logs
                window = np.mean(history[step // logging_steps * logging_steps :], axis=0)
                curves.add(step + 1, {
                    "train/loss": window[0], "train/list_loss": window[1], "train/point_loss": window[2],
                    "train/learning_rate": optimizer.param_groups[-1]["lr"],
                })
            loop.step_end(step + 1, save=lambda folder, done=step + 1: save_state(folder, done))
        curves.close()
    save_ranker(ranker.cpu(), settings, args.out)
    finish(args.out)
    seconds = time.perf_counter() - began
    trained = max(1, total - start)
    curve = [
        np.mean(history[epoch * per_epoch : (epoch + 1) * per_epoch], axis=0)
        for epoch in range(math.ceil(total / per_epoch))
    ]
    metrics = {
        "variant": settings["name"],
        "steps": total,
        "lists": len(lists.images),
        "creatives": lists.creatives,
        "ctr_prior": list(lists.prior),
        "final_loss": float(curve[-1][0]) if curve else float("nan"),
        "loss_per_epoch": [round(float(c[0]), 5) for c in curve],
        "list_loss_per_epoch": [round(float(c[1]), 5) for c in curve],
        "point_loss_per_epoch": [round(float(c[2]), 5) for c in curve],
        "wall_seconds": seconds,
        "lists_per_second": trained * opt.per_device_batch_size / seconds if seconds > 0 else float("nan"),
    }
    if args.metrics is not None:
        write_json(metrics, args.metrics)
    log.info("%s: %d steps, loss per epoch %s, %.1f s -> %s", settings["name"], total,
             metrics["loss_per_epoch"], seconds, args.out)
