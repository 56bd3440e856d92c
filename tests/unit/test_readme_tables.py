"""The README's generated block: the run's tables in study order, markers kept, nothing else touched."""

from __future__ import annotations

import pytest

from caig.errors import InputError
from caig.report.readme import BEGIN, END, TABLES, demoted, generated_block, replace_block


def fake_run(root, names=None):
    (root / "tables").mkdir(parents=True)
    for _, name in TABLES if names is None else [(None, n) for n in names]:
        (root / "tables" / name).write_text(f"| {name} |\n|---|\n| 1 |\n")
    return root


def test_block_holds_every_table_in_order_and_the_figure(tmp_path):
    run = fake_run(tmp_path / "results" / "tiny")
    figure = tmp_path / "docs" / "figures" / "match_rate_tiny.png"
    block = generated_block(run, tmp_path / "README.md", figure)
    positions = [block.index(f"| {name} |") for _, name in TABLES]
    assert positions == sorted(positions)
    assert block.startswith(BEGIN) and block.endswith(END)
    assert "](docs/figures/match_rate_tiny.png)" in block


def test_replace_keeps_the_text_around_the_markers(tmp_path):
    text = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    assert replace_block(text, f"{BEGIN}\nnew\n{END}", tmp_path / "README.md") == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"


@pytest.mark.parametrize("text", ["no markers", f"{END}\n{BEGIN}", f"{BEGIN}{BEGIN}{END}"])
def test_bad_markers_are_named(tmp_path, text):
    with pytest.raises(InputError, match="BEGIN generated"):
        replace_block(text, "x", tmp_path / "README.md")


def test_a_missing_table_names_its_file(tmp_path):
    run = fake_run(tmp_path / "run", names=["reward_ablation.md"])
    with pytest.raises(InputError, match="reward_comparison.md"):
        generated_block(run, tmp_path / "README.md", tmp_path / "figure.png")


def test_the_command_writes_the_readme_and_exits_cleanly_through_the_fast_exit(tmp_path):
    """`python -m caig` ends with os._exit after main: the output and the last log line must still be there."""
    import subprocess
    import sys

    run = fake_run(tmp_path / "results" / "tiny")
    (run / "figures").mkdir()
    (run / "figures" / "match_rate.png").write_bytes(b"png")
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{BEGIN}\n{END}\n")
    done = subprocess.run(
        [sys.executable, "-m", "caig", "readme-tables", "--run", str(run), "--readme", str(readme),
         "--figures", str(tmp_path / "docs" / "figures")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "written between the markers" in done.stderr
    assert "| reward_ablation.md |" in readme.read_text()
    assert (tmp_path / "docs" / "figures" / "match_rate_tiny.png").read_bytes() == b"png"
    failed = subprocess.run(
        [sys.executable, "-m", "caig", "readme-tables", "--run", str(tmp_path / "nowhere"), "--readme", str(readme)],
        capture_output=True, text=True, timeout=120,
    )
    assert failed.returncode == 2 and "error" in failed.stderr


def test_table_headings_sit_below_the_readme_sections():
    assert demoted("# Title\n\n## Part\ntext # not a heading\n") == "##### Title\n\n###### Part\ntext # not a heading\n"
