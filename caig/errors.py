"""Errors that carry enough context (file, row, column, expectation) for a user to fix their input."""

from __future__ import annotations

from pathlib import Path


class CaigError(Exception):
    """A failure the user can act on; the CLI prints it without a traceback and exits with status 2."""


class InputError(CaigError):
    """Bad input: names the file and, where known, the row and column, and says what was expected."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        self.expected = expected
        where = []
        if self.file is not None:
            where.append(self.file)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        text = ", ".join(where) + ": " + message if where else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class ConfigError(CaigError):
    """A config key or value that is wrong or missing; names the key."""
