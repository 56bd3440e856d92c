"""caig.logs: progress in a log file (stderr not a TTY) is a few plain lines, never a bar redrawn with carriage
returns; the event folder sits beside an output."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from caig.logs import event_dir, progress


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="caig.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "caig.progress"]


def test_progress_in_a_log_file_writes_a_line_per_interval_and_a_final_one(lines, capsys):
    for _ in progress(range(6), desc="rendering", unit="chunk", interval=0.05):
        time.sleep(0.03)
    written = lines()
    assert 2 <= len(written) <= 5  # 0.18 s at one line per 0.05 s at most, after the first 0.05 s
    assert written[-1].startswith("rendering: 6/6 chunk")
    assert all("\r" not in line and "\n" not in line for line in written)
    captured = capsys.readouterr()
    assert "\r" not in captured.err  # tqdm's own output (carriage returns) goes nowhere


def test_progress_of_a_short_loop_writes_nothing(lines, capsys):
    bar = progress(range(100), desc="sampling", interval=5)
    for step in bar:
        bar.set_postfix(step=step)  # not throttled by tqdm itself
    assert lines() == []
    assert "sampling" not in capsys.readouterr().err


def test_event_dir_is_a_sibling_of_the_output():
    assert event_dir("results/tiny/reward/a_base/model/") == Path("results/tiny/reward/a_base/model.tensorboard")


def test_library_bars_are_off_in_a_log_file(monkeypatch):
    from caig.logs import quiet_library_bars

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    quiet_library_bars()  # stderr is captured here, not a terminal
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
