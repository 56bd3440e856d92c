"""Reward-model pairs from a click log: ``caig pairs --log L --catalog C --out DIR``.

The rule (CAIG, WWW 2025, section on the reward model; see docs/pairs.md):

1. impressions and clicks are summed per creative over all of the log's dates; CTR = clicks / impressions;
2. every product goes to ``train`` or ``test`` by a stable hash of its id salted with the seed
   (:func:`split_of`), so adding data never moves a product between splits;
3. a creative takes part when its impressions are >= E of its product's split (the paper's "minimum
   exposure"), or > E when the split's ``strict_min_impressions`` is set (the authors' released script);
4. two creatives of the SAME product pair when ``(ctr_hi - ctr_lo) / ctr_lo >= D`` of the split, and, if
   the split's ``max_rel_diff`` is set, ``<= max_rel_diff`` (the authors' script capped it at 0.2 for test
   pairs). Pairs with ``ctr_lo == 0`` are excluded (the relative difference is undefined) and equal CTRs never
   pair, not even with D = 0 (a tie carries no preference). The comparisons are exact: CTRs are compared as
   integer cross-products (``clicks_a * impressions_b``) and D and the cap as fractions (exact for decimals
   with up to six places), so a pair exactly at D or at the cap is kept;
5. the better creative goes on the left in exactly ``floor(n / 2)`` of a split's ``n`` pairs, chosen by a
   seeded permutation of the pairs in canonical order (product, better creative, worse creative).

Output ``DIR/train.parquet`` and ``DIR/test.parquet``, one row per pair, sorted by product and creatives:

=====================================  =======  ====================================================
column                                 dtype    meaning
=====================================  =======  ====================================================
product_id                             String   the product both creatives advertise
category                               String   the product's category (from the catalog)
left_creative_id, right_creative_id    String   the creatives as placed left | right
left_image, right_image                String   their image paths (from each creative's first log row)
left_impressions, right_impressions    Int64    impressions summed over the log's dates
left_clicks, right_clicks              Int64    clicks summed over the log's dates
left_ctr, right_ctr                    Float64  clicks / impressions
label                                  String   "left" or "right": the creative with the higher CTR
rel_diff                               Float64  (ctr_better - ctr_worse) / ctr_worse
=====================================  =======  ====================================================

and ``DIR/summary.json``: the thresholds, the log's rows, creatives and products, and per split the count
at each stage (products, creatives, creatives passing E, candidate pairs, ties, zero-CTR pairs, pairs
below D, pairs above the upper bound, pairs, better-on-left), the same per category, and a histogram of
the relative CTR difference of the emitted pairs.

The log is streamed (Polars' streaming engine) into per-creative totals, which are far smaller than the
log; the self-join on product and the filters run as one lazy plan over those totals with integer-coded
ids, and the strings are looked up only for the pairs that are kept.
Ids are read as strings (integer ids are cast), so ``7`` in the log matches ``"7"`` in the catalog.
Rows that break an invariant (null keys or counts, negative counts, clicks > impressions) stop the run
with the first offending row (rows are numbered from 1, header excluded, as in ingest's quarantine), and
so do log products missing from the catalog: ``caig ingest`` quarantines such rows and its output is the
intended input. Duplicate (creative, date) rows are not detected here (ingest does that); they would be
summed.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from caig.data.ingest import read_table
from caig.errors import ConfigError, InputError
from caig.io import write_json, write_parquet
from caig.logs import get_logger

SPLITS = ("train", "test")
LOG_COLUMNS = ("product_id", "creative_id", "image", "impressions", "clicks")
CATALOG_COLUMNS = ("product_id", "category")
ID_COLUMNS = ("product_id", "creative_id")
COUNT_COLUMNS = ("impressions", "clicks")
# D and the upper bound are compared as fractions with at most this denominator (exact to six decimals).
MAX_THRESHOLD_DENOMINATOR = 10**6
PAIR_COLUMNS = (
    "product_id",
    "category",
    "left_creative_id",
    "right_creative_id",
    "left_image",
    "right_image",
    "left_impressions",
    "right_impressions",
    "left_clicks",
    "right_clicks",
    "left_ctr",
    "right_ctr",
    "label",
    "rel_diff",
)
PAIR_SCHEMA = pl.Schema(
    {
        **{name: pl.String for name in PAIR_COLUMNS[:6]},
        **{name: pl.Int64 for name in PAIR_COLUMNS[6:10]},
        **{name: pl.Float64 for name in PAIR_COLUMNS[10:12]},
        "label": pl.String,
        "rel_diff": pl.Float64,
    }
)

log = get_logger("pairs")


@dataclass(frozen=True)
class Thresholds:
    """One split's pair rule: minimum impressions per creative (E; ``impressions >= E``, or ``> E`` when
    ``strict_min_impressions``), minimum relative CTR difference (D) and an optional cap on it."""

    min_impressions: int
    min_rel_diff: float
    max_rel_diff: float | None = None
    strict_min_impressions: bool = False

    def passing_impressions(self) -> int:
        """The fewest impressions that pass E (counts are integers: ``> E`` is ``>= E + 1``)."""
        return self.min_impressions + int(self.strict_min_impressions)


@dataclass(frozen=True)
class PairConfig:
    """Everything the pair rule depends on (``data.pairs`` in the Hydra tree)."""

    train: Thresholds = field(default_factory=lambda: Thresholds(50, 0.01))
    test: Thresholds = field(default_factory=lambda: Thresholds(1000, 0.05))
    test_fraction: float = 0.1
    seed: int = 0
    histogram_edges: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

    def __post_init__(self) -> None:
        for split in SPLITS:
            rule = getattr(self, split)
            key = f"data.pairs.{split}"
            if not _is_int(rule.min_impressions) or rule.min_impressions < 1:
                raise ConfigError(
                    f"{key}.min_impressions must be an integer >= 1, got {rule.min_impressions!r}"
                )
            if not _is_number(rule.min_rel_diff) or rule.min_rel_diff < 0:
                raise ConfigError(f"{key}.min_rel_diff must be a number >= 0, got {rule.min_rel_diff!r}")
            if rule.max_rel_diff is not None and (not _is_number(rule.max_rel_diff) or rule.max_rel_diff <= 0):
                raise ConfigError(f"{key}.max_rel_diff must be null or a number > 0, got {rule.max_rel_diff!r}")
            if rule.max_rel_diff is not None and rule.max_rel_diff < rule.min_rel_diff:
                raise ConfigError(
                    f"{key}.max_rel_diff ({rule.max_rel_diff}) is below {key}.min_rel_diff "
                    f"({rule.min_rel_diff}): no pair could pass"
                )
            if not isinstance(rule.strict_min_impressions, bool):
                raise ConfigError(
                    f"{key}.strict_min_impressions must be true or false, got {rule.strict_min_impressions!r}"
                )
        if not _is_number(self.test_fraction) or not 0 <= self.test_fraction <= 1:
            raise ConfigError(f"data.pairs.test_fraction must be in [0, 1], got {self.test_fraction!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"data.pairs.seed must be an integer, got {self.seed!r}")
        edges = self.histogram_edges
        if (
            len(edges) < 2
            or any(not _is_number(e) for e in edges)
            or list(edges) != sorted(set(edges))
            or edges[0] != 0
        ):
            raise ConfigError(
                f"data.pairs.histogram_edges must be >= 2 increasing numbers from 0, got {list(edges)!r}"
            )

    @classmethod
    def from_config(cls, node: DictConfig | dict[str, Any]) -> PairConfig:
        """Build from the ``data.pairs`` config node; unknown or missing keys raise ConfigError."""
        raw = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        expected = {"train", "test", "test_fraction", "seed", "histogram_edges"}
        if set(raw) != expected:
            extra, missing = sorted(set(raw) - expected), sorted(expected - set(raw))
            raise ConfigError(f"data.pairs: unknown keys {extra}, missing keys {missing}")
        splits = {}
        keys = {"min_impressions", "min_rel_diff", "max_rel_diff", "strict_min_impressions"}
        for split in SPLITS:
            rule = raw[split]
            if not isinstance(rule, dict) or set(rule) != keys:
                raise ConfigError(f"data.pairs.{split} must have exactly the keys {sorted(keys)}, got {rule!r}")
            splits[split] = Thresholds(**rule)
        return cls(
            **splits,
            test_fraction=raw["test_fraction"],
            seed=raw["seed"],
            histogram_edges=tuple(raw["histogram_edges"]),
        )


@dataclass(frozen=True)
class PairSets:
    """The pairs of each split (columns: ``PAIR_COLUMNS``) and the per-stage counts for summary.json."""

    train: pl.DataFrame
    test: pl.DataFrame
    summary: dict[str, Any]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def split_of(product_ids: pl.Series | list[str], test_fraction: float, seed: int) -> pl.Series:
    """``"train"`` or ``"test"`` per product id, from a BLAKE2b hash of ``"<seed>:<id>"``.

    The hash depends on nothing but the id and the seed (not on Polars, the data or the row order), so a
    product keeps its split when data is added. A product is in test when the hash's top 53 bits, read as a
    fraction of 2**53, are below ``test_fraction``; so raising the fraction only moves products into test.
    Integer ids are hashed as their decimal strings.
    """
    ids = pl.Series("product_id", product_ids).cast(pl.String)
    if ids.null_count():
        raise InputError("product ids must not be null", column="product_id")
    salt = f"{seed}:".encode()
    digests = b"".join(
        [hashlib.blake2b(salt + pid, digest_size=8).digest() for pid in ids.cast(pl.Binary).to_list()]
    )
    top53 = np.frombuffer(digests, dtype=">u8") >> np.uint64(11)
    is_test = top53.astype(np.float64) / 2.0**53 < test_fraction
    return pl.Series("split", np.where(is_test, "test", "train"), dtype=pl.String)


def _check_columns(frame: pl.LazyFrame, name: str, required: tuple[str, ...]) -> pl.Schema:
    """The frame's schema, after checking the required columns are there with usable dtypes."""
    try:
        schema = frame.collect_schema()
    except pl.exceptions.PolarsError as err:
        raise InputError(f"cannot read: {err}", file=name) from err
    for column in required:
        if column not in schema:
            raise InputError("missing column", file=name, column=column, expected=f"columns {list(required)}")
        dtype = schema[column]
        # CSV arrives as strings (ingest.read_table reads every CSV column as text); counts are parsed.
        usable = (
            dtype.is_integer() or dtype == pl.String
            if column in ID_COLUMNS + COUNT_COLUMNS
            else dtype == pl.String
        )
        if not usable:
            kind = (
                "integer"
                if column in COUNT_COLUMNS
                else "string or integer" if column in ID_COLUMNS else "string"
            )
            raise InputError(f"dtype is {dtype}", file=name, column=column, expected=f"a {kind} column")
    return schema


def _parsed(schema: pl.Schema, columns: tuple[str, ...] = LOG_COLUMNS) -> list[pl.Expr]:
    """The log's ``columns``, counts as Int64 (text that is not an integer becomes null)."""
    text_counts = {c for c in COUNT_COLUMNS if not schema[c].is_integer()}
    return [pl.col(c).cast(pl.Int64, strict=False) if c in text_counts else pl.col(c) for c in columns]


def _bad_row(columns: tuple[str, ...] = LOG_COLUMNS) -> pl.Expr:
    """True for a parsed log row that breaks an invariant: a null in ``columns``, a negative count, or
    clicks > impressions."""
    imp, clk = pl.col("impressions"), pl.col("clicks")
    nulls = pl.any_horizontal(pl.col(c).is_null() for c in columns)
    return nulls | (imp < 0) | (clk < 0) | (clk > imp)


def _first_bad_row(log_frame: pl.LazyFrame, schema: pl.Schema, name: str) -> InputError:
    """The error for the log's first row that breaks an invariant (rows numbered from 1, header excluded)."""
    row = (
        log_frame.with_row_index("row", offset=1)
        .select("row", *(pl.col(c).alias(f"raw_{c}") for c in COUNT_COLUMNS), *_parsed(schema))
        .filter(_bad_row())
        .head(1)
        .collect(engine="streaming")
        .row(0, named=True)
    )
    null_column = next((c for c in LOG_COLUMNS if row[c] is None), None)
    if null_column is not None:
        raw_value = row.get(f"raw_{null_column}")
        problem = "empty value" if raw_value is None else f"{raw_value!r} is not an integer"
        column = null_column
    elif row["impressions"] < 0 or row["clicks"] < 0:
        column = "impressions" if row["impressions"] < 0 else "clicks"
        problem = f"negative count {row[column]}"
    else:
        problem, column = f"clicks {row['clicks']} > impressions {row['impressions']}", "clicks"
    return InputError(
        f"{problem}; run `caig ingest` first, it quarantines such rows",
        file=name,
        row=row["row"],
        column=column,
    )


def aggregate_creatives(log_frame: pl.LazyFrame, name: str = "log") -> tuple[pl.DataFrame, int]:
    """Stream the log into one row per creative, sorted by product and creative id.

    Columns: ``creative_index`` (the row number), ``product_id``, ``creative_id``, ``image`` (from the
    creative's first log row), ``impressions``, ``clicks`` (summed over dates). Returns the creatives and the
    number of log rows. Raises InputError on a missing column, a wrong dtype, a row that breaks an invariant,
    or a creative listed under two products.
    """
    schema = _check_columns(log_frame, name, LOG_COLUMNS)
    numbered = log_frame.with_row_index("first_row")
    # Grouping on the ids and numbers only, then fetching the image of each creative's first row, costs
    # about half the CPU of carrying the image strings through the group-by on a date-ordered log.
    counted = ID_COLUMNS + COUNT_COLUMNS
    plan = (
        numbered.select("first_row", *_parsed(schema, counted))
        .group_by(ID_COLUMNS)
        .agg(
            pl.col("first_row").min(),
            pl.col("impressions").sum(),
            pl.col("clicks").sum(),
            pl.len().alias("rows"),
            _bad_row(counted).sum().alias("bad_rows"),
        )
    )
    try:
        totals = plan.collect(engine="streaming")
        if (
            totals["bad_rows"].sum() > 0
            or totals.select(pl.any_horizontal(pl.col(ID_COLUMNS).is_null()).any()).item()
        ):
            raise _first_bad_row(log_frame, schema, name)
        images = (
            numbered.filter(pl.col("first_row").is_in(totals["first_row"].implode()))
            .select("first_row", "image")
            .collect(engine="streaming")
        )
    except pl.exceptions.PolarsError as err:
        raise InputError(f"cannot read: {err}", file=name) from err
    if images["image"].null_count():
        raise _first_bad_row(log_frame, schema, name)
    # Both hold exactly the creatives' first rows: sorted by row, they align without a join.
    creatives = (
        totals.sort("first_row")
        .with_columns(image=images.sort("first_row")["image"])
        .select(*(pl.col(c).cast(pl.String) for c in ID_COLUMNS), "image", "impressions", "clicks")
        .sort(ID_COLUMNS)
        .with_row_index("creative_index")
    )
    repeated = creatives.filter(pl.col("creative_id").is_duplicated()).sort("creative_id", "product_id")
    if repeated.height:
        products = repeated["product_id"].head(2).to_list()
        raise InputError(
            f"creative {repeated['creative_id'][0]!r} appears under products {products}",
            file=name,
            column="creative_id",
            expected="each creative to belong to one product; `caig ingest` quarantines such rows",
        )
    return creatives, int(totals["rows"].sum())


def read_categories(catalog: pl.LazyFrame, name: str = "catalog") -> pl.DataFrame:
    """``product_id -> category`` from the catalog; duplicate or null entries raise InputError."""
    _check_columns(catalog, name, CATALOG_COLUMNS)
    try:
        categories = catalog.select(pl.col("product_id").cast(pl.String), "category").collect(
            engine="streaming"
        )
    except pl.exceptions.PolarsError as err:
        raise InputError(f"cannot read: {err}", file=name) from err
    for column in CATALOG_COLUMNS:
        if categories[column].null_count():
            row = int(categories[column].is_null().arg_true()[0]) + 1
            raise InputError("null value", file=name, row=row, column=column, expected="a value in every row")
    repeated = ~categories["product_id"].is_first_distinct()
    if repeated.any():
        row = int(repeated.arg_true()[0]) + 1
        raise InputError(
            f"product {categories['product_id'][row - 1]!r} is listed more than once",
            file=name,
            row=row,
            column="product_id",
            expected="one row per product",
        )
    return categories


def _fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(MAX_THRESHOLD_DENOMINATOR)


def _ordered_pairs(candidates: pl.LazyFrame) -> pl.LazyFrame:
    """Self-join candidates on their product; one row per non-tied pair, ``_hi`` the higher CTR."""
    hi = candidates.rename(lambda c: c if c in {"product_index", "is_test"} else f"{c}_hi")
    lo = candidates.drop("is_test").rename(lambda c: c if c == "product_index" else f"{c}_lo")
    # ctr_hi > ctr_lo exactly: clicks_hi * impressions_lo > clicks_lo * impressions_hi (Int128: no overflow).
    return (
        hi.join(lo, on="product_index")
        .with_columns(
            cross_hi=pl.col("clicks_hi").cast(pl.Int128) * pl.col("impressions_lo"),
            cross_lo=pl.col("clicks_lo").cast(pl.Int128) * pl.col("impressions_hi"),
        )
        .filter(pl.col("cross_hi") > pl.col("cross_lo"))
    )


def _rel_diff_sign(bound: float) -> pl.Expr:
    """Sign of ``rel_diff - bound``, exactly: ``bound = p / q``, so the sign of
    ``q * (cross_hi - cross_lo) - p * cross_lo``."""
    exact = _fraction(bound)
    gap, base = pl.col("cross_hi") - pl.col("cross_lo"), pl.col("cross_lo")
    return (gap * exact.denominator - base * exact.numerator).sign()


def _per_split(train: pl.Expr, test: pl.Expr) -> pl.Expr:
    """``test`` for a pair of the test split, ``train`` otherwise."""
    return pl.when("is_test").then(test).otherwise(train)


def _above_cap(rule: Thresholds) -> pl.Expr:
    """The pair's relative difference exceeds the split's cap (never, without one)."""
    return pl.lit(False) if rule.max_rel_diff is None else _rel_diff_sign(rule.max_rel_diff) > 0


def build_pairs(
    log_frame: pl.LazyFrame,
    catalog: pl.LazyFrame,
    cfg: PairConfig,
    *,
    log_name: str = "log",
    catalog_name: str = "catalog",
) -> PairSets:
    """Apply the pair rule (module docstring) to a click log and a catalog.

    ``log_name`` and ``catalog_name`` (usually the file paths) name the inputs in error messages.
    Raises InputError on bad input, including log products that are missing from the catalog.
    """
    started = time.perf_counter()
    creatives, log_rows = aggregate_creatives(log_frame, log_name)
    log.info(
        "aggregated %d log rows into %d creatives (%.2f s)",
        log_rows,
        creatives.height,
        time.perf_counter() - started,
    )
    # Creatives are sorted by product: a product's index counts the product changes up to its first row.
    first_of_product = pl.col("product_id").ne_missing(pl.col("product_id").shift())
    creatives = creatives.with_columns(product_index=first_of_product.cum_sum().cast(pl.UInt32) - 1)
    products = creatives.filter(first_of_product).select("product_index", "product_id")
    products = products.join(
        read_categories(catalog, catalog_name), on="product_id", how="left", maintain_order="left"
    )
    missing = products.filter(pl.col("category").is_null())
    if missing.height:
        raise InputError(
            f"{missing.height} product(s) of the log are not in the catalog, "
            f"e.g. {missing['product_id'][0]!r}; "
            "run `caig ingest` first, it quarantines log rows of unknown products",
            file=catalog_name,
            column="product_id",
        )
    products = products.with_columns(
        is_test=split_of(products["product_id"], cfg.test_fraction, cfg.seed) == "test"
    )
    creatives = creatives.with_columns(is_test=products["is_test"].gather(creatives["product_index"]))
    fewest = _per_split(pl.lit(cfg.train.passing_impressions()), pl.lit(cfg.test.passing_impressions()))
    creatives = creatives.with_columns(passes_e=pl.col("impressions") >= fewest)

    candidates = (
        creatives.lazy()
        .filter("passes_e")
        .select("product_index", "creative_index", "impressions", "clicks", "is_test")
    )
    ordered = _ordered_pairs(candidates).with_columns(
        zero_ctr=pl.col("clicks_lo") == 0,
        below_d=_per_split(
            _rel_diff_sign(cfg.train.min_rel_diff) < 0, _rel_diff_sign(cfg.test.min_rel_diff) < 0
        ),
        above_max=_per_split(_above_cap(cfg.train), _above_cap(cfg.test)),
    )
    # Exclusions are counted in order: zero CTR, then below D, then above the upper bound.
    stage_counts = ordered.group_by("is_test").agg(
        ordered=pl.len(),
        zero_ctr=pl.col("zero_ctr").sum(),
        below_min_rel_diff=(~pl.col("zero_ctr") & pl.col("below_d")).sum(),
        above_max_rel_diff=(~pl.col("zero_ctr") & ~pl.col("below_d") & pl.col("above_max")).sum(),
    )
    # The gap is exact in integers, so rel_diff is one correctly rounded division
    # (computed as 0.12 / 0.10 - 1 it would not be 0.2).
    kept = ordered.filter(~pl.col("zero_ctr") & ~pl.col("below_d") & ~pl.col("above_max")).select(
        "is_test",
        "creative_index_hi",
        "creative_index_lo",
        rel_diff=(pl.col("cross_hi") - pl.col("cross_lo")).cast(pl.Float64)
        / pl.col("cross_lo").cast(pl.Float64),
    )
    stage_counts, kept = pl.collect_all([stage_counts, kept], engine="streaming")
    log.info("found %d pairs (%.2f s)", kept.height, time.perf_counter() - started)

    sets = {
        split: _place(
            kept.filter(pl.col("is_test") == (split == "test")), creatives, products, cfg.seed, split
        )
        for split in SPLITS
    }
    summary = _summary(cfg, log_rows, creatives, products, stage_counts, sets)
    log.info("placed and summarised the pairs (%.2f s)", time.perf_counter() - started)
    return PairSets(train=sets["train"], test=sets["test"], summary=summary)


def _place(
    pairs: pl.DataFrame, creatives: pl.DataFrame, products: pl.DataFrame, seed: int, split: str
) -> pl.DataFrame:
    """Put the better creative left in exactly floor(n/2) of the n pairs (seeded); look up their attributes.

    Creative indices follow (product_id, creative_id), so sorting on them is the canonical pair order.
    """
    pairs = pairs.sort("creative_index_hi", "creative_index_lo")
    better_left = np.zeros(pairs.height, dtype=bool)
    better_left[
        np.random.default_rng([seed, SPLITS.index(split)]).permutation(pairs.height)[: pairs.height // 2]
    ] = True
    hi, lo = pairs["creative_index_hi"].to_numpy(), pairs["creative_index_lo"].to_numpy()
    sides = {"left": np.where(better_left, hi, lo), "right": np.where(better_left, lo, hi)}
    attributes = creatives.select("creative_id", "image", "impressions", "clicks")
    product_index = creatives["product_index"].gather(hi)
    columns = {
        "product_id": products["product_id"].gather(product_index),
        "category": products["category"].gather(product_index),
    }
    for side, index in sides.items():
        rows = attributes[index]
        columns |= {f"{side}_{c}": rows[c] for c in attributes.columns}
        columns[f"{side}_ctr"] = rows["clicks"] / rows["impressions"]
    columns["label"] = pl.Series(np.where(better_left, "left", "right"), dtype=pl.String)
    columns["rel_diff"] = pairs["rel_diff"]
    return pl.DataFrame(columns).select(PAIR_COLUMNS).cast(dict(PAIR_SCHEMA))


def _summary(
    cfg: PairConfig,
    log_rows: int,
    creatives: pl.DataFrame,
    products: pl.DataFrame,
    stage_counts: pl.DataFrame,
    sets: dict[str, pl.DataFrame],
) -> dict[str, Any]:
    """Counts per stage, split and category, and the histogram of rel_diff, as plain JSON types."""
    per_product = (
        creatives.group_by("product_index")
        .agg(creatives=pl.len(), passing=pl.col("passes_e").sum().cast(pl.Int64))
        .join(products, on="product_index")
        .with_columns(candidate_pairs=pl.col("passing") * (pl.col("passing") - 1) // 2)
    )
    edges = list(cfg.histogram_edges)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        mine = per_product.filter(pl.col("is_test") == (split == "test"))
        counts = stage_counts.filter(pl.col("is_test") == (split == "test"))
        pairs = sets[split]
        candidate_pairs = int(mine["candidate_pairs"].sum())
        histogram = np.histogram(pairs["rel_diff"].to_numpy(), bins=[*edges, np.inf])[0]
        by_category = (
            mine.group_by("category")
            .agg(
                pl.col("creatives").sum(),
                creatives_min_impressions=pl.col("passing").sum(),
                candidate_pairs=pl.col("candidate_pairs").sum(),
            )
            .join(pairs.group_by("category").agg(pairs=pl.len()), on="category", how="left")
            .with_columns(pl.col("pairs").fill_null(0))
            .sort("category")
        )
        splits[split] = {
            **asdict(getattr(cfg, split)),
            "products": mine.height,
            "creatives": int(mine["creatives"].sum()),
            "creatives_min_impressions": int(mine["passing"].sum()),
            "candidate_pairs": candidate_pairs,
            "tied_pairs": candidate_pairs - int(counts["ordered"].sum()),
            "zero_ctr_pairs": int(counts["zero_ctr"].sum()),
            "below_min_rel_diff": int(counts["below_min_rel_diff"].sum()),
            "above_max_rel_diff": int(counts["above_max_rel_diff"].sum()),
            "pairs": pairs.height,
            "products_with_pairs": pairs["product_id"].n_unique(),
            "better_on_left": int((pairs["label"] == "left").sum()),
            "per_category": {row.pop("category"): row for row in by_category.iter_rows(named=True)},
            "rel_diff_histogram": {
                "edges": [*edges, None],
                "counts": [int(c) for c in histogram],
                "note": "bin i counts edges[i] <= rel_diff < edges[i+1]; the last edge, null, is infinity",
            },
        }
    return {
        "thresholds": {
            **{split: asdict(getattr(cfg, split)) for split in SPLITS},
            "test_fraction": cfg.test_fraction,
            "seed": cfg.seed,
        },
        "log_rows": log_rows,
        "creatives": creatives.height,
        "products": products.height,
        "splits": splits,
    }


def write_pairs(sets: PairSets, out_dir: str | Path, inputs: dict[str, str] | None = None) -> None:
    """Write ``train.parquet``, ``test.parquet`` and ``summary.json`` (last) atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    for split in SPLITS:
        write_parquet(getattr(sets, split), out_dir / f"{split}.parquet")
    write_json({"inputs": inputs or {}, **sets.summary}, out_dir / "summary.json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", required=True, type=Path, help="click log (Parquet or CSV), native schema")
    parser.add_argument("--catalog", required=True, type=Path, help="product catalog (Parquet or CSV)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder: train/test.parquet, summary.json"
    )
    parser.add_argument(
        "--train-min-impressions", type=int, help="E for train (data.pairs.train.min_impressions)"
    )
    parser.add_argument(
        "--train-min-rel-diff", type=float, help="D for train (data.pairs.train.min_rel_diff)"
    )
    parser.add_argument(
        "--test-min-impressions", type=int, help="E for test (data.pairs.test.min_impressions)"
    )
    parser.add_argument("--test-min-rel-diff", type=float, help="D for test (data.pairs.test.min_rel_diff)")
    parser.add_argument(
        "--train-max-rel-diff", type=float, help="cap on D for train (data.pairs.train.max_rel_diff)"
    )
    parser.add_argument(
        "--test-max-rel-diff", type=float, help="cap on D for test (data.pairs.test.max_rel_diff)"
    )
    parser.add_argument(
        "--test-fraction", type=float, help="share of products in test (data.pairs.test_fraction)"
    )
    parser.add_argument("--seed", type=int, help="split and placement seed (data.pairs.seed)")


OPTION_KEYS = {
    "train_min_impressions": "data.pairs.train.min_impressions",
    "train_min_rel_diff": "data.pairs.train.min_rel_diff",
    "test_min_impressions": "data.pairs.test.min_impressions",
    "test_min_rel_diff": "data.pairs.test.min_rel_diff",
    "train_max_rel_diff": "data.pairs.train.max_rel_diff",
    "test_max_rel_diff": "data.pairs.test.max_rel_diff",
    "test_fraction": "data.pairs.test_fraction",
    "seed": "data.pairs.seed",
}


def overrides(args: argparse.Namespace) -> list[str]:
    """The options given on the command line, as Hydra overrides of ``data.pairs``."""
    return [
        f"{key}={getattr(args, option)!r}"
        for option, key in OPTION_KEYS.items()
        if getattr(args, option) is not None
    ]


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    if "data" not in cfg or "pairs" not in cfg.data:
        raise ConfigError("data.pairs is missing from the config tree (expected config/data/default.yaml)")
    pair_cfg = PairConfig.from_config(cfg.data.pairs)
    sets = build_pairs(
        read_table(args.log),
        read_table(args.catalog),
        pair_cfg,
        log_name=str(args.log),
        catalog_name=str(args.catalog),
    )
    write_pairs(sets, args.out, inputs={"log": str(args.log), "catalog": str(args.catalog)})
    log.info("wrote %d train and %d test pairs to %s", sets.train.height, sets.test.height, args.out)
