"""``caig online-report --metrics FILE --tables DIR --figures DIR``: the online CTR-lift table from metrics.

Reads the ``metrics.json`` of ``caig online`` and the paper's values (``paper_values.yaml``, cited); writes:

- ``online_lift.md``: CTR lift (%) over the control by category, one row per method, ours with its interval
  beside the paper's value; whether the ads were screened for a match before serving; then the traffic
  (impressions served, CTRs, ads screened out) and the impressions needed to separate each method from the
  control and from each other; then CAIG (PCPO) against DPO head to head: PCPO's lift over DPO by category with
  the paired product-bootstrap interval;
- ``online_lift.csv``: one row per (method, category), every category of the world, numbers only;
- ``online_lift.tex``: the lift table and the head-to-head table (booktabs);
- ``online_separation.png``: the lift and its interval against impressions per bucket, one line per method.

Methods and category columns come from the ``online`` config (labels, order); a configured method without
metrics shows as "not run" with the paper's values.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from caig.errors import ConfigError, InputError
from caig.io import atomic_path, write_text
from caig.logs import get_logger
from caig.report.tables import frame_table, load_paper_values, read_json, to_latex, to_markdown

log = get_logger("online-report")

PAPER_KEY = "online_ctr_lift"
#: The metrics' lift over every held-out product (``caig.evaluate.online.ALL``).
OVERALL = "all"
NOT_RUN = "not run"
#: (treatment, baseline) pairs shown head to head by category: the paper's online claim that CAIG beats DPO.
HEAD_TO_HEAD: tuple[tuple[str, str], ...] = (("pcpo", "dpo"),)


def read_metrics(path: str | Path) -> dict[str, Any]:
    """The metrics.json of caig online; an InputError names the file and the missing key."""
    path = Path(path)
    data = read_json(path, "online metrics")
    for key in (
        "methods",
        "control",
        "policy",
        "screen",
        "interval_method",
        "impressions_per_bucket",
        "products",
    ):
        if key not in data:
            raise InputError(f"no {key!r} key", file=path, expected="metrics.json written by caig online")
    return data


def paper_values(path: str | Path | None = None) -> dict[str, Any]:
    """The paper's online CTR lifts: ``{citation, values: {method: {category: percent}}}``."""
    data, where = load_paper_values(path)
    section = data.get(PAPER_KEY)
    if (
        not isinstance(section, dict)
        or not isinstance(section.get("values"), dict)
        or not section.get("citation")
    ):
        raise InputError(
            f"no {PAPER_KEY} section with citation and values",
            file=where,
            expected=f"{PAPER_KEY}: {{citation: ..., values: {{method: {{category: percent}}}}}}",
        )
    return section


def _labels(node: Any, key: str) -> dict[str, str]:
    """A mapping node of the online config as an ordered dict of strings."""
    value = OmegaConf.to_container(node, resolve=True) if not isinstance(node, dict) else node
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"online.{key} must be a non-empty mapping")
    return {str(k): str(v) for k, v in value.items()}


def lift_rows(
    metrics: Mapping[str, Any],
    methods: Mapping[str, str],
    categories: Mapping[str, str],
    paper: Mapping[str, Any],
) -> pl.DataFrame:
    """Long table: one row per (configured method, category): our lift with interval, the paper's value.

    Categories are the configured ones (label -> world key) then the world's others (no paper value).
    A configured method without metrics gets its paper values and nulls.
    """
    world = [
        k for k in next(iter(metrics["methods"].values()), {}).get("lift", {}) if k not in categories.values()
    ]
    columns = [*categories.items(), *((key, key) for key in sorted(world))]
    rows = []
    for method, label in methods.items():
        ours = metrics["methods"].get(method, {}).get("lift", {})
        theirs = paper["values"].get(method, {})
        for category_label, key in columns:
            cell = ours.get(key, {})
            rows.append(
                {
                    "method": method,
                    "label": label,
                    "category": category_label,
                    "run": method in metrics["methods"],
                    "lift_pct": cell.get("lift_pct"),
                    "low_pct": cell.get("low_pct"),
                    "high_pct": cell.get("high_pct"),
                    "expected_lift_pct": cell.get("expected_lift_pct"),
                    "paper_lift_pct": theirs.get(key) if isinstance(theirs, dict) else None,
                    "products": cell.get("products"),
                    "products_left_out": cell.get("products_left_out"),
                    "impressions": cell.get("impressions"),
                }
            )
    schema = {
        "method": pl.String,
        "label": pl.String,
        "category": pl.String,
        "run": pl.Boolean,
        "lift_pct": pl.Float64,
        "low_pct": pl.Float64,
        "high_pct": pl.Float64,
        "expected_lift_pct": pl.Float64,
        "paper_lift_pct": pl.Float64,
        "products": pl.Int64,
        "products_left_out": pl.Int64,
        "impressions": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def _pct(value: float | None, sign: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.1f}" if sign else f"{value:.1f}"


def lift_cell(row: Mapping[str, Any]) -> str:
    """``+7.1 [+2.0, +12.3] (paper 7.4)``; a method that did not run shows only the paper's value."""
    paper = row["paper_lift_pct"]
    theirs = "" if paper is None else f" (paper {_pct(paper, sign=False)})"
    if not row["run"]:
        return NOT_RUN + theirs
    if row["lift_pct"] is None:
        return "–" + theirs
    return f"{_pct(row['lift_pct'])} [{_pct(row['low_pct'])}, {_pct(row['high_pct'])}]{theirs}"


def wide_table(rows: pl.DataFrame, categories: Sequence[str]) -> pl.DataFrame:
    """One row per method, one column per configured category; cells from ``lift_cell``."""
    out = []
    for label in dict.fromkeys(rows.get_column("label").to_list()):
        part = {r["category"]: r for r in rows.filter(pl.col("label") == label).iter_rows(named=True)}
        out.append({"Method": label, **{c: lift_cell(part[c]) for c in categories}})
    return pl.DataFrame(out, schema={"Method": pl.String, **{c: pl.String for c in categories}})


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _separation(entry: Mapping[str, Any]) -> str:
    """Impressions per bucket to separate; '<= N': the smallest budget tried did; 'not within N': none did."""
    if entry["impressions_per_bucket"] is None:
        largest = entry["curve"][-1]["impressions_per_bucket"] if entry.get("curve") else None
        return f"not within {_count(largest)}"
    prefix = "≤ " if entry.get("at_smallest_budget") else ""
    return prefix + _count(entry["impressions_per_bucket"])


def screening_text(metrics: Mapping[str, Any]) -> str:
    """One sentence: whether the ads were screened for a match before serving, and what that means."""
    if metrics["screen"]:
        return (
            "Screened: only ads the world's match judgement calls a fit were served (online.screen = true); a "
            "product left without an ad got no traffic in its bucket and is left out of that bucket's lifts."
        )
    return "Not screened: every generated ad was served, mismatched or not (online.screen = false)."


def _screened_out(data: Mapping[str, Any], screen: bool) -> str:
    """``3 of 8 (37.5%)``, or "not screened"."""
    if not screen:
        return "not screened"
    share = 100 * data["ads_screened_out_share"]
    return f"{_count(data['ads_screened_out'])} of {_count(data['ads'])} ({share:.1f}%)"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _rate_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.3f}"


def traffic_table(metrics: Mapping[str, Any], methods: Mapping[str, str]) -> pl.DataFrame:
    """Per bucket: the preference epoch of its ads, ads screened out, products left without an ad, impressions,
    clicks, observed and expected CTR, match rate of the ads and of the impressions, impressions to separate."""
    rows = []
    for name, label, data in [
        ("control", "control (epoch 0)", metrics["control"]),
        *((m, methods[m], metrics["methods"][m]) for m in methods if m in metrics["methods"]),
    ]:
        separation = data.get("separation")
        rows.append(
            {
                "Bucket": label,
                "Epoch": "–" if data.get("epoch") is None else str(data["epoch"]),
                "Ads screened out": _screened_out(data, bool(metrics["screen"])),
                "Products without an ad": _count(data["products_screened_out"]),
                "Products compared with control": (
                    _count(data["lift"][OVERALL]["products"]) if "lift" in data else "–"
                ),
                "Impressions": _count(data["impressions"]),
                "Clicks": _count(data["clicks"]),
                "CTR (%)": _rate_pct(data["ctr"]),
                "Expected CTR (%)": _rate_pct(data["expected_ctr"]),
                "Match rate": f"{data['match_rate']:.3f}",
                "Served match rate": _share(data["served_match_rate"]),
                "Impressions to separate from control": (
                    "–" if separation is None else _separation(separation)
                ),
            }
        )
    return pl.DataFrame(rows)


def _interval_cell(cell: Mapping[str, Any]) -> str:
    """``+3.1 [-0.5, +6.8]``; a dash without a lift (no product served by both buckets)."""
    if cell.get("lift_pct") is None:
        return "–"
    return f"{_pct(cell['lift_pct'])} [{_pct(cell.get('low_pct'))}, {_pct(cell.get('high_pct'))}]"


def pairwise_table(metrics: Mapping[str, Any], methods: Mapping[str, str]) -> pl.DataFrame:
    """Each pair of methods (the later-listed one as treatment): the treatment's lift over the baseline with
    its interval, and the impressions per bucket to separate them."""
    rows = [
        {
            "Treatment": methods.get(p["treatment"], p["treatment"]),
            "Baseline": methods.get(p["baseline"], p["baseline"]),
            "Lift (%)": _interval_cell(p["lift"][OVERALL]),
            "Impressions to separate": _separation(p),
        }
        for p in metrics.get("pairwise_separation", [])
    ]
    return pl.DataFrame(
        rows,
        schema={
            "Treatment": pl.String,
            "Baseline": pl.String,
            "Lift (%)": pl.String,
            "Impressions to separate": pl.String,
        },
    )


def head_to_head_table(
    metrics: Mapping[str, Any], methods: Mapping[str, str], categories: Mapping[str, str]
) -> pl.DataFrame:
    """One row per pair of ``HEAD_TO_HEAD`` that ran: the treatment's CTR lift (%) over the baseline per
    configured category (label -> world key), with the paired interval; empty when no such pair ran."""
    pairs = {(p["treatment"], p["baseline"]): p for p in metrics.get("pairwise_separation", [])}
    rows = [
        {
            "Comparison": f"{methods.get(a, a)} over {methods.get(b, b)}",
            **{label: _interval_cell(pairs[(a, b)]["lift"].get(key, {})) for label, key in categories.items()},
        }
        for a, b in HEAD_TO_HEAD
        if (a, b) in pairs
    ]
    return pl.DataFrame(rows, schema={"Comparison": pl.String, **{label: pl.String for label in categories}})


def markdown_report(
    metrics: Mapping[str, Any],
    rows: pl.DataFrame,
    methods: Mapping[str, str],
    categories: Mapping[str, str],
    citation: str,
) -> str:
    """The whole Markdown file: setup, lift table, traffic, pairwise separation, citation."""
    policy = {
        "thompson": "Thompson sampling on Beta posteriors",
        "epsilon_greedy": f"epsilon-greedy (epsilon = {metrics.get('epsilon')})",
        "uniform": "uniform traffic (no bandit)",
    }.get(metrics["policy"], metrics["policy"])
    updates = f" updated {metrics['rounds']} times" if metrics.get("rounds") else ""
    budgets = ", ".join(_count(b) for b in metrics.get("budgets_per_product", []))
    pairwise = pairwise_table(metrics, methods)
    head_to_head = head_to_head_table(metrics, methods, categories)
    parts = [
        "# Online CTR lift by category (simulated A/B test)\n",
        "CTR lift (%) of each method's generated ads over the epoch-0 prompt model's ads (control), ours with "
        "its interval, the paper's value in parentheses. Each method's ads are those of its last preference "
        "epoch (the Epoch column of the traffic table).\n",
        f"{metrics['products']} held-out products, {metrics.get('ads_per_product')} generated ads each per "
        f"bucket, chosen by {policy}{updates}; {_count(metrics['impressions_per_product'])} impressions per "
        f"product and bucket ({_count(metrics.get('impressions_total'))} in all); clicks drawn from the world's "
        f"true CTR of each ad. Intervals: {metrics['interval_method']}.\n",
        screening_text(metrics) + "\n",
        to_markdown(frame_table(wide_table(rows, list(categories)))),
        "## Traffic\n",
        "Match rate: the share of the generated ads the world's judgement calls a fit; served match rate: of "
        "the impressions. Expected CTR: the true CTR of the ads, weighted by the impressions the bandit gave "
        "them. Impressions to separate: per bucket, the smallest budget from which on the lift's interval "
        "excludes 0, times the products compared (budgets tried per product: "
        f"{budgets}; intervals: {metrics.get('separation_interval_method', metrics['interval_method'])}).\n",
        to_markdown(frame_table(traffic_table(metrics, methods))),
    ]
    if pairwise.height:
        parts += [
            "## Separating the methods\n",
            "Lift of the treatment's CTR over the baseline's at the main budget, over the products both "
            f"buckets served; interval: {metrics['interval_method']}.\n",
            to_markdown(frame_table(pairwise)),
        ]
    if head_to_head.height:
        parts += [
            "## CAIG (PCPO) against DPO\n",
            "CTR lift (%) of PCPO's ads over DPO's, by category, over the products both buckets served (the "
            f"same products in both, each with its bucket's traffic); interval: {metrics['interval_method']}. "
            "An interval that excludes 0 separates the two methods.\n",
            to_markdown(frame_table(head_to_head)),
        ]
    parts.append(f"Paper values: {citation}\n")
    return "\n".join(parts)


def plot_separation(metrics: Mapping[str, Any], methods: Mapping[str, str], path: Path) -> None:
    """Lift over control and its interval against impressions per bucket (log scale), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for method, label in methods.items():
        data = metrics["methods"].get(method)
        if data is None:
            continue
        curve = [c for c in data["separation"]["curve"] if c["lift_pct"] is not None]
        x = [c["impressions_per_bucket"] for c in curve]
        (line,) = ax.plot(x, [c["lift_pct"] for c in curve], marker="o", label=label)
        ax.fill_between(
            x,
            [c["low_pct"] for c in curve],
            [c["high_pct"] for c in curve],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    kind = {"delta": "delta method, clicks", "bootstrap": "bootstrap over products"}
    interval = metrics.get("separation_interval", metrics.get("interval"))
    ax.set_title(f"{metrics.get('level', 0.95):.0%} interval: {kind.get(interval, interval)}", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("impressions per bucket")
    ax.set_ylabel("CTR lift over control (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json of caig online")
    parser.add_argument("--tables", type=Path, required=True, help="folder for online_lift.{md,csv,tex}")
    parser.add_argument("--figures", type=Path, required=True, help="folder for online_separation.png")
    parser.add_argument(
        "--paper-values", type=Path, help="the paper's values (default: caig/report/paper_values.yaml)"
    )


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    if "online" not in cfg:
        raise ConfigError("config group online is missing (add `- online: thompson` to config/caig.yaml)")
    metrics = read_metrics(args.metrics)
    methods = _labels(cfg.online.methods, "methods")
    categories = _labels(cfg.online.categories, "categories")
    paper = paper_values(args.paper_values)
    unknown = sorted(set(metrics["methods"]) - set(methods))
    if unknown:
        raise ConfigError(
            f"{args.metrics} holds methods not in online.methods: {unknown} (add them with a label)"
        )
    rows = lift_rows(metrics, methods, categories, paper)
    wide = wide_table(rows, list(categories))
    write_text(
        markdown_report(metrics, rows, methods, categories, str(paper["citation"])),
        args.tables / "online_lift.md",
    )
    with atomic_path(args.tables / "online_lift.csv") as tmp:
        rows.write_csv(tmp)
    screened = "only ads matched to their product served" if metrics["screen"] else "ads served unscreened"
    caption = (
        "Online CTR lift (%) over the pre-trained prompt model by category; ours [95% interval] (paper); "
        f"{screened}."
    )
    latex = to_latex(frame_table(wide, caption=caption), "tab:online-lift")
    head_to_head = head_to_head_table(metrics, methods, categories)
    if head_to_head.height:
        latex += "\n" + to_latex(
            frame_table(
                head_to_head,
                caption=(
                    f"Online CTR lift (%) of CAIG (PCPO) over DPO; paired {metrics.get('level', 0.95):.0%} "
                    "interval."
                ),
            ),
            "tab:online-pcpo-dpo",
        )
    write_text(latex, args.tables / "online_lift.tex")
    plot_separation(metrics, methods, args.figures / "online_separation.png")
    log.info(
        "%d of %d methods ran -> %s", len(metrics["methods"]), len(methods), args.tables / "online_lift.md"
    )
