"""``caig preference-report --run METHOD:EPOCH=DIR ... --tables DIR --figures DIR``: the preference stage's report.

Reads only the evaluation folders (``metrics.json``, ``ads.parquet``, ``ads/``) written by ``caig evaluate-match``
and writes:

- ``match_rate.md`` / ``.csv`` / ``.tex``: the match rate of every method over epochs (one row per method, one
  column per epoch, as the paper's figure, and the paper's values from ``paper_values.yaml``, cited), and per
  (method, epoch) its product-bootstrap interval, the mismatch reasons, the mean oracle CTR of the ads and the
  RM win rate against epoch 0 (Markdown and CSV);
- ``match_rate_paired.csv`` (and a second table in the Markdown and LaTeX): per epoch, PCPO minus DPO (and each
  PCPO ablation minus DPO) with a paired product-bootstrap interval, the resampled held-out products the same
  for both methods;
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

import numpy as np
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
#: (treatment, baseline) pairs of the paired table: the paper's finding (PCPO keeps the match rate that DPO
#: loses) and where each ablation lies; a pair is shown when both methods were evaluated.
COMPARISONS: tuple[tuple[str, str], ...] = (("pcpo", "dpo"), ("pcpo_no_textual", "dpo"), ("pcpo_no_visual", "dpo"))
#: Product-bootstrap resamples and level of every interval of the report; seed of the resampled products.
RESAMPLES = 2000
LEVEL = 0.95
BOOTSTRAP_SEED = 0


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


def labelled_ads(run: EvaluationRun) -> pl.DataFrame | None:
    """``product_id, candidate, label`` of one evaluation's ads; None when they carry no match label (an
    annotators' evaluation, whose labels live in the filled-in sheet)."""
    path = run.path / "ads.parquet"
    try:
        ads = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the evaluation's ads ({err})", file=path) from err
    if "label" not in ads.columns or ads.get_column("label").null_count() == ads.height:
        return None
    return ads.select("product_id", "candidate", "label")


def product_matches(ads: pl.DataFrame, samples: int | None = None) -> pl.DataFrame:
    """Per held-out product (sorted by id): its ads and how many fit, of ``labelled_ads``; with ``samples``, of
    its first ``samples`` ads only (candidates 0 .. samples-1)."""
    if samples is not None:
        ads = ads.filter(pl.col("candidate") < samples)
    return (
        ads.group_by("product_id")
        .agg(pl.len().alias("ads"), (pl.col("label") == "available").sum().alias("matched"))
        .sort("product_id")
    )


@dataclass(frozen=True)
class Estimate:
    """A match rate (or a difference of two) with its percentile interval over resampled products."""

    value: float
    low: float
    high: float


def _percentile(value: float, resampled: np.ndarray, level: float) -> Estimate:
    tail = (1 - level) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return Estimate(float(value), float(low), float(high))


def _resampled_products(count: int, resamples: int, seed: int) -> np.ndarray:
    if count == 0:
        raise ValueError("no products to resample")
    return np.random.default_rng(seed).integers(count, size=(resamples, count))


def match_rate_interval(
    matches: pl.DataFrame, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = BOOTSTRAP_SEED
) -> Estimate:
    """The match rate (fitting ads / ads) with a percentile interval of the bootstrap over products."""
    matched, ads = (matches.get_column(c).to_numpy().astype(np.float64) for c in ("matched", "ads"))
    draws = _resampled_products(len(ads), resamples, seed)
    return _percentile(matched.sum() / ads.sum(), matched[draws].sum(1) / ads[draws].sum(1), level)


def paired_difference(
    treatment: pl.DataFrame, baseline: pl.DataFrame, *, resamples: int = RESAMPLES, level: float = LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """Match rate of ``treatment`` minus that of ``baseline`` (``product_matches`` of each) with the percentile
    interval of a paired bootstrap: each resample draws held-out products with replacement and takes both
    methods' rates over that same draw, so the products' spread, shared by both, cancels."""
    if treatment.get_column("product_id").to_list() != baseline.get_column("product_id").to_list():
        raise InputError(
            "the two evaluations hold different held-out products",
            expected="evaluations of one product set (caig preference-products)",
        )
    m_t, n_t, m_b, n_b = (
        frame.get_column(c).to_numpy().astype(np.float64)
        for frame in (treatment, baseline) for c in ("matched", "ads")
    )
    draws = _resampled_products(len(n_t), resamples, seed)
    resampled = m_t[draws].sum(1) / n_t[draws].sum(1) - m_b[draws].sum(1) / n_b[draws].sum(1)
    return _percentile(m_t.sum() / n_t.sum() - m_b.sum() / n_b.sum(), resampled, level)


def metrics_table(runs: Sequence[EvaluationRun]) -> pl.DataFrame:
    """One row per (method, epoch): match rate and its product-bootstrap interval, mismatch shares, mean oracle
    CTR, eye-catching phrases per ad, RM win rate vs epoch 0."""
    rows = []
    for run in runs:
        data = read_metrics(run)
        shares = data.get("mismatch_shares") or {}
        ads = labelled_ads(run)
        rate = None if ads is None else match_rate_interval(product_matches(ads))
        rows.append(
            {
                "method": run.method,
                "epoch": run.epoch,
                "ads": data.get("ads"),
                "match_rate": data.get("match_rate"),
                "match_low": None if rate is None else rate.low,
                "match_high": None if rate is None else rate.high,
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
        "match_low": pl.Float64,
        "match_high": pl.Float64,
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


def paired_differences(runs: Sequence[EvaluationRun]) -> pl.DataFrame:
    """One row per (comparison of ``COMPARISONS``, epoch) both methods were evaluated at: the difference of
    their match rates with its paired product-bootstrap interval.

    Both sides count the ads they share: each product's first k ads, k the smaller of the two evaluations'
    ads per product. Ad k of a product has the same sampling seed in every evaluation, so the pairing holds
    within a product too, and one model evaluated twice differs by exactly 0."""
    folders = {(run.method, run.epoch): run for run in runs}
    tables: dict[Path, pl.DataFrame | None] = {}

    def of(run: EvaluationRun) -> pl.DataFrame | None:
        if run.path not in tables:
            tables[run.path] = labelled_ads(run)
        return tables[run.path]

    rows = []
    for treatment, baseline in COMPARISONS:
        for epoch in sorted({e for m, e in folders if m == treatment}):
            if (baseline, epoch) not in folders:
                continue
            ads_a, ads_b = of(folders[(treatment, epoch)]), of(folders[(baseline, epoch)])
            if ads_a is None or ads_b is None:
                continue
            shared = 1 + min(int(ads.get_column("candidate").max()) for ads in (ads_a, ads_b))
            a, b = product_matches(ads_a, shared), product_matches(ads_b, shared)
            found = paired_difference(a, b)
            rows.append(
                {
                    "treatment": treatment, "baseline": baseline, "epoch": epoch, "products": a.height,
                    "ads_per_product": shared, "difference": found.value, "low": found.low, "high": found.high,
                }
            )
    schema = {
        "treatment": pl.String, "baseline": pl.String, "epoch": pl.Int64, "products": pl.Int64,
        "ads_per_product": pl.Int64, "difference": pl.Float64, "low": pl.Float64, "high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def paired_table(paired: pl.DataFrame) -> Table:
    """Comparisons x epochs: each cell the difference of the match rates and its interval."""
    epochs = sorted(set(paired.get_column("epoch").to_list()))
    rows = []
    for treatment, baseline in dict.fromkeys(paired.select("treatment", "baseline").iter_rows()):
        part = paired.filter((pl.col("treatment") == treatment) & (pl.col("baseline") == baseline))
        cells = {
            row["epoch"]: f"{row['difference']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"
            for row in part.iter_rows(named=True)
        }
        rows.append({"comparison": f"{treatment} - {baseline}", **{f"epoch {e}": cells.get(e) for e in epochs}})
    frame = pl.DataFrame(rows, schema={"comparison": pl.String, **{f"epoch {e}": pl.String for e in epochs}})
    table = frame_table(frame, caption="Paired difference of the match rates (treatment - baseline).")
    products = sorted(set(paired.get_column("products").to_list()))
    ads = sorted(set(paired.get_column("ads_per_product").to_list()))
    table.notes = [
        f"{100 * LEVEL:.0f}% percentile interval of a paired bootstrap over the "
        f"{', '.join(map(str, products))} held-out products ({RESAMPLES} resamples): each resample draws "
        "products with replacement and compares both methods on the same draw, each product's first "
        f"{' or '.join(map(str, ads))} ad(s) (the ads both evaluations have; ad k has the same sampling seed in "
        "both). An interval that excludes 0 separates the two methods at that epoch."
    ]
    return table


def write_tables(
    table: pl.DataFrame, paper: Mapping[str, Any], out_dir: Path, paired: pl.DataFrame
) -> dict[str, Path]:
    """match_rate.md / .csv / .tex and match_rate_paired.csv (``paired_differences``) in ``out_dir``."""
    overview = overview_table(table, paper)
    details = table.sort(["method", "epoch"], maintain_order=True)
    comparison = paired_table(paired) if paired.height else None
    text = (
        "# Match rate over preference epochs\n\n"
        "Share of held-out ads whose background fits the product (the annotators' judgement; on the synthetic "
        "world the oracle's). Epoch 0 is the initial prompt model.\n\n"
        + to_markdown(overview)
        + "\n## Per method and epoch\n\n"
        "Mismatch shares by the first reason found; mean oracle CTR of the ads; eye-catching phrases per ad "
        "(they raise CTR for every product but are wrong for many); RM win rate: share of held-out ads the "
        "frozen reward model prefers to the same product's epoch-0 ad. match_low / match_high: "
        f"{100 * LEVEL:.0f}% percentile interval of the match rate over resampled held-out products "
        f"({RESAMPLES} resamples).\n\n"
        + to_markdown(frame_table(details, digits={"mean_oracle_ctr": 4}))
    )
    if comparison is not None:
        text += "\n## PCPO against DPO, paired\n\n" + to_markdown(comparison)
    suffixes = {"markdown": "md", "csv": "csv", "latex": "tex"}
    paths = {kind: out_dir / f"match_rate.{suffix}" for kind, suffix in suffixes.items()}
    paths["paired_csv"] = out_dir / "match_rate_paired.csv"
    write_text(text, paths["markdown"])
    with atomic_path(paths["csv"]) as tmp:
        details.write_csv(tmp)
    with atomic_path(paths["paired_csv"]) as tmp:
        paired.write_csv(tmp)
    latex = to_latex(overview, "tab:match-rate")
    if comparison is not None:
        latex += "\n" + to_latex(comparison, "tab:match-rate-paired")
    write_text(latex, paths["latex"])
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
    paths = write_tables(table, paper, args.tables, paired_differences(args.run))
    plot_match_rate(table, paper, args.figures / "match_rate.png")
    contact_sheet(sheet_runs(args.run), args.figures / "contact_sheet.png", args.sheet_products)
    log.info("%d evaluations -> %s, %s", table.height, paths["markdown"], args.figures)
