"""Training code never sees the simulator's ground truth: only caig.sim and caig.evaluate import the oracle."""

from __future__ import annotations

import ast
from pathlib import Path

import caig

PACKAGE = Path(caig.__file__).parent
# Modules that hold or draw from the ground truth (clicklog imports the oracle to draw clicks).
GROUND_TRUTH = {"caig.sim.oracle", "caig.sim.clicklog"}
ALLOWED = ("sim", "evaluate")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_sim_and_evaluate_import_the_oracle():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        sub = path.relative_to(PACKAGE).parts[0]
        if sub in ALLOWED:
            continue
        hits = imported_modules(path) & GROUND_TRUTH
        if hits:
            offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {sorted(hits)}")
    assert not offenders, "training code must not see the ground truth:\n" + "\n".join(offenders)


def test_the_check_sees_an_oracle_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from caig.sim import oracle\nimport caig.sim.clicklog as c\n")
    assert GROUND_TRUTH <= imported_modules(module)
