"""``caig preference-report --run METHOD:EPOCH=DIR ... --tables DIR --figures DIR``: the preference stage's report.

Reads only the evaluation folders (``metrics.json``, ``ads.parquet``, ``ads/``) written by ``caig evaluate-match``
and writes:

- ``match_rate.md`` / ``.csv`` / ``.tex``: the match rate of every method over epochs (one row per method, one
  column per epoch, as the paper's figure, and the paper's values from ``paper_values.yaml``, cited), and per
  (method, epoch) the mismatch reasons, the mean oracle CTR of the ads and the RM win rate against epoch 0
  (Markdown and CSV);
- ``match_rate.png``: match rate (and mean oracle CTR) over epochs, one line per method, the paper's values as
  hollow markers;
- ``contact_sheet.png``: the same held-out products' ads at epoch 0 and at every epoch of each method, each
  framed green (the background fits) or red (with the mismatch reason).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont

from caig.errors import InputError
from caig.io import atomic_path, write_text
from caig.logs import get_logger
from caig.report.tables import Table, frame_table, load_paper_values, read_json, to_latex, to_markdown

log = get_logger("preference-report")

_RUN = re.compile(r"^(?P<method>[A-Za-z0-9_.-]+):(?P<epoch>\d+)=(?P<path>.+)$")
REASONS = ("scale", "scene", "color")
PAPER_KEY = "match_rate"
#: A paper value the text places between two others without giving a figure.
BETWEEN = "between"


@dataclass(frozen=True)
class EvaluationRun:
    """One (method, epoch) evaluation folder."""

    method: str
    epoch: int
    path: Path


def parse_run(text: str) -> EvaluationRun:
    """``METHOD:EPOCH=DIR`` -> EvaluationRun."""
    match = _RUN.match(text)
    if match is None:
        raise InputError(f"--run {text!r} is not METHOD:EPOCH=DIR", expected="e.g. pcpo:3=results/tiny/...")
    return EvaluationRun(match["method"], int(match["epoch"]), Path(match["path"]))


def read_metrics(run: EvaluationRun) -> dict[str, Any]:
    """The metrics.json of one evaluation folder."""
    path = run.path / "metrics.json"
    data = read_json(path, "evaluation metrics (a folder written by caig evaluate-match)")
    if "match_rate" not in data:
        raise InputError("no match_rate key", file=path)
    return data


def metrics_table(runs: Sequence[EvaluationRun]) -> pl.DataFrame:
    """One row per (method, epoch): match rate, mismatch shares, mean oracle CTR, eye-catching phrases per ad,
    RM win rate vs epoch 0."""
    rows = []
    for run in runs:
        data = read_metrics(run)
        shares = data.get("mismatch_shares") or {}
        rows.append(
            {
                "method": run.method,
                "epoch": run.epoch,
                "ads": data.get("ads"),
                "match_rate": data.get("match_rate"),
                **{f"{reason}_mismatch": shares.get(reason) for reason in REASONS},
                "mean_oracle_ctr": data.get("mean_oracle_ctr"),
                "eye_catching_per_ad": data.get("eye_catching_per_ad"),
                "rm_win_rate_vs_epoch0": data.get("rm_win_rate_vs_epoch0"),
            }
        )
    schema = {
        "method": pl.String,
        "epoch": pl.Int64,
        "ads": pl.Int64,
        "match_rate": pl.Float64,
        **{f"{reason}_mismatch": pl.Float64 for reason in REASONS},
        "mean_oracle_ctr": pl.Float64,
        "eye_catching_per_ad": pl.Float64,
        "rm_win_rate_vs_epoch0": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def method_order(table: pl.DataFrame) -> list[str]:
    """Methods in the order they were first given."""
    return list(dict.fromkeys(table.get_column("method").to_list()))


def pivot_match_rate(table: pl.DataFrame) -> pl.DataFrame:
    """Methods x epochs of the match rate."""
    epochs = sorted(set(table.get_column("epoch").to_list()))
    rows = []
    for method in method_order(table):
        values = dict(table.filter(pl.col("method") == method).select("epoch", "match_rate").iter_rows())
        rows.append({"method": method, **{f"epoch {e}": values.get(e) for e in epochs}})
    return pl.DataFrame(rows, schema={"method": pl.String, **{f"epoch {e}": pl.Float64 for e in epochs}})


def paper_values(path: str | Path | None = None) -> dict[str, Any]:
    """The paper's match rates: ``{citation, note, values: {method: {epoch: rate | "between"}}}``."""
    data, where = load_paper_values(path)
    section = data.get(PAPER_KEY)
    expected = f"{PAPER_KEY}: {{citation: ..., values: {{method: {{epoch: rate or {BETWEEN!r}}}}}}}"
    if not isinstance(section, dict) or not section.get("citation") or not isinstance(section.get("values"), dict):
        raise InputError(f"no {PAPER_KEY} section with citation and values", file=where, expected=expected)
    for method, epochs in section["values"].items():
        good = isinstance(epochs, dict) and all(
            isinstance(epoch, int) and (value == BETWEEN or isinstance(value, (int, float)) and 0 <= value <= 1)
            for epoch, value in epochs.items()
        )
        if not good:
            raise InputError(f"{PAPER_KEY}.values.{method} = {epochs!r} is not valid", file=where, expected=expected)
    return section


def paper_epochs(paper: Mapping[str, Any]) -> list[int]:
    """The epochs the paper reports a match rate for (0 and 5)."""
    return sorted({epoch for epochs in paper["values"].values() for epoch in epochs})


def paper_cell(paper: Mapping[str, Any], method: str) -> str | None:
    """A method's paper values at the paper's epochs, e.g. ``0.842 / 0.798``; a dash where the paper gives none,
    None for a method the paper does not report."""
    values = paper["values"].get(method)
    if values is None:
        return None

    def shown(value: float | str | None) -> str:
        return "–" if value is None else value if isinstance(value, str) else f"{value:.3f}"

    return " / ".join(shown(values.get(epoch)) for epoch in paper_epochs(paper))


def overview_table(table: pl.DataFrame, paper: Mapping[str, Any]) -> Table:
    """Methods x epochs of our match rate, then the paper's values at its epochs; the citation as a note."""
    pivot = pivot_match_rate(table)
    header = "paper (" + " / ".join(f"epoch {e}" for e in paper_epochs(paper)) + ")"
    cells = [paper_cell(paper, method) for method in pivot.get_column("method").to_list()]
    overview = frame_table(
        pivot.with_columns(pl.Series(header, cells, dtype=pl.String)),
        caption="Match rate of the generated ads over preference epochs.",
    )
    overview.notes = [f"Paper: {' '.join(str(paper['citation']).split())}"]
    if paper.get("note"):
        overview.notes.append(" ".join(str(paper["note"]).split()))
    return overview


def write_tables(table: pl.DataFrame, paper: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """match_rate.md / .csv / .tex in ``out_dir``."""
    overview = overview_table(table, paper)
    details = table.sort(["method", "epoch"], maintain_order=True)
    text = (
        "# Match rate over preference epochs\n\n"
        "Share of held-out ads whose background fits the product (the annotators' judgement; on the synthetic "
        "world the oracle's). Epoch 0 is the initial prompt model.\n\n"
        + to_markdown(overview)
        + "\n## Per method and epoch\n\n"
        "Mismatch shares by the first reason found; mean oracle CTR of the ads; eye-catching phrases per ad "
        "(they raise CTR for every product but are wrong for many); RM win rate: share of held-out ads the "
        "frozen reward model prefers to the same product's epoch-0 ad.\n\n"
        + to_markdown(frame_table(details, digits={"mean_oracle_ctr": 4}))
    )
    suffixes = {"markdown": "md", "csv": "csv", "latex": "tex"}
    paths = {kind: out_dir / f"match_rate.{suffix}" for kind, suffix in suffixes.items()}
    write_text(text, paths["markdown"])
    with atomic_path(paths["csv"]) as tmp:
        details.write_csv(tmp)
    write_text(to_latex(overview, "tab:match-rate"), paths["latex"])
    return paths


HOLLOW = {"linestyle": "none", "marker": "o", "markersize": 9, "markerfacecolor": "none", "markeredgewidth": 1.5}


def match_rate_figure(table: pl.DataFrame, paper: Mapping[str, Any]) -> Any:
    """Match rate and mean oracle CTR over epochs, one line per method; the paper's match rates of the same
    methods as hollow markers in the method's colour (a value the paper gives no figure for is not drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    has_ctr = table.get_column("mean_oracle_ctr").null_count() < table.height
    fig, axes = plt.subplots(1, 2 if has_ctr else 1, figsize=(10 if has_ctr else 5.5, 3.8), squeeze=False)
    panels = [("match_rate", "match rate")] + ([("mean_oracle_ctr", "mean oracle CTR")] if has_ctr else [])
    for ax, (column, label) in zip(axes[0], panels):
        for method in method_order(table):
            part = table.filter(pl.col("method") == method).sort("epoch").drop_nulls(column)
            (line,) = ax.plot(part["epoch"].to_list(), part[column].to_list(), marker="o", label=method)
            reported = {e: v for e, v in paper["values"].get(method, {}).items() if v != BETWEEN}
            if column == "match_rate" and reported:
                ax.plot(list(reported), list(reported.values()), color=line.get_color(), **HOLLOW)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if any(method in paper["values"] for method in method_order(table)):
        handles.append(Line2D([], [], color="0.4", **HOLLOW))
        labels.append("paper")
    axes[0][0].legend(handles, labels, fontsize=8)
    fig.tight_layout()
    return fig


def plot_match_rate(table: pl.DataFrame, paper: Mapping[str, Any], path: Path) -> None:
    """``match_rate_figure`` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = match_rate_figure(table, paper)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def contact_sheet(
    rows: Sequence[tuple[str, EvaluationRun]], path: Path, products: int = 8, scale: int = 2
) -> None:
    """Ads of the first ``products`` held-out products (first sample each), one row per (label, run), framed
    green when the background fits and red (with the reason) when it does not."""
    font = ImageFont.load_default()
    if not rows:
        raise InputError("no evaluation runs for the contact sheet")
    frames = [
        (label, run, pl.read_parquet(run.path / "ads.parquet").filter(pl.col("candidate") == 0))
        for label, run in rows
    ]
    ids = frames[0][2].get_column("product_id").to_list()[:products]
    if not ids:
        raise InputError("the evaluation holds no ads", file=frames[0][1].path / "ads.parquet")
    label_width, header = 150, 16
    tiled = []
    for label, run, ads in frames:
        by_id = {row["product_id"]: row for row in ads.iter_rows(named=True)}
        tiles = []
        for product_id in ids:
            row = by_id.get(product_id)
            if row is None:
                raise InputError(f"product {product_id!r} has no ad", file=run.path / "ads.parquet")
            image = Image.open(run.path / row["image"]).convert("RGB")
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
            verdict = row.get("label")
            colour = (
                (40, 160, 60) if verdict == "available" else (200, 40, 40) if verdict else (128, 128, 128)
            )
            framed = Image.new("RGB", (image.width + 6, image.height + 6 + header), (255, 255, 255))
            draw = ImageDraw.Draw(framed)
            draw.rectangle((0, 0, framed.width - 1, image.height + 5), fill=colour)
            framed.paste(image, (3, 3))
            draw.text((3, image.height + 7), verdict or "", fill=(0, 0, 0), font=font)
            tiles.append(framed)
        tiled.append((label, tiles))
    cell = tiled[0][1][0].size
    sheet = Image.new(
        "RGB", (label_width + cell[0] * len(ids), header + cell[1] * len(tiled)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for j, product_id in enumerate(ids):
        draw.text((label_width + j * cell[0] + 3, 2), product_id, fill=(0, 0, 0), font=font)
    for i, (label, tiles) in enumerate(tiled):
        y = header + i * cell[1]
        draw.multiline_text((4, y + 4), label, fill=(0, 0, 0), font=font)
        for j, tile in enumerate(tiles):
            sheet.paste(tile, (label_width + j * cell[0], y))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def sheet_runs(runs: Sequence[EvaluationRun]) -> list[tuple[str, EvaluationRun]]:
    """(row label, run) of the contact sheet: each epoch-0 folder once (labelled with every method that starts
    from it), then every later epoch of each method, in method order."""
    starts: dict[Path, list[EvaluationRun]] = {}
    for run in runs:
        if run.epoch == 0:
            starts.setdefault(run.path, []).append(run)
    methods = list(dict.fromkeys(run.method for run in runs))
    later = sorted(
        (run for run in runs if run.epoch > 0), key=lambda run: (methods.index(run.method), run.epoch)
    )
    rows = [("epoch 0 of\n" + "\n".join(r.method for r in group), group[0]) for group in starts.values()]
    return rows + [(f"{run.method}\n(epoch {run.epoch})", run) for run in later]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        type=parse_run,
        metavar="METHOD:EPOCH=DIR",
        help="an evaluation folder of caig evaluate-match (repeat for every method and epoch)",
    )
    parser.add_argument("--tables", type=Path, required=True, help="folder for match_rate.{md,csv,tex}")
    parser.add_argument(
        "--figures", type=Path, required=True, help="folder for match_rate.png, contact_sheet.png"
    )
    parser.add_argument(
        "--sheet-products", type=int, default=8, help="products (columns) on the contact sheet"
    )
    parser.add_argument(
        "--paper-values", type=Path, help="the paper's values (default: caig/report/paper_values.yaml)"
    )


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    table = metrics_table(args.run)
    paper = paper_values(args.paper_values)
    paths = write_tables(table, paper, args.tables)
    plot_match_rate(table, paper, args.figures / "match_rate.png")
    contact_sheet(sheet_runs(args.run), args.figures / "contact_sheet.png", args.sheet_products)
    log.info("%d evaluations -> %s, %s", table.height, paths["markdown"], args.figures)
