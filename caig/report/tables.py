"""A small table writer (Markdown, CSV, LaTeX booktabs) and the reward-model tables: ``caig reward-tables``.

    caig reward-tables --metrics a_base=reward/a_base/metrics.json ... --metrics vam=reward/vam/metrics.json \\
        [--ceiling reward/ceiling.json] --out tables/

writes ``reward_ablation.{md,csv,tex}`` (rows a-f of the paper's ablation, the paper's value beside ours,
the change from the row above, and the Bayes ceiling) and ``reward_comparison.{md,csv,tex}`` (the
baselines against the full reward model). Each shows two pair accuracies: the headline, the paper's Eq. 13
(each test pair in one order, argmax), and beside it both orders averaged (see ``caig.reward.eval``).
Everything comes from the metric files of ``caig reward-eval`` and ``caig pair-ceiling`` and from
``caig/report/paper_values.yaml``: nothing is recomputed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from omegaconf import DictConfig

from caig.cli import named_path
from caig.errors import InputError
from caig.io import write_text
from caig.logs import get_logger

log = get_logger("reward-tables")
BASELINE_KINDS = ("vam", "cg4ctr")
LLAVA_KINDS = ("generative", "classifier")
SYMMETRIC_KEYS = ("symmetric_accuracy", "symmetric_ci_low", "symmetric_ci_high")


# ---------------------------------------------------------------------------------------------- writer
@dataclass
class Column:
    """One column: its key in the records, its header, how a value is shown, its LaTeX alignment."""

    key: str
    header: str
    show: Callable[[Any], str] = str
    align: str = "l"


@dataclass
class Table:
    """Records (dicts of raw values) under columns; notes follow the table in Markdown and LaTeX.

    ``csv_columns`` (default: ``columns``) are the record keys the CSV holds, unformatted.
    """

    columns: list[Column]
    records: list[dict[str, Any]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    csv_columns: list[Column] | None = None
    missing: str = ""  # how a None value is shown in Markdown and LaTeX (the CSV leaves the field empty)

    def cells(self) -> list[list[str]]:
        return [
            [self.missing if r.get(c.key) is None else c.show(r.get(c.key)) for c in self.columns]
            for r in self.records
        ]


def frame_table(frame: pl.DataFrame, *, digits: Mapping[str, int] | None = None, caption: str = "") -> Table:
    """A Table of a frame's rows under its column names: floats to 3 decimals (``digits`` overrides per
    column), numbers right-aligned, a missing value as a dash."""
    digits = digits or {}

    def column(name: str, dtype: pl.DataType) -> Column:
        if dtype.is_float():
            places = digits.get(name, 3)
            return Column(name, name, lambda v: f"{v:.{places}f}", "r")
        return Column(name, name, str, "r" if dtype.is_numeric() else "l")

    return Table(
        [column(name, dtype) for name, dtype in frame.schema.items()],
        frame.to_dicts(),
        caption=caption,
        missing="–",
    )


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table (caption as a bold line above, notes below)."""
    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines.append("| " + " | ".join(_md_escape(c.header) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if c.align == "r" else ":---" for c in table.columns) + "|")
    lines += ["| " + " | ".join(_md_escape(cell) for cell in row) + " |" for row in table.cells()]
    if table.notes:
        lines += [""] + [f"{note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The raw records as CSV (keys as the header; None as an empty field, floats at full precision)."""
    columns = table.csv_columns or table.columns
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for record in table.records:
        writer.writerow(["" if record.get(c.key) is None else record[c.key] for c in columns])
    return out.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """Text with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table, label: str = "") -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``); notes as a footnotesize paragraph."""
    spec = "".join(c.align for c in table.columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if table.caption:
        lines.append(rf"\caption{{{latex_escape(table.caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(latex_escape(c.header) for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in table.cells()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape(" ".join(table.notes)) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(table: Table, stem: str | Path, *, label: str = "") -> list[Path]:
    """``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex``, each written atomically."""
    stem = Path(stem)
    return [
        write_text(to_markdown(table), stem.with_suffix(".md")),
        write_text(to_csv(table), stem.with_suffix(".csv")),
        write_text(to_latex(table, label), stem.with_suffix(".tex")),
    ]


# ---------------------------------------------------------------------------------------------- RM tables
def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def signed_points(value: float) -> str:
    return f"{100 * value:+.1f}"


def interval(bounds: Sequence[float]) -> str:
    return f"[{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def paper_number(value: float) -> str:
    return f"{value:.1f}"


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {what}: {err}", file=path, expected="a JSON object") from err
    if not isinstance(data, dict):
        raise InputError(f"{what} is not a JSON object", file=path)
    return data


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A ``caig reward-eval`` metrics file, checked for the keys the tables use."""
    data = read_json(path, "reward metrics")
    for key in ("variant", "kind", "accuracy", "ci_low", "ci_high", "pairs", *SYMMETRIC_KEYS):
        if key not in data:
            raise InputError(f"lacks {key!r}", file=path, expected="the metrics JSON of caig reward-eval")
    return data


def _accuracy_fields(m: Mapping[str, Any]) -> dict[str, Any]:
    """The record fields of both pair accuracies: the headline (one order) and both orders averaged."""
    return {
        "accuracy": m["accuracy"],
        "ci": (m["ci_low"], m["ci_high"]),
        "ci_low": m["ci_low"],
        "ci_high": m["ci_high"],
        "symmetric": m["symmetric_accuracy"],
        "symmetric_ci": (m["symmetric_ci_low"], m["symmetric_ci_high"]),
        "symmetric_ci_low": m["symmetric_ci_low"],
        "symmetric_ci_high": m["symmetric_ci_high"],
    }


def _accuracy_columns() -> list[Column]:
    return [Column("accuracy", "Pair acc. (%)", percent, "r"), Column("ci", "95% CI", interval, "r")]


def _symmetric_columns() -> list[Column]:
    return [
        Column("symmetric", "Both orders (%)", percent, "r"),
        Column("symmetric_ci", "95% CI", interval, "r"),
    ]


def load_paper_values(path: str | Path | None = None) -> tuple[dict[str, Any], str | Path]:
    """The parsed paper-values YAML (``caig/report/paper_values.yaml`` unless ``path``) and where it came from."""
    if path is None:
        text = resources.files("caig.report").joinpath("paper_values.yaml").read_text()
        where: str | Path = "caig/report/paper_values.yaml"
    else:
        where = Path(path)
        try:
            text = where.read_text()
        except OSError as err:
            raise InputError(f"cannot read the paper's values: {err}", file=path) from err
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise InputError("not a mapping of sections", file=where, expected="caig/report/paper_values.yaml")
    return data, where


def paper_values(path: str | Path | None = None) -> dict[str, Any]:
    """The paper's numbers for the reward-model tables."""
    data, where = load_paper_values(path)
    for section in ("reward_ablation", "reward_comparison"):
        if not isinstance(data.get(section), dict):
            raise InputError(
                f"lacks the section {section!r}", file=where, expected="caig/report/paper_values.yaml"
            )
    return data


def _truth_accuracy(ceiling: Mapping[str, Any] | None, name: str) -> float | None:
    if ceiling is None:
        return None
    entry = ceiling.get("models_vs_truth", {}).get(name)
    return None if entry is None else float(entry["accuracy"])


def _ceiling_record(ceiling: Mapping[str, Any], label: str) -> dict[str, Any]:
    bayes = ceiling["bayes_ceiling"]
    return {
        "row": "",
        "model": label,
        "accuracy": bayes["accuracy"],
        "ci": (bayes["ci_low"], bayes["ci_high"]),
        "ci_low": bayes["ci_low"],
        "ci_high": bayes["ci_high"],
        "pairs": bayes["pairs"],
    }


def _context_notes(
    metrics: Mapping[str, Mapping[str, Any]], citation: str, ceiling: Mapping | None
) -> list[str]:
    first = next(iter(metrics.values()))
    notes = [
        f"Pair acc.: the paper's metric (Eq. 13) on {first['pairs']} test pairs of {first.get('groups', '?')} "
        "products, each pair shown once in the order the pairs file stores it (a seeded random side) and "
        "judged by the argmax of the model's two probabilities (an exact tie goes left). Both orders: each "
        "pair also scored swapped and the two probabilities averaged, so a position bias cannot decide (an "
        f"exact 0.5 counts half). {int(100 * first.get('confidence', 0.95))}% intervals from "
        f"{first.get('bootstrap_resamples', '?')} bootstrap resamples of whole products.",
    ]
    if ceiling is not None:
        notes.append(
            "vs truth: the one-order predictions judged by the synthetic world's true CTR order. Bayes "
            "ceiling: ranking by the true CTR, judged by the observed labels (no model can be expected to do "
            "better)."
        )
    notes.append(f"Paper: {' '.join(citation.split())}")
    return notes


def _csv_columns(columns: Sequence[Column]) -> list[Column]:
    """The shown columns without the formatted intervals, plus the raw bounds, the variant key and the counts."""
    keys = ("variant", "ci_low", "ci_high", "symmetric_ci_low", "symmetric_ci_high", "pairs")
    return [c for c in columns if c.key not in ("ci", "symmetric_ci")] + [Column(key, key) for key in keys]


def ablation_table(
    metrics: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any],
    ceiling: Mapping[str, Any] | None = None,
) -> Table:
    """Rows a-f in the given order: ours, interval, vs truth, the paper's value, change from the row above."""
    section = paper["reward_ablation"]
    values = section.get("values", {})
    records = []
    previous = None
    for index, (name, m) in enumerate(metrics.items()):
        records.append(
            {
                "row": f"({chr(ord('a') + index)})",
                "variant": name,
                "model": m.get("row", name),
                **_accuracy_fields(m),
                "vs_truth": _truth_accuracy(ceiling, name),
                "paper": values.get(name),
                "change": None if previous is None else m["accuracy"] - previous,
                "pairs": m["pairs"],
            }
        )
        previous = m["accuracy"]
    if ceiling is not None:
        records.append({**_ceiling_record(ceiling, "Bayes ceiling (true CTR)"), "variant": "bayes_ceiling"})
    columns = [
        Column("row", ""),
        Column("model", "Reward model"),
        *_accuracy_columns(),
        Column("change", "vs row above", signed_points, "r"),
    ]
    if ceiling is not None:
        columns.append(Column("vs_truth", "vs truth (%)", percent, "r"))
    columns += _symmetric_columns()
    columns.append(Column("paper", f"Paper ({section.get('dataset', 'paper')}, %)", paper_number, "r"))
    return Table(
        columns,
        records,
        caption="Reward-model ablation: pair accuracy (one order, the paper's metric; both orders)",
        notes=_context_notes(metrics, str(section.get("citation", "")), ceiling),
        csv_columns=_csv_columns(columns),
    )


def comparison_table(
    metrics: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any],
    ceiling: Mapping[str, Any] | None = None,
) -> Table:
    """The baselines and the full reward model: ours, interval, vs truth, the paper's commercial/public values."""
    section = paper["reward_comparison"]
    values = section.get("values", {})
    records = []
    for name, m in metrics.items():
        paper_row = values.get(name) or {}
        label = m.get("row", name)
        records.append(
            {
                "variant": name,
                "model": f"CAIG reward model ({label})" if m["kind"] in LLAVA_KINDS else label,
                **_accuracy_fields(m),
                "vs_truth": _truth_accuracy(ceiling, name),
                "paper_commercial": paper_row.get("commercial"),
                "paper_public": paper_row.get("public"),
                "pairs": m["pairs"],
            }
        )
    if ceiling is not None:
        records.append({**_ceiling_record(ceiling, "Bayes ceiling (true CTR)"), "variant": "bayes_ceiling"})
    columns = [Column("model", "Model"), *_accuracy_columns()]
    if ceiling is not None:
        columns.append(Column("vs_truth", "vs truth (%)", percent, "r"))
    columns += [
        *_symmetric_columns(),
        Column("paper_commercial", "Paper, commercial (%)", paper_number, "r"),
        Column("paper_public", "Paper, public (%)", paper_number, "r"),
    ]
    notes = _context_notes(metrics, str(section.get("citation", "")), ceiling)
    if section.get("note"):
        notes.append(" ".join(str(section["note"]).split()))
    return Table(
        columns,
        records,
        caption="Reward model against the baselines: pair accuracy (one order, the paper's metric; both orders)",
        notes=notes,
        csv_columns=_csv_columns(columns),
    )


# ---------------------------------------------------------------------------------------------- command
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        type=named_path,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="reward-eval metrics of a variant or baseline; repeat it, ablation rows in order",
    )
    parser.add_argument("--ceiling", type=Path, help="caig pair-ceiling output (synthetic world)")
    parser.add_argument("--full", default="f_full", help="the variant the comparison table shows as CAIG")
    parser.add_argument("--paper-values", type=Path, help="default: caig/report/paper_values.yaml")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    metrics = {name: read_metrics(path) for name, path in args.metrics}
    ceiling = read_json(args.ceiling, "the pair ceiling") if args.ceiling else None
    if ceiling is not None and "bayes_ceiling" not in ceiling:
        raise InputError("lacks 'bayes_ceiling'", file=args.ceiling, expected="caig pair-ceiling output")
    paper = paper_values(args.paper_values)
    ablation = {n: m for n, m in metrics.items() if m["kind"] in LLAVA_KINDS}
    baselines = {n: m for n, m in metrics.items() if m["kind"] in BASELINE_KINDS}
    if not ablation:
        raise InputError(
            "no reward-model variant among --metrics", expected="metrics of caig reward-eval (a-f)"
        )
    if args.full not in ablation:
        raise InputError(
            f"--full {args.full!r} is not among the --metrics variants", expected=f"one of {list(ablation)}"
        )
    pairs = {m["pairs"] for m in metrics.values()}
    if len(pairs) > 1:
        raise InputError(
            f"the metric files count different test pairs {sorted(pairs)}", expected="one test set"
        )
    tables = {
        "reward_ablation": ablation_table(ablation, paper, ceiling),
        "reward_comparison": comparison_table({**baselines, args.full: ablation[args.full]}, paper, ceiling),
    }
    for stem, table in tables.items():
        write_table(table, args.out / stem, label=f"tab:{stem}")
    full = ablation[args.full]
    log.info(
        "%s: %.1f%% [%.1f, %.1f]%s -> %s",
        args.full,
        100 * full["accuracy"],
        100 * full["ci_low"],
        100 * full["ci_high"],
        "" if ceiling is None else f", Bayes ceiling {100 * ceiling['bayes_ceiling']['accuracy']:.1f}%",
        args.out,
    )
