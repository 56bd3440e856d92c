"""The frozen reward model judges each product's two candidate ads; the epoch's preference set is the result.

Each pair is scored with the symmetric scorer (both orders, ``caig.reward.judging.PairJudge``), so the RM's position
bias cannot pick the winner. The winner's description is y+ (``chosen``), the loser's y- (``rejected``). Two
rules drop a pair (counted as a tie):

- a numerical tie, |p - 0.5| <= ``TIE_TOLERANCE`` (1e-6): two identical ads score 0.5 only up to the float
  rounding of the softmax, and that rounding must not pick a winner. It always applies and is not a setting;
- the optional ``preference.judge.margin``: |p - 0.5| < margin. Algorithm 1 of the paper drops nothing, so the
  default is 0; a margin keeps only the pairs the RM separates clearly.

The set keeps the RM probabilities, the question asked and both candidates' seeds and images, so it can be
inspected and reused.

``caig judge --ads FILE --catalog FILE --reward-model DIR --out DIR`` writes ``preferences.parquet`` and
``summary.json``. It scores the pairs chunk by chunk and resumes after a kill at the first unfinished chunk
(``caig.generate.chunks``); the preference set is chosen from all scored pairs at the end. Split across jobs,
``--shard I-of-K`` scores shard I's chunks only and ``--gather SHARD...`` chooses the set from every shard's scored
pairs, loading no reward model.
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.errors import ConfigError, InputError
from caig.generate.chunks import add_shard_options
from caig.generate.products import ProductInput
from caig.instruct import RM_QUESTIONS
from caig.io import write_json, write_parquet
from caig.logs import get_logger
from caig.reward.scoring import TIE_TOLERANCE

if TYPE_CHECKING:
    from caig.reward.judging import PairJudge

log = get_logger("judge")


def rm_question_index(seed: int, stream: int, product_id: str) -> int:
    """Which RM question a product's comparison is asked with (seeded, independent of the product order)."""
    rng = np.random.default_rng([seed, stream, zlib.crc32(product_id.encode()), 19])
    return int(rng.integers(len(RM_QUESTIONS)))


def pair_candidates(ads: pl.DataFrame, source: str | Path = "ads") -> pl.DataFrame:
    """One row per product with candidates 0 (left) and 1 (right) side by side; checks both are present."""
    counts = ads.group_by("product_id").agg(pl.col("candidate").sort().alias("candidates"))
    bad = counts.filter(pl.col("candidates").list.len() != 2)
    if bad.height or counts.filter(pl.col("candidates") != [0, 1]).height:
        example = (bad if bad.height else counts.filter(pl.col("candidates") != [0, 1])).row(0, named=True)
        raise InputError(
            f"product {example['product_id']!r} has candidates {example['candidates']}",
            file=source,
            column="candidate",
            expected="exactly candidates 0 and 1 per product",
        )
    columns = ["description", "seed", "image"]
    left = ads.filter(pl.col("candidate") == 0).select("product_id", "instruction_index", "instruction", *columns)
    right = ads.filter(pl.col("candidate") == 1).select("product_id", *columns)
    return left.join(right, on="product_id", suffix="_right", maintain_order="left")


def preference_rows(scored: pl.DataFrame, margin: float) -> pl.DataFrame:
    """Winner/loser per scored pair (``p_left`` = P(left candidate gets more clicks)); a pair is dropped when
    |p - 0.5| < ``margin`` (the optional margin; 0: Algorithm 1) or |p - 0.5| <= ``TIE_TOLERANCE`` (a numerical
    tie, whatever the margin: 0.5 up to float rounding, e.g. identical ads)."""
    if not 0.0 <= margin < 0.5:
        raise ConfigError(f"preference.judge.margin must be in [0, 0.5), got {margin}")
    distance = (pl.col("p_left") - 0.5).abs()
    frame = scored.filter((distance >= margin) & (distance > TIE_TOLERANCE))
    pick = pl.col("p_left") >= 0.5

    def side(name: str, winner: bool) -> pl.Expr:
        left, right = pl.col(name), pl.col(f"{name}_right")
        return pl.when(pick).then(left if winner else right).otherwise(right if winner else left)

    return frame.select(
        "product_id",
        "instruction_index",
        "instruction",
        side("description", True).alias("chosen"),
        side("description", False).alias("rejected"),
        pl.when(pick).then(0).otherwise(1).cast(pl.Int32).alias("chosen_candidate"),
        pl.when(pick).then(1).otherwise(0).cast(pl.Int32).alias("rejected_candidate"),
        side("seed", True).alias("chosen_seed"),
        side("seed", False).alias("rejected_seed"),
        side("image", True).alias("chosen_image"),
        side("image", False).alias("rejected_image"),
        "p_left",
        pl.max_horizontal(pl.col("p_left"), 1.0 - pl.col("p_left")).alias("p_chosen"),
        "rm_question",
    )


def score_candidate_pairs(
    reward_model: "PairJudge",
    ads: pl.DataFrame,
    ads_dir: Path,
    products: Mapping[str, ProductInput],
    *,
    seed: int,
    stream: int,
    caption: bool,
    info: bool,
) -> pl.DataFrame:
    """Each product's two candidates side by side with ``p_left`` from the symmetric pair judge and the RM
    question asked. ``ads`` holds the rendered candidates (``image`` relative to ``ads_dir``); image paths in
    the result are absolute so the preference set can be read from anywhere."""
    from caig.generate.sampling import product_attributes

    pairs = pair_candidates(ads, ads_dir)
    root = str(ads_dir.resolve()) + "/"
    pairs = pairs.with_columns((pl.lit(root) + pl.col("image")).alias("image"),
                               (pl.lit(root) + pl.col("image_right")).alias("image_right"))
    ids = pairs.get_column("product_id").to_list()
    questions = [RM_QUESTIONS[rm_question_index(seed, stream, pid)] for pid in ids]
    p_left = reward_model.p_left(
        pairs.get_column("image").to_list(),
        pairs.get_column("image_right").to_list(),
        [product_attributes(products[pid]) for pid in ids],
        questions,
        caption=caption,
        info=info,
    )
    return pairs.with_columns(
        pl.Series("p_left", p_left, dtype=pl.Float64), pl.Series("rm_question", questions, dtype=pl.String)
    )


def judge(scored: pl.DataFrame, margin: float) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The preference set of scored pairs, and its counts (pairs, kept, ties dropped, left wins)."""
    preferences = preference_rows(scored, margin)
    return preferences, {
        "pairs": scored.height,
        "kept": preferences.height,
        "ties_dropped": scored.height - preferences.height,
        "margin": margin,
        "left_won": int((scored.get_column("p_left") > 0.5).sum()),
        "mean_p_chosen": float(preferences.get_column("p_chosen").mean()) if preferences.height else None,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ads", type=Path, required=True, help="ads.parquet from caig render")
    parser.add_argument("--catalog", type=Path, required=True, help="catalog (.parquet/.csv) or CAIG JSON")
    parser.add_argument("--image-root", type=Path, help="resolve relative image paths against this folder")
    parser.add_argument("--reward-model", type=Path, required=True, help="reward model directory")
    parser.add_argument("--epoch", type=int, required=True, help="epoch being judged (seeds the RM questions)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (a shard's: its chunks)")
    add_shard_options(parser)


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.generate.chunks import (
        ChunkWork, chunk_products, parts_folder, plan_chunks, read_manifests, shard_of, shard_store, work_digest,
        work_or_gather, work_ranks,
    )
    from caig.generate.sampling import load_products
    from caig.preference.render import read_candidates
    from caig.preference.sharding import join_world, local_device
    from caig.reward.judging import PairJudge
    from caig.training import configure_threads

    world = join_world()  # under caig launch: one rank per GPU, each judging every N-th product of a chunk
    configure_threads(cfg)  # train.torch_threads: one thread per job on a shared CPU (tiny preset)
    settings = cfg.preference.judge
    ads = read_candidates(
        args.ads, ("product_id", "candidate", "instruction_index", "instruction", "description", "seed", "image")
    )
    order = list(dict.fromkeys(ads.get_column("product_id").to_list()))
    products = {p.product_id: p for p in load_products(args.catalog, args.image_root) if p.product_id in order}
    if len(products) != len(order):
        missing = sorted(set(order) - set(products))
        raise InputError(f"ads name products not in the catalog, e.g. {missing[:3]}", file=args.ads)
    ads_dir = args.ads.parent
    shard, manifests = shard_of(args), read_manifests(args)
    digest = work_digest(
        "judge",
        {"ads": ads_dir, "catalog": args.catalog, "reward_model": args.reward_model},
        cfg,
        ("seed", "preference.dtype", "preference.judge", "model.pair_image_size"),
        epoch=args.epoch, ads_root=ads_dir.resolve(), image_root=args.image_root, ranks=work_ranks(manifests, world),
    ) if world.is_main else ""
    store = shard_store(parts_folder(args.out), digest, plan_chunks(order, chunk_products(cfg)), shard)

    def judge_work() -> Callable[[list[str]], ChunkWork]:
        reward_model = PairJudge(
            args.reward_model,
            dtype=str(cfg.preference.dtype),
            device=local_device(),
            pair_size=int(cfg.model.pair_image_size),
            batch_size=int(settings.batch_size),
        )
        return partial(score_share, reward_model)

    def score_share(reward_model: PairJudge, ids: list[str]) -> ChunkWork:
        scored = score_candidate_pairs(
            reward_model,
            ads.filter(pl.col("product_id").is_in(ids)),
            ads_dir,
            products,
            seed=int(cfg.seed),
            stream=args.epoch,
            caption=bool(settings.caption),
            info=bool(settings.info),
        )
        return ChunkWork(scored)

    if not work_or_gather(store, world, judge_work, out=args.out, shard=shard, manifests=manifests):
        return
    preferences, counts = judge(store.table(), float(settings.margin))
    write_parquet(preferences, args.out / "preferences.parquet")
    write_json({"epoch": args.epoch, "reward_model": str(args.reward_model), **counts}, args.out / "summary.json")
    store.remove()
    log.info(
        "%d pairs: %d preferences kept, %d ties (|p - 0.5| < margin %g, or <= %g) dropped -> %s",
        counts["pairs"], counts["kept"], counts["ties_dropped"], counts["margin"], TIE_TOLERANCE, args.out,
    )
