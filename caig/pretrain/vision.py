"""``caig vision-pretrain --model DIR --catalog FILE --out DIR --metrics FILE``: the vision tower's
pre-training in miniature, before stage 1.

LLaVA starts from a CLIP tower that learnt to see from hundreds of millions of captioned images; a random-init
tiny tower has not, and stage 1 alone does not teach it (it moves the tower by a few percent). This step gives
the tiny model that start. It renders ads of TRAINING products (the reward model's test split left out, as
stage 1 leaves it out) over backgrounds drawn uniformly from the world's description vocabulary (each slot
uniform over its phrases and "not said"), with the renderer the preference stage uses (``generate.backend``;
never the oracle), and trains the vision tower and the multimodal projector to predict which tokens each
ad's description holds: a multi-hot target, binary cross-entropy, through a small head on the flattened
projector output of the ad's tile (the features the language model reads).

The output is the input model with the trained tower and projector, in init-model's layout, so stage 1 and
the reward model load it unchanged; the description head is saved beside it (caig.models.description), for the
tiny reward model's ``side_desc`` readout. The metrics file holds the loss curve and linear-probe accuracies of the
background slots, before and after training, on ads of training products the tower never saw (the probes
read the slots the ads were rendered from, never the oracle). ``model.vision_pretrain`` holds the settings;
the paper preset turns the step off, since its CLIP tower is pre-trained already.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from transformers import LlavaNextForConditionalGeneration, get_cosine_schedule_with_warmup

from caig.data.pairs import PairConfig
from caig.errors import ConfigError, InputError
from caig.generate.backends import BackgroundGenerator, make_generator
from caig.generate.products import ProductInput, load_catalog_products
from caig.io import atomic_path, write_json
from caig.logs import get_logger, progress
from caig.models import load_llava
from caig.models.description import DescriptionHead, save_description_head, tile_features
from caig.pretrain.data import held_out_products
from caig.sim.vocabulary import SCALES, SCENES, SLOT_KEYS, SLOTS, Background
from caig.training import ScalarLog, configure_threads

log = get_logger("vision-pretrain")

#: What the probes read from each ad: the five slots it was rendered from, and the scene's distance.
PROBED = (*SLOTS, "scale")
RENDER_CHUNK = 256
PROBE_L2 = 1e-3
PROBE_ITERATIONS = 100


# ---------------------------------------------------------------------------------------------- settings
def vision_pretrain_enabled(model_cfg: Mapping[str, Any] | DictConfig) -> bool:
    """Whether ``model.vision_pretrain.enabled`` asks for the step (an absent node: no, the tower is taken
    as pre-trained); ConfigError when the node or the flag is malformed."""
    node = model_cfg.get("vision_pretrain")
    if node is None:
        return False
    if not isinstance(node, Mapping | DictConfig):
        raise ConfigError(
            f"model.vision_pretrain={node!r} is not a mapping (expected enabled, ads, steps, ...)"
        )
    enabled = node.get("enabled")
    if not isinstance(enabled, bool):
        raise ConfigError(f"model.vision_pretrain.enabled={enabled!r} (expected true or false)")
    return enabled


@dataclass(frozen=True)
class VisionPretrainSettings:
    """``model.vision_pretrain``: how many ads the step renders and how it trains."""

    ads: int
    probe_ads: int
    probe_fraction: float
    steps: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    weight_decay: float
    head_hidden: int
    log_every: int

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any] | DictConfig) -> VisionPretrainSettings:
        """The settings from the ``model`` node; ConfigError names a missing, unknown or bad key."""
        if not vision_pretrain_enabled(model_cfg):
            raise ConfigError(
                "model.vision_pretrain.enabled is not true: this model's tower counts as pre-trained "
                "(expected true to run caig vision-pretrain)"
            )
        node = model_cfg["vision_pretrain"]
        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(node) - {"enabled", *known})
        if unknown:
            raise ConfigError(
                f"model.vision_pretrain.{unknown[0]} is not a setting (expected some of {known})"
            )
        values: dict[str, Any] = {}
        for field in fields(cls):
            if node.get(field.name) is None:
                raise ConfigError(f"model.vision_pretrain.{field.name} is missing")
            value = node[field.name]
            kind, expected = (int, "an integer") if field.type == "int" else (float, "a number")
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (kind is int and value != int(value))
            ):
                raise ConfigError(f"model.vision_pretrain.{field.name}={value!r} (expected {expected})")
            values[field.name] = kind(value)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """ConfigError naming the first setting out of range."""
        limits = {
            "ads": (self.ads >= self.batch_size, "at least batch_size"),
            "probe_ads": (self.probe_ads >= 2, "at least 2"),
            "probe_fraction": (0 < self.probe_fraction < 1, "in (0, 1)"),
            "steps": (self.steps >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "learning_rate": (self.learning_rate > 0, "positive"),
            "warmup_ratio": (0 <= self.warmup_ratio < 1, "in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, "non-negative"),
            "head_hidden": (self.head_hidden >= 1, "at least 1"),
            "log_every": (self.log_every >= 1, "at least 1"),
        }
        for key, (ok, expected) in limits.items():
            if not ok:
                raise ConfigError(f"model.vision_pretrain.{key}={getattr(self, key)!r} (expected {expected})")


# ---------------------------------------------------------------------------------------------- the ads
def draw_backgrounds(n: int, rng: np.random.Generator) -> list[Background]:
    """``n`` backgrounds, each slot uniform over its vocabulary keys and "not said"."""
    codes = np.stack([rng.integers(-1, len(SLOT_KEYS[slot]), size=n) for slot in SLOTS], axis=1)
    return [Background.from_codes(row) for row in codes]


def split_products(
    product_ids: Sequence[str], *, test_fraction: float, split_seed: int, probe_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """(tower products, probe products): the training products (the reward model's test split left out),
    a seeded ``probe_fraction`` of them kept for the probes, whose ads the tower never sees."""
    held_out = held_out_products(product_ids, test_fraction=test_fraction, seed=split_seed)
    training = sorted(set(product_ids) - held_out)
    n_probe = round(probe_fraction * len(training))
    if n_probe < 2 or len(training) - n_probe < 1:
        raise InputError(
            f"{len(training)} training products cannot be split into tower and probe products "
            f"(model.vision_pretrain.probe_fraction={probe_fraction})",
            expected="at least 2 probe products and 1 tower product",
        )
    order = np.random.default_rng([seed, 1]).permutation(len(training))
    probe = sorted(training[i] for i in order[:n_probe])
    tower = sorted(training[i] for i in order[n_probe:])
    return tower, probe


@dataclass(frozen=True)
class AdSet:
    """Rendered ads as model tiles: pixels (n, size, size, 3) uint8, the slots they show, their descriptions
    and products."""

    pixels: np.ndarray
    codes: np.ndarray
    texts: list[str]
    product_ids: list[str]

    def labels(self, probed: str) -> np.ndarray:
        """Class per ad of a probed quantity: a slot's key index (0 = not said) or the scene's distance."""
        if probed == "scale":
            scene = self.codes[:, SLOTS.index("scene")]
            by_code = [0] + [1 + SCALES.index(SCENES[key].scale) for key in SLOT_KEYS["scene"]]
            return np.asarray(by_code)[scene + 1]
        return self.codes[:, SLOTS.index(probed)].astype(np.int64) + 1


def render_ads(
    generator: BackgroundGenerator,
    products: Sequence[ProductInput],
    n: int,
    tile: int,
    rng: np.random.Generator,
    desc: str,
) -> AdSet:
    """``n`` ads, products drawn uniformly, backgrounds by ``draw_backgrounds``, each fitted to ``tile`` px as
    the reward model fits a creative into its pair image (bicubic)."""
    backgrounds = draw_backgrounds(n, rng)
    chosen = rng.integers(len(products), size=n)
    seeds = rng.integers(2**62, size=n)
    texts = [bg.text() for bg in backgrounds]
    pixels = np.empty((n, tile, tile, 3), dtype=np.uint8)
    for lo in progress(range(0, n, RENDER_CHUNK), desc=desc, unit="chunk", leave=False):
        hi = min(n, lo + RENDER_CHUNK)
        images = generator.generate(
            [products[i] for i in chosen[lo:hi]], texts[lo:hi], [int(s) for s in seeds[lo:hi]]
        )
        for k, image in enumerate(images, start=lo):
            pixels[k] = np.asarray(image.convert("RGB").resize((tile, tile), Image.Resampling.BICUBIC))
    codes = np.asarray([bg.codes() for bg in backgrounds], dtype=np.int64)
    return AdSet(pixels, codes, texts, [products[i].product_id for i in chosen])


# ---------------------------------------------------------------------------------------------- the model
def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (n, h, w, 3) as the image processor feeds the tower: (n, 3, h, w), rescaled and normalised."""
    values = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    return (values - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def token_targets(
    tokenizer: Any, texts: Sequence[str], vocabulary: Sequence[int] | None = None
) -> tuple[list[int], torch.Tensor]:
    """(token ids, multi-hot (n, len(ids))): which tokens each description holds, tokenized as a stage-1
    answer is (after a space). ``vocabulary`` fixes the ids (tokens outside it are ignored); by default the
    ids the texts use."""
    encoded = [set(tokenizer(" " + text, add_special_tokens=False)["input_ids"]) for text in texts]
    ids = sorted(set().union(*encoded)) if vocabulary is None else list(vocabulary)
    column = {token: j for j, token in enumerate(ids)}
    targets = torch.zeros(len(texts), len(ids))
    for row, tokens in enumerate(encoded):
        targets[row, [column[t] for t in tokens if t in column]] = 1.0
    return ids, targets


@torch.no_grad()
def features_of(
    model: LlavaNextForConditionalGeneration, pixel_values: torch.Tensor, batch: int = 512
) -> torch.Tensor:
    """Flattened tile features of many tiles, in batches, without gradients."""
    return torch.cat(
        [
            tile_features(model, pixel_values[i : i + batch]).flatten(1)
            for i in range(0, len(pixel_values), batch)
        ]
    )


def train_tower(
    model: LlavaNextForConditionalGeneration,
    head: DescriptionHead,
    pixel_values: torch.Tensor,
    targets: torch.Tensor,
    settings: VisionPretrainSettings,
    generator: torch.Generator,
) -> list[dict[str, float]]:
    """Train the tower, projector and head to predict ``targets`` (BCE), AdamW with cosine decay after a
    linear warm-up, batches from seeded shuffled passes. Returns the loss curve: the mean loss of every
    ``log_every`` steps."""
    params = [
        *model.model.vision_tower.parameters(),
        *model.model.multi_modal_projector.parameters(),
        *head.parameters(),
    ]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(settings.warmup_ratio * settings.steps), settings.steps
    )
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    head.train()
    order = torch.empty(0, dtype=torch.long)
    curve: list[dict[str, float]] = []
    window: list[float] = []
    bar = progress(range(1, settings.steps + 1), desc="vision pre-training", unit="step")
    for step in bar:
        if len(order) < settings.batch_size:
            order = torch.cat([order, torch.randperm(len(pixel_values), generator=generator)])
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        loss = loss_fn(head(tile_features(model, pixel_values[batch])), targets[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if step % settings.log_every == 0 or step == settings.steps:
            curve.append(
                {"step": step, "loss": float(np.mean(window)), "learning_rate": schedule.get_last_lr()[0]}
            )
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
            window = []
    model.eval()
    head.eval()
    return curve


# ---------------------------------------------------------------------------------------------- probes
def probe_accuracy(
    fit_x: torch.Tensor, fit_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray, classes: int
) -> float:
    """Accuracy on (test_x, test_y) of a multinomial logistic regression fitted on (fit_x, fit_y):
    standardised features, a small L2 penalty, L-BFGS. Deterministic."""
    mean, std = fit_x.mean(0), fit_x.std(0).clamp_min(1e-6)
    fx, tx = (fit_x - mean) / std, (test_x - mean) / std
    labels = torch.from_numpy(np.asarray(fit_y, dtype=np.int64))
    weight = torch.zeros(fx.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=PROBE_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(fx @ weight + bias, labels) + PROBE_L2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (tx @ weight + bias).argmax(1).numpy()
    return float(np.mean(predicted == np.asarray(test_y)))


def probe_report(features: torch.Tensor, ads: AdSet, fit: np.ndarray) -> dict[str, float]:
    """Probe accuracy per probed quantity: fitted on the ads where ``fit`` is true, scored on the others."""
    out = {}
    for probed in PROBED:
        labels = ads.labels(probed)
        classes = int(labels.max()) + 1
        out[probed] = probe_accuracy(features[fit], labels[fit], features[~fit], labels[~fit], classes)
    return out


def majority_report(ads: AdSet, fit: np.ndarray) -> dict[str, float]:
    """Accuracy of always answering the fitted ads' most common class (what a probe must beat)."""
    out = {}
    for probed in PROBED:
        labels = ads.labels(probed)
        majority = np.bincount(labels[fit]).argmax()
        out[probed] = float(np.mean(labels[~fit] == majority))
    return out


# ---------------------------------------------------------------------------------------------- command
def vision_pretrain(
    model: LlavaNextForConditionalGeneration,
    processor: Any,
    products: Sequence[ProductInput],
    generator: BackgroundGenerator,
    settings: VisionPretrainSettings,
    *,
    test_fraction: float,
    split_seed: int,
    seed: int,
) -> tuple[DescriptionHead, dict[str, Any]]:
    """Render the ads, probe the tower, train it, probe it again; ``model`` is trained in place. Returns the
    trained description head and the metrics (loss curve, probes before and after, counts, timings)."""
    began = time.perf_counter()
    by_id = {p.product_id: p for p in products}
    tower_ids, probe_ids = split_products(
        sorted(by_id),
        test_fraction=test_fraction,
        split_seed=split_seed,
        probe_fraction=settings.probe_fraction,
        seed=seed,
    )
    tile = int(model.config.vision_config.image_size)
    rng = np.random.default_rng([seed, 2])
    train_ads = render_ads(generator, [by_id[i] for i in tower_ids], settings.ads, tile, rng, "tower ads")
    probe_ads = render_ads(
        generator, [by_id[i] for i in probe_ids], settings.probe_ads, tile, rng, "probe ads"
    )
    rendered = time.perf_counter()
    log.info(
        "rendered %d ads of %d products and %d probe ads of %d other training products in %.1f s",
        settings.ads,
        len(tower_ids),
        settings.probe_ads,
        len(probe_ids),
        rendered - began,
    )
    image_processor = processor.image_processor
    train_x = normalise(train_ads.pixels, image_processor.image_mean, image_processor.image_std)
    probe_x = normalise(probe_ads.pixels, image_processor.image_mean, image_processor.image_std)
    vocabulary, targets = token_targets(processor.tokenizer, train_ads.texts)
    _, probe_targets = token_targets(processor.tokenizer, probe_ads.texts, vocabulary)
    fit_products = set(probe_ids[: len(probe_ids) // 2])
    fit = np.asarray([pid in fit_products for pid in probe_ads.product_ids])

    original_dtype = model.dtype
    model.float().eval()
    before = probe_report(features_of(model, probe_x), probe_ads, fit)
    log.info("probes of the untrained tower: %s", _rounded(before))
    probed = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        patches, width = tile_features(model, probe_x[:1]).shape[1:]
        head = DescriptionHead(patches, width, settings.head_hidden, vocabulary)
        curve = train_tower(model, head, train_x, targets, settings, torch.Generator().manual_seed(seed))
    trained = time.perf_counter()
    features = features_of(model, probe_x)
    with torch.no_grad():  # the head flattens its input, so it reads the flattened features as they are
        heldout_loss = float(nn.functional.binary_cross_entropy_with_logits(head(features), probe_targets))
    after = probe_report(features, probe_ads, fit)
    log.info("probes of the trained tower: %s (held-out loss %.4f)", _rounded(after), heldout_loss)
    model.to(original_dtype)
    return head, {
        "ads": settings.ads,
        "probe_ads": settings.probe_ads,
        "tower_products": len(tower_ids),
        "probe_products": len(probe_ids),
        "description_tokens": len(vocabulary),
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "final_loss": curve[-1]["loss"],
        "heldout_loss": heldout_loss,
        "loss_curve": curve,
        "probes": {"majority": majority_report(probe_ads, fit), "before": before, "after": after},
        "render_seconds": rendered - began,
        "train_seconds": trained - probed,
        "wall_seconds": time.perf_counter() - began,
    }


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {key: round(value, 3) for key, value in values.items()}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="the base model (caig init-model output)")
    parser.add_argument(
        "--catalog", type=Path, required=True, help="the product catalog (caig ingest output)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="model directory to write (init-model's layout)"
    )
    parser.add_argument("--metrics", type=Path, required=True, help="loss curve and probe accuracies (JSON)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    settings = VisionPretrainSettings.from_config(cfg.model)
    configure_threads(cfg, "vision-pretrain")
    split = PairConfig.from_config(cfg.data.pairs)
    model, processor = load_llava(args.model)
    products = load_catalog_products(args.catalog)
    head, metrics = vision_pretrain(
        model,
        processor,
        products,
        make_generator(cfg),
        settings,
        test_fraction=split.test_fraction,
        split_seed=split.seed,
        seed=int(cfg.seed),
    )
    with atomic_path(args.out) as out:
        model.save_pretrained(out)
        processor.save_pretrained(out)
        save_description_head(head, out)
    write_json(metrics, args.metrics)
    with ScalarLog(cfg, args.out, fresh=True) as curves:  # the loss curve, for TensorBoard and the report
        for point in metrics["loss_curve"]:
            curves.add(point["step"], {"train/loss": point["loss"], "train/learning_rate": point["learning_rate"]})
    log.info(
        "wrote %s: loss %.4f after %d steps, %.0f s",
        args.out,
        metrics["final_loss"],
        settings.steps,
        metrics["wall_seconds"],
    )
