from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from caig.cli import main
from caig.config import compose
from caig.sim.clicklog import generate_click_world
from caig.sim.oracle import Oracle
from caig.sim.render import render_ad
from caig.sim.vocabulary import SLOTS, encode_backgrounds, parse_background
from caig.sim.world import make_world

SCHEMAS = {
    "catalog.parquet": {"product_id": pl.String, "title": pl.String, "category": pl.String, "image": pl.String,
                        "price": pl.Float64, "rating": pl.Float64, "colors": pl.String, "tags": pl.String},
    "log.parquet": {"product_id": pl.String, "creative_id": pl.String, "image": pl.String, "date": pl.Date,
                    "impressions": pl.Int64, "clicks": pl.Int64},
    "creatives.parquet": {"creative_id": pl.String, "product_id": pl.String, "description": pl.String},
    "truth.parquet": {"creative_id": pl.String, "product_id": pl.String, "true_ctr": pl.Float64,
                      "match": pl.Boolean, "reason": pl.String},
    "reviewed_descriptions.parquet": {"product_id": pl.String, "description": pl.String, "fits": pl.Boolean,
                                      "image": pl.String},
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    # chunks of 50 creatives: the log is written in several parts
    generate_click_world(compose(["sim=small", "sim.chunk_creatives=50"]), out)
    return out


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    generate_click_world(compose(["sim=tiny"]), out, images=False)
    return out


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_schemas_and_relative_paths(small: Path) -> None:
    for name, schema in SCHEMAS.items():
        assert dict(pl.read_parquet(small / name).schema) == schema, name
    catalog = pl.read_parquet(small / "catalog.parquet")
    log = pl.read_parquet(small / "log.parquet")
    reviewed = pl.read_parquet(small / "reviewed_descriptions.parquet")
    for rel in [*catalog["image"].to_list(), *log["image"].unique().to_list(), *reviewed["image"].to_list()]:
        assert not Path(rel).is_absolute() and (small / rel).is_file()
    ad = Image.open(small / log["image"][0])
    assert ad.size == (64, 64) and ad.mode == "RGB"
    assert Image.open(small / catalog["image"][0]).mode == "RGBA"
    world = json.loads((small / "world.json").read_text())
    assert world["counts"]["log_rows"] == log.height and world["counts"]["products"] == catalog.height == 40
    assert world["seed"] == 0 and "scene" in world["vocabulary"]


def test_log_structure(small: Path) -> None:
    log = pl.read_parquet(small / "log.parquet")
    creatives = pl.read_parquet(small / "creatives.parquet")
    per_creative = log.group_by("creative_id").agg(pl.len(), pl.col("date").n_unique().alias("days"))
    assert per_creative["len"].unique().to_list() == [7] and per_creative["days"].unique().to_list() == [7]
    assert set(per_creative["creative_id"]) == set(creatives["creative_id"])
    assert (log["clicks"] <= log["impressions"]).all() and (log["clicks"] >= 0).all()
    counts = creatives.group_by("product_id").len()["len"]
    assert counts.min() >= 3 and counts.max() <= 6
    # distinct backgrounds per product
    assert creatives.select("product_id", "description").is_unique().all()


def test_two_runs_write_identical_files(small: Path, tmp_path: Path) -> None:
    generate_click_world(compose(["sim=small", "sim.chunk_creatives=50"]), tmp_path)
    assert _digests(tmp_path) == _digests(small)


def test_truth_matches_oracle_and_descriptions(small: Path) -> None:
    cfg = compose(["sim=small"])
    oracle = Oracle(make_world(cfg))
    truth = pl.read_parquet(small / "truth.parquet").join(pl.read_parquet(small / "creatives.parquet"),
                                                          on=["creative_id", "product_id"])
    index = oracle.world.index
    pi = np.array([index[p] for p in truth["product_id"]])
    codes = encode_backgrounds([parse_background(d) for d in truth["description"]])
    assert np.allclose(oracle.ctr_many(pi, codes), truth["true_ctr"].to_numpy())
    match, _ = oracle.judge_many(pi, codes)
    assert np.array_equal(match, truth["match"].to_numpy())


def test_reviewed_descriptions_are_the_annotators_judgement_of_each_ad(small: Path) -> None:
    truth = pl.read_parquet(small / "truth.parquet")
    creatives = pl.read_parquet(small / "creatives.parquet")
    reviewed = pl.read_parquet(small / "reviewed_descriptions.parquet")
    assert reviewed["fits"].to_list() == truth["match"].to_list()
    assert reviewed["description"].to_list() == creatives["description"].to_list()
    assert reviewed["image"].to_list() == [f"images/ads/{c}.png" for c in creatives["creative_id"]]
    assert 0 < reviewed["fits"].mean() < 1


def test_ads_are_rendered_from_written_cut_outs(small: Path) -> None:
    catalog = pl.read_parquet(small / "catalog.parquet")
    creative = pl.read_parquet(small / "creatives.parquet").row(0, named=True)
    cutout = Image.open(small / catalog.filter(pl.col("product_id") == creative["product_id"])["image"][0])
    ad = np.asarray(Image.open(small / f"images/ads/{creative['creative_id']}.png"))
    rerendered = np.asarray(render_ad(cutout, creative["description"], 64, seed=0))
    assert np.array_equal(ad, rerendered)


def test_tiny_world_has_the_designed_statistics(tiny_tables: Path) -> None:
    truth = pl.read_parquet(tiny_tables / "truth.parquet")
    totals = pl.read_parquet(tiny_tables / "log.parquet").group_by("creative_id").agg(
        pl.col("impressions").sum(), pl.col("clicks").sum())
    assert not (tiny_tables / "images").exists()
    # exposure (median 200/day): a few creatives under the train filter E=50 (measured 3), many over the test
    # filter E=1000
    assert (totals["impressions"] < 50).sum() >= 1
    assert (totals["impressions"] >= 1000).mean() > 0.3
    # every judgement reason occurs among the creatives; most creatives match (measured 0.72)
    assert set(truth["reason"]) == {"available", "scale", "scene", "color"}
    assert 0.6 < truth["match"].mean() < 0.85
    # relative CTR differences between creatives of a product: median in the 10-60% band (measured 0.34)
    pairs = truth.join(truth, on="product_id").filter(pl.col("creative_id") < pl.col("creative_id_right"))
    rel = (pairs["true_ctr"] - pairs["true_ctr_right"]).abs() / pairs.select(
        pl.min_horizontal("true_ctr", "true_ctr_right")).to_series()
    assert 0.1 < rel.median() < 0.6
    # eye-catching creatives: higher true CTR on average, yet more often mismatched
    oracle = Oracle(make_world(compose(["sim=tiny"])))
    creatives = pl.read_parquet(tiny_tables / "creatives.parquet").join(truth, on=["creative_id", "product_id"])
    codes = encode_backgrounds([parse_background(d) for d in creatives["description"]])
    eye = np.zeros(len(codes), dtype=bool)
    for i, slot in enumerate(SLOTS):
        eye |= oracle.is_eye_catching(slot)[codes[:, i]]
    ctr, match = creatives["true_ctr"].to_numpy(), creatives["match"].to_numpy()
    assert 0.15 < eye.mean() < 0.5
    assert ctr[eye].mean() > 1.15 * ctr[~eye].mean()
    assert match[eye].mean() < match[~eye].mean() - 0.15
    # observed CTR order agrees with the truth more often on well-exposed pairs
    observed = totals.join(truth, on="creative_id").with_columns(ctr=pl.col("clicks") / pl.col("impressions"))
    assert observed.select(pl.corr("ctr", "true_ctr")).item() > 0.7


def test_cli_writes_world_and_reports_bad_config(tmp_path: Path, capsys) -> None:
    assert main(["sim", "--out", str(tmp_path / "w"), "--no-images", "sim=small", "sim.n_products=5"]) == 0
    assert json.loads((tmp_path / "w" / "world.json").read_text())["counts"]["products"] == 5
    assert not (tmp_path / "w" / "images").exists()
    assert main(["sim", "--out", str(tmp_path / "bad"), "sim=small", "sim.creatives_per_product=[4,2]"]) == 2
    assert "sim.creatives_per_product" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "world.json").exists()
