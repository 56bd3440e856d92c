"""``caig reward-train``: train one reward-model variant on the train pairs (stage 2).

    caig launch -- reward-train --pairs pairs/train.parquet --catalog data/catalog.parquet \\
        --base models/pretrained --out reward/f_full/model reward=f_full

Each pair becomes the RM's input: the two creatives resized and concatenated left|right (``concat_pair``)
and C_RM = f_instruct(Q_RM, attributes), Q_RM drawn per pair from the 13-question pool with
``reward.question_seed``; ``reward.prompt`` decides whether the product caption and the other product
information are shown. As in the paper, each pair is trained once per epoch in the order the pairs file
places it: the pairs stage puts the better creative left in a seeded random half of the pairs
(``caig.data.pairs``), so that order is one random side per pair. Options beside the paper's recipe:
``reward.both_orders`` also shows every pair swapped (label and CTRs follow) IN THE SAME BATCH
(``train.reward.per_device_batch_size`` counts pairs); ``train.reward.head_learning_rate`` gives the
output heads their own rate (null: the backbone's); ``reward.zero_init_heads`` starts the heads at zero
instead of the model's normal initialisation; ``reward.readout`` picks what the heads read (the paper's
``last_token`` or the tiny-scale ``side`` / ``side_desc``; ``side_desc`` also reads the description head that
``caig vision-pretrain`` saved, from ``--description-head``); ``reward.epochs`` (per preset) replaces
``train.reward.epochs`` for one variant.

``reward.kind``:
- ``generative``: the plain LLaVA-NeXT learns to answer "left" or "right" (LM loss on the answer), rows
  (a) and (b) of the ablation; saved as a LLaVA-NeXT checkpoint;
- ``classifier``: ``RewardModel`` (``reward.readout`` pooling, classification and CTR heads), loss
  lambda1 * CE + lambda2 * point loss from ``reward.loss``; rows (c)-(f); saved with ``save_reward_model``.

The VAM / CG4CTR baselines train with ``caig baseline-train`` (caig/reward/baselines.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from transformers import BatchFeature, LlavaNextProcessor, Trainer

from caig.errors import ConfigError, InputError
from caig.instruct import ANSWER_WORDS, RM_QUESTIONS
from caig.io import write_json
from caig.launch.dist import current
from caig.logs import get_logger
from caig.models import load_llava, save_pretrained_model
from caig.models.description import TileDescriber, load_description_head
from caig.pretrain.products import Product, read_catalog
from caig.pretrain.train import model_dtype, text_hidden_size
from caig.reward.model import (
    LEFT,
    READOUTS,
    RIGHT,
    RewardModel,
    category_line_tokens,
    concat_pair,
    encode_rm_inputs,
    open_image,
    reward_prompt,
    to_rgb,
)
from caig.reward.model import save_reward_model
from caig.training import run_training, stage_settings, start, training_arguments

PAIR_COLUMNS = ("product_id", "left_image", "right_image", "left_ctr", "right_ctr", "label")
LLAVA_KINDS = ("generative", "classifier")

log = get_logger("reward-train")


@dataclass(frozen=True)
class Variant:
    """The ablation row a ``reward`` config describes."""

    name: str
    kind: str
    init: str
    caption: bool
    info: bool
    cls_weight: float
    point_weight: float
    ctr_scale: float


def variant_of(cfg: DictConfig) -> Variant:
    """``cfg.reward`` as a Variant; ConfigError names a missing or bad key."""
    node = cfg.get("reward")
    required = ("name", "kind", "loss")
    if node is None or any(node.get(key) is None for key in required):
        missing = next(key for key in required if node is None or node.get(key) is None)
        raise ConfigError(
            f"reward.{missing} is missing (choose a variant: reward=f_full, reward=a_base, ...)"
        )
    kind = str(node.kind)
    if kind not in (*LLAVA_KINDS, "vam", "cg4ctr"):
        raise ConfigError(f"reward.kind={kind!r} (expected generative, classifier, vam or cg4ctr)")
    init = str(node.get("init", "none"))
    if kind in LLAVA_KINDS and init not in ("base", "pretrained"):
        raise ConfigError(f"reward.init={init!r} (expected base or pretrained)")
    prompt = node.get("prompt") or {}
    return Variant(
        name=str(node.name),
        kind=kind,
        init=init,
        caption=bool(prompt.get("caption", False)),
        info=bool(prompt.get("info", False)),
        cls_weight=float(node.loss.cls_weight),
        point_weight=float(node.loss.point_weight),
        ctr_scale=float(node.loss.ctr_scale),
    )


# ---------------------------------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class PairExample:
    """One RM training example: images as placed, label (0 = left better, 1 = right), CTRs, prompt."""

    left_image: str
    right_image: str
    label: int
    ctr: tuple[float, float]
    prompt: str


def read_pairs(path: str | Path) -> pl.DataFrame:
    """A pairs file (caig pairs) with the columns the RM needs; InputError naming the file otherwise."""
    path = Path(path)
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(
            f"cannot read pairs: {err}", file=path, expected="a Parquet file from caig pairs"
        ) from err
    missing = [name for name in PAIR_COLUMNS if name not in table.columns]
    if missing:
        raise InputError(f"lacks column {missing[0]!r}", file=path, expected=f"columns {list(PAIR_COLUMNS)}")
    bad = table.with_row_index("row", offset=1).filter(~pl.col("label").is_in(list(ANSWER_WORDS)))
    if bad.height:
        raise InputError(
            f"label {bad['label'][0]!r}",
            file=path,
            row=int(bad["row"][0]),
            column="label",
            expected="left or right",
        )
    if table.height == 0:
        raise InputError("no pairs", file=path, expected="at least one pair")
    return table


def pair_prompts(
    pairs: pl.DataFrame,
    products: Mapping[str, Product],
    *,
    caption: bool,
    info: bool,
    seed: int,
    file: str | Path | None = None,
) -> list[str]:
    """C_RM per pair: a question drawn per pair (seeded) and the variant's attribute selection."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(RM_QUESTIONS), size=pairs.height)
    prompts = []
    for row, (product_id, pick) in enumerate(zip(pairs["product_id"].cast(pl.String), picks), start=1):
        if product_id not in products:
            raise InputError(
                f"product {product_id!r} is not in the catalog", file=file, row=row, column="product_id"
            )
        product = products[product_id]
        attributes = {**product.attributes, "caption": product.caption}
        prompts.append(reward_prompt(RM_QUESTIONS[int(pick)], attributes, caption=caption, info=info))
    return prompts


def pair_examples(
    pairs: pl.DataFrame, prompts: Sequence[str], *, both_orders: bool
) -> list[list[PairExample]]:
    """Per pair its examples: as the pairs place the creatives, then swapped when ``both_orders``."""
    examples = []
    for row, prompt in zip(pairs.iter_rows(named=True), prompts):
        label = LEFT if row["label"] == ANSWER_WORDS[LEFT] else RIGHT
        ctr = (float(row["left_ctr"]), float(row["right_ctr"]))
        group = [PairExample(row["left_image"], row["right_image"], label, ctr, prompt)]
        if both_orders:
            group.append(PairExample(row["right_image"], row["left_image"], 1 - label, ctr[::-1], prompt))
        examples.append(group)
    return examples


class ImageCache:
    """Creatives opened once and kept as RGB (tiny ads are a few KB each; a real run's are read lazily)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self._images: dict[str, Image.Image] = {}

    def __call__(self, path: str) -> Image.Image:
        if path in self._images:
            return self._images[path]
        image = to_rgb(open_image(path))
        if self.keep:
            self._images[path] = image
        return image


class PairCollator:
    """Pairs (each a list of its PairExamples) -> the RM's batch, a pair's orders side by side.

    Classifier: ``labels`` (0 = left better) and raw ``ctr``; generative: LM labels on the answer.
    """

    def __init__(
        self, processor: LlavaNextProcessor, *, pair_size: int, generative: bool, cache_images: bool = True
    ) -> None:
        self.processor = processor
        self.pair_size = pair_size
        self.generative = generative
        self.images = ImageCache(cache_images)

    def __call__(self, groups: Sequence[Sequence[PairExample]]) -> BatchFeature:
        examples = [example for group in groups for example in group]
        pair_images = [
            concat_pair(self.images(e.left_image), self.images(e.right_image), self.pair_size)
            for e in examples
        ]
        prompts = [e.prompt for e in examples]
        if self.generative:
            answers = [ANSWER_WORDS[e.label] for e in examples]
            return encode_rm_inputs(self.processor, pair_images, prompts, answers=answers)
        batch = encode_rm_inputs(self.processor, pair_images, prompts)
        batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
        batch["ctr"] = torch.tensor([e.ctr for e in examples], dtype=torch.float32)
        return batch


# ---------------------------------------------------------------------------------------------- command
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="train pairs (Parquet, caig pairs)")
    parser.add_argument("--catalog", type=Path, required=True, help="product catalog (Parquet, caig ingest)")
    parser.add_argument(
        "--base", type=Path, required=True, help="backbone: the base or the pre-trained model"
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--metrics", type=Path, help="also write the run's loss and throughput (JSON)")
    parser.add_argument(
        "--description-head",
        type=Path,
        help="model directory holding the description head (caig vision-pretrain); the side_desc readout",
    )


HEAD_PREFIXES = ("cls_head.", "ctr_head.", "lm_head.")


def head_parameter_groups(
    model: torch.nn.Module, learning_rate: float, head_learning_rate: float | None
) -> list[dict]:
    """Optimizer groups: the output heads (RM heads, or the LM head of a generative RM) and the rest."""
    heads, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (heads if name.startswith(HEAD_PREFIXES) else rest).append(parameter)
    groups = [{"params": rest, "lr": learning_rate}]
    if heads:
        groups.append({"params": heads, "lr": head_learning_rate or learning_rate})
    return groups


class RewardTrainer(Trainer):
    """HF Trainer whose AdamW gives the output heads their own learning rate."""

    def __init__(self, *args: Any, head_learning_rate: float | None = None, **kwargs: Any) -> None:
        self.head_learning_rate = head_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            args = self.args
            self.optimizer = torch.optim.AdamW(
                head_parameter_groups(model or self.model, args.learning_rate, self.head_learning_rate),
                lr=args.learning_rate,
                betas=(args.adam_beta1, args.adam_beta2),
                eps=args.adam_epsilon,
                weight_decay=args.weight_decay,
            )
        return self.optimizer


def readout_of(cfg: DictConfig) -> str:
    """``reward.readout``, checked: the paper's ``last_token`` or the tiny-scale ``side`` / ``side_desc``
    (see RewardModel)."""
    readout = cfg.reward.get("readout", "last_token")
    if readout not in READOUTS:
        raise ConfigError(f"reward.readout is {readout!r}; expected one of {', '.join(READOUTS)}")
    return str(readout)


def variant_epochs(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``train.reward.epochs`` replaced by the variant's ``reward.epochs.<preset>`` where it sets
    one (rows that gain nothing from more passes need not pay for them); ConfigError for a bad value."""
    node = cfg.reward.get("epochs")
    if node is None:
        return cfg
    if not isinstance(node, DictConfig | dict):
        raise ConfigError(f"reward.epochs={node!r} (expected a mapping from preset to epochs, e.g. {{tiny: 1}})")
    epochs = node.get(str(cfg.preset))
    if epochs is None:
        return cfg
    if isinstance(epochs, bool) or not isinstance(epochs, int | float) or epochs <= 0:
        raise ConfigError(f"reward.epochs.{cfg.preset}={epochs!r} (expected a positive number of epochs)")
    return OmegaConf.merge(cfg, {"train": {"reward": {"epochs": epochs}}})


def catalog_categories(products: Mapping[str, Product]) -> list[str]:
    """The catalog's product categories as its prompts name them, sorted."""
    return sorted({str(p.attributes["category"]) for p in products.values() if p.attributes.get("category")})


def build_model(
    variant: Variant,
    base: Path,
    cfg: DictConfig,
    *,
    description_head: Path | None = None,
    categories: Sequence[str] = (),
) -> tuple[torch.nn.Module, LlavaNextProcessor]:
    """The model the variant trains: the plain backbone (generative) or RewardModel (classifier); the
    side_desc readout reads tiles through the model directory ``description_head`` (the vision pre-training's
    tower, projector and description head) and one-hots ``categories``."""
    backbone, processor = load_llava(base, dtype=model_dtype(cfg))
    if variant.kind == "generative":
        return backbone.train(), processor
    readout = readout_of(cfg)
    extra: dict[str, Any] = {}
    if readout == "side_desc":
        if description_head is None:
            raise ConfigError(
                "reward.readout=side_desc reads the vision pre-training's description head "
                "(expected --description-head <model directory of caig vision-pretrain>)"
            )
        vision_model, _ = load_llava(description_head, dtype=model_dtype(cfg))
        extra = {
            "describer": TileDescriber(vision_model, load_description_head(description_head)),
            "category_tokens": category_line_tokens(processor.tokenizer, categories),
        }
    model = RewardModel(
        backbone,
        cls_weight=variant.cls_weight,
        point_weight=variant.point_weight,
        ctr_scale=variant.ctr_scale,
        readout=readout,
        **extra,
    )
    if bool(cfg.reward.zero_init_heads):
        for head in (model.cls_head, model.ctr_head):
            torch.nn.init.zeros_(head.weight)
    return model.train(), processor


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    variant = variant_of(cfg)
    if variant.kind not in LLAVA_KINDS:
        raise ConfigError(
            f"reward={variant.name} is a {variant.kind} baseline: train it with caig baseline-train"
        )
    cfg = variant_epochs(cfg)
    start(cfg)
    pairs = read_pairs(args.pairs)
    products = read_catalog(args.catalog)
    prompts = pair_prompts(
        pairs,
        products,
        caption=variant.caption,
        info=variant.info,
        seed=int(cfg.reward.question_seed),
        file=args.pairs,
    )
    examples = pair_examples(pairs, prompts, both_orders=bool(cfg.reward.both_orders))
    settings = stage_settings(cfg, "reward")
    training_args = training_arguments(cfg, "reward", args.out, hidden_size=text_hidden_size(args.base))
    model, processor = build_model(
        variant,
        args.base,
        cfg,
        description_head=args.description_head,
        categories=catalog_categories(products),
    )
    collator = PairCollator(
        processor,
        pair_size=int(cfg.model.pair_image_size),
        generative=variant.kind == "generative",
        cache_images=cfg.preset == "tiny",
    )
    trainer = RewardTrainer(
        model=model,
        args=training_args,
        train_dataset=examples,
        data_collator=collator,
        head_learning_rate=settings.head_learning_rate,
    )
    if variant.kind == "classifier":
        trainer.model_accepts_loss_kwargs = (
            False  # RewardModel's loss is a batch mean: scale it per accumulation
        )

    def save(path: Path) -> None:
        if isinstance(model, RewardModel):
            save_reward_model(model, processor, path)
        else:
            save_pretrained_model(model, processor, path)

    per_pair = 2 if cfg.reward.both_orders else 1
    log.info(
        "%s: %d pairs (%d examples each), %s from %s",
        variant.name,
        pairs.height,
        per_pair,
        variant.kind,
        args.base,
    )
    began = time.perf_counter()
    metrics: dict[str, Any] = run_training(trainer, args.out, save)
    seconds = time.perf_counter() - began
    metrics.update(
        variant=variant.name,
        pairs=pairs.height,
        examples=len(examples) * per_pair,
        wall_seconds=seconds,
        pairs_per_second=metrics.get("train_samples_per_second", float("nan")),
    )
    if args.metrics is not None and current().is_main:  # each rank has its own loss; rank 0's is the run's
        write_json(metrics, args.metrics)
    log.info("wrote %s (loss %.4f, %.1f s)", args.out, metrics["final_loss"], seconds)
