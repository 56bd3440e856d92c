"""Simulated online A/B test: each method's generated ads served by a multi-armed bandit to simulated traffic.

The paper's online test showed two generated images per product, chosen by a multi-armed bandit, for a week,
and reported the CTR lift over the pre-trained prompt model. On the synthetic world (docs/online-ab.md):

- every method is a bucket of an A/B test; the control bucket serves the epoch-0 prompt model's ads;
- within a bucket each held-out product has its own bandit over that bucket's ads for the product
  (``online.ads_per_product``); each bucket gets ``online.impressions_per_product`` impressions per product;
- ads are screened before serving (``online.screen``, on by default), as the paper's practitioners made sure
  that every image shown online fits its product: an ad the world's match judgement calls a mismatch is not
  served. A product left with no ad in a bucket gets no traffic there and is left out of every comparison
  with that bucket, so each lift is paired over the products both buckets served;
- an impression of an ad is clicked with the oracle's true CTR of the ad, parsed from its description;
- the bandit (Thompson sampling on Beta posteriors; or epsilon-greedy, or uniform) updates its posteriors
  ``online.rounds`` times over the budget, as a production bandit updating on a schedule;
- lift = CTR(bucket) / CTR(control) - 1, overall and per category, with a 95% interval (``online.interval``): a
  paired bootstrap over products (default; it carries both the products' spread and the click noise) or the
  delta method on the log CTR ratio (click noise only, the ads held fixed);
- impressions to separate: the bandit is rerun at budgets halving down from the main one; the figure is the
  smallest budget from which on (every larger budget included) the lift's interval excludes 0. A question of
  traffic, so by default (``online.separation_interval``) with the delta interval, which narrows as traffic
  grows; a product bootstrap interval stops narrowing at the products' spread.

The match judgement behind the screening is the world's oracle (``caig.evaluate.match.oracle_judgements``), the
same world that draws the clicks. There is no real-data online path: on real data the clicks would come from
real traffic, and the screening from the annotators' labels of ``caig evaluate-match --judge annotators``
(its filled-in ``annotation.csv``), which would fill ``Bucket.match``.

``caig online --control DIR --ads METHOD=DIR ... --catalog FILE --out DIR`` writes ``DIR/metrics.json`` and
``DIR/served.parquet`` (per bucket, product and ad at the main budget: impressions, clicks, match, screened out).
"""

from __future__ import annotations

import argparse
import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.errors import ConfigError, InputError
from caig.io import atomic_path, write_json, write_parquet
from caig.logs import get_logger

log = get_logger("online")

POLICIES: tuple[str, ...] = ("thompson", "epsilon_greedy", "uniform")
INTERVALS: tuple[str, ...] = ("bootstrap", "delta")
#: Seed stream of the online simulation (other stages use their own streams of the run seed).
ONLINE_STREAM = 2_000_000
CONTROL = "control"
ALL = "all"
ADS_FILE = "ads.parquet"
_ADS_ARG = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)=(?P<path>.+)$")


# ---------------------------------------------------------------------------------------------- bandits
@dataclass(frozen=True)
class Served:
    """Impressions and clicks per product (rows) and ad (columns) of one bucket."""

    impressions: np.ndarray
    clicks: np.ndarray


def round_sizes(impressions: int, rounds: int) -> np.ndarray:
    """Split a budget into ``rounds`` batches as equal as possible (earlier batches take the remainder)."""
    if impressions < 0 or rounds < 1:
        raise ValueError(f"need impressions >= 0 and rounds >= 1, got {impressions} and {rounds}")
    base, extra = divmod(impressions, rounds)
    return np.array([base + (i < extra) for i in range(rounds)], dtype=np.int64)


def _as_arms(arms_ctr: np.ndarray) -> np.ndarray:
    """(products, arms) float array of CTRs in [0, 1]; a 1-D array is one product."""
    ctr = np.atleast_2d(np.asarray(arms_ctr, dtype=np.float64))
    if ctr.ndim != 2 or ctr.shape[1] < 1:
        raise ValueError(f"arms_ctr must have shape (arms,) or (products, arms), got {np.shape(arms_ctr)}")
    if np.isnan(ctr).any() or (ctr < 0).any() or (ctr > 1).any():
        raise ValueError("arm CTRs must lie in [0, 1]")
    return ctr


def _as_allowed(allowed: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """(products, arms) bool array of the arms that may be served; None: every arm."""
    if allowed is None:
        return np.ones(shape, dtype=bool)
    mask = np.atleast_2d(np.asarray(allowed, dtype=bool))
    if mask.shape != shape:
        raise ValueError(f"allowed must have the shape of arms_ctr {shape}, got {mask.shape}")
    return mask


def _finish(shape_1d: bool, shown: np.ndarray, clicks: np.ndarray) -> Served:
    return Served(shown[0], clicks[0]) if shape_1d else Served(shown, clicks)


Allocate = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def _serve_in_rounds(
    arms_ctr: np.ndarray,
    impressions: int,
    rounds: int,
    rng: np.random.Generator,
    allocate: Allocate,
    allowed: np.ndarray | None,
) -> Served:
    """The loop every bandit shares: per round, ``allocate(shown, clicks, allowed, size)`` splits the round's
    ``size`` impressions of each product over its allowed arms from the counts so far; clicks are drawn from
    the true CTR. A product with no allowed arm gets no impressions."""
    one = np.ndim(arms_ctr) == 1
    ctr = _as_arms(arms_ctr)
    mask = _as_allowed(allowed, ctr.shape)
    live = mask.any(axis=1)
    shown = np.zeros(ctr.shape, dtype=np.int64)
    clicks = np.zeros(ctr.shape, dtype=np.int64)
    for size in round_sizes(int(impressions), int(rounds)):
        if size == 0 or not live.any():
            continue
        batch = allocate(shown[live], clicks[live], mask[live], int(size))
        clicks[live] += rng.binomial(batch, ctr[live])
        shown[live] += batch
    return _finish(one, shown, clicks)


def thompson_sampling(
    arms_ctr: np.ndarray,
    impressions: int,
    rng: np.random.Generator,
    *,
    rounds: int = 1,
    prior: tuple[float, float] = (1.0, 1.0),
    allowed: np.ndarray | None = None,
) -> Served:
    """Serve ``impressions`` per product by Thompson sampling on Beta(clicks + a, non-clicks + b) posteriors.

    Each impression draws one CTR per arm from the posteriors and goes to the largest draw among the
    ``allowed`` arms (default: all). Posteriors are updated after each of ``rounds`` batches (delayed feedback,
    as a production bandit); ``rounds`` equal to ``impressions`` is the textbook one-at-a-time bandit.
    ``arms_ctr`` and ``allowed`` are (arms,) or (products, arms).
    """
    a0, b0 = (float(v) for v in prior)
    if a0 <= 0 or b0 <= 0:
        raise ValueError(f"Beta prior parameters must be > 0, got {prior}")

    def allocate(shown: np.ndarray, clicks: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
        products, arms = shown.shape
        alpha = (a0 + clicks)[:, None, :]
        beta = (b0 + shown - clicks)[:, None, :]
        draws = rng.beta(alpha, beta, size=(products, size, arms))
        chosen = np.where(mask[:, None, :], draws, -np.inf).argmax(axis=2)
        return np.stack([(chosen == k).sum(axis=1) for k in range(arms)], axis=1)

    return _serve_in_rounds(arms_ctr, impressions, rounds, rng, allocate, allowed)


def epsilon_greedy(
    arms_ctr: np.ndarray,
    impressions: int,
    rng: np.random.Generator,
    *,
    rounds: int = 1,
    epsilon: float = 0.1,
    prior: tuple[float, float] = (1.0, 1.0),
    allowed: np.ndarray | None = None,
) -> Served:
    """Serve by epsilon-greedy: ``epsilon`` of each batch uniformly, the rest to the best posterior mean,
    both among the ``allowed`` arms (default: all).

    Ties between posterior means are broken at random; the first batch (no data yet) is therefore uniform
    in expectation.
    """
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    a0, b0 = (float(v) for v in prior)

    def allocate(shown: np.ndarray, clicks: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
        products = shown.shape[0]
        mean = np.where(mask, (a0 + clicks) / (a0 + b0 + shown), -np.inf)
        best = mean == mean.max(axis=1, keepdims=True)
        greedy = (best * (1 + rng.random(best.shape))).argmax(axis=1)  # a random one of the tied best
        p = mask * (epsilon / mask.sum(axis=1, keepdims=True))
        p[np.arange(products), greedy] += 1 - epsilon
        return rng.multinomial(size, p)

    return _serve_in_rounds(arms_ctr, impressions, rounds, rng, allocate, allowed)


def uniform_allocation(
    arms_ctr: np.ndarray, impressions: int, rng: np.random.Generator, *, allowed: np.ndarray | None = None
) -> Served:
    """Serve every impression to an arm drawn uniformly among the ``allowed`` ones: the no-bandit reference."""
    one = np.ndim(arms_ctr) == 1
    ctr = _as_arms(arms_ctr)
    mask = _as_allowed(allowed, ctr.shape)
    live = mask.any(axis=1)
    shown = np.zeros(ctr.shape, dtype=np.int64)
    if live.any():
        shown[live] = rng.multinomial(int(impressions), mask[live] / mask[live].sum(axis=1, keepdims=True))
    return _finish(one, shown, rng.binomial(shown, ctr))


# ---------------------------------------------------------------------------------------------- lift
@dataclass(frozen=True)
class Lift:
    """Relative CTR difference of a treatment over a control (fractions, not %) with its interval."""

    lift: float
    low: float
    high: float
    treatment_ctr: float
    control_ctr: float

    @property
    def separated(self) -> bool:
        """The interval excludes 0."""
        return bool(self.low > 0 or self.high < 0)


def lift_with_interval(
    treatment_clicks: np.ndarray,
    treatment_impressions: np.ndarray,
    control_clicks: np.ndarray,
    control_impressions: np.ndarray,
    *,
    interval: str = "bootstrap",
    level: float = 0.95,
    resamples: int = 2000,
    rng: np.random.Generator | None = None,
) -> Lift:
    """Lift = CTR_t / CTR_c - 1 from per-product clicks and impressions of two buckets over the same products.

    ``bootstrap``: percentile interval of the paired bootstrap over products (the same resampled products in
    both buckets), which carries the products' spread and the click noise; ``rng`` is required.
    ``delta``: normal interval on log(CTR_t / CTR_c) with Var = (1-p_t)/(n_t p_t) + (1-p_c)/(n_c p_c),
    impressions taken as independent trials (click noise only). NaN when a bucket has no clicks.
    """
    arrays = [
        np.asarray(a, dtype=np.float64).ravel()
        for a in (treatment_clicks, treatment_impressions, control_clicks, control_impressions)
    ]
    if len({a.size for a in arrays}) != 1 or arrays[0].size == 0:
        raise ValueError("clicks and impressions must be non-empty per-product arrays of one length")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    ct, nt, cc, nc = arrays
    p_t, p_c = ct.sum() / nt.sum(), cc.sum() / nc.sum()
    if p_t == 0 or p_c == 0:
        return Lift(float("nan"), float("nan"), float("nan"), float(p_t), float(p_c))
    point = p_t / p_c - 1
    tail = (1 - level) / 2
    if interval == "delta":
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - tail)
        se = np.sqrt((1 - p_t) / (nt.sum() * p_t) + (1 - p_c) / (nc.sum() * p_c))
        low, high = np.exp(np.log(p_t / p_c) + np.array([-z, z]) * se) - 1
    elif interval == "bootstrap":
        if rng is None:
            raise ValueError("the bootstrap interval needs an rng")
        idx = rng.integers(0, ct.size, size=(int(resamples), ct.size))
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = (ct[idx].sum(1) / nt[idx].sum(1)) / (cc[idx].sum(1) / nc[idx].sum(1)) - 1
        boot = boot[np.isfinite(boot)]
        low, high = np.quantile(boot, [tail, 1 - tail]) if boot.size else (float("nan"), float("nan"))
    else:
        raise ValueError(f"unknown interval {interval!r} (expected one of {', '.join(INTERVALS)})")
    return Lift(float(point), float(low), float(high), float(p_t), float(p_c))


def impressions_to_separate(budgets: Sequence[int], lifts: Sequence[Lift]) -> int | None:
    """The smallest budget from which on every larger budget's interval excludes 0 (None: the largest fails).

    ``budgets`` ascend; ``lifts[i]`` was measured at ``budgets[i]``. Requiring every larger budget too keeps a
    lucky small run from counting as a separation.
    """
    if len(budgets) != len(lifts) or not budgets:
        raise ValueError("need one lift per budget, and at least one budget")
    if list(budgets) != sorted(budgets):
        raise ValueError(f"budgets must ascend, got {list(budgets)}")
    found = None
    for budget, lift in zip(reversed(budgets), reversed(lifts)):
        if not lift.separated:
            break
        found = int(budget)
    return found


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class OnlineSettings:
    """The ``online`` config node, checked."""

    policy: str
    epsilon: float
    prior: tuple[float, float]
    ads_per_product: int
    impressions_per_product: int
    rounds: int
    interval: str
    level: float
    resamples: int
    separation_steps: int
    separation_interval: str
    screen: bool

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> OnlineSettings:
        """Read and check ``cfg.online``; a ConfigError names the key."""
        keys = (
            "policy",
            "epsilon",
            "prior",
            "ads_per_product",
            "impressions_per_product",
            "rounds",
            "interval",
            "level",
            "resamples",
            "separation_steps",
            "separation_interval",
            "screen",
        )
        missing = [k for k in keys if k not in node or node[k] is None]
        if missing:
            raise ConfigError(f"config keys missing under online: {', '.join(missing)}")
        settings = cls(
            policy=str(node["policy"]),
            epsilon=float(node["epsilon"]),
            prior=tuple(float(v) for v in node["prior"]),
            ads_per_product=int(node["ads_per_product"]),
            impressions_per_product=int(node["impressions_per_product"]),
            rounds=int(node["rounds"]),
            interval=str(node["interval"]),
            level=float(node["level"]),
            resamples=int(node["resamples"]),
            separation_steps=int(node["separation_steps"]),
            separation_interval=str(node["separation_interval"]),
            screen=node["screen"] is True,
        )
        checks = {
            "policy": (settings.policy in POLICIES, f"one of {', '.join(POLICIES)}"),
            "epsilon": (0 <= settings.epsilon <= 1, "a number in [0, 1]"),
            "prior": (len(settings.prior) == 2 and min(settings.prior) > 0, "[a, b] with a, b > 0"),
            "ads_per_product": (settings.ads_per_product >= 1, "an integer >= 1"),
            "impressions_per_product": (settings.impressions_per_product >= 1, "an integer >= 1"),
            "rounds": (settings.rounds >= 1, "an integer >= 1"),
            "interval": (settings.interval in INTERVALS, f"one of {', '.join(INTERVALS)}"),
            "level": (0 < settings.level < 1, "a number in (0, 1)"),
            "resamples": (settings.resamples >= 100, "an integer >= 100"),
            "separation_steps": (settings.separation_steps >= 1, "an integer >= 1"),
            "separation_interval": (settings.separation_interval in INTERVALS, f"one of {', '.join(INTERVALS)}"),
            "screen": (isinstance(node["screen"], bool), "true or false"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"online.{key} = {node[key]!r} is not valid (expected {expected})")
        return settings

    def budgets(self) -> list[int]:
        """Impressions per product of the separation ladder: the main budget halved ``separation_steps - 1``
        times, ascending (budgets below 1 are left out)."""
        ladder = {self.impressions_per_product // 2**k for k in range(self.separation_steps)}
        return sorted(b for b in ladder if b >= 1)

    def serve(
        self, arms_ctr: np.ndarray, impressions: int, rng: np.random.Generator, allowed: np.ndarray
    ) -> Served:
        """One bucket's traffic under the configured policy, over the ``allowed`` ads."""
        if self.policy == "thompson":
            return thompson_sampling(
                arms_ctr, impressions, rng, rounds=self.rounds, prior=self.prior, allowed=allowed
            )
        if self.policy == "epsilon_greedy":
            return epsilon_greedy(
                arms_ctr,
                impressions,
                rng,
                rounds=self.rounds,
                epsilon=self.epsilon,
                prior=self.prior,
                allowed=allowed,
            )
        return uniform_allocation(arms_ctr, impressions, rng, allowed=allowed)

    def servable(self, match: np.ndarray) -> np.ndarray:
        """The ads that may be served: with ``screen``, those the match judgement calls a fit; else all."""
        match = np.asarray(match, dtype=bool)
        return match.copy() if self.screen else np.ones(match.shape, dtype=bool)

    def describe_interval(self, interval: str) -> str:
        """How an interval kind is computed, in words (recorded in the metrics)."""
        if interval == "bootstrap":
            return (
                f"{self.level:.0%} percentile interval of a paired bootstrap over products "
                f"({self.resamples} resamples)"
            )
        return (
            f"{self.level:.0%} delta-method interval on the log CTR ratio (impressions as independent trials)"
        )


# ---------------------------------------------------------------------------------------------- buckets
@dataclass(frozen=True)
class Bucket:
    """One arm of the A/B test: per held-out product (rows, in the control's order) its ads (columns), with
    each ad's true CTR and match judgement (True: the background fits the product)."""

    name: str
    source: Path
    ctr: np.ndarray
    match: np.ndarray
    descriptions: list[list[str]]
    epoch: int | None = None  # the preference epoch of the evaluated model (None: unknown)


def ads_table_path(path: Path) -> Path:
    """An evaluation folder (its ads.parquet) or an ads table file itself."""
    return path / ADS_FILE if path.is_dir() else path


def read_ads(path: str | Path) -> pl.DataFrame:
    """The generated ads of one method: product_id, candidate, description (Parquet or CSV).

    This is the ``ads.parquet`` of ``caig evaluate-match`` (other columns are ignored); a hand-made table
    needs only these three columns. Rows in errors are 1-based data rows (a CSV header is not counted).
    """
    file = ads_table_path(Path(path))
    if not file.is_file():
        raise InputError(
            "generated ads not found",
            file=file,
            expected="an evaluation folder of caig evaluate-match or an ads table (.parquet/.csv)",
        )
    try:
        table = pl.read_csv(file) if file.suffix.lower() == ".csv" else pl.read_parquet(file)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the ads table ({err})", file=file) from err
    for column in ("product_id", "candidate", "description"):
        if column not in table.columns:
            raise InputError(
                "missing column", file=file, column=column, expected="product_id, candidate, description"
            )
    table = table.select(
        pl.col("product_id").cast(pl.String),
        pl.col("candidate").cast(pl.Int64),
        pl.col("description").cast(pl.String),
    )
    for column in table.columns:
        nulls = table.get_column(column).is_null()
        if nulls.any():
            raise InputError("empty value", file=file, row=int(nulls.arg_max()) + 1, column=column)
    duplicated = ~table.select(pl.struct("product_id", "candidate").is_first_distinct()).to_series()
    if duplicated.any():
        raise InputError(
            "the same (product_id, candidate) appears twice",
            file=file,
            row=int(duplicated.arg_max()) + 1,
            expected="one row per product and candidate",
        )
    return table


def ads_by_product(
    table: pl.DataFrame, product_ids: Sequence[str], per_product: int, file: Path
) -> list[list[str]]:
    """The first ``per_product`` descriptions (by candidate) of each product, in ``product_ids`` order."""
    grouped: dict[str, list[str]] = {}
    for row in table.sort("product_id", "candidate").iter_rows(named=True):
        grouped.setdefault(row["product_id"], []).append(row["description"])
    extra = sorted(set(grouped) - set(product_ids))
    if extra:
        raise InputError(
            f"ads for products the control does not show, e.g. {extra[:3]}",
            file=file,
            column="product_id",
            expected="the same held-out products in every bucket",
        )
    out = []
    for product_id in product_ids:
        ads = grouped.get(product_id, [])
        if len(ads) < per_product:
            raise InputError(
                f"product {product_id!r} has {len(ads)} ad(s); online.ads_per_product={per_product} needs more "
                "(evaluate with preference.evaluate.samples_per_product >= online.ads_per_product)",
                file=file,
                column="product_id",
            )
        out.append(ads[:per_product])
    return out


def evaluation_epoch(path: Path) -> int | None:
    """The preference epoch an evaluation folder's metrics.json records (None for an ads table alone)."""
    metrics = path / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        epoch = json.loads(metrics.read_text()).get("epoch")
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise InputError(f"cannot read the evaluation's metrics ({err})", file=metrics) from err
    return None if epoch is None else int(epoch)


def load_buckets(
    sources: Mapping[str, Path], catalog: pl.DataFrame, sim: Any, per_product: int
) -> tuple[list[str], list[str], list[Bucket]]:
    """(product ids, categories, buckets) with each ad's oracle CTR and match; the first source: the control.

    The control's products define the held-out set; every other bucket must show the same products.
    """
    from caig.evaluate.match import oracle_judgements

    tables = {name: read_ads(path) for name, path in sources.items()}
    control_name = next(iter(sources))
    product_ids = sorted(set(tables[control_name].get_column("product_id").to_list()))
    titles = dict(catalog.select("product_id", "title").iter_rows())
    categories = dict(catalog.select("product_id", "category").iter_rows())
    unknown = [pid for pid in product_ids if pid not in categories]
    if unknown:
        raise InputError(
            f"products not in the catalog, e.g. {unknown[:3]}",
            file=ads_table_path(sources[control_name]),
            column="product_id",
        )
    layouts = {
        name: ads_by_product(tables[name], product_ids, per_product, ads_table_path(path))
        for name, path in sources.items()
    }
    flat_ids = [pid for layout in layouts.values() for pid, ads in zip(product_ids, layout) for _ in ads]
    flat_text = [text for layout in layouts.values() for ads in layout for text in ads]
    labels, ctr, _eye_catching = oracle_judgements(titles, flat_ids, flat_text, sim)
    shape = (len(product_ids), per_product)
    size = shape[0] * shape[1]
    buckets = []
    for i, (name, layout) in enumerate(layouts.items()):
        part = slice(i * size, (i + 1) * size)
        match = np.array([label == "available" for label in labels[part]]).reshape(shape)
        source = Path(sources[name])
        buckets.append(
            Bucket(name, source, np.asarray(ctr[part]).reshape(shape), match, layout, evaluation_epoch(source))
        )
    return product_ids, [categories[pid] for pid in product_ids], buckets


# ---------------------------------------------------------------------------------------------- experiment
def bucket_rng(seed: int, budget: int, name: str) -> np.random.Generator:
    """Traffic of one bucket at one budget: independent of which other buckets run, and in what order."""
    return np.random.default_rng([seed, ONLINE_STREAM, budget, zlib.crc32(name.encode())])


def comparison_rng(seed: int, budget: int, treatment: str, control: str, group: str) -> np.random.Generator:
    """Bootstrap resampling of one comparison."""
    keys = [zlib.crc32(text.encode()) for text in (treatment, control, group)]
    return np.random.default_rng([seed, ONLINE_STREAM + 1, budget, *keys])


def lift_record(lift: Lift) -> dict[str, float | None]:
    """A Lift in percent, NaN as null."""

    def plain(value: float) -> float | None:
        return None if np.isnan(value) else value

    def pct(value: float) -> float | None:
        return None if np.isnan(value) else 100 * value

    return {
        "lift_pct": pct(lift.lift),
        "low_pct": pct(lift.low),
        "high_pct": pct(lift.high),
        "ctr": plain(lift.treatment_ctr),
        "control_ctr": plain(lift.control_ctr),
    }


#: The lift of a comparison without a product that both buckets served.
NO_COMMON_PRODUCTS = Lift(*(float("nan"),) * 5)


def screening_counts(servable: np.ndarray) -> dict[str, Any]:
    """Per bucket: its ads, those screened out (count and share), and the products left without an ad."""
    mask = np.atleast_2d(np.asarray(servable, dtype=bool))
    out = int((~mask).sum())
    return {
        "ads": int(mask.size),
        "ads_screened_out": out,
        "ads_screened_out_share": out / mask.size if mask.size else None,
        "products_screened_out": int((~mask.any(axis=1)).sum()),
    }


def run_experiment(
    product_ids: Sequence[str],
    categories: Sequence[str],
    buckets: Sequence[Bucket],
    settings: OnlineSettings,
    seed: int,
    progress: Callable[[str], None] = lambda text: None,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Run the A/B test (buckets[0] is the control) at every budget of the ladder; (metrics, served rows).

    The largest budget is the main experiment: its lifts per category, expected CTRs and served ads are
    reported; the smaller budgets only feed the impressions-to-separate figures. With ``settings.screen`` a
    bucket serves only its matched ads; a product left with none gets no traffic in that bucket, and every
    comparison of two buckets is over the products both served (the paired bootstrap stays paired).
    """
    control, methods = buckets[0], list(buckets[1:])
    budgets = settings.budgets()
    servable = {b.name: settings.servable(b.match) for b in buckets}
    live = {name: mask.any(axis=1) for name, mask in servable.items()}
    groups = {ALL: np.ones(len(product_ids), dtype=bool)}
    for category in sorted(set(categories)):
        groups[category] = np.array([c == category for c in categories])

    def common(a: str, b: str, group: str = ALL) -> np.ndarray:
        """The products of ``group`` both buckets served."""
        return groups[group] & live[a] & live[b]

    def compare(treat: Served, base: Served, budget: int, a: str, b: str, group: str, interval: str) -> Lift:
        rows = common(a, b, group)
        if not rows.any():
            return NO_COMMON_PRODUCTS
        return lift_with_interval(
            treat.clicks.sum(1)[rows],
            treat.impressions.sum(1)[rows],
            base.clicks.sum(1)[rows],
            base.impressions.sum(1)[rows],
            interval=interval,
            level=settings.level,
            resamples=settings.resamples,
            rng=comparison_rng(seed, budget, a, b, group),
        )

    names = [b.name for b in buckets]
    pairs = [
        (a, b) for i, b in enumerate(names) for a in names[i + 1 :]
    ]  # (treatment, baseline), control first
    ladder: dict[tuple[str, str], list[Lift]] = {pair: [] for pair in pairs}
    served: dict[str, Served] = {}
    for budget in budgets:
        progress(f"budget {budget} impressions per product and bucket")
        served = {
            b.name: settings.serve(b.ctr, budget, bucket_rng(seed, budget, b.name), servable[b.name])
            for b in buckets
        }
        for a, b in pairs:
            ladder[(a, b)].append(compare(served[a], served[b], budget, a, b, ALL, settings.separation_interval))
    main = budgets[-1]

    def per_impression(total: float, impressions: int) -> float | None:
        return float(total / impressions) if impressions else None

    def bucket_summary(bucket: Bucket) -> dict[str, Any]:
        s = served[bucket.name]
        shown = int(s.impressions.sum())
        return {
            "source": str(bucket.source),
            "epoch": bucket.epoch,
            "impressions": shown,
            "clicks": int(s.clicks.sum()),
            "ctr": per_impression(s.clicks.sum(), shown),
            "expected_ctr": per_impression((s.impressions * bucket.ctr).sum(), shown),
            "mean_ad_ctr": float(bucket.ctr.mean()),
            "best_ad_ctr": float(bucket.ctr.max(axis=1).mean()),
            "match_rate": float(bucket.match.mean()),
            "served_match_rate": per_impression((s.impressions * bucket.match).sum(), shown),
            **screening_counts(servable[bucket.name]),
        }

    def separation(a: str, b: str) -> dict[str, Any]:
        needed = impressions_to_separate(budgets, ladder[(a, b)])
        products = int(common(a, b).sum())
        per_bucket = None if needed is None else needed * products
        return {
            "treatment": a,
            "baseline": b,
            "products": products,
            # at the main budget, with the main interval (a paired bootstrap: the same products, and within a
            # product the same bucket traffic, for both methods), overall and per category
            "lift": {
                group: {
                    **lift_record(compare(served[a], served[b], main, a, b, group, settings.interval)),
                    "products": int(common(a, b, group).sum()),
                }
                for group in groups
            },
            "impressions_per_product": needed,
            "impressions_per_bucket": per_bucket,
            "impressions_total": None if per_bucket is None else 2 * per_bucket,
            # separated at the smallest budget tried: the figure is an upper bound
            "at_smallest_budget": needed is not None and needed == budgets[0],
            "curve": [
                {
                    "impressions_per_product": budget,
                    "impressions_per_bucket": budget * products,
                    **lift_record(lift),
                }
                for budget, lift in zip(budgets, ladder[(a, b)])
            ],
        }

    control_served = served[control.name]
    method_metrics = {}
    for bucket in methods:
        s = served[bucket.name]
        by_group = {}
        for group in groups:
            rows = common(bucket.name, control.name, group)
            lift = compare(s, control_served, main, bucket.name, control.name, group, settings.interval)
            expected_t = per_impression(
                (s.impressions * bucket.ctr)[rows].sum(), int(s.impressions[rows].sum())
            )
            expected_c = per_impression(
                (control_served.impressions * control.ctr)[rows].sum(),
                int(control_served.impressions[rows].sum()),
            )
            by_group[group] = {
                **lift_record(lift),
                "expected_lift_pct": (
                    None if expected_t is None or not expected_c else 100 * (expected_t / expected_c - 1)
                ),
                "products": int(rows.sum()),
                # in the group but left out: all of its ads screened out in this bucket or the control
                "products_left_out": int((groups[group] & ~rows).sum()),
                "impressions": int(s.impressions[rows].sum()),
            }
        method_metrics[bucket.name] = {
            **bucket_summary(bucket),
            "lift": by_group,
            "separation": separation(bucket.name, control.name),
        }
    metrics = {
        "policy": settings.policy,
        "epsilon": settings.epsilon if settings.policy == "epsilon_greedy" else None,
        "prior": list(settings.prior) if settings.policy != "uniform" else None,
        "rounds": settings.rounds if settings.policy != "uniform" else None,
        "screen": settings.screen,
        "interval": settings.interval,
        "interval_method": settings.describe_interval(settings.interval),
        "separation_interval": settings.separation_interval,
        "separation_interval_method": settings.describe_interval(settings.separation_interval),
        "level": settings.level,
        "seed": seed,
        "products": len(product_ids),
        "ads_per_product": settings.ads_per_product,
        "impressions_per_product": main,
        # the budget of a bucket whose every product serves; a screened-out product gets none
        "impressions_per_bucket": main * len(product_ids),
        "impressions_total": int(sum(int(s.impressions.sum()) for s in served.values())),
        "budgets_per_product": budgets,
        "categories": {group: int(rows.sum()) for group, rows in groups.items() if group != ALL},
        "control": bucket_summary(control),
        "methods": method_metrics,
        "pairwise_separation": [separation(a, b) for a, b in pairs if b != control.name],
    }
    rows = []
    for bucket in buckets:
        s = served[bucket.name]
        for i, product_id in enumerate(product_ids):
            for j, text in enumerate(bucket.descriptions[i]):
                rows.append(
                    {
                        "bucket": bucket.name,
                        "product_id": product_id,
                        "category": categories[i],
                        "ad": j,
                        "description": text,
                        "true_ctr": float(bucket.ctr[i, j]),
                        "match": bool(bucket.match[i, j]),
                        "screened_out": not servable[bucket.name][i, j],
                        "impressions": int(s.impressions[i, j]),
                        "clicks": int(s.clicks[i, j]),
                    }
                )
    return metrics, pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- CLI
def parse_ads(text: str) -> tuple[str, Path]:
    """``METHOD=PATH`` -> (method, path); argparse reports a malformed value as a usage error."""
    match = _ADS_ARG.match(text)
    if match is None or match["name"] == CONTROL:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not METHOD=PATH with a lower-case method name other than {CONTROL!r} "
            "(e.g. pcpo=results/tiny/evaluate/match/pcpo/epoch3)"
        )
    return match["name"], Path(match["path"])


def read_catalog(path: Path) -> pl.DataFrame:
    """product_id, title, category of a native catalog (Parquet or CSV)."""
    try:
        table = pl.read_csv(path) if path.suffix.lower() == ".csv" else pl.read_parquet(path)
    except FileNotFoundError as err:
        raise InputError("catalog not found", file=path) from err
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the catalog ({err})", file=path) from err
    for column in ("product_id", "title", "category"):
        if column not in table.columns:
            raise InputError(
                "missing column", file=path, column=column, expected="product_id, title, category"
            )
    return table.select(pl.col("product_id").cast(pl.String), "title", "category")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        type=Path,
        required=True,
        help="the epoch-0 prompt model's evaluation folder (or ads table): the control bucket",
    )
    parser.add_argument(
        "--ads",
        action="append",
        type=parse_ads,
        required=True,
        metavar="METHOD=PATH",
        help="a method's evaluation folder (or ads table); repeat per method",
    )
    parser.add_argument(
        "--catalog", type=Path, required=True, help="the ingested catalog (categories, titles)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder: metrics.json, served.parquet")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    if "online" not in cfg:
        raise ConfigError("config group online is missing (add `- online: thompson` to config/caig.yaml)")
    settings = OnlineSettings.from_config(cfg.online)
    names = [name for name, _ in args.ads]
    if len(set(names)) != len(names):
        raise InputError(f"--ads names a method twice: {names}")
    sources = {CONTROL: args.control, **dict(args.ads)}
    product_ids, categories, buckets = load_buckets(
        sources, read_catalog(args.catalog), cfg.sim, settings.ads_per_product
    )
    metrics, served = run_experiment(product_ids, categories, buckets, settings, int(cfg.seed), log.info)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        write_json(metrics, tmp / "metrics.json")
        write_parquet(served, tmp / "served.parquet")
    if settings.screen:
        for name, data in {CONTROL: metrics["control"], **metrics["methods"]}.items():
            log.info(
                "%s: screened out %d of %d ads (%.1f%%); %d products left without an ad",
                name,
                data["ads_screened_out"],
                data["ads"],
                100 * data["ads_screened_out_share"],
                data["products_screened_out"],
            )
    for name, data in metrics["methods"].items():
        if data["lift"][ALL]["products"] == 0:
            log.warning("%s: no product has an ad left in both this bucket and the control: no lift", name)
            continue
        overall = {k: float("nan") if v is None else v for k, v in data["lift"][ALL].items()}
        need = data["separation"]["impressions_per_bucket"]
        log.info(
            "%s: CTR lift %+.2f%% [%+.2f, %+.2f] (expected %+.2f%%); separated from control %s",
            name,
            overall["lift_pct"],
            overall["low_pct"],
            overall["high_pct"],
            overall["expected_lift_pct"],
            "at no budget tried" if need is None else f"from {need:,} impressions per bucket",
        )
    log.info(
        "%d buckets x %d products x %d impressions -> %s",
        len(buckets),
        len(product_ids),
        metrics["impressions_per_product"],
        args.out,
    )
