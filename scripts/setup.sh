#!/usr/bin/env bash
# Creates .venv (Python 3.11) with caig and its pinned stack; safe to rerun (a no-op when up to date).
# torch goes in first and alone: `torch==2.13.0` resolves to the local CPU wheel on CPU machines, and the
# constraints file keeps any later requirement from pulling a different (CUDA) build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.caig-installed
want=$(cat pyproject.toml constraints.txt | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
