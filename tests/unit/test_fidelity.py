"""docs/fidelity.md cannot rot: every setting row names its config key, and the values it gives for the
`paper` and `tiny` presets are the values those presets compose to."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from caig.config import REPO_ROOT, compose

FIDELITY = REPO_ROOT / "docs" / "fidelity.md"
PRESET_COLUMNS = {"paper": "`paper` preset", "tiny": "`tiny` preset"}
TICKED = re.compile(r"`([^`]*)`")
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def table_rows(text: str) -> list[dict[str, str]]:
    """Every row of every Markdown table in ``text`` that has the preset and config-key columns."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in UNESCAPED_PIPE.split(line.strip().strip("|"))]
        if header is None:
            header = cells
        elif set(cells) <= {"", "---", ":---", "---:", ":---:"} or all(set(c) <= set(":-") for c in cells):
            continue
        elif "Config key" in header and all(col in header for col in PRESET_COLUMNS.values()):
            assert len(cells) == len(header), f"docs/fidelity.md: row has {len(cells)} cells, header {len(header)}: {line}"
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def config_value(tree: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            raise KeyError(path)
        tree = tree[key]
    return tree


def same(documented: Any, composed: Any) -> bool:
    if isinstance(documented, (int, float)) and isinstance(composed, (int, float)):
        return math.isclose(float(documented), float(composed), rel_tol=1e-9, abs_tol=0.0)
    return documented == composed


def checked_rows() -> list[tuple[str, str, list[str], str, str]]:
    """(setting, key, overrides, paper cell, tiny cell) for every row with a config key."""
    out = []
    for row in table_rows(FIDELITY.read_text()):
        ticked = TICKED.findall(row["Config key"])
        if not ticked:
            continue
        key, overrides = ticked[0], [t for t in ticked[1:] if "=" in t]
        out.append((row[next(iter(row))], key, overrides, row[PRESET_COLUMNS["paper"]], row[PRESET_COLUMNS["tiny"]]))
    return out


def test_fidelity_table_has_rows_for_every_stage():
    keys = {key for _, key, *_ in checked_rows()}
    for prefix in ("data.pairs", "pretrain", "train.pretrain", "reward", "train.reward", "preference.sample",
                   "preference.judge", "preference.dpo", "preference.pcpo", "preference.lora",
                   "preference.train", "preference.render", "online"):
        assert any(key.startswith(prefix) for key in keys), f"docs/fidelity.md has no row for {prefix}.*"
    text = FIDELITY.read_text()
    assert "## Not implemented" in text


@pytest.mark.parametrize("preset", sorted(PRESET_COLUMNS))
def test_fidelity_table_matches_composed_config(preset):
    composed: dict[tuple[str, ...], dict] = {}
    wrong = []
    for setting, key, overrides, paper_cell, tiny_cell in checked_rows():
        cell = paper_cell if preset == "paper" else tiny_cell
        ticked = TICKED.findall(cell)
        if not ticked:
            assert cell.lower().startswith("n/a"), (
                f"docs/fidelity.md, row {setting!r}: the {preset} preset cell {cell!r} must be a `value` or n/a"
            )
            continue
        documented = yaml.safe_load(ticked[0])
        extra = tuple(overrides)
        if extra not in composed:
            composed[extra] = OmegaConf.to_container(compose([f"preset={preset}", *extra]), resolve=True)
        try:
            value = config_value(composed[extra], key)
        except KeyError:
            wrong.append(f"{setting}: no key {key} in the {preset} preset")
            continue
        if not same(documented, value):
            wrong.append(f"{setting}: docs say {key}={documented!r}, the {preset} preset composes {value!r}")
    assert not wrong, "docs/fidelity.md disagrees with the config:\n" + "\n".join(wrong)
