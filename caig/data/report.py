"""``caig data-report --ingest DIR_OR_JSON --pairs DIR --out DIR``: what the data stage did, for a person.

Writes ``DIR/data.md`` (rows read / kept / quarantined per file and reason, creatives, pairs per split and
category, the thresholds) and ``DIR/ctr_diff.png`` (histogram of the relative CTR difference of the pairs,
one panel per split, with the split's D marked).

Inputs: ``ingest_report.json`` from ``caig ingest`` (its folder or the file itself), read by key name
(``catalog`` / ``log`` -> ``path``, ``rows_read``, ``rows_kept``, ``rows_quarantined``,
``quarantined_by_reason``, ``images``); keys it lacks show as "n/a" rather than failing, so older reports
still render. And the output folder of ``caig pairs`` (``summary.json``, ``train.parquet``,
``test.parquet``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.data.pairs import SPLITS
from caig.errors import InputError
from caig.io import atomic_path, write_text
from caig.logs import get_logger

log = get_logger("data-report")

STAGES = (
    ("products", "products"),
    ("creatives", "creatives"),
    ("creatives_min_impressions", "creatives with impressions >= E"),
    ("candidate_pairs", "candidate pairs (same product, both >= E)"),
    ("tied_pairs", "- equal CTR"),
    ("zero_ctr_pairs", "- lower CTR is zero"),
    ("below_min_rel_diff", "- relative difference < D"),
    ("above_max_rel_diff", "- relative difference > upper bound"),
    ("pairs", "pairs"),
    ("products_with_pairs", "products with pairs"),
    ("better_on_left", "pairs with the better creative on the left"),
)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; InputError naming the file when it is missing or not an object."""
    if not path.is_file():
        raise InputError(f"{what} not found", file=path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err}", file=path) from err
    if not isinstance(data, dict):
        raise InputError("not a JSON object", file=path, expected=f"the {what}")
    return data


def ingest_report_path(path: Path) -> Path:
    """``path`` itself if it is a file, else ``path/ingest_report.json``."""
    return path / "ingest_report.json" if path.is_dir() else path


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ingest_section(report: dict[str, Any]) -> str:
    """Rows read / kept / quarantined per input file, and quarantined rows per reason."""
    parts = {
        name: report.get(name) if isinstance(report.get(name), dict) else {} for name in ("catalog", "log")
    }
    rows = [
        [name, part.get("path"), part.get("rows_read"), part.get("rows_kept"), part.get("rows_quarantined")]
        for name, part in parts.items()
    ]
    text = "## Ingest\n\n" + _table(["file", "path", "rows read", "kept", "quarantined"], rows)
    reasons = sorted({r for part in parts.values() for r in (part.get("quarantined_by_reason") or {})})
    if reasons:
        by_reason = [
            [r, *((parts[n].get("quarantined_by_reason") or {}).get(r, 0) for n in parts)] for r in reasons
        ]
        text += "\n\nQuarantined rows by reason:\n\n" + _table(["reason", "catalog", "log"], by_reason)
    else:
        text += "\n\nNo rows were quarantined."
    images = {
        name: part.get("images") for name, part in parts.items() if isinstance(part.get("images"), dict)
    }
    if report.get("images_checked") and images:
        image_rows = [[n, i.get("checked"), i.get("missing"), i.get("unreadable")] for n, i in images.items()]
        text += "\n\nImages:\n\n" + _table(["file", "checked", "missing", "unreadable"], image_rows)
    return text + "\n"


def pairs_section(summary: dict[str, Any]) -> str:
    """Thresholds, counts per stage and split, and pairs per category."""
    thresholds = summary.get("thresholds", {})
    rules = {split: thresholds.get(split) or {} for split in SPLITS}
    rule_rows = [
        [
            split,
            ("> " if rule.get("strict_min_impressions") else "") + _cell(rule.get("min_impressions")),
            rule.get("min_rel_diff"),
            rule["max_rel_diff"] if rule.get("max_rel_diff") is not None else "none",
        ]
        for split, rule in rules.items()
    ]
    text = "## Reward-model pairs\n\n"
    fraction, seed = _cell(thresholds.get("test_fraction")), _cell(thresholds.get("seed"))
    text += (
        f"Products are split by a stable hash of their id (test fraction {fraction}, seed {seed}). "
        "A creative needs impressions >= E (> E where the table says so); two creatives of one product pair "
        "when (ctr_hi - ctr_lo) / ctr_lo >= D (and <= the upper bound, if any).\n\n"
    )
    text += _table(["split", "E (min impressions)", "D (min rel. diff.)", "upper bound"], rule_rows) + "\n\n"
    splits = summary.get("splits", {})
    text += (
        f"The log has {_cell(summary.get('log_rows'))} rows, {_cell(summary.get('creatives'))} creatives and "
        f"{_cell(summary.get('products'))} products.\n\n"
    )
    stage_rows = [[label, *((splits.get(s) or {}).get(key) for s in SPLITS)] for key, label in STAGES]
    text += _table(["stage", *SPLITS], stage_rows) + "\n\n"
    categories = sorted({c for s in SPLITS for c in (splits.get(s) or {}).get("per_category", {})})
    category_rows = [
        [c, *(((splits.get(s) or {}).get("per_category", {}).get(c) or {}).get("pairs", 0) for s in SPLITS)]
        for c in categories
    ]
    text += "Pairs per category:\n\n" + _table(["category", *SPLITS], category_rows) + "\n"
    return text


def plot_rel_diff(pairs_dir: Path, summary: dict[str, Any], out: Path) -> None:
    """Histogram of rel_diff per split on log-spaced bins, the split's D as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SPLITS), figsize=(10, 3.6), constrained_layout=True)
    for ax, split in zip(axes, SPLITS):
        path = pairs_dir / f"{split}.parquet"
        if not path.is_file():
            raise InputError("pairs file not found", file=path, expected="the output folder of `caig pairs`")
        values = pl.scan_parquet(path).select("rel_diff").collect()["rel_diff"].to_numpy()
        values = values[values > 0]
        d = ((summary.get("thresholds") or {}).get(split) or {}).get("min_rel_diff")
        if values.size:
            low, high = np.log10(values.min()), np.log10(values.max())
            ax.hist(
                values,
                bins=np.logspace(low, high + 1e-9, 40),
                color="tab:blue" if split == "train" else "tab:orange",
            )
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        if d:
            ax.axvline(d, color="black", linestyle="--", linewidth=1, label=f"D = {d:g}")
            ax.legend(loc="upper right")
        ax.set_title(f"{split}: {values.size:,} pairs")
        ax.set_xlabel("relative CTR difference (ctr_hi - ctr_lo) / ctr_lo")
        ax.set_ylabel("pairs")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def data_report(ingest: Path, pairs_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/data.md`` and ``out_dir/ctr_diff.png``; returns the Markdown path."""
    report = read_json(ingest_report_path(ingest), "ingest report (ingest_report.json of `caig ingest`)")
    summary = read_json(pairs_dir / "summary.json", "pairs summary (summary.json of `caig pairs`)")
    plot_rel_diff(pairs_dir, summary, out_dir / "ctr_diff.png")
    text = (
        "# Data stage\n\n"
        + ingest_section(report)
        + "\n"
        + pairs_section(summary)
        + "\n![Relative CTR difference of the pairs, per split](ctr_diff.png)\n"
    )
    return write_text(text, out_dir / "data.md")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ingest", required=True, type=Path, help="ingest output folder or its ingest_report.json"
    )
    parser.add_argument("--pairs", required=True, type=Path, help="output folder of `caig pairs`")
    parser.add_argument("--out", required=True, type=Path, help="folder for data.md and ctr_diff.png")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    path = data_report(args.ingest, args.pairs, args.out)
    log.info("wrote %s", path)
