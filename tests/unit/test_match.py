"""Match rate: hand-made judgements, the oracle path, the annotation sheet round trip, and the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.evaluate.match import (
    match_summary,
    metrics_from_sheet,
    oracle_judgements,
    read_annotation_sheet,
    win_rate,
    write_annotation_sheet,
)
from caig.report.preference import (
    EvaluationRun,
    contact_sheet,
    match_rate_figure,
    metrics_table,
    paper_values,
    parse_run,
    paired_differences,
    pivot_match_rate,
    plot_match_rate,
    sheet_runs,
    write_tables,
)


def test_match_rate_on_hand_made_judgements():
    labels = ["available", "scene", "available", "color", "scene", "available", "scale", "available"]
    summary = match_summary(labels)
    assert summary["ads"] == 8 and summary["match_rate"] == 0.5
    assert summary["reasons"] == {"available": 4, "scale": 1, "scene": 2, "color": 1}
    assert summary["mismatch_shares"] == {"scale": 0.125, "scene": 0.25, "color": 0.125}
    assert match_summary([])["match_rate"] is None
    with pytest.raises(ValueError, match="unknown"):
        match_summary(["available", "ugly"])


def test_win_rate_counts_ties_half():
    assert win_rate(np.array([0.7, 0.2, 0.5, 0.9])) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    # identical ads score 0.5 only up to float rounding; the rounding decides nothing
    assert win_rate(np.array([0.5 - 3e-8, 0.5 + 6e-8])) == 0.5
    assert win_rate(np.array([])) is None


def test_oracle_judgements_agree_with_the_oracle():
    from caig.sim.oracle import Oracle
    from caig.sim.world import make_world

    sim = compose(["sim=small"]).sim
    world = make_world(sim)
    oracle = Oracle(world)
    titles = {p.product_id: p.title for p in world.products}
    ids = [world.products[i].product_id for i in (0, 1, 2, 3)]
    texts = ["a fitness gym with bursting fireworks, vivid red tones", "a cozy living room with a potted plant",
             "nothing recognisable at all", "a minimalist seamless studio backdrop, soft diffused light"]
    labels, ctr, eye = oracle_judgements(titles, ids, texts, sim)
    assert labels == [oracle.judge(pid, text).reason for pid, text in zip(ids, texts)]
    np.testing.assert_allclose(ctr, [oracle.ctr(pid, text) for pid, text in zip(ids, texts)])
    assert labels[2] == "scene"  # no recognisable scene is a scene mismatch
    assert eye.tolist() == [2, 0, 0, 0]  # fireworks and vivid red
    with pytest.raises(ConfigError, match="not the synthetic world"):
        oracle_judgements({**titles, ids[0]: "another title"}, ids, texts, sim)


def _sheet(tmp_path, labels):
    rows = [
        {"item": i, "method": "pcpo", "epoch": 2, "product_id": f"P{i}", "title": "t", "product_image": "p.png",
         "ad_image": "a.png", "label": ""}
        for i in range(len(labels))
    ]
    path = tmp_path / "annotation.csv"
    write_annotation_sheet(rows, path)
    with path.open() as handle:
        filled = list(csv.DictReader(handle))
    for row, label in zip(filled, labels):
        row["label"] = label
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(filled[0]))
        writer.writeheader()
        writer.writerows(filled)
    return path


def test_annotation_sheet_round_trip(tmp_path):
    path = _sheet(tmp_path, ["available", " Scene ", "AVAILABLE", "color"])
    metrics = metrics_from_sheet(path)
    assert (metrics["method"], metrics["epoch"], metrics["judge"]) == ("pcpo", 2, "annotators")
    assert metrics["match_rate"] == 0.5 and metrics["reasons"]["scene"] == 1


def test_annotation_sheet_rejects_bad_labels(tmp_path):
    path = _sheet(tmp_path, ["available", "nice", "scene"])
    with pytest.raises(InputError) as err:
        read_annotation_sheet(path)
    assert "row 3" in str(err.value) and "'label'" in str(err.value) and "available | scale" in str(err.value)
    empty = _sheet(tmp_path, ["available", ""])
    with pytest.raises(InputError, match="empty"):
        read_annotation_sheet(empty)


def _evaluation(tmp_path, method, epoch, labels, ctr):
    folder = tmp_path / f"{method}-{epoch}"
    (folder / "ads").mkdir(parents=True)
    rows = []
    for i, label in enumerate(labels):
        name = f"ads/P{i}_0.png"
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(folder / name)
        rows.append({"product_id": f"P{i}", "candidate": 0, "image": name, "label": label})
    pl.DataFrame(rows).write_parquet(folder / "ads.parquet")
    metrics = {"method": method, "epoch": epoch, **match_summary(labels), "mean_oracle_ctr": ctr,
               "rm_win_rate_vs_epoch0": None if epoch == 0 else 0.6}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return EvaluationRun(method, epoch, folder)


def test_report_tables_figure_and_contact_sheet(tmp_path):
    start = _evaluation(tmp_path, "start", 0, ["available", "available", "scene", "available"], 0.03)
    runs = [
        EvaluationRun("dpo", 0, start.path), EvaluationRun("pcpo", 0, start.path),
        _evaluation(tmp_path, "dpo", 1, ["scene", "available", "scene", "color"], 0.04),
        _evaluation(tmp_path, "pcpo", 1, ["available", "available", "scene", "available"], 0.035),
    ]
    table = metrics_table(runs)
    pivot = pivot_match_rate(table)
    assert pivot.columns == ["method", "epoch 0", "epoch 1"]
    assert pivot.row(0) == ("dpo", 0.75, 0.25) and pivot.row(1) == ("pcpo", 0.75, 0.75)
    paths = write_tables(table, paper_values(), tmp_path / "tables", paired_differences(runs))
    text = paths["markdown"].read_text()
    assert "| dpo | 0.750 | 0.250 | 0.842 / 0.597 |" in text and "0.0400" in text
    assert pl.read_csv(paths["csv"]).height == 4
    assert r"\begin{tabular}" in paths["latex"].read_text()
    plot_match_rate(table, paper_values(), tmp_path / "match_rate.png")
    assert (tmp_path / "match_rate.png").stat().st_size > 1000
    rows = sheet_runs(runs)
    assert [label for label, _ in rows] == ["epoch 0 of\ndpo\npcpo", "dpo\n(epoch 1)", "pcpo\n(epoch 1)"]
    later = [*runs, EvaluationRun("pcpo", 2, Path("p2")), EvaluationRun("dpo", 2, Path("d2"))]
    assert [label for label, _ in sheet_runs(later)][1:] == [
        "dpo\n(epoch 1)", "dpo\n(epoch 2)", "pcpo\n(epoch 1)", "pcpo\n(epoch 2)"
    ]
    contact_sheet(rows, tmp_path / "sheet.png", products=3)
    assert Image.open(tmp_path / "sheet.png").size == (150 + 3 * 38, 16 + 3 * 54)
    assert parse_run("pcpo_no_visual:3=/a/b") == EvaluationRun("pcpo_no_visual", 3, Path("/a/b"))
    with pytest.raises(InputError):
        parse_run("pcpo=3")


def test_match_rate_table_and_figure_carry_the_papers_values(tmp_path):
    start = _evaluation(tmp_path, "start", 0, ["available", "scene", "available", "available"], 0.03)
    methods = ("pcpo", "dpo", "pcpo_no_visual", "pcpo_no_pretrain", "pcpo_vam_rm")
    runs = [EvaluationRun(m, 0, start.path) for m in methods]
    runs += [_evaluation(tmp_path, m, 1, ["available", "color", "scene", "available"], 0.04) for m in methods]
    paths = write_tables(metrics_table(runs), paper_values(), tmp_path / "tables", paired_differences(runs))
    text = paths["markdown"].read_text()
    assert "| method | epoch 0 | epoch 1 | paper (epoch 0 / epoch 5) |" in text
    for method, paper in [
        ("pcpo", "0.842 / 0.798"), ("dpo", "0.842 / 0.597"), ("pcpo_no_visual", "0.842 / between"),
        ("pcpo_no_pretrain", "0.753 / –"), ("pcpo_vam_rm", "–"),  # a dash where the paper has no value
    ]:
        assert f"| {method} | 0.750 | 0.500 | {paper} |" in text
    assert "Paper: Chen et al." in text and "sec. 4.3" in text
    latex = paths["latex"].read_text()
    assert "0.842 / 0.597" in latex and "0.753 / --" in latex and "Chen et al." in latex
    with pytest.raises(InputError, match="match_rate"):
        paper_values(_paper_file(tmp_path, "match_rate: {citation: x, values: {pcpo: {5: 1.7}}}\n"))
    with pytest.raises(InputError, match="match_rate"):
        paper_values(_paper_file(tmp_path, "reward_ablation: {}\n"))
    # the figure: the paper's values as hollow markers in the match-rate panel, with their own legend entry
    figure = match_rate_figure(metrics_table(runs), paper_values())
    panel = figure.axes[0]
    hollow = {
        (tuple(line.get_xdata()), tuple(line.get_ydata()))
        for line in panel.get_lines()
        if line.get_markerfacecolor() == "none"
    }
    assert hollow == {((0, 5), (0.842, 0.798)), ((0, 5), (0.842, 0.597)), ((0,), (0.842,)), ((0,), (0.753,))}
    assert "paper" in [label.get_text() for label in panel.get_legend().get_texts()]
    assert not any(line.get_markerfacecolor() == "none" for line in figure.axes[1].get_lines())


def _paper_file(tmp_path, text):
    path = tmp_path / "paper.yaml"
    path.write_text(text)
    return path
