"""Reward-model pairs: the rule at its edges, the product split, placement, the CLI, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from caig.config import compose
from caig.data.pairs import PAIR_SCHEMA, PairConfig, Thresholds, build_pairs, overrides, split_of
from caig.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[2]


def log_of(rows: list[tuple]) -> pl.LazyFrame:
    """A native click log from ``(product, creative, impressions, clicks[, date])`` tuples."""
    return pl.LazyFrame(
        {
            "product_id": [r[0] for r in rows],
            "creative_id": [r[1] for r in rows],
            "image": [f"img/{r[1]}.png" for r in rows],
            "date": [r[4] if len(r) > 4 else "2024-01-01" for r in rows],
            "impressions": [r[2] for r in rows],
            "clicks": [r[3] for r in rows],
        },
        schema_overrides={"impressions": pl.Int64, "clicks": pl.Int64},
    )


def catalog_of(rows: list[tuple], category: str = "shoes") -> pl.LazyFrame:
    products = sorted({r[0] for r in rows})
    return pl.LazyFrame({"product_id": products, "title": products, "category": [category] * len(products)})


def only(split: str, **rule: object) -> PairConfig:
    """A config that puts every product in ``split`` (test_fraction 0 or 1), with that split's rule."""
    cfg = PairConfig(test_fraction=1.0 if split == "test" else 0.0)
    return replace(cfg, **{split: Thresholds(**{**vars(getattr(cfg, split)), **rule})})


def pair_keys(frame: pl.DataFrame) -> set[tuple[str, str, str]]:
    """(product, better creative, worse creative) per pair."""
    keys = set()
    for row in frame.iter_rows(named=True):
        better, worse = ("left", "right") if row["label"] == "left" else ("right", "left")
        keys.add((row["product_id"], row[f"{better}_creative_id"], row[f"{worse}_creative_id"]))
    return keys


def test_impressions_at_e_are_kept_and_below_are_not():
    rows = [("p", "a", 50, 10), ("p", "b", 50, 5), ("p", "c", 49, 1)]
    sets = build_pairs(log_of(rows), catalog_of(rows), only("train", min_impressions=50, min_rel_diff=0.01))
    assert pair_keys(sets.train) == {("p", "a", "b")}
    train = sets.summary["splits"]["train"]
    assert (train["creatives"], train["creatives_min_impressions"], train["candidate_pairs"]) == (3, 2, 1)


@pytest.mark.parametrize("split, d", [("train", 0.01), ("test", 0.05), ("train", 0.3)])
def test_rel_diff_exactly_d_is_kept_and_just_below_is_not(split, d):
    lo = (10_000, 100)
    at_d = (10_000, round(100 * (1 + d)))  # rel diff == d exactly
    below = (1_000_000, round(10_000 * (1 + d)) - 1)  # rel diff == d - 1e-4
    rows = [("p", "lo", *lo), ("p", "at", *at_d), ("q", "lo2", *lo), ("q", "below", *below)]
    sets = build_pairs(log_of(rows), catalog_of(rows), only(split, min_impressions=1000, min_rel_diff=d))
    assert pair_keys(getattr(sets, split)) == {("p", "at", "lo")}
    assert sets.summary["splits"][split]["below_min_rel_diff"] == 1


def test_zero_ctr_never_pairs():
    rows = [("p", "a", 100, 0), ("p", "b", 100, 3), ("p", "c", 100, 0)]
    sets = build_pairs(log_of(rows), catalog_of(rows), only("train"))
    assert sets.train.height == 0
    train = sets.summary["splits"]["train"]
    # (a, c) is a tie at zero; (a, b) and (c, b) have ctr_lo == 0.
    assert (train["candidate_pairs"], train["tied_pairs"], train["zero_ctr_pairs"]) == (3, 1, 2)


def test_ties_never_pair_even_with_d_zero():
    rows = [("p", "a", 100, 1), ("p", "b", 200, 2), ("p", "c", 300, 4)]
    sets = build_pairs(log_of(rows), catalog_of(rows), only("train", min_rel_diff=0.0))
    assert pair_keys(sets.train) == {("p", "c", "a"), ("p", "c", "b")}
    assert sets.summary["splits"]["train"]["tied_pairs"] == 1


def test_one_creative_products_give_no_pairs():
    rows = [("p", "a", 100, 1), ("q", "b", 100, 9)]
    sets = build_pairs(log_of(rows), catalog_of(rows), only("train"))
    assert sets.train.height == 0 and sets.test.height == 0
    assert sets.summary["splits"]["train"]["products"] == 2
    assert sets.train.schema == PAIR_SCHEMA and sets.test.schema == PAIR_SCHEMA


def test_upper_bound_is_inclusive_and_off_by_default():
    rows = [("p", "lo", 100, 10), ("p", "at", 100, 15), ("p", "above", 100, 16)]
    capped = only("train", min_rel_diff=0.01, max_rel_diff=0.5)
    sets = build_pairs(log_of(rows), catalog_of(rows), capped)
    assert pair_keys(sets.train) == {("p", "at", "lo"), ("p", "above", "at")}
    assert sets.summary["splits"]["train"]["above_max_rel_diff"] == 1
    assert len(build_pairs(log_of(rows), catalog_of(rows), only("train")).train) == 3


# Test-split pairs at the rule's edges: per product, its worse and its better creative (impressions, clicks).
BOUNDARIES = {
    "at_e": ((1000, 100), (1000, 110)),  # both creatives exactly at E = 1000; gap 10%
    "above_e": ((1001, 100), (1001, 110)),  # one impression above E; gap 10%
    "at_d": ((2000, 200), (2000, 210)),  # gap exactly 5%
    "below_d": ((20_000, 2000), (20_000, 2099)),  # gap 4.95%
    "at_cap": ((2000, 100), (2000, 120)),  # gap exactly 20%
    "above_cap": ((20_000, 1000), (20_000, 1201)),  # gap 20.1%
}
BOUNDARY_ROWS = [
    (product, f"{product}-{side}", *counts)
    for product, creatives in BOUNDARIES.items()
    for side, counts in zip(("lo", "hi"), creatives)
]
AUTHORS_TEST_RULE = ["data.pairs.test.strict_min_impressions=true", "data.pairs.test.max_rel_diff=0.2"]


@pytest.mark.parametrize(
    "overrides, products, above_cap",
    [
        # the paper's text (default): impressions >= 1000, gap >= 5%, no cap
        ([], {"at_e", "above_e", "at_d", "at_cap", "above_cap"}, 0),
        # the authors' released script: impressions > 1000, 5% <= gap <= 20%
        (AUTHORS_TEST_RULE, {"above_e", "at_d", "at_cap"}, 1),
    ],
)
def test_test_pairs_at_exposure_gap_and_cap_boundaries(overrides, products, above_cap):
    cfg = replace(PairConfig.from_config(compose(overrides).data.pairs), test_fraction=1.0)
    sets = build_pairs(log_of(BOUNDARY_ROWS), catalog_of(BOUNDARY_ROWS), cfg)
    assert pair_keys(sets.test) == {(p, f"{p}-hi", f"{p}-lo") for p in products}
    test = sets.summary["splits"]["test"]
    assert test["creatives_min_impressions"] == (12 if not overrides else 10)
    assert (test["below_min_rel_diff"], test["above_max_rel_diff"]) == (1, above_cap)
    assert sets.summary["thresholds"]["test"]["strict_min_impressions"] is bool(overrides)


def test_default_rule_is_the_papers_text_and_the_authors_rule_changes_only_test():
    text = PairConfig.from_config(compose([]).data.pairs)
    assert text.train == Thresholds(50, 0.01) and text.test == Thresholds(1000, 0.05)
    authors = PairConfig.from_config(compose(AUTHORS_TEST_RULE).data.pairs)
    assert authors.test == Thresholds(1000, 0.05, max_rel_diff=0.2, strict_min_impressions=True)
    assert authors.train == text.train


def test_counts_are_summed_over_dates():
    rows = [
        ("p", "a", 30, 3, "2024-01-01"),
        ("p", "a", 30, 3, "2024-01-02"),  # 60 impressions in all: passes E = 50 only summed
        ("p", "b", 60, 1, "2024-01-01"),
    ]
    sets = build_pairs(log_of(rows), catalog_of(rows), only("train"))
    (pair,) = sets.train.iter_rows(named=True)
    better = pair["label"]
    assert pair[f"{better}_creative_id"] == "a"
    assert (pair[f"{better}_impressions"], pair[f"{better}_clicks"]) == (60, 6)
    assert pair["rel_diff"] == pytest.approx(5.0)
    assert sets.summary["log_rows"] == 3 and sets.summary["creatives"] == 2


def test_split_is_stable_across_subsets_order_and_type():
    ids = [f"prod-{i}" for i in range(2000)]
    full = dict(zip(ids, split_of(ids, 0.3, seed=7)))
    subset = ids[1500:] + ids[:100]
    assert dict(zip(subset, split_of(subset, 0.3, seed=7))) == {i: full[i] for i in subset}
    assert 0.25 < sum(s == "test" for s in full.values()) / len(ids) < 0.35
    assert list(split_of(pl.Series([12, 7]), 0.3, 3)) == list(split_of(["12", "7"], 0.3, 3))
    assert dict(zip(ids, split_of(ids, 0.3, seed=8))) != full
    # Raising the fraction only moves products into test.
    wider = dict(zip(ids, split_of(ids, 0.5, seed=7)))
    assert all(wider[i] == "test" for i in ids if full[i] == "test")


def test_split_of_known_values_do_not_drift():
    # Pinned outputs: if this changes, products move between the splits of existing studies.
    assert list(split_of(list("abcdefgh"), 0.5, 0)) == [
        "train",
        "test",
        "test",
        "train",
        "test",
        "test",
        "train",
        "test",
    ]
    assert list(split_of(list("abcdefgh"), 0.5, 1)) == [
        "train",
        "train",
        "train",
        "test",
        "train",
        "test",
        "train",
        "train",
    ]


def many_products_log(n_products: int = 60) -> list[tuple]:
    rows = []
    for p in range(n_products):
        for c in range(4):
            rows.append((f"p{p}", f"p{p}c{c}", 2000 + 10 * c, 20 + 7 * c + p % 5))
    return rows


def test_no_product_in_both_splits_and_adding_data_keeps_splits():
    rows = many_products_log()
    cfg = replace(PairConfig(), test_fraction=0.4)
    sets = build_pairs(log_of(rows), catalog_of(rows), cfg)
    train, test = set(sets.train["product_id"]), set(sets.test["product_id"])
    assert train and test and not train & test
    more = rows + [("new", "n1", 5000, 50), ("new", "n2", 5000, 90)]
    grown = build_pairs(log_of(more), catalog_of(more), cfg)
    assert train <= set(grown.train["product_id"]) and test <= set(grown.test["product_id"])


def test_placement_is_balanced_consistent_and_seeded():
    rows = many_products_log()
    cfg = replace(PairConfig(), test_fraction=0.0)
    first = build_pairs(log_of(rows), catalog_of(rows), cfg).train
    n = first.height
    assert n == 60 * 6
    assert (first["label"] == "left").sum() == n // 2
    assert ((first["left_ctr"] > first["right_ctr"]) == (first["label"] == "left")).all()
    assert (first["left_ctr"] == first["left_clicks"] / first["left_impressions"]).all()
    assert (first["right_image"] == "img/" + first["right_creative_id"] + ".png").all()
    assert first.equals(build_pairs(log_of(list(reversed(rows))), catalog_of(rows), cfg).train)
    other_seed = build_pairs(log_of(rows), catalog_of(rows), replace(cfg, seed=1)).train
    assert not other_seed["label"].equals(first["label"])
    assert pair_keys(other_seed) == pair_keys(first)


def test_summary_counts_per_category_and_histogram():
    rows = [("p", "a", 100, 10), ("p", "b", 100, 12), ("q", "c", 100, 10), ("q", "d", 100, 40)]
    catalog = pl.LazyFrame({"product_id": ["p", "q"], "category": ["bags", "shoes"]})
    summary = build_pairs(log_of(rows), catalog, only("train")).summary
    per_category = summary["splits"]["train"]["per_category"]
    assert per_category["bags"]["pairs"] == 1 and per_category["shoes"]["pairs"] == 1
    histogram = summary["splits"]["train"]["rel_diff_histogram"]
    assert sum(histogram["counts"]) == 2
    assert histogram["counts"][histogram["edges"].index(0.2)] == 1  # rel diff 0.2
    assert histogram["counts"][histogram["edges"].index(2.0)] == 1  # rel diff 3.0
    assert summary["thresholds"]["train"] == {
        "min_impressions": 50,
        "min_rel_diff": 0.01,
        "max_rel_diff": None,
        "strict_min_impressions": False,
    }


# ------------------------------------------------------------------------------------- bad input


def test_missing_column_names_file_and_column():
    frame = log_of([("p", "a", 10, 1)]).drop("clicks")
    with pytest.raises(InputError, match=r"log.parquet.*'clicks'.*missing column"):
        build_pairs(frame, catalog_of([("p",)]), PairConfig(), log_name="log.parquet")


def test_float_counts_are_refused():
    frame = log_of([("p", "a", 10, 1)]).with_columns(pl.col("impressions").cast(pl.Float64))
    with pytest.raises(InputError, match=r"'impressions'.*Float64.*integer"):
        build_pairs(frame, catalog_of([("p",)]), PairConfig())


@pytest.mark.parametrize(
    "bad, message",
    [
        (("p", "b", -1, 0), r"row 2, column 'impressions': negative count -1"),
        (("p", "b", 5, 6), r"row 2, column 'clicks': clicks 6 > impressions 5"),
        (("p", None, 5, 1), r"row 2, column 'creative_id': empty value"),
    ],
)
def test_invariant_violations_name_the_first_bad_row(bad, message):
    rows = [("p", "a", 10, 1), bad, ("p", "c", -5, 0)]
    with pytest.raises(InputError, match=message + r".*caig ingest"):
        build_pairs(log_of(rows), catalog_of([("p",)]), PairConfig(), log_name="L")


def test_null_image_is_named():
    frame = log_of([("p", "a", 10, 1), ("p", "b", 10, 2)]).with_columns(
        image=pl.when(pl.col("creative_id") == "b").then(None).otherwise(pl.col("image"))
    )
    with pytest.raises(InputError, match=r"row 2, column 'image': empty value"):
        build_pairs(frame, catalog_of([("p",)]), PairConfig())


def test_empty_log_gives_empty_outputs():
    empty = log_of([]).cast({c: pl.String for c in ("product_id", "creative_id", "image", "date")})
    sets = build_pairs(empty, catalog_of([("p",)]), PairConfig())
    assert sets.train.schema == PAIR_SCHEMA and sets.train.height == sets.test.height == 0
    assert sets.summary["log_rows"] == 0 and sets.summary["splits"]["test"]["candidate_pairs"] == 0


def test_csv_counts_that_are_not_integers_are_named(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "product_id,creative_id,image,date,impressions,clicks\n"
        "p,a,x.png,2024-01-01,10,1\np,b,y.png,2024-01-01,1e3,1\n"
    )
    from caig.data.ingest import read_table

    with pytest.raises(InputError, match=r"row 2, column 'impressions': '1e3' is not an integer"):
        build_pairs(read_table(path), catalog_of([("p",)]), PairConfig(), log_name=str(path))


def test_products_missing_from_catalog_are_refused():
    rows = [("p", "a", 10, 1), ("ghost", "g", 10, 1)]
    with pytest.raises(InputError, match=r"1 product\(s\) .* not in the catalog, e.g. 'ghost'"):
        build_pairs(log_of(rows), catalog_of([("p",)]), PairConfig())


def test_duplicate_catalog_products_are_refused():
    catalog = pl.LazyFrame({"product_id": ["p", "q", "p"], "category": ["a", "b", "c"]})
    with pytest.raises(InputError, match=r"row 3, column 'product_id': product 'p' is listed more than once"):
        build_pairs(log_of([("p", "a", 10, 1)]), catalog, PairConfig(), catalog_name="C")


def test_creative_under_two_products_is_refused():
    rows = [("p", "a", 10, 1), ("q", "a", 10, 1)]
    with pytest.raises(InputError, match=r"creative 'a' appears under products \['p', 'q'\]"):
        build_pairs(log_of(rows), catalog_of(rows), PairConfig())


def test_integer_ids_match_string_catalog():
    log = log_of([(7, 1, 100, 5), (7, 2, 100, 9)])
    sets = build_pairs(log, pl.LazyFrame({"product_id": ["7"], "category": ["c"]}), only("train"))
    assert pair_keys(sets.train) == {("7", "2", "1")}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"train": Thresholds(0, 0.01)}, "train.min_impressions"),
        ({"test": Thresholds(1000, -0.1)}, "test.min_rel_diff"),
        ({"train": Thresholds(50, 0.05, max_rel_diff=0.02)}, "train.max_rel_diff"),
        ({"test": Thresholds(1000, 0.05, max_rel_diff=-1.0)}, "test.max_rel_diff"),
        ({"test": Thresholds(1000, 0.05, strict_min_impressions=1)}, "test.strict_min_impressions"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"histogram_edges": (0.1, 0.05)}, "histogram_edges"),
    ],
)
def test_bad_config_names_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        PairConfig(**change)


def test_config_tree_defaults_and_options_as_overrides():
    defaults = OmegaConf.load(REPO / "config" / "data" / "default.yaml").pairs
    assert PairConfig.from_config(defaults) == PairConfig()
    args = type(
        "Args",
        (),
        {
            "train_min_impressions": 10,
            "train_min_rel_diff": None,
            "test_min_impressions": None,
            "test_min_rel_diff": 0.1,
            "train_max_rel_diff": None,
            "test_max_rel_diff": 0.3,
            "test_fraction": None,
            "seed": 3,
        },
    )()
    composed = PairConfig.from_config(compose(overrides(args)).data.pairs)
    assert (
        composed.train == Thresholds(10, 0.01)
        and composed.test == Thresholds(1000, 0.1, max_rel_diff=0.3)
        and composed.seed == 3
    )
    with pytest.raises(ConfigError, match="unknown keys"):
        PairConfig.from_config({**compose().data.pairs, "extra": 1})


# ------------------------------------------------------------------------------------------ CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "caig", "pairs", *args], capture_output=True, text=True, cwd=REPO
    )


def test_cli_end_to_end_on_csv(tmp_path):
    rows = many_products_log(20)
    log_of(rows).collect().write_csv(tmp_path / "log.csv")
    catalog_of(rows).collect().with_columns(image=pl.lit("p.png")).write_csv(tmp_path / "catalog.csv")
    out = tmp_path / "pairs"
    result = run_cli(
        "--log",
        str(tmp_path / "log.csv"),
        "--catalog",
        str(tmp_path / "catalog.csv"),
        "--out",
        str(out),
        "--test-fraction",
        "0.5",
        "--test-min-impressions",
        "2000",
        "data.pairs.seed=4",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["thresholds"]["test"]["min_impressions"] == 2000 and summary["thresholds"]["seed"] == 4
    train, test = pl.read_parquet(out / "train.parquet"), pl.read_parquet(out / "test.parquet")
    assert (
        train.height == summary["splits"]["train"]["pairs"]
        and test.height == summary["splits"]["test"]["pairs"]
    )
    assert train.height + test.height == 20 * 6
    assert summary["log_rows"] == len(rows) and summary["inputs"]["log"].endswith("log.csv")


def test_cli_bad_input_exits_2_with_the_row(tmp_path):
    (tmp_path / "log.csv").write_text(
        "product_id,creative_id,image,date,impressions,clicks\np,a,x.png,2024-01-01,3,4\n"
    )
    (tmp_path / "catalog.csv").write_text("product_id,title,category,image\np,t,c,p.png\n")
    result = run_cli(
        "--log",
        str(tmp_path / "log.csv"),
        "--catalog",
        str(tmp_path / "catalog.csv"),
        "--out",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2
    assert "log.csv, row 1, column 'clicks': clicks 4 > impressions 3" in result.stderr
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------- against a brute force


def reference_pairs(rows: list[tuple], cfg: PairConfig) -> dict[str, set[tuple[str, str, str]]]:
    """The rule written the slow, obvious way with exact fractions."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for product, creative, impressions, clicks in rows:
        totals[product, creative][0] += impressions
        totals[product, creative][1] += clicks
    by_product = defaultdict(list)
    for (product, creative), (impressions, clicks) in totals.items():
        by_product[product].append((creative, impressions, clicks))
    products = sorted(by_product)
    splits = dict(zip(products, split_of(products, cfg.test_fraction, cfg.seed)))
    out: dict[str, set[tuple[str, str, str]]] = {"train": set(), "test": set()}
    for product, creatives in by_product.items():
        rule = getattr(cfg, splits[product])
        kept = [
            c
            for c in creatives
            if (c[1] > rule.min_impressions if rule.strict_min_impressions else c[1] >= rule.min_impressions)
        ]
        for hi, hi_imp, hi_clk in kept:
            for lo, lo_imp, lo_clk in kept:
                ctr_hi, ctr_lo = Fraction(hi_clk, hi_imp), Fraction(lo_clk, lo_imp)
                if ctr_lo == 0 or ctr_hi <= ctr_lo:
                    continue
                rel = (ctr_hi - ctr_lo) / ctr_lo
                if rel >= Fraction(str(rule.min_rel_diff)) and (
                    rule.max_rel_diff is None or rel <= Fraction(str(rule.max_rel_diff))
                ):
                    out[splits[product]].add((product, hi, lo))
    return out


log_rows = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3", "p4"]),
        st.integers(0, 5),
        st.integers(1, 40),
        st.integers(0, 40),
    ).map(lambda r: (r[0], f"{r[0]}-c{r[1]}", r[2], min(r[3], r[2]))),
    min_size=1,
    max_size=30,
)
rel_bounds = st.sampled_from([0.0, 0.01, 0.05, 0.25, 0.5, 1.0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=log_rows,
    e_train=st.integers(1, 40),
    e_test=st.integers(1, 60),
    d_train=rel_bounds,
    d_test=rel_bounds,
    max_train=st.sampled_from([None, 0.2, 1.0, 2.0]),
    max_test=st.sampled_from([None, 0.2, 1.0, 2.0]),
    strict=st.tuples(st.booleans(), st.booleans()),
    test_fraction=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_pairs_match_brute_force(
    rows, e_train, e_test, d_train, d_test, max_train, max_test, strict, test_fraction
):
    def cap(bound: float | None, d: float) -> float | None:
        return bound if bound is None or bound >= d else None

    cfg = PairConfig(
        train=Thresholds(e_train, d_train, cap(max_train, d_train), strict[0]),
        test=Thresholds(e_test, d_test, cap(max_test, d_test), strict[1]),
        test_fraction=test_fraction,
    )
    sets = build_pairs(log_of(rows), catalog_of(rows), cfg)
    expected = reference_pairs(rows, cfg)
    assert pair_keys(sets.train) == expected["train"]
    assert pair_keys(sets.test) == expected["test"]
    for split in ("train", "test"):
        frame, counts = getattr(sets, split), sets.summary["splits"][split]
        assert abs((frame["label"] == "left").sum() - frame.height / 2) <= 1
        assert counts["candidate_pairs"] == (
            counts["tied_pairs"]
            + counts["zero_ctr_pairs"]
            + counts["below_min_rel_diff"]
            + counts["above_max_rel_diff"]
            + counts["pairs"]
        )
