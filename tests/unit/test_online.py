"""The simulated online A/B test: bandits, lift intervals, the separation ladder, `caig online` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caig.cli import main as caig_main
from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.evaluate.online import (
    Bucket,
    Lift,
    OnlineSettings,
    ads_by_product,
    epsilon_greedy,
    impressions_to_separate,
    lift_with_interval,
    read_ads,
    round_sizes,
    run_experiment,
    thompson_sampling,
    uniform_allocation,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------- bandits
def test_round_sizes_split_the_budget_evenly():
    sizes = round_sizes(10, 4)
    assert sizes.tolist() == [3, 3, 2, 2]
    assert round_sizes(3, 5).tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError):
        round_sizes(10, 0)


def test_thompson_gives_a_clearly_better_arm_most_traffic():
    served = thompson_sampling(np.array([0.02, 0.06, 0.03]), 20_000, rng(), rounds=50)
    share = served.impressions / served.impressions.sum()
    assert served.impressions.sum() == 20_000
    assert share[1] > 0.85
    assert (served.clicks <= served.impressions).all()


def test_thompson_per_product_bandits_are_independent():
    ctr = np.array([[0.02, 0.08], [0.08, 0.02]])
    served = thompson_sampling(ctr, 10_000, rng(1), rounds=40)
    assert served.impressions.sum(axis=1).tolist() == [10_000, 10_000]
    assert served.impressions[0, 1] > 0.85 * 10_000 and served.impressions[1, 0] > 0.85 * 10_000


def test_thompson_is_deterministic_for_a_seed():
    ctr = np.array([[0.03, 0.04], [0.05, 0.05]])
    first = thompson_sampling(ctr, 3000, rng(7), rounds=10)
    again = thompson_sampling(ctr, 3000, rng(7), rounds=10)
    other = thompson_sampling(ctr, 3000, rng(8), rounds=10)
    assert np.array_equal(first.impressions, again.impressions) and np.array_equal(first.clicks, again.clicks)
    assert not np.array_equal(first.clicks, other.clicks)


def test_thompson_rejects_bad_input():
    with pytest.raises(ValueError, match="CTRs"):
        thompson_sampling(np.array([0.1, 1.5]), 10, rng())
    with pytest.raises(ValueError, match="prior"):
        thompson_sampling(np.array([0.1, 0.2]), 10, rng(), prior=(0.0, 1.0))


@settings(max_examples=30, deadline=None)
@given(
    ctr=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    impressions=st.integers(0, 400),
    rounds=st.integers(1, 12),
    policy=st.sampled_from(["thompson", "epsilon_greedy", "uniform"]),
)
def test_every_policy_serves_exactly_the_budget(ctr, impressions, rounds, policy):
    arms = np.array([ctr, ctr[::-1]])
    if policy == "thompson":
        served = thompson_sampling(arms, impressions, rng(), rounds=rounds)
    elif policy == "epsilon_greedy":
        served = epsilon_greedy(arms, impressions, rng(), rounds=rounds, epsilon=0.2)
    else:
        served = uniform_allocation(arms, impressions, rng())
    assert served.impressions.sum(axis=1).tolist() == [impressions, impressions]
    assert ((0 <= served.clicks) & (served.clicks <= served.impressions)).all()
    assert served.clicks[arms == 0.0].sum() == 0


@settings(max_examples=30, deadline=None)
@given(
    allowed=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=4),
    impressions=st.integers(1, 300),
    policy=st.sampled_from(["thompson", "epsilon_greedy", "uniform"]),
)
def test_screened_arms_are_never_served_and_the_rest_get_the_whole_budget(allowed, impressions, policy):
    mask = np.array(allowed)
    arms = np.full(mask.shape, 0.2)
    if policy == "thompson":
        served = thompson_sampling(arms, impressions, rng(), rounds=3, allowed=mask)
    elif policy == "epsilon_greedy":
        served = epsilon_greedy(arms, impressions, rng(), rounds=3, epsilon=0.5, allowed=mask)
    else:
        served = uniform_allocation(arms, impressions, rng(), allowed=mask)
    assert served.impressions[~mask].sum() == 0
    assert served.impressions.sum(axis=1).tolist() == [impressions if row.any() else 0 for row in mask]


def test_all_arms_allowed_serves_as_without_screening():
    ctr = np.array([[0.03, 0.04], [0.05, 0.02]])
    everything = np.ones(ctr.shape, dtype=bool)
    for serve in (
        lambda **kw: thompson_sampling(ctr, 3000, rng(4), rounds=10, **kw),
        lambda **kw: epsilon_greedy(ctr, 3000, rng(4), rounds=10, **kw),
        lambda **kw: uniform_allocation(ctr, 3000, rng(4), **kw),
    ):
        plain, masked = serve(), serve(allowed=everything)
        assert np.array_equal(plain.impressions, masked.impressions)
        assert np.array_equal(plain.clicks, masked.clicks)


def test_epsilon_greedy_exploits_and_explores():
    served = epsilon_greedy(np.array([0.02, 0.08]), 20_000, rng(2), rounds=40, epsilon=0.2)
    share = served.impressions / 20_000
    assert 0.85 < share[1] < 0.93  # 1 - epsilon + epsilon / 2 = 0.9, less the first rounds' learning
    assert share[0] > 0.07  # exploration never stops


def test_uniform_allocation_splits_evenly():
    served = uniform_allocation(np.array([0.01, 0.09]), 40_000, rng(3))
    assert abs(served.impressions[0] / 40_000 - 0.5) < 0.02


# ---------------------------------------------------------------------------------------------- lift
def test_lift_point_and_delta_interval_by_hand():
    lift = lift_with_interval([60], [1000], [50], [1000], interval="delta")
    assert lift.lift == pytest.approx(0.2)
    se = np.sqrt(0.94 / 60 + 0.95 / 50)
    assert lift.low == pytest.approx(np.exp(np.log(1.2) - 1.959964 * se) - 1, rel=1e-5)
    assert lift.high == pytest.approx(np.exp(np.log(1.2) + 1.959964 * se) - 1, rel=1e-5)
    assert lift.treatment_ctr == pytest.approx(0.06) and lift.control_ctr == pytest.approx(0.05)


def test_lift_sums_over_products_before_dividing():
    lift = lift_with_interval([10, 30], [100, 900], [20, 20], [500, 500], interval="delta")
    assert lift.lift == pytest.approx((40 / 1000) / (40 / 1000) - 1)


@pytest.mark.parametrize("interval", ["bootstrap", "delta"])
def test_identical_arms_have_lift_near_zero_and_an_interval_covering_it(interval):
    ctr = np.random.default_rng(4).uniform(0.02, 0.06, (80, 2))
    a = thompson_sampling(ctr, 4000, rng(10), rounds=20)
    b = thompson_sampling(ctr, 4000, rng(11), rounds=20)
    lift = lift_with_interval(
        a.clicks.sum(1),
        a.impressions.sum(1),
        b.clicks.sum(1),
        b.impressions.sum(1),
        interval=interval,
        rng=rng(12),
    )
    assert abs(lift.lift) < 0.05
    assert lift.low < 0 < lift.high and not lift.separated


def test_bootstrap_interval_separates_a_clear_lift_and_is_seeded():
    ctr = np.random.default_rng(5).uniform(0.02, 0.06, (80, 2))
    better = thompson_sampling(ctr * 1.3, 4000, rng(20), rounds=20)
    base = thompson_sampling(ctr, 4000, rng(21), rounds=20)
    args = (better.clicks.sum(1), better.impressions.sum(1), base.clicks.sum(1), base.impressions.sum(1))
    lift = lift_with_interval(*args, rng=rng(22))
    assert lift.separated and lift.low > 0.1
    assert lift == lift_with_interval(*args, rng=rng(22))
    assert lift.low < lift.lift < lift.high


def test_lift_without_clicks_is_nan_and_bad_input_raises():
    assert np.isnan(lift_with_interval([0], [100], [5], [100], interval="delta").lift)
    with pytest.raises(ValueError, match="rng"):
        lift_with_interval([1], [10], [1], [10], interval="bootstrap")
    with pytest.raises(ValueError, match="interval"):
        lift_with_interval([1], [10], [1], [10], interval="bayes")
    with pytest.raises(ValueError, match="one length"):
        lift_with_interval([1, 2], [10], [1], [10], interval="delta")


def _lift(low: float, high: float) -> Lift:
    return Lift((low + high) / 2, low, high, 0.05, 0.05)


def test_impressions_to_separate_needs_every_larger_budget_separated():
    yes, no = _lift(0.01, 0.2), _lift(-0.05, 0.1)
    budgets = [100, 200, 400, 800, 1600]
    assert impressions_to_separate(budgets, [no, yes, no, yes, yes]) == 800
    assert impressions_to_separate(budgets, [yes] * 5) == 100
    assert impressions_to_separate(budgets, [yes, yes, yes, yes, no]) is None
    assert (
        impressions_to_separate([100, 200], [no, _lift(-0.2, -0.01)]) == 200
    )  # a significant loss separates too
    with pytest.raises(ValueError, match="ascend"):
        impressions_to_separate([200, 100], [yes, yes])


# ---------------------------------------------------------------------------------------------- settings
def test_online_config_composes_and_checks_values():
    cfg = compose(["preset=paper"])
    online = OnlineSettings.from_config(cfg.online)
    assert online.policy == "thompson" and online.ads_per_product == 2
    assert online.budgets()[-1] == online.impressions_per_product
    assert len(online.budgets()) == online.separation_steps
    assert OnlineSettings.from_config(compose(["online=epsilon_greedy"]).online).policy == "epsilon_greedy"
    assert OnlineSettings.from_config(compose(["online=uniform"]).online).policy == "uniform"
    with pytest.raises(ConfigError, match="online.policy"):
        OnlineSettings.from_config(compose(["online.policy=ucb"]).online)
    with pytest.raises(ConfigError, match="online.level"):
        OnlineSettings.from_config(compose(["online.level=1.5"]).online)
    assert online.screen is True  # the paper's practice: only matched ads are served
    assert OnlineSettings.from_config(compose(["online.screen=false"]).online).screen is False
    with pytest.raises(ConfigError, match=r"online.screen = 'yes'.*true or false"):
        OnlineSettings.from_config(compose(["online.screen=yes"]).online)


# ---------------------------------------------------------------------------------------------- experiment
def _bucket(name: str, ctr: np.ndarray) -> Bucket:
    return Bucket(
        name,
        Path(name),
        ctr,
        np.ones(ctr.shape, dtype=bool),
        [[f"ad {j}" for j in range(ctr.shape[1])] for _ in range(ctr.shape[0])],
    )


def _settings(**changes) -> OnlineSettings:
    values = dict(
        policy="thompson",
        epsilon=0.1,
        prior=(1.0, 1.0),
        ads_per_product=2,
        impressions_per_product=4000,
        rounds=20,
        interval="bootstrap",
        level=0.95,
        resamples=500,
        separation_steps=4,
        separation_interval="delta",
        screen=True,
    )
    return OnlineSettings(**{**values, **changes})


def test_experiment_finds_the_better_method_and_not_the_copy():
    ctr = np.random.default_rng(6).uniform(0.02, 0.06, (60, 2))
    categories = ["beauty"] * 30 + ["home"] * 30
    buckets = [_bucket("control", ctr), _bucket("copy", ctr.copy()), _bucket("better", ctr * 1.25)]
    metrics, served = run_experiment([f"P{i}" for i in range(60)], categories, buckets, _settings(), seed=0)
    better, copy = metrics["methods"]["better"], metrics["methods"]["copy"]
    assert better["lift"]["all"]["low_pct"] > 10 and abs(better["lift"]["all"]["expected_lift_pct"] - 25) < 1
    assert copy["lift"]["all"]["low_pct"] < 0 < copy["lift"]["all"]["high_pct"]
    assert set(better["lift"]) == {"all", "beauty", "home"} and better["lift"]["home"]["products"] == 30
    assert better["separation"]["impressions_per_bucket"] is not None
    assert copy["separation"]["impressions_per_bucket"] is None
    assert metrics["budgets_per_product"] == [500, 1000, 2000, 4000]
    assert metrics["impressions_per_bucket"] == 60 * 4000 and served.height == 3 * 60 * 2
    pair = {(p["treatment"], p["baseline"]): p for p in metrics["pairwise_separation"]}
    assert pair[("better", "copy")]["impressions_per_bucket"] is not None
    # the lift between two methods at the main budget, with the paired interval, overall and per category
    head = pair[("better", "copy")]["lift"]
    assert set(head) == {"all", "beauty", "home"} and head["home"]["products"] == 30
    assert 10 < head["all"]["low_pct"] < head["all"]["lift_pct"] < head["all"]["high_pct"] < 40
    # the whole experiment is a function of its seed
    again, _ = run_experiment([f"P{i}" for i in range(60)], categories, buckets, _settings(), seed=0)
    assert json.dumps(again, sort_keys=True) == json.dumps(metrics, sort_keys=True)


# Hand-made ads of four products, two ads each, with known match labels (True: the background fits).
SCREEN_PRODUCTS = ["P0", "P1", "P2", "P3"]
SCREEN_CATEGORIES = ["home", "home", "beauty", "beauty"]
CONTROL_MATCH = np.array([[True, True], [True, False], [False, False], [True, True]])
METHOD_MATCH = np.array([[False, True], [True, True], [True, True], [False, False]])


def _screen_experiment(screen: bool) -> tuple[dict, pl.DataFrame]:
    ctr = np.array([[0.02, 0.04], [0.03, 0.05], [0.04, 0.02], [0.05, 0.03]])
    buckets = [
        Bucket("control", Path("control"), ctr, CONTROL_MATCH, [["c0", "c1"]] * 4),
        Bucket("method", Path("method"), ctr * 1.2, METHOD_MATCH, [["m0", "m1"]] * 4),
    ]
    return run_experiment(
        SCREEN_PRODUCTS,
        SCREEN_CATEGORIES,
        buckets,
        _settings(impressions_per_product=1000, separation_steps=2, screen=screen),
        seed=0,
    )


def test_screening_by_hand():
    metrics, served = _screen_experiment(screen=True)
    control, method = metrics["control"], metrics["methods"]["method"]
    # control: P1's ad 1 and both ads of P2 are mismatched -> 3 of 8 ads out, P2 left without an ad
    assert (control["ads"], control["ads_screened_out"], control["products_screened_out"]) == (8, 3, 1)
    assert control["ads_screened_out_share"] == 3 / 8
    # method: P0's ad 0 and both ads of P3 -> 3 of 8 out, P3 left without an ad
    assert (method["ads"], method["ads_screened_out"], method["products_screened_out"]) == (8, 3, 1)
    # only matched ads are served; each product with an ad left gets the whole budget
    assert served.filter(pl.col("screened_out"))["impressions"].sum() == 0
    assert served["screened_out"].to_list() == [not m for m in [*CONTROL_MATCH.ravel(), *METHOD_MATCH.ravel()]]
    by_product = served.group_by("bucket", "product_id").agg(pl.col("impressions").sum())
    shown = {(r["bucket"], r["product_id"]): r["impressions"] for r in by_product.iter_rows(named=True)}
    assert [shown[("control", p)] for p in SCREEN_PRODUCTS] == [1000, 1000, 0, 1000]
    assert [shown[("method", p)] for p in SCREEN_PRODUCTS] == [1000, 1000, 1000, 0]
    p1 = served.filter((pl.col("bucket") == "control") & (pl.col("product_id") == "P1"))
    assert p1["impressions"].to_list() == [1000, 0]  # its one matched ad takes all of P1's traffic
    assert control["impressions"] == method["impressions"] == 3000 and metrics["impressions_total"] == 6000
    assert control["served_match_rate"] == method["served_match_rate"] == 1.0
    assert control["match_rate"] == method["match_rate"] == 5 / 8  # of the generated ads, before screening
    # the paired comparison keeps the products both buckets served: P0 and P1 (home); none in beauty
    assert (method["lift"]["all"]["products"], method["lift"]["all"]["products_left_out"]) == (2, 2)
    assert method["lift"]["home"]["products"] == 2 and method["lift"]["home"]["lift_pct"] is not None
    beauty = method["lift"]["beauty"]
    assert (beauty["products"], beauty["products_left_out"], beauty["impressions"]) == (0, 2, 0)
    assert beauty["lift_pct"] is None and beauty["expected_lift_pct"] is None
    # the expected lift over P0 and P1: the true CTRs of the ads served there, weighted by their impressions
    home = served.filter(pl.col("product_id").is_in(["P0", "P1"]))
    expected = {
        b: (part["true_ctr"] * part["impressions"]).sum() / part["impressions"].sum()
        for b, part in home.partition_by("bucket", as_dict=True, include_key=True).items()
    }
    assert method["lift"]["all"]["expected_lift_pct"] == pytest.approx(
        100 * (expected[("method",)] / expected[("control",)] - 1)
    )
    assert method["separation"]["products"] == 2 and metrics["screen"] is True


def test_unscreened_run_serves_every_ad_and_compares_every_product():
    metrics, served = _screen_experiment(screen=False)
    method = metrics["methods"]["method"]
    assert metrics["screen"] is False and not served["screened_out"].any()
    assert (method["ads_screened_out"], method["products_screened_out"]) == (0, 0)
    assert (method["lift"]["all"]["products"], method["lift"]["all"]["products_left_out"]) == (4, 0)
    assert method["impressions"] == 4000 and metrics["impressions_total"] == 8000
    mismatched = served.filter((pl.col("bucket") == "method") & ~pl.col("match"))["impressions"].sum()
    assert mismatched > 0 and method["served_match_rate"] == pytest.approx(1 - mismatched / 4000)


# ---------------------------------------------------------------------------------------------- input
def test_read_ads_names_the_file_and_column(tmp_path):
    path = tmp_path / "ads.csv"
    pl.DataFrame({"product_id": ["a"], "candidate": [0]}).write_csv(path)
    with pytest.raises(InputError, match=r"ads\.csv.*'description'"):
        read_ads(path)
    pl.DataFrame({"product_id": ["a", "a"], "candidate": [0, 0], "description": ["x", "y"]}).write_csv(path)
    with pytest.raises(InputError, match="row 2"):
        read_ads(path)
    with pytest.raises(InputError, match="not found"):
        read_ads(tmp_path / "missing")


def test_ads_by_product_requires_enough_ads_and_the_same_products(tmp_path):
    table = pl.DataFrame(
        {"product_id": ["a", "a", "b"], "candidate": [1, 0, 0], "description": ["a1", "a0", "b0"]}
    )
    assert ads_by_product(table.filter(pl.col("product_id") == "a"), ["a"], 2, tmp_path) == [["a0", "a1"]]
    with pytest.raises(InputError, match="does not show"):
        ads_by_product(table, ["a"], 1, tmp_path)
    with pytest.raises(InputError, match="'b' has 1 ad"):
        ads_by_product(table, ["a", "b"], 2, tmp_path)
    assert ads_by_product(table, ["a", "b"], 1, tmp_path) == [["a0"], ["b0"]]


def test_a_buckets_epoch_is_its_evaluations(tmp_path):
    from caig.evaluate.online import evaluation_epoch

    (tmp_path / "metrics.json").write_text(json.dumps({"method": "dpo", "epoch": 5}))
    assert evaluation_epoch(tmp_path) == 5
    assert evaluation_epoch(tmp_path / "metrics.json") is None  # an ads table alone records none
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{")
    with pytest.raises(InputError, match="metrics"):
        evaluation_epoch(tmp_path / "bad")


def test_caig_online_end_to_end_on_a_small_world(tmp_path):
    from caig.sim.oracle import SCENE_FIT, Oracle
    from caig.sim.vocabulary import Background
    from caig.sim.world import make_world

    sim = [
        "sim.n_products=40",
        "online.impressions_per_product=2000",
        "online.separation_steps=3",
        "online.resamples=200",
    ]
    world = make_world(compose(sim).sim)
    products = world.products[:24]
    pl.DataFrame(
        {
            "product_id": [p.product_id for p in products],
            "title": [p.title for p in products],
            "category": [p.category for p in products],
        }
    ).write_parquet(tmp_path / "catalog.parquet")

    def write(name: str, describe) -> Path:
        rows = [
            {"product_id": p.product_id, "candidate": c, "description": describe(p, c)}
            for p in products
            for c in range(2)
        ]
        pl.DataFrame(rows).write_parquet(tmp_path / f"{name}.parquet")
        return tmp_path / f"{name}.parquet"

    plain = write("control", lambda p, c: Background(lighting=("spotlight", "candlelight")[c]).text())
    fitting = write(
        "fit", lambda p, c: Background(scene=sorted(SCENE_FIT[p.category][0])[c], lighting="spotlight").text()
    )

    def online(out: Path, *overrides: str) -> tuple[dict, pl.DataFrame]:
        command = ["online", "--control", str(plain), "--ads", f"fit={fitting}"]
        command += ["--catalog", str(tmp_path / "catalog.parquet"), "--out", str(out), *sim, *overrides]
        assert caig_main(command) == 0
        return json.loads((out / "metrics.json").read_text()), pl.read_parquet(out / "served.parquet")

    metrics, served = online(tmp_path / "online", "online.screen=false")
    oracle = Oracle(world)
    for row in served.head(6).iter_rows(named=True):
        assert row["true_ctr"] == pytest.approx(oracle.ctr(row["product_id"], row["description"]))
    truth = served.group_by("bucket").agg(pl.col("true_ctr").mean()).sort("bucket")["true_ctr"].to_list()
    fit = metrics["methods"]["fit"]
    assert fit["lift"]["all"]["expected_lift_pct"] > 0 and (truth[1] > truth[0])  # bucket order: control, fit
    assert fit["impressions"] == 24 * 2000 and metrics["impressions_total"] == 2 * 24 * 2000
    assert sum(metrics["categories"].values()) == 24
    assert metrics["control"]["epoch"] is None and fit["epoch"] is None  # ads tables: no evaluation's epoch

    # screened (the default): an ad is served only when the world's judgement calls it a match
    metrics, served = online(tmp_path / "screened")
    fits = [oracle.judge(r["product_id"], r["description"]).match for r in served.iter_rows(named=True)]
    assert served["match"].to_list() == fits and served["screened_out"].to_list() == [not f for f in fits]
    assert served.filter(pl.col("screened_out"))["impressions"].sum() == 0
    for name, data in (("control", metrics["control"]), ("fit", metrics["methods"]["fit"])):
        mine = served.filter(pl.col("bucket") == name)
        assert data["ads_screened_out"] == mine["screened_out"].sum()
        left_out = mine.group_by("product_id").agg(pl.col("screened_out").all())["screened_out"].sum()
        assert data["products_screened_out"] == left_out
        assert data["impressions"] == (24 - left_out) * 2000


def test_caig_online_refuses_a_method_named_twice(tmp_path, capsys):
    code = caig_main(
        [
            "online",
            "--control",
            str(tmp_path),
            "--ads",
            f"a={tmp_path}",
            "--ads",
            f"a={tmp_path}",
            "--catalog",
            str(tmp_path / "c.parquet"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "twice" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- report
def test_paper_values_hold_the_online_table():
    from caig.report.online import paper_values

    paper = paper_values()
    assert "2502.06823" in paper["citation"]
    assert paper["values"]["pcpo"] == {
        "all": 7.4,
        "beauty": 9.5,
        "fashion": 7.6,
        "home": 7.8,
        "digital": 3.2,
        "computers_appliances": 5.4,
    }
    assert set(paper["values"]) == set(compose([]).online.methods)


def test_online_report_from_metrics_only(tmp_path):
    ctr = np.random.default_rng(9).uniform(0.02, 0.06, (40, 2))
    categories = ["beauty"] * 20 + ["food"] * 20
    buckets = [_bucket("control", ctr), _bucket("dpo", ctr * 0.97), _bucket("pcpo", ctr * 1.3)]
    metrics, _ = run_experiment([f"P{i}" for i in range(40)], categories, buckets, _settings(), seed=3)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    code = caig_main(
        [
            "online-report",
            "--metrics",
            str(tmp_path / "metrics.json"),
            "--tables",
            str(tmp_path / "tables"),
            "--figures",
            str(tmp_path / "figures"),
        ]
    )
    assert code == 0
    text = (tmp_path / "tables" / "online_lift.md").read_text()
    overall = metrics["methods"]["pcpo"]["lift"]["all"]
    cell = f"{overall['lift_pct']:+.1f} [{overall['low_pct']:+.1f}, {overall['high_pct']:+.1f}] (paper 7.4)"
    assert f"| CAIG (PCPO) | {cell} |" in text
    assert "| VAM-RM | not run (paper 3.9) |" in text  # configured but not run: the paper's value alone
    assert "(paper 4.8)" in text and "Thompson sampling" in text
    rows = pl.read_csv(tmp_path / "tables" / "online_lift.csv")
    assert rows.height == 4 * 7  # 4 methods x (6 table columns + the world's other category, food)
    pcpo = rows.filter((pl.col("method") == "pcpo") & (pl.col("category") == "Beauty")).row(0, named=True)
    assert pcpo["lift_pct"] == pytest.approx(metrics["methods"]["pcpo"]["lift"]["beauty"]["lift_pct"])
    assert pcpo["paper_lift_pct"] == 9.5
    assert rows.filter(pl.col("category") == "food")["paper_lift_pct"].null_count() == 4
    latex = (tmp_path / "tables" / "online_lift.tex").read_text()
    assert r"\toprule" in latex and r"Computers \& appliances" in latex and "tab:online-lift" in latex
    head = next(p for p in metrics["pairwise_separation"] if (p["treatment"], p["baseline"]) == ("pcpo", "dpo"))
    beauty = head["lift"]["beauty"]
    assert "## CAIG (PCPO) against DPO" in text and "tab:online-pcpo-dpo" in latex
    assert f"| CAIG (PCPO) over DPO | {head['lift']['all']['lift_pct']:+.1f} [" in text
    assert f"{beauty['lift_pct']:+.1f} [{beauty['low_pct']:+.1f}, {beauty['high_pct']:+.1f}]" in text
    assert head["lift"]["all"]["low_pct"] > 0  # PCPO's ads are 1.3 / 0.97 as good as DPO's
    assert (tmp_path / "figures" / "online_separation.png").stat().st_size > 10_000


def test_identical_methods_have_no_lift_between_them_and_a_constant_ratio_gives_that_lift():
    ctr = np.random.default_rng(4).uniform(0.02, 0.06, (30, 2))
    # uniform traffic: every ad of a product gets the same impressions in both buckets, so a bucket whose every
    # ad has twice the CTR doubles the clicks up to click noise; the same CTRs give the same expectation
    settings = _settings(policy="uniform", impressions_per_product=200_000, separation_steps=1)
    buckets = [_bucket("control", ctr), _bucket("dpo", ctr.copy()), _bucket("same", ctr.copy()),
               _bucket("pcpo", 2 * ctr)]
    metrics, _ = run_experiment([f"P{i}" for i in range(30)], ["home"] * 30, buckets, settings, seed=1)
    pair = {(p["treatment"], p["baseline"]): p["lift"]["all"] for p in metrics["pairwise_separation"]}
    same = pair[("same", "dpo")]
    assert same["low_pct"] < 0 < same["high_pct"] and abs(same["lift_pct"]) < 2
    double = pair[("pcpo", "dpo")]
    assert double["lift_pct"] == pytest.approx(100, abs=3) and 95 < double["low_pct"] < double["high_pct"] < 105


@pytest.mark.parametrize("screen", [True, False])
def test_online_report_says_whether_the_ads_were_screened(tmp_path, screen):
    metrics, _ = _screen_experiment(screen)
    metrics["methods"] = {"pcpo": metrics["methods"]["method"]}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    command = ["online-report", "--metrics", str(tmp_path / "metrics.json")]
    assert caig_main([*command, "--tables", str(tmp_path), "--figures", str(tmp_path)]) == 0
    text = (tmp_path / "online_lift.md").read_text()
    latex = (tmp_path / "online_lift.tex").read_text()
    traffic = text.split("## Traffic")[1]
    if screen:
        assert "Screened: only ads the world's match judgement calls a fit were served" in text
        assert "| control (epoch 0) | – | 3 of 8 (37.5%) | 1 | – |" in traffic
        assert "| CAIG (PCPO) | – | 3 of 8 (37.5%) | 1 | 2 |" in traffic  # P0 and P1 compared
        assert "only ads matched to their product served" in latex
    else:
        assert "Not screened: every generated ad was served" in text
        assert "| control (epoch 0) | – | not screened | 0 | – |" in traffic
        assert "| CAIG (PCPO) | – | not screened | 0 | 4 |" in traffic
        assert "ads served unscreened" in latex
    rows = pl.read_csv(tmp_path / "online_lift.csv").filter(pl.col("method") == "pcpo")
    left_out = dict(zip(rows["category"], rows["products_left_out"]))
    assert left_out["All"] == (2 if screen else 0)


def test_online_report_rejects_metrics_of_unknown_methods(tmp_path, capsys):
    ctr = np.full((4, 2), 0.05)
    metrics, _ = run_experiment(
        ["a", "b", "c", "d"],
        ["home"] * 4,
        [_bucket("control", ctr), _bucket("mystery", ctr)],
        _settings(impressions_per_product=200, separation_steps=1),
        seed=0,
    )
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    code = caig_main(
        [
            "online-report",
            "--metrics",
            str(tmp_path / "metrics.json"),
            "--tables",
            str(tmp_path),
            "--figures",
            str(tmp_path),
        ]
    )
    assert code == 2 and "mystery" in capsys.readouterr().err


def test_caig_online_rejects_a_malformed_ads_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        caig_main(["online", "--control", "c", "--ads", "control=x", "--catalog", "c", "--out", "o"])
    assert exit_info.value.code == 2 and "METHOD=PATH" in capsys.readouterr().err
