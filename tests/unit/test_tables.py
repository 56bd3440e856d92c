"""The table writer (Markdown, CSV, LaTeX booktabs) and the reward-model tables built from metric files alone."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest

from caig.config import compose
from caig.errors import InputError
from caig.report import tables
from caig.report.tables import (
    Column,
    Table,
    ablation_table,
    comparison_table,
    frame_table,
    paper_values,
    to_csv,
    to_latex,
    to_markdown,
)


def _table() -> Table:
    return Table(
        [Column("name", "Model"), Column("acc", "Acc. (%)", lambda v: f"{100 * v:.1f}", "r")],
        [{"name": "a_base | 50% & more_", "acc": 0.5312}, {"name": "none", "acc": None}],
        caption="Pair accuracy",
        notes=["Paper: Chen et al."],
    )


def test_markdown_escapes_pipes_and_aligns_numbers_right():
    text = to_markdown(_table())
    assert text.splitlines()[0] == "**Pair accuracy**"
    assert "| Model | Acc. (%) |" in text and "|:---|---:|" in text
    assert "| a_base \\| 50% & more_ | 53.1 |" in text
    assert "| none |  |" in text and text.rstrip().endswith("Paper: Chen et al.")


def test_csv_keeps_raw_values():
    rows = list(csv.reader(io.StringIO(to_csv(_table()))))
    assert rows == [["name", "acc"], ["a_base | 50% & more_", "0.5312"], ["none", ""]]


def test_latex_is_booktabs_with_escaping():
    text = to_latex(_table(), label="tab:x")
    assert r"\begin{tabular}{lr}" in text and r"\toprule" in text and r"\bottomrule" in text
    assert r"a\_base | 50\% \& more\_ & 53.1 \\" in text
    assert r"\label{tab:x}" in text and r"\caption{Pair accuracy}" in text


def _metrics(name: str, kind: str, accuracy: float) -> dict:
    return {
        "variant": name,
        "row": f"row {name}",
        "kind": kind,
        "accuracy": accuracy,
        "ci_low": accuracy - 0.04,
        "ci_high": accuracy + 0.04,
        "symmetric_accuracy": accuracy + 0.01,
        "symmetric_ci_low": accuracy - 0.03,
        "symmetric_ci_high": accuracy + 0.05,
        "pairs": 500,
        "groups": 120,
        "confidence": 0.95,
        "bootstrap_resamples": 2000,
    }


CEILING = {
    "bayes_ceiling": {"accuracy": 0.93, "ci_low": 0.91, "ci_high": 0.95, "pairs": 500},
    "models_vs_truth": {"f_full": {"accuracy": 0.61}, "vam": {"accuracy": 0.58}},
}


def test_ablation_shows_a_drop_honestly_and_the_ceiling_beside():
    metrics = {
        "a_base": _metrics("a_base", "generative", 0.52),
        "b_pretrained": _metrics("b_pretrained", "generative", 0.50),
        "f_full": _metrics("f_full", "classifier", 0.60),
    }
    table = ablation_table(metrics, paper_values(), CEILING)
    records = {r["variant"]: r for r in table.records}
    assert records["b_pretrained"]["change"] == pytest.approx(-0.02)
    assert records["a_base"]["change"] is None and records["f_full"]["paper"] == 58.6
    assert records["f_full"]["vs_truth"] == 0.61 and records["bayes_ceiling"]["accuracy"] == 0.93
    text = to_markdown(table)
    # the headline (one order) first, its change and truth, then both orders, then the paper
    assert (
        "|  | Reward model | Pair acc. (%) | 95% CI | vs row above | vs truth (%) | Both orders (%) | 95% CI | "
        "Paper (commercial, %) |" in text
    )
    assert "| (b) | row b_pretrained | 50.0 | [46.0, 54.0] | -2.0 |  | 51.0 | [47.0, 55.0] | 54.4 |" in text
    assert "| (c) | row f_full | 60.0 | [56.0, 64.0] | +10.0 | 61.0 | 61.0 | [57.0, 65.0] | 58.6 |" in text
    assert "| Bayes ceiling (true CTR) | 93.0 | [91.0, 95.0] |  |  |  |  |" in text
    assert "Pair acc.: the paper's metric (Eq. 13)" in text and "Both orders: each pair also scored" in text
    header = next(csv.reader(io.StringIO(to_csv(table))))
    assert "ci" not in header and "symmetric_ci" not in header
    assert {"ci_low", "ci_high", "symmetric", "symmetric_ci_low", "symmetric_ci_high", "variant"} <= set(header)


def test_comparison_leaves_unknown_paper_values_empty():
    metrics = {"vam": _metrics("vam", "vam", 0.55), "f_full": _metrics("f_full", "classifier", 0.6)}
    table = comparison_table(metrics, paper_values(), None)
    rows = {r["variant"]: r for r in table.records}
    assert rows["vam"]["paper_commercial"] is None and rows["f_full"]["paper_public"] == 56.2
    assert "vs_truth" not in [c.key for c in table.columns]
    assert "| row vam | 55.0 | [51.0, 59.0] | 56.0 | [52.0, 60.0] |  |  |" in to_markdown(table)


def test_reward_tables_command_writes_six_files(tmp_path):
    paths = []
    for name, kind, acc in [
        ("a_base", "generative", 0.5),
        ("f_full", "classifier", 0.6),
        ("vam", "vam", 0.55),
    ]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_metrics(name, kind, acc)))
        paths.append((name, path))
    (tmp_path / "ceiling.json").write_text(json.dumps(CEILING))
    args = argparse.Namespace(
        metrics=paths, ceiling=tmp_path / "ceiling.json", full="f_full", paper_values=None, out=tmp_path / "t"
    )
    tables.run(args, compose([]))
    written = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert written == [f"reward_{t}.{e}" for t in ("ablation", "comparison") for e in ("csv", "md", "tex")]
    assert "VAM" not in (tmp_path / "t" / "reward_ablation.md").read_text()
    assert "row vam" in (tmp_path / "t" / "reward_comparison.md").read_text()


def test_inconsistent_or_incomplete_metrics_are_input_errors(tmp_path):
    good = tmp_path / "f.json"
    good.write_text(json.dumps(_metrics("f_full", "classifier", 0.6)))
    other = tmp_path / "a.json"
    other.write_text(json.dumps({**_metrics("a_base", "generative", 0.5), "pairs": 499}))
    args = argparse.Namespace(
        metrics=[("a_base", other), ("f_full", good)],
        ceiling=None,
        full="f_full",
        paper_values=None,
        out=tmp_path / "t",
    )
    with pytest.raises(InputError, match="different test pairs"):
        tables.run(args, compose([]))
    broken = tmp_path / "b.json"
    broken.write_text(json.dumps({"variant": "x"}))
    with pytest.raises(InputError, match="lacks 'kind'"):
        tables.read_metrics(broken)
    one_order_only = _metrics("f_full", "classifier", 0.6)
    del one_order_only["symmetric_ci_high"]
    broken.write_text(json.dumps(one_order_only))
    with pytest.raises(InputError, match="lacks 'symmetric_ci_high'"):
        tables.read_metrics(broken)


def test_paper_values_cite_the_paper():
    paper = paper_values()
    assert "arXiv:2502.06823" in paper["reward_ablation"]["citation"]
    assert list(paper["reward_ablation"]["values"].values()) == [53.3, 54.4, 56.4, 57.3, 58.2, 58.6]
    assert Path(tables.__file__).with_name("paper_values.yaml").is_file()


def test_frame_table_formats_floats_dashes_missing_values_and_escapes_latex():
    frame = pl.DataFrame(
        {
            "method": ["dpo", "pcpo_vam_rm"],
            "epoch 0": [0.2344, None],
            "ctr": [0.04321, 0.1],
            "note": ["a & b", "x"],
        }
    )
    table = frame_table(frame, digits={"ctr": 4}, caption="Lift (%)")
    text = to_markdown(table)
    assert "| method | epoch 0 | ctr | note |" in text
    assert "|:---|---:|---:|:---|" in text
    assert "| dpo | 0.234 | 0.0432 | a & b |" in text
    assert "| pcpo_vam_rm | – | 0.1000 | x |" in text
    tex = to_latex(table, label="tab:t")
    assert r"pcpo\_vam\_rm & -- & 0.1000 & x \\" in tex
    assert r"dpo & 0.234 & 0.0432 & a \& b \\" in tex
    assert r"\caption{Lift (\%)}" in tex
