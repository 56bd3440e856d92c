"""``caig reward-eval``: pair accuracy of one reward-model variant (or baseline) on the test pairs.

    caig launch -- reward-eval --model reward/f_full/model --pairs pairs/test.parquet \\
        --catalog data/catalog.parquet --out reward/f_full/metrics.json reward=f_full

Two pair accuracies, each with a percentile bootstrap interval that resamples whole products (pairs of one
product share creatives, so they are not independent):

- the headline, the paper's Eq. 13: each test pair shown ONCE, in the order the pairs file stores it (the
  pairs stage puts the better creative left in a seeded random half of the pairs, so this is the paper's single
  random order), and the prediction is the argmax of the model's (p_left, p_right) on that one image. An
  exact tie resolves as argmax does, to index 0 (left); the metrics count such ties;
- ``symmetric_*``: every pair also scored swapped and the two probabilities averaged
  (``caig.reward.scoring``), so a position bias cannot decide a comparison; p_left > 0.5 predicts "left"
  and a pair scored exactly 0.5 counts as half right (the expectation of a coin flip).

Writes the metrics JSON and, beside it, ``predictions.parquet`` (one row per test pair: ``p_left`` and
``correct`` of the headline, ``p_left_symmetric`` and ``correct_symmetric``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from omegaconf import DictConfig

from caig.errors import ConfigError, InputError
from caig.instruct import ANSWER_WORDS
from caig.io import write_json, write_parquet
from caig.launch.dist import current, init_distributed
from caig.logs import get_logger
from caig.models import load_llava
from caig.pretrain.products import read_catalog
from caig.reward.model import HEADS_FILE, load_reward_model
from caig.reward.scoring import score_pairs_by_order, score_pairs_generative_by_order
from caig.reward.train import LLAVA_KINDS, pair_prompts, read_pairs, variant_of
from caig.training import configure_threads

log = get_logger("reward-eval")


def _checked(p_left: np.ndarray, left_better: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p_left = np.asarray(p_left, dtype=np.float64)
    left_better = np.asarray(left_better, dtype=bool)
    if p_left.shape != left_better.shape:
        raise ValueError(f"{p_left.shape[0]} scores for {left_better.shape[0]} pairs")
    if np.isnan(p_left).any():
        raise ValueError("scores contain NaN")
    return p_left, left_better


def argmax_correct(p_left: np.ndarray, left_better: np.ndarray) -> np.ndarray:
    """Per pair 1 or 0 by the paper's Eq. 13: the prediction is argmax(p_left, 1 - p_left), and an exact
    tie (p_left == 0.5) goes to index 0, the left creative, as argmax picks the first maximum."""
    p_left, left_better = _checked(p_left, left_better)
    return ((p_left >= 0.5) == left_better).astype(np.float64)


def pair_correct(p_left: np.ndarray, left_better: np.ndarray) -> np.ndarray:
    """Per pair 1 (right), 0 (wrong) or 0.5 (p_left exactly 0.5: a tie is a coin flip)."""
    p_left, left_better = _checked(p_left, left_better)
    correct = np.where(p_left > 0.5, left_better, ~left_better).astype(np.float64)
    correct[p_left == 0.5] = 0.5
    return correct


def bootstrap_interval(
    correct: np.ndarray,
    groups: Sequence[object] | None = None,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(correct); with ``groups`` whole groups are resampled.

    Each resample draws as many groups as there are, with replacement, and takes the mean over all
    pairs of the drawn groups.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        raise ValueError("no pairs to bootstrap")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"need 0 < confidence < 1 and resamples >= 1, got {confidence}, {resamples}")
    if groups is None:
        codes = np.arange(correct.size)
    else:
        if len(groups) != correct.size:
            raise ValueError(f"{len(groups)} groups for {correct.size} pairs")
        _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n_groups = int(codes.max()) + 1
    sums = np.bincount(codes, weights=correct, minlength=n_groups)
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(n_groups, size=(resamples, n_groups))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def accuracy_summary(
    correct: np.ndarray,
    groups: Sequence[object],
    *,
    resamples: int,
    confidence: float,
    seed: int,
    ties: int | None = None,
) -> dict[str, Any]:
    """Accuracy, its bootstrap interval (resampling groups) and the counts behind it.

    ``ties``: how many pairs were scored exactly 0.5 (default: the pairs counted half right).
    """
    low, high = bootstrap_interval(correct, groups, resamples=resamples, confidence=confidence, seed=seed)
    return {
        "pairs": int(len(correct)),
        "groups": int(len(set(map(str, groups)))),
        "accuracy": float(np.mean(correct)),
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "bootstrap_resamples": resamples,
        "ties": int(np.sum(correct == 0.5)) if ties is None else int(ties),
    }


def pair_metrics(
    by_order: np.ndarray,
    left_better: np.ndarray,
    groups: Sequence[object],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Both pair accuracies from the per-order scores (``score_variant``), and the per-pair columns.

    Headline: the pair as given (column 0, the pairs file's random side), ``argmax_correct``, with the share
    of pairs it calls for the left (far from 0.5: a position bias). ``symmetric_*``: the two orders averaged,
    ``pair_correct``. Per pair: ``p_left``, ``correct``, ``p_left_symmetric``, ``correct_symmetric``.
    """
    by_order = np.asarray(by_order, dtype=np.float64)
    if by_order.ndim != 2 or by_order.shape[1] != 2:
        raise ValueError(f"expected per-order scores of shape (pairs, 2), got {by_order.shape}")
    p_left, p_symmetric = by_order[:, 0], by_order.mean(axis=1)
    left_better = np.asarray(left_better, dtype=bool)
    correct, correct_symmetric = argmax_correct(p_left, left_better), pair_correct(p_symmetric, left_better)
    bootstrap = {"resamples": resamples, "confidence": confidence, "seed": seed}
    symmetric = accuracy_summary(correct_symmetric, groups, **bootstrap)
    summary = {
        **accuracy_summary(correct, groups, **bootstrap, ties=int(np.sum(p_left == 0.5))),
        "mean_p_label": float(np.mean(np.where(left_better, p_left, 1 - p_left))),
        "predicted_left_share": float(np.mean(p_left >= 0.5)),  # ~0.5 unless a position bias decides
        **{f"symmetric_{key}": symmetric[key] for key in ("accuracy", "ci_low", "ci_high", "ties")},
    }
    per_pair = {
        "p_left": p_left,
        "correct": correct,
        "p_left_symmetric": p_symmetric,
        "correct_symmetric": correct_symmetric,
    }
    return summary, per_pair


# ---------------------------------------------------------------------------------------------- scoring
def score_variant(
    kind: str,
    model_dir: Path,
    pairs: pl.DataFrame,
    prompts: Sequence[str],
    cfg: DictConfig,
) -> np.ndarray:
    """Per pair the probability that its left creative wins, from [L;R] (column 0) and [R;L] (column 1)."""
    lefts, rights = pairs["left_image"].to_list(), pairs["right_image"].to_list()
    batch_size = int(cfg.reward.eval.batch_size)
    pair_size = int(cfg.model.pair_image_size)
    device = torch.device("cuda", current().local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "classifier":
        if not (model_dir / HEADS_FILE).is_file():
            raise InputError(
                "no reward heads: not a classifier reward model", file=model_dir, expected=HEADS_FILE
            )
        model, processor = load_reward_model(model_dir)
        scorer, extra = score_pairs_by_order, {}
    if kind == "generative":
        model, processor = load_llava(model_dir)
        scorer, extra = score_pairs_generative_by_order, {"method": str(cfg.reward.eval.generative_method)}
    if kind in ("classifier", "generative"):
        return scorer(
            model.to(device),
            processor,
            lefts,
            rights,
            list(prompts),
            pair_size=pair_size,
            batch_size=batch_size,
            **extra,
        )
    from caig.reward.baselines import load_ranker, score_ranker_pairs

    ranker, settings = load_ranker(model_dir)
    if settings["kind"] != kind:
        raise InputError(f"the saved ranker is {settings['kind']!r}, reward.kind is {kind!r}", file=model_dir)
    titles = pairs["title"].to_list() if "title" in pairs.columns else None
    as_given = score_ranker_pairs(ranker, lefts, rights, titles, batch_size=batch_size, settings=settings)
    swapped = score_ranker_pairs(ranker, rights, lefts, titles, batch_size=batch_size, settings=settings)
    return np.stack([as_given, 1.0 - swapped], axis=1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="the trained variant (caig reward-train)")
    parser.add_argument("--pairs", type=Path, required=True, help="test pairs (Parquet, caig pairs)")
    parser.add_argument("--catalog", type=Path, required=True, help="product catalog (Parquet, caig ingest)")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", type=Path, help="per-pair predictions (default: beside --out)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    variant = variant_of(cfg)
    configure_threads(cfg)
    init_distributed()
    if not current().is_main:  # launched on several ranks: rank 0 scores, the others have nothing to do
        return
    pairs = read_pairs(args.pairs)
    products = read_catalog(args.catalog)
    missing = [name for name in ("left_creative_id", "right_creative_id") if name not in pairs.columns]
    if missing:
        raise InputError(f"lacks column {missing[0]!r}", file=args.pairs, expected="pairs from caig pairs")
    prompts: list[str] = [""] * pairs.height
    if variant.kind in LLAVA_KINDS:
        seed = int(cfg.reward.question_seed)
        prompts = pair_prompts(
            pairs, products, caption=variant.caption, info=variant.info, seed=seed, file=args.pairs
        )
    else:
        titles = []
        for row, product_id in enumerate(pairs["product_id"].cast(pl.String), start=1):
            if product_id not in products:
                raise InputError(
                    f"product {product_id!r} is not in the catalog",
                    file=args.pairs,
                    row=row,
                    column="product_id",
                )
            titles.append(str(products[product_id].attributes.get("title", "")))
        pairs = pairs.with_columns(pl.Series("title", titles))
    node = cfg.reward.eval
    if not 0 < float(node.confidence) < 1:
        raise ConfigError(f"reward.eval.confidence={node.confidence} (expected a fraction in (0, 1))")
    began = time.perf_counter()
    by_order = score_variant(variant.kind, args.model, pairs, prompts, cfg)
    seconds = time.perf_counter() - began
    summary, per_pair = pair_metrics(
        by_order,
        (pairs["label"] == ANSWER_WORDS[0]).to_numpy(),
        pairs["product_id"].to_list(),
        resamples=int(node.bootstrap),
        confidence=float(node.confidence),
        seed=int(node.seed),
    )
    metrics = {
        "variant": variant.name,
        "row": str(cfg.reward.get("row", variant.name)),
        "kind": variant.kind,
        **summary,
    }
    predictions = args.predictions or args.out.parent / "predictions.parquet"
    columns = pairs.select("product_id", "left_creative_id", "right_creative_id", "label")
    write_parquet(
        columns.with_columns(pl.Series(name, values) for name, values in per_pair.items()), predictions
    )
    write_json(metrics, args.out)  # measured values only: timings go to the log and the job's benchmark record
    log.info(
        "%s: pair accuracy %.3f [%.3f, %.3f], both orders %.3f [%.3f, %.3f] on %d pairs "
        "(scored in %.1f s, %.1f pairs/s)",
        variant.name,
        metrics["accuracy"],
        metrics["ci_low"],
        metrics["ci_high"],
        metrics["symmetric_accuracy"],
        metrics["symmetric_ci_low"],
        metrics["symmetric_ci_high"],
        metrics["pairs"],
        seconds,
        pairs.height / max(seconds, 1e-9),
    )
