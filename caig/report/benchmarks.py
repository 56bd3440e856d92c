"""Per-rule resource records: Snakemake's ``benchmark:`` files of a run, gathered into one table.

Each rule writes ``<run>/benchmarks/<rule>[/<wildcards>].tsv`` (wall seconds, peak RSS, CPU time, ...).
The table lists one row per job, slowest first, so a reader sees where the run's time went.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from omegaconf import DictConfig

from caig.errors import InputError
from caig.io import write_text
from caig.logs import get_logger

COLUMNS = {"s": "wall_s", "max_rss": "max_rss_mb", "cpu_time": "cpu_s", "mean_load": "mean_load"}


def collect_benchmarks(bench_dir: Path) -> pl.DataFrame:
    """One row per benchmark file: the job (path below ``bench_dir`` without .tsv) and its measurements."""
    rows = []
    for path in sorted(bench_dir.rglob("*.tsv")):
        try:
            record = pl.read_csv(path, separator="\t", null_values=["NA", "-"], infer_schema_length=None)
        except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
            raise InputError(f"not a Snakemake benchmark record: {err}", file=path) from err
        missing = sorted(set(COLUMNS) - set(record.columns))
        if missing or record.height == 0:
            raise InputError(f"missing columns {missing} or no rows", file=path, expected="a benchmark TSV")
        job = str(path.relative_to(bench_dir).with_suffix(""))
        values = record.select(list(COLUMNS)).rename(COLUMNS).mean().row(0, named=True)
        rows.append({"job": job, **values})
    if not rows:
        raise InputError("no benchmark records (*.tsv) found", file=bench_dir)
    return pl.DataFrame(rows).sort("wall_s", descending=True)


def benchmarks_markdown(table: pl.DataFrame) -> str:
    total = table["wall_s"].sum()
    lines = [
        "| job | wall s | CPU s | peak RSS MB | share of wall |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in table.iter_rows(named=True):
        cells = [f"{row[k]:.1f}" if row[k] is not None else "n/a" for k in ("wall_s", "cpu_s", "max_rss_mb")]
        lines.append(f"| {row['job']} | {' | '.join(cells)} | {row['wall_s'] / total:.1%} |")
    lines.append(f"| **all {table.height} jobs** | **{total:.1f}** | | | |")
    return "\n".join(lines) + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bench-dir", type=Path, required=True, help="the run's benchmarks/ folder")
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write (a .csv beside it)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    table = collect_benchmarks(args.bench_dir)
    write_text(benchmarks_markdown(table), args.out)
    write_text(table.write_csv(), args.out.with_suffix(".csv"))
    get_logger("benchmarks").info("%d job records, %.1f s of wall time -> %s", table.height, table["wall_s"].sum(), args.out)
