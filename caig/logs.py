"""Stage-tagged logging: every line says which stage wrote it."""

from __future__ import annotations

import logging
import sys


def get_logger(stage: str) -> logging.Logger:
    """Return the logger for one stage (``caig.<stage>``), printing ``[caig <stage>] message`` to stderr."""
    logger = logging.getLogger(f"caig.{stage}")
    if not logging.getLogger("caig").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(message)s", "%H:%M:%S"))
        root = logging.getLogger("caig")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logger
