"""The data-stage report: Markdown tables from ingest_report.json and summary.json, and the CTR-gap figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from caig.data.pairs import PairConfig, build_pairs, write_pairs
from caig.data.report import data_report
from caig.errors import InputError

REPO = Path(__file__).resolve().parents[2]

INGEST_REPORT = {
    "catalog": {
        "path": "cat.csv",
        "rows_read": 5,
        "rows_kept": 4,
        "rows_quarantined": 1,
        "quarantined_by_reason": {"duplicate_product": 1},
    },
    "log": {
        "path": "log.csv",
        "rows_read": 1200,
        "rows_kept": 1190,
        "rows_quarantined": 10,
        "quarantined_by_reason": {"negative_count": 7, "unknown_product": 3},
        "images": {"checked": 12, "missing": 0, "unreadable": 0},
    },
    "images_checked": True,
}


@pytest.fixture()
def pairs_dir(tmp_path: Path) -> Path:
    rows = [(f"p{p}", f"p{p}c{c}", 2000 + 10 * c, 20 + 7 * c + p % 5) for p in range(30) for c in range(3)]
    log = pl.LazyFrame(
        rows, schema=["product_id", "creative_id", "impressions", "clicks"], orient="row"
    ).with_columns(image=pl.col("creative_id") + ".png")
    catalog = pl.LazyFrame({"product_id": [f"p{p}" for p in range(30)], "category": ["bags", "shoes"] * 15})
    out = tmp_path / "pairs"
    write_pairs(build_pairs(log, catalog, PairConfig(test_fraction=0.3)), out)
    return out


def test_report_has_ingest_and_pair_tables_and_a_figure(tmp_path, pairs_dir):
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "ingest_report.json").write_text(json.dumps(INGEST_REPORT))
    md = data_report(tmp_path / "ingest", pairs_dir, tmp_path / "report").read_text()
    summary = json.loads((pairs_dir / "summary.json").read_text())
    train, test = summary["splits"]["train"], summary["splits"]["test"]
    assert "| log | log.csv | 1,200 | 1,190 | 10 |" in md
    assert "| negative_count | 0 | 7 |" in md and "| duplicate_product | 1 | 0 |" in md
    assert f"| pairs | {train['pairs']:,} | {test['pairs']:,} |" in md
    assert "| train | 50 | 0.01 | none |" in md and "| test | 1,000 | 0.05 | none |" in md
    bags = [summary["splits"][s]["per_category"].get("bags", {}).get("pairs", 0) for s in ("train", "test")]
    assert f"| bags | {bags[0]:,} | {bags[1]:,} |" in md
    with Image.open(tmp_path / "report" / "ctr_diff.png") as image:
        assert image.format == "PNG" and image.width > 500


def test_report_accepts_the_json_path_and_missing_keys(tmp_path, pairs_dir):
    path = tmp_path / "ingest_report.json"
    path.write_text(json.dumps({"log": {"rows_read": 3}}))
    md = data_report(path, pairs_dir, tmp_path / "report").read_text()
    assert "| log | n/a | 3 | n/a | n/a |" in md and "No rows were quarantined." in md


def test_missing_inputs_are_named(tmp_path, pairs_dir):
    with pytest.raises(InputError, match=r"ingest_report.json: ingest report .* not found"):
        data_report(tmp_path, pairs_dir, tmp_path / "report")
    path = tmp_path / "ingest_report.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object"):
        data_report(path, pairs_dir, tmp_path / "report")


def test_cli_after_real_ingest(tmp_path, pairs_dir):
    """Runs `caig ingest` for real, so the key names the report reads are the ones ingest writes."""
    (tmp_path / "catalog.csv").write_text("product_id,title,category,image\np,t,bags,p.png\np,t,bags,p.png\n")
    (tmp_path / "log.csv").write_text(
        "product_id,creative_id,image,date,impressions,clicks\n"
        "p,a,a.png,2024-01-01,10,1\np,b,b.png,2024-01-01,10,-1\n"
    )
    cli = [sys.executable, "-m", "caig"]
    subprocess.run(
        [
            *cli,
            "ingest",
            "--catalog",
            str(tmp_path / "catalog.csv"),
            "--log",
            str(tmp_path / "log.csv"),
            "--out",
            str(tmp_path / "ingested"),
            "--no-image-check",
            "data.ingest.max_bad_fraction=1.0",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    result = subprocess.run(
        [
            *cli,
            "data-report",
            "--ingest",
            str(tmp_path / "ingested"),
            "--pairs",
            str(pairs_dir),
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "report" / "data.md").read_text()
    assert "| catalog |" in md and "| 2 | 1 | 1 |" in md  # catalog: 2 read, 1 kept, 1 quarantined
    assert "| duplicate_product | 1 | 0 |" in md and "| negative_count | 0 | 1 |" in md
