"""The `caig` entry point and Hydra composition: presets compose, bad keys are named, errors exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from caig.cli import COMMANDS, main, named_path
from caig.config import compose
from caig.errors import ConfigError


def test_default_config_is_tiny_preset():
    cfg = compose()
    assert cfg.preset == "tiny"
    assert cfg.seed == 0


def test_paper_preset_composes():
    assert compose(["preset=paper"]).preset == "paper"


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match="no_such_key"):
        compose(["data.no_such_key=3"])


def test_cli_reports_config_error_and_exits_2(capsys):
    assert main(["pairs", "--log", "x", "--catalog", "y", "--out", "z", "data.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_python_dash_m_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "caig", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in out


def test_unknown_command_fails():
    result = subprocess.run([sys.executable, "-m", "caig", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("value", ["f_full", "=results/x.json", "f_full=", ""])
def test_named_path_rejects_a_value_without_both_name_and_path(value):
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=PATH"):
        named_path(value)


def test_named_path_splits_at_the_first_equals_sign():
    assert named_path("vam=runs/a=b/metrics.json") == ("vam", Path("runs/a=b/metrics.json"))
