"""Draw the synthetic click world to disk: catalog, creatives, daily click log, the annotators' reviewed
descriptions, ground truth, images.

The log has the raw schema of a real platform (one row per creative per day: impressions, clicks), so
the data stage treats it exactly like real data; ``reviewed_descriptions.parquet`` holds what annotators
would publish (each creative's description and whether it fits its product), ``truth.parquet`` what only
the oracle knows.
Everything is vectorised numpy, and the log is written in chunks of creatives so the 20M-row bench
world fits in a few GB.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from caig.errors import ConfigError
from caig.io import atomic_path, write_json, write_parquet
from caig.logs import get_logger, progress
from caig.sim.oracle import REASONS, Oracle
from caig.sim.render import render_ad
from caig.sim.vocabulary import SLOT_KEYS, SLOTS, Background, vocabulary_dict
from caig.sim.world import World, make_world, product_image, require, sim_section

log = get_logger("sim")

MIXTURE: tuple[str, ...] = ("appropriate", "eye_catching", "random")
_MAX_REDRAWS = 50


def _mixture(sim: Mapping[str, Any]) -> np.ndarray:
    mix = require(sim, "mixture")
    unknown = set(mix) - set(MIXTURE)
    if unknown:
        raise ConfigError(f"sim.mixture has unknown components {sorted(unknown)} (expected {', '.join(MIXTURE)})")
    weights = np.array([float(mix.get(k, 0.0)) for k in MIXTURE])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"sim.mixture weights must be >= 0 with a positive sum, got {dict(mix)}")
    return weights / weights.sum()


def _sample_rows(rng: np.random.Generator, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One column per item drawn from ``weights[rows[i]]``; the last column means 'not given' (-1)."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(rows))
    col = (cdf[rows] < u[:, None]).sum(axis=1)
    col = np.minimum(col, weights.shape[1] - 1)
    return np.where(col == weights.shape[1] - 1, -1, col).astype(np.int16)


def _random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Any phrases: each slot uniform over its keys and 'not given'."""
    return np.stack([rng.integers(-1, len(SLOT_KEYS[s]), n) for s in SLOTS], axis=1).astype(np.int16)


def draw_backgrounds(oracle: Oracle, product_index: np.ndarray, mixture: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Background codes (n, 5) for creatives of the given products, from the designed / eye-catching /
    random mixture; the same product never gets the same background twice."""
    n = len(product_index)
    component = rng.choice(len(MIXTURE), n, p=mixture)
    designed = np.stack([_sample_rows(rng, w, rows[product_index])
                         for rows, w in (oracle.designed_weights(s) for s in SLOTS)], axis=1)
    # Eye-catching: a designed background with one or two eye-catching phrases put on top.
    flashy = designed.copy()
    flashy_slots = [s for s in SLOTS if oracle.is_eye_catching(s).any()]
    choices = {s: np.flatnonzero(oracle.is_eye_catching(s)) for s in flashy_slots}
    n_flashy = rng.integers(1, 3, n)
    order = np.argsort(rng.random((n, len(flashy_slots))), axis=1)
    for j, s in enumerate(flashy_slots):
        pick = order[:, j] < n_flashy
        flashy[pick, SLOTS.index(s)] = rng.choice(choices[s], int(pick.sum()))
    codes = np.where((component == 0)[:, None], designed,
                     np.where((component == 1)[:, None], flashy, _random_codes(rng, n)))
    for _ in range(_MAX_REDRAWS):
        dup = _duplicates(product_index, codes)
        if not dup.any():
            return codes
        codes[dup] = _random_codes(rng, int(dup.sum()))
    raise ConfigError("could not draw distinct backgrounds for every product; lower sim.creatives_per_product")


def _keys(codes: np.ndarray, product_index: np.ndarray | None = None) -> np.ndarray:
    """One int64 per row that identifies the background (and the product, when given)."""
    key = np.zeros(len(codes), dtype=np.int64) if product_index is None else product_index.astype(np.int64)
    for i, s in enumerate(SLOTS):
        key = key * (len(SLOT_KEYS[s]) + 1) + (codes[:, i].astype(np.int64) + 1)
    return key


def _duplicates(product_index: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """True for every repeat (after the first) of a (product, background) pair."""
    key = _keys(codes, product_index)
    _, first = np.unique(key, return_index=True)
    dup = np.ones(len(key), dtype=bool)
    dup[first] = False
    return dup


def describe(codes: np.ndarray) -> list[str]:
    """``Background.text()`` of every row of a code array (each distinct background written once)."""
    _, first, inverse = np.unique(_keys(codes), return_index=True, return_inverse=True)
    texts = np.array([Background.from_codes(row).text() for row in codes[first].tolist()], dtype=object)
    return texts[inverse].tolist()


def generate_click_world(cfg: Mapping[str, Any], out_dir: str | Path, images: bool = True) -> dict[str, Any]:
    """Write catalog, creatives, reviewed descriptions, log, truth, world.json (and PNGs) under ``out_dir``;
    return the summary.

    ``cfg`` is a composed config (its ``sim`` node is used) or the ``sim`` node. Images are written
    when both ``images`` and ``sim.images`` are true. Paths in the tables are relative to ``out_dir``.
    world.json is written last: its presence means the world is complete.
    """
    sim = sim_section(cfg)
    out = Path(out_dir)
    write_images = bool(images) and bool(sim.get("images", True))
    world = make_world(sim)
    oracle = Oracle(world)
    seed = world.seed
    lo, hi = (int(v) for v in require(sim, "creatives_per_product"))
    if not 1 <= lo <= hi:
        raise ConfigError(f"sim.creatives_per_product must be [low, high] with 1 <= low <= high, got {[lo, hi]}")
    days = int(require(sim, "days"))
    if days < 1:
        raise ConfigError(f"sim.days must be >= 1, got {days}")
    try:
        start = dt.date.fromisoformat(str(require(sim, "start_date")))
    except ValueError as err:
        raise ConfigError(f"sim.start_date must be an ISO date (YYYY-MM-DD): {err}") from err

    ad_size, product_size = int(require(sim, "image_size")), int(require(sim, "product_image_size"))
    if ad_size < 16 or product_size < 8:
        raise ConfigError(f"sim.image_size must be >= 16 and sim.product_image_size >= 8, got {ad_size}, "
                          f"{product_size}")

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    n_products = len(world.products)
    per_product = rng.integers(lo, hi + 1, n_products)
    product_index = np.repeat(np.arange(n_products), per_product)
    rank = np.arange(len(product_index)) - np.repeat(np.cumsum(per_product) - per_product, per_product)
    codes = draw_backgrounds(oracle, product_index, _mixture(sim), rng)
    true_ctr = oracle.ctr_many(product_index, codes)
    match, reasons = oracle.judge_many(product_index, codes)

    product_ids = pl.Series("product_id", [p.product_id for p in world.products], dtype=pl.String)
    creative_product = product_ids.gather(product_index)
    creative_ids = pl.Series("creative_id", [f"{p}_{r}" for p, r in zip(creative_product, rank.tolist(),
                                                                         strict=True)], dtype=pl.String)
    descriptions = pl.Series("description", describe(codes), dtype=pl.String)
    write_parquet(_catalog(world), out / "catalog.parquet")
    write_parquet(pl.DataFrame({"creative_id": creative_ids, "product_id": creative_product,
                                "description": descriptions}),
                  out / "creatives.parquet")
    write_parquet(pl.DataFrame({
        "creative_id": creative_ids, "product_id": creative_product, "true_ctr": true_ctr.astype(np.float64),
        "match": match, "reason": pl.Series(np.array(REASONS)[reasons], dtype=pl.String),
    }), out / "truth.parquet")
    # The annotators' verdict on every creative, published as observable data in the reviewed-descriptions
    # format (docs/pretrain-data.md): what stage 1 learns from instead of clicks.
    write_parquet(pl.DataFrame({
        "product_id": creative_product, "description": descriptions,
        "fits": pl.Series(match, dtype=pl.Boolean), "image": "images/ads/" + creative_ids + ".png",
    }), out / "reviewed_descriptions.parquet")
    totals = _write_log(sim, out / "log.parquet", creative_ids, creative_product, true_ctr, start, days, seed)
    if write_images:
        _write_images(world, out, creative_ids, product_index, codes, ad_size, product_size)

    summary = {
        "seed": seed,
        "preset": sim.get("name"),
        "sizes": {"image_size": ad_size, "product_image_size": product_size},
        "images": write_images,
        "counts": {"products": n_products, "creatives": len(creative_ids), "log_rows": len(creative_ids) * days,
                   "days": days, **totals, "matching_creatives": int(match.sum())},
        "start_date": start.isoformat(),
        "files": ["catalog.parquet", "creatives.parquet", "log.parquet", "truth.parquet",
                  "reviewed_descriptions.parquet"],
        "vocabulary": vocabulary_dict(),
    }
    write_json(summary, out / "world.json")
    log.info("synthetic world: %d products, %d creatives, %d log rows, %d impressions, %d clicks -> %s",
             n_products, len(creative_ids), len(creative_ids) * days, totals["impressions"], totals["clicks"], out)
    return summary


def _catalog(world: World) -> pl.DataFrame:
    ps = world.products
    return pl.DataFrame({
        "product_id": [p.product_id for p in ps],
        "title": [p.title for p in ps],
        "category": [p.category for p in ps],
        "image": [f"images/products/{p.product_id}.png" for p in ps],
        "price": pl.Series([p.price for p in ps], dtype=pl.Float64),
        "rating": pl.Series([p.rating for p in ps], dtype=pl.Float64),
        "colors": [";".join(p.colors) for p in ps],
        "tags": [";".join(p.tags) for p in ps],
    }, schema_overrides={"product_id": pl.String})


def _write_log(sim: Mapping[str, Any], path: Path, creative_ids: pl.Series, creative_product: pl.Series,
               true_ctr: np.ndarray, start: dt.date, days: int, seed: int) -> dict[str, int]:
    """Daily Poisson impressions (lognormal rate per creative, weekly rhythm), Binomial clicks."""
    exposure = require(sim, "exposure")
    median, sigma = float(exposure["median_daily"]), float(exposure["sigma"])
    amplitude = float(exposure.get("weekly_amplitude", 0.0))
    if median <= 0 or sigma < 0 or not 0 <= amplitude < 1:
        raise ConfigError("sim.exposure needs median_daily > 0, sigma >= 0 and 0 <= weekly_amplitude < 1, "
                          f"got {dict(exposure)}")
    chunk = int(require(sim, "chunk_creatives"))
    if chunk < 1:
        raise ConfigError(f"sim.chunk_creatives must be >= 1, got {chunk}")
    n = len(creative_ids)
    rate = median * np.exp(sigma * np.random.default_rng([seed, 4]).standard_normal(n))
    weekly = 1.0 + amplitude * np.sin(2 * np.pi * (np.arange(days) + start.weekday()) / 7)
    ad_paths = ("images/ads/" + creative_ids + ".png").alias("image")
    dates = pl.date_range(start, start + dt.timedelta(days=days - 1), "1d", eager=True).alias("date")
    impressions_total = clicks_total = 0
    with tempfile.TemporaryDirectory(prefix=".log-parts-", dir=path.parent) as tmp:
        parts = []
        for k, lo in enumerate(progress(range(0, n, chunk), desc="click log", unit="chunk",
                                        total=-(-n // chunk), disable=n <= chunk)):
            hi = min(n, lo + chunk)
            rng = np.random.default_rng([seed, 5, k])
            lam = rate[lo:hi, None] * weekly[None, :]
            impressions = rng.poisson(lam).astype(np.int64)
            clicks = rng.binomial(impressions, true_ctr[lo:hi, None]).astype(np.int64)
            impressions_total += int(impressions.sum())
            clicks_total += int(clicks.sum())
            row_creative = np.repeat(np.arange(lo, hi), days)
            frame = pl.DataFrame({
                "product_id": creative_product.gather(row_creative),
                "creative_id": creative_ids.gather(row_creative),
                "image": ad_paths.gather(row_creative),
                "date": dates.gather(np.tile(np.arange(days), hi - lo)),
                "impressions": impressions.reshape(-1),
                "clicks": clicks.reshape(-1),
            })
            part = Path(tmp) / f"part-{k:05d}.parquet"
            frame.write_parquet(part)
            parts.append(part)
        write_parquet(pl.scan_parquet(parts), path)
    return {"impressions": impressions_total, "clicks": clicks_total}


def _write_images(world: World, out: Path, creative_ids: pl.Series, product_index: np.ndarray,
                  codes: np.ndarray, ad_size: int, product_size: int) -> None:
    """Product cut-outs and ads as PNGs; the ads are rendered from the very cut-outs written."""
    with atomic_path(out / "images") as tmp:
        (tmp / "products").mkdir(parents=True)
        (tmp / "ads").mkdir()
        cutouts = []
        for p in progress(world.products, desc="product images", unit="img"):
            image = product_image(p, product_size)
            image.save(tmp / "products" / f"{p.product_id}.png")
            cutouts.append(image)
        seed = world.seed
        for i, cid in enumerate(progress(creative_ids.to_list(), desc="ads", unit="img")):
            ad = render_ad(cutouts[product_index[i]], Background.from_codes(codes[i]), ad_size,
                           seed=int(seed) * 1_000_003 + i)
            ad.save(tmp / "ads" / f"{cid}.png")
