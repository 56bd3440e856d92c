"""The judge audit against the world's truth: agreement with the true CTR, fit of y+ / y-, reward hacking."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.evaluate.judge_audit import audit_preferences, audit_table, parse_run
from caig.report.tables import to_markdown
from caig.sim.oracle import Oracle
from caig.sim.vocabulary import encode_backgrounds, parse_background
from caig.sim.world import make_world


@pytest.fixture(scope="module")
def world():
    sim = compose(["sim=tiny"]).sim
    made = make_world(sim)
    return sim, made, Oracle(made)


def fitting_and_misfitting(world, product_id: str) -> tuple[str, str]:
    """A description that fits the product and one that does not, found by asking the oracle."""
    _, made, oracle = world
    index = np.array([made.index[product_id]])
    fits, misfits = None, None
    for scene in ("a modern office desk", "a sandy beach", "a cosy living room", "a kitchen counter",
                  "a makeup vanity table", "a city street", "a forest path", "a studio backdrop"):
        for colour in ("soft white tones", "vivid red tones", "navy blue tones"):
            text = f"{scene}, {colour}, soft light"
            judged, _ = oracle.judge_many(index, encode_backgrounds([parse_background(text)]))
            if judged[0] and fits is None:
                fits = text
            if not judged[0] and misfits is None:
                misfits = text
    assert fits and misfits, f"no fitting and misfitting description found for {product_id}"
    return fits, misfits


def test_a_judge_choosing_the_misfit_is_counted_as_hacking(world):
    sim, made, _ = world
    product = made.products[0]
    fits, misfits = fitting_and_misfitting(world, product.product_id)
    titles = {product.product_id: product.title}
    hacked = pl.DataFrame({"product_id": [product.product_id] * 2, "chosen": [misfits] * 2, "rejected": [fits] * 2})
    audit = audit_preferences(hacked, titles, sim)
    assert audit["pairs"] == 2 and audit["one_fits"] == 2
    assert (audit["chosen_match"], audit["rejected_match"], audit["hacking"]) == (0.0, 1.0, 1.0)
    grounded = audit_preferences(hacked.rename({"chosen": "rejected", "rejected": "chosen"}), titles, sim)
    assert (grounded["chosen_match"], grounded["hacking"]) == (1.0, 0.0)
    # the perfect judge's choice does not depend on which side the run's judge picked
    assert audit["oracle_hacking"] == grounded["oracle_hacking"]
    assert audit["truth_agreement"] + grounded["truth_agreement"] == pytest.approx(1.0)


def test_identical_descriptions_agree_half_and_nothing_fits_one_sidedly(world):
    sim, made, _ = world
    product = made.products[1]
    same = pl.DataFrame({"product_id": [product.product_id], "chosen": ["a sandy beach"], "rejected": ["a sandy beach"]})
    audit = audit_preferences(same, {product.product_id: product.title}, sim)
    assert audit["truth_agreement"] == 0.5 and audit["one_fits"] == 0 and audit["hacking"] is None


def test_a_catalog_from_another_world_is_refused(world):
    sim, made, _ = world
    product = made.products[0]
    rows = pl.DataFrame({"product_id": [product.product_id], "chosen": ["a"], "rejected": ["b"]})
    with pytest.raises(ConfigError, match="not the synthetic world"):
        audit_preferences(rows, {product.product_id: "another title"}, sim)


def test_missing_column_and_bad_run_are_named(world):
    sim, _, _ = world
    with pytest.raises(InputError, match="rejected"):
        audit_preferences(pl.DataFrame({"product_id": ["P"], "chosen": ["a"]}), {}, sim, "x.parquet")
    assert parse_run("dpo:2=a/b.parquet")[:2] == ("dpo", 2)
    with pytest.raises(Exception, match="METHOD:EPOCH=PATH"):
        parse_run("dpo=a.parquet")


def test_table_shows_a_row_per_method_and_epoch():
    records = [{"method": "dpo", "epoch": 1, "pairs": 3, "truth_agreement": 0.5, "chosen_match": 0.1,
                "rejected_match": 0.2, "hacking": None, "oracle_hacking": 0.25, "eye_catching_gain": 0.5}]
    text = to_markdown(audit_table(records))
    assert "| dpo | 1 | 3 | 0.50 | 0.10 | 0.20 |  | 0.25 | +0.50 |" in text
