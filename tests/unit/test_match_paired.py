"""The match-rate report's product-bootstrap intervals: per-rate and paired (treatment minus baseline)."""

from __future__ import annotations

import polars as pl
import pytest

from caig.errors import InputError
from caig.report.preference import (
    EvaluationRun,
    match_rate_interval,
    paired_difference,
    paired_differences,
    labelled_ads,
    paired_table,
    product_matches,
)
from caig.report.tables import to_markdown


def _matches(matched: list[int], ads: int = 2, prefix: str = "P") -> pl.DataFrame:
    return pl.DataFrame(
        {"product_id": [f"{prefix}{i:02d}" for i in range(len(matched))], "ads": [ads] * len(matched),
         "matched": matched}
    )


def _folder(tmp_path, name: str, labels: dict[str, list[str]]):
    folder = tmp_path / name
    folder.mkdir()
    rows = [
        {"product_id": pid, "candidate": k, "label": label}
        for pid, per_product in labels.items()
        for k, label in enumerate(per_product)
    ]
    pl.DataFrame(rows).write_parquet(folder / "ads.parquet")
    return folder


def test_identical_methods_differ_by_zero_with_a_zero_width_interval():
    same = _matches([0, 1, 2, 1, 0, 2, 2, 1])
    found = paired_difference(same, same.clone())
    assert (found.value, found.low, found.high) == (0.0, 0.0, 0.0)


def test_a_constant_shift_gives_that_shift_on_every_resample():
    # every product: one more of its 2 ads fits under the treatment -> +0.5 however the products are drawn
    baseline = _matches([0, 1, 0, 1, 0, 1])
    treatment = _matches([1, 2, 1, 2, 1, 2])
    found = paired_difference(treatment, baseline)
    assert found.value == pytest.approx(0.5)
    assert found.low == pytest.approx(0.5) and found.high == pytest.approx(0.5)
    reverse = paired_difference(baseline, treatment)
    assert reverse.value == pytest.approx(-0.5) and reverse.high == pytest.approx(-0.5)


def test_the_paired_interval_is_narrower_than_the_products_spread():
    # products differ a lot (0 or 2 of 2 fit) but both methods agree on all but one: the pairing cancels the spread
    baseline = _matches([0, 2] * 20)
    treatment = _matches([1, 2] + [0, 2] * 19)
    found = paired_difference(treatment, baseline)
    assert found.value == pytest.approx(1 / 80)
    assert found.low == 0 and found.value < found.high < 3 / 80 + 1e-12
    alone = match_rate_interval(baseline)
    assert alone.value == 0.5 and alone.high - alone.low > 0.2


def test_the_match_rate_interval_of_hand_made_products():
    constant = match_rate_interval(_matches([1] * 10))
    assert (constant.value, constant.low, constant.high) == (0.5, 0.5, 0.5)
    spread = match_rate_interval(_matches([0, 2] * 50))
    assert spread.value == 0.5 and spread.low < 0.5 < spread.high
    assert spread.high - spread.low == pytest.approx(2 * 1.96 * 0.05, rel=0.2)  # sd of the mean: 0.5/sqrt(100)


def test_paired_difference_refuses_different_products():
    with pytest.raises(InputError, match="different held-out products"):
        paired_difference(_matches([1, 1]), _matches([1, 1], prefix="Q"))


def test_product_matches_and_the_paired_table_from_evaluation_folders(tmp_path):
    start = _folder(tmp_path, "start", {"P0": ["available", "scene"], "P1": ["scale", "scene"]})
    dpo = _folder(tmp_path, "dpo1", {"P1": ["scene", "scene"], "P0": ["scene", "scene"]})
    pcpo = _folder(tmp_path, "pcpo1", {"P0": ["available", "available"], "P1": ["available", "scene"]})
    ads = labelled_ads(EvaluationRun("pcpo", 1, pcpo))
    assert product_matches(ads).rows() == [("P0", 2, 2), ("P1", 2, 1)]
    assert product_matches(ads, samples=1).rows() == [("P0", 1, 1), ("P1", 1, 1)]
    runs = [
        EvaluationRun("dpo", 0, start), EvaluationRun("pcpo", 0, start),
        EvaluationRun("dpo", 1, dpo), EvaluationRun("pcpo", 1, pcpo), EvaluationRun("pcpo_vam_rm", 1, pcpo),
    ]
    paired = paired_differences(runs)
    assert paired.select("treatment", "baseline", "epoch", "products", "ads_per_product").rows() == [
        ("pcpo", "dpo", 0, 2, 2), ("pcpo", "dpo", 1, 2, 2)
    ]
    assert paired.row(0)[5:] == (0.0, 0.0, 0.0)
    assert paired.row(1)[5] == pytest.approx(0.75)  # 3 of 4 ads fit under PCPO, none under DPO
    text = to_markdown(paired_table(paired))
    assert "| comparison | epoch 0 | epoch 1 |" in text
    assert "| pcpo - dpo | +0.000 [+0.000, +0.000] | +0.750 [+0.500, +1.000] |" in text
    # an annotators' evaluation (no labels yet) has no per-product matches and no paired row
    unlabelled = tmp_path / "sheet"
    unlabelled.mkdir()
    pl.DataFrame({"product_id": ["P0"], "candidate": [0]}).write_parquet(unlabelled / "ads.parquet")
    assert labelled_ads(EvaluationRun("dpo", 2, unlabelled)) is None
    assert paired_differences([*runs, EvaluationRun("dpo", 2, unlabelled), EvaluationRun("pcpo", 2, pcpo)]).height == 2


def test_evaluations_with_more_ads_per_product_are_compared_on_the_ads_both_have(tmp_path):
    # one model evaluated on 3 ads per product (DPO) and on 2 (an ablation's epoch 0): ads 0 and 1 are the
    # same ads (same sampling seeds), so the difference is exactly 0 although DPO's third ads all fit
    three = _folder(
        tmp_path, "three", {"P0": ["scene", "available", "available"], "P1": ["scale", "scene", "available"]}
    )
    two = _folder(tmp_path, "two", {"P0": ["scene", "available"], "P1": ["scale", "scene"]})
    runs = [EvaluationRun("dpo", 0, three), EvaluationRun("pcpo_no_visual", 0, two)]
    paired = paired_differences(runs)
    assert paired.select("treatment", "ads_per_product", "difference", "low", "high").rows() == [
        ("pcpo_no_visual", 2, 0.0, 0.0, 0.0)
    ]
