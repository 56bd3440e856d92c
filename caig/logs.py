"""Stage-tagged logging, progress of long loops, and where training curves go.

- ``get_logger(stage)``: every line says which stage wrote it.
- ``progress(iterable, desc=...)``: tqdm on a terminal; in a job's log file (stderr not a TTY) one plain log line
  every ``LOG_INTERVAL_SECONDS`` instead of a bar redrawn with carriage returns, and nothing at all for a loop
  that ends sooner.
- ``quiet_library_bars()``: the same for the bars of transformers and huggingface_hub (off in a log file).
- ``event_dir(output)``: ``<output>.tensorboard/``, the TensorBoard event files of the job writing ``output``
  (a sibling, not a declared output: the output folder's contents and checksums stay those of the model).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

#: Seconds between two progress lines in a log file (and before the first one).
LOG_INTERVAL_SECONDS = 30.0
#: A log line needs no bar: what is done, how fast, and how long is left.
LOG_BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
EVENT_SUFFIX = ".tensorboard"

Item = TypeVar("Item")


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


class _Discard:
    """A sink for what tqdm writes itself (carriage returns, the closing newline): the logger writes instead."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class LoggedProgress(tqdm):
    """tqdm that reports through a logger, one line at most every ``interval`` seconds plus a final line."""

    def __init__(self, *args: Any, logger: logging.Logger, interval: float, **kwargs: Any) -> None:
        self._logger = logger
        self._interval = interval
        self._logged_n = -1
        super().__init__(
            *args, file=_Discard(), mininterval=interval, delay=interval, bar_format=LOG_BAR_FORMAT, **kwargs
        )
        self._logged_at = time.monotonic()  # the first line comes after ``interval`` seconds, set_postfix or not

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        # tqdm calls this on updates (already throttled by mininterval), on set_postfix (not throttled) and
        # once from close() after setting ``disable`` (the final line, always written)
        now = time.monotonic()
        closing = self.disable and self.n != self._logged_n
        if closing or (not self.disable and now - self._logged_at >= self._interval):
            self._logger.info("%s", msg if msg is not None else str(self))
            self._logged_at, self._logged_n = now, self.n
        return True


def progress(
    iterable: Iterable[Item] | None = None,
    *,
    desc: str,
    logger: logging.Logger | None = None,
    interval: float = LOG_INTERVAL_SECONDS,
    **kwargs: Any,
) -> tqdm:
    """A progress bar for a loop that can take long (``tqdm`` keyword arguments pass through).

    On a terminal: tqdm as usual. When stderr is not a TTY (a Snakemake or Slurm log file): a log line through
    ``logger`` (default ``caig.progress``) after ``interval`` seconds and then every ``interval`` seconds, and a
    final one when the loop ran that long; a shorter loop writes nothing.
    """
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, **kwargs)
    return LoggedProgress(iterable, desc=desc, logger=logger or get_logger("progress"), interval=interval, **kwargs)


def quiet_library_bars() -> None:
    """In a log file, switch off the bars of transformers and huggingface_hub (loading weights, writing shards):
    short loops, each leaving carriage returns in the log. Call before they are imported; a terminal keeps them."""
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def event_dir(output: str | Path) -> Path:
    """``<output>.tensorboard``: the TensorBoard event files of the training job that writes ``output``."""
    return Path(f"{os.fspath(output).rstrip('/')}{EVENT_SUFFIX}")
