"""``caig ingest``: validate a native catalog and click log; keep the clean rows, quarantine the rest.

Every input row ends in exactly one place: the clean output or ``quarantine.parquet`` with a reason code
(kept + quarantined == read). Problems that mean the whole file is wrong (unreadable, missing columns, a
column whose dtype can never fit, no rows, too many bad rows) raise InputError instead, before anything is
written. The reasons and their order are in ``caig.data.schema.Reason``; docs/data-format.md explains them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import polars as pl
from omegaconf import DictConfig
from PIL import Image

from caig import io
from caig.data.schema import (
    CATALOG_COLUMNS,
    DATE_FORMAT,
    DATE_PATTERN,
    LIST_SEPARATOR,
    LOG_COLUMNS,
    OUTPUT_DTYPES,
    QUARANTINE_COLUMNS,
    TABLE_FORMATS,
    Kind,
    Reason,
)
from caig.errors import ConfigError, InputError
from caig.logs import get_logger, progress

log = get_logger("ingest")

# Bookkeeping columns carried next to the data while validating (never written to the clean outputs).
ROW = "__ingest_row"
REASON = "__ingest_reason"
COLUMN = "__ingest_column"
DETAIL = "__ingest_detail"
_RESOLVED = "__ingest_resolved"
_STATUS = "__ingest_status"
_HIT = "__ingest_hit"
_FIRST = "__ingest_first"
ALIVE = pl.col(REASON).is_null()

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

_EXPECTED = {
    name: {Kind.COUNT: "an integer", Kind.DATE: "a date YYYY-MM-DD"}.get(kind, "valid")
    for name, kind in {**CATALOG_COLUMNS, **LOG_COLUMNS}.items()
}
_COLUMN_DTYPES = {
    Kind.ID: "a string or integer column",
    Kind.TEXT: "a string column",
    Kind.PATH: "a string column",
    Kind.COUNT: "an integer column (or a float column of whole numbers)",
    Kind.DATE: "a date, datetime or YYYY-MM-DD string column",
}
_IMAGE_BATCH = 1024


# --------------------------------------------------------------------------------------------- tables


def table_format(path: str | Path) -> str:
    """The format a table path means by its suffix ("parquet" or "csv"); InputError for any other."""
    path = Path(path)
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"unknown table format {path.suffix or '(no suffix)'!r}",
            file=path,
            expected="a file ending in " + " or ".join(TABLE_FORMATS),
        )
    return fmt


def read_table(path: str | Path) -> pl.LazyFrame:
    """Scan a native table, picking the reader by suffix.

    Parquet keeps its stored dtypes; every CSV column is read as a string, so that a cell that fails to
    parse can be told apart from an empty one and reported with its row. The schema is read eagerly so an
    unreadable file fails here, with its name.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise InputError("no such file", file=path)
    try:
        frame = pl.scan_parquet(path) if fmt == "parquet" else pl.scan_csv(path, infer_schema=False)
        frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read as {fmt}: {_first_line(err)}", file=path) from err
    return frame


def write_table(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write a table atomically, Parquet or CSV by suffix; in CSV, list cells are joined with ";"."""
    path = Path(path)
    if table_format(path) == "parquet":
        return io.write_parquet(frame, path)
    lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
    flat = frame.with_columns(pl.col(lists).cast(pl.List(pl.String)).list.join(LIST_SEPARATOR))
    with io.atomic_path(path) as tmp:
        flat.write_csv(tmp)
    return path


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _collect(frame: pl.LazyFrame, path: Path) -> pl.DataFrame:
    """Collect a scan, turning a reader failure into an InputError that names the file (and row, if known)."""
    try:
        return frame.collect()
    except pl.exceptions.PolarsError as err:
        if table_format(path) == "csv":
            ragged = _first_ragged_csv_row(path)
            if ragged is not None:
                row, fields, expected = ragged
                raise InputError(
                    f"row has {fields} fields", file=path, row=row, expected=f"{expected}, as in the header"
                ) from err
        raise InputError(f"cannot read: {_first_line(err)}", file=path) from err


def _first_ragged_csv_row(path: Path) -> tuple[int, int, int] | None:
    """(data row, field count, header field count) of the first CSV row with more fields than the header."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        records = csv.reader(handle)
        header = next(records, [])
        for row, record in enumerate(records, start=1):
            if len(record) > len(header):
                return row, len(record), len(header)
    return None


# --------------------------------------------------------------------------------------------- flags
#
# While validating, a row carries a reason code (null while it is clean), the code of the column to blame
# and an optional detail string. Codes are small integers so that flagging tens of millions of rows stays
# cheap; the human message is written at the end, for the quarantined rows only (see _messages).

_REASONS = list(Reason)
_COLUMNS = list(dict.fromkeys([*CATALOG_COLUMNS, *LOG_COLUMNS]))


def _flag(
    frame: Frame, condition: pl.Expr, reason: Reason, column: str, detail: pl.Expr | None = None
) -> Frame:
    """Mark the rows that are still clean and meet ``condition`` (a row keeps the first reason it gets)."""
    fresh = ALIVE & condition.fill_null(False)
    updates = [
        pl.when(fresh).then(pl.lit(_REASONS.index(reason), pl.Int8)).otherwise(pl.col(REASON)).alias(REASON),
        pl.when(fresh).then(pl.lit(_COLUMNS.index(column), pl.Int8)).otherwise(pl.col(COLUMN)).alias(COLUMN),
    ]
    if detail is not None:
        updates.append(pl.when(fresh).then(detail.cast(pl.String)).otherwise(pl.col(DETAIL)).alias(DETAIL))
    return frame.with_columns(updates)


def _flag_repeats(table: pl.DataFrame, keys: list[str], reason: Reason, column: str) -> pl.DataFrame:
    """Quarantine clean rows whose ``keys`` repeat an earlier clean row's; the detail is that row's number."""
    # Rows already quarantined get a key of their own (their row number), so they never count as a first.
    key = pl.struct(*keys, pl.when(ALIVE).then(0).otherwise(pl.col(ROW)).alias(_HIT))
    table = table.with_columns((ALIVE & ~key.is_first_distinct()).alias(_HIT))
    repeats = table.filter(_HIT).select(ROW, *keys)
    if repeats.height:
        firsts = (
            table.filter(ALIVE & ~pl.col(_HIT))
            .join(repeats.select(keys).unique(), on=keys, how="semi")
            .select(*keys, pl.col(ROW).alias(_FIRST))
        )
        pairs = repeats.join(firsts, on=keys, how="left")
        detail = pl.col(ROW).replace_strict(pairs[ROW], pairs[_FIRST], default=None)
        table = _flag(table, pl.col(_HIT), reason, column, detail)
    return table.drop(_HIT)


def _flag_creative_conflicts(table: pl.DataFrame) -> pl.DataFrame:
    """Quarantine every clean row of a creative that clean rows place under more than one product."""
    clean = table.lazy().filter(ALIVE).select("creative_id", "product_id")
    torn = (
        clean.group_by("creative_id")
        .agg(pl.col("product_id").n_unique().alias(_HIT))
        .filter(pl.col(_HIT) > 1)
        .select("creative_id")
        .collect()
    )
    if torn.height == 0:
        return table
    products = (
        clean.join(torn.lazy(), on="creative_id", how="semi")
        .group_by("creative_id", maintain_order=True)
        .agg(pl.col("product_id").unique(maintain_order=True).str.join(", "))
        .collect()
    )
    detail = pl.col("creative_id").replace_strict(
        products["creative_id"], products["product_id"], default=None
    )
    return _flag(
        table,
        pl.col("creative_id").is_in(torn["creative_id"].implode()),
        Reason.CREATIVE_PRODUCT_CONFLICT,
        "creative_id",
        detail,
    )


# --------------------------------------------------------------------------------------------- parsing


def _is_text(dtype: pl.DataType) -> bool:
    return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))


def _parse(name: str, kind: Kind, dtype: pl.DataType, path: Path) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(is missing, does not parse, parsed value) for one required column; InputError if its dtype never fits.

    CSV cells are all strings and are parsed per row. A Parquet file states its dtypes, so a string column
    of counts is refused as a whole; a string date column is parsed per row (YYYY-MM-DD text is common).
    """
    raw = pl.col(name)
    if dtype == pl.Null:
        return pl.lit(True), pl.lit(False), pl.lit(None, OUTPUT_DTYPES[kind])
    if kind in (Kind.ID, Kind.TEXT, Kind.PATH) and (
        _is_text(dtype) or (kind is Kind.ID and dtype.is_integer())
    ):
        text = raw.cast(pl.String)
        blank = text.is_null() | (text.str.strip_chars() == "")
        return blank, pl.lit(False), text if kind is Kind.TEXT else text.str.strip_chars()
    from_csv = table_format(path) == "csv"
    if dtype == pl.String and (kind is Kind.DATE or (kind is Kind.COUNT and from_csv)):
        text = raw.str.strip_chars()
        blank = text.is_null() | (text == "")
        if kind is Kind.COUNT:
            value = text.cast(pl.Int64, strict=False)
        else:
            value = pl.when(text.str.contains(DATE_PATTERN)).then(text.str.to_date(DATE_FORMAT, strict=False))
        return blank, ~blank & value.is_null(), value
    if kind is Kind.COUNT and dtype.is_integer():
        value = raw.cast(pl.Int64, strict=False)
        return raw.is_null(), raw.is_not_null() & value.is_null(), value
    if kind is Kind.COUNT and dtype.is_float():
        integral = raw.is_finite() & (raw == raw.floor()) & (raw.abs() < 2.0**63)
        value = pl.when(integral).then(raw.cast(pl.Int64, strict=False))
        return raw.is_null(), raw.is_not_null() & ~integral, value
    if kind is Kind.DATE and dtype == pl.Date:
        return raw.is_null(), pl.lit(False), raw
    if kind is Kind.DATE and isinstance(dtype, pl.Datetime):
        return raw.is_null(), pl.lit(False), raw.dt.date()
    raise InputError(
        f"column has dtype {dtype}, which can never hold this field",
        file=path,
        column=name,
        expected=_COLUMN_DTYPES[kind],
    )


def _load(path: Path, columns: dict[str, Kind]) -> tuple[pl.LazyFrame, list[str]]:
    """Scan a table and flag cells that are empty or do not parse; return the typed plan, extra columns."""
    frame = read_table(path)
    schema = frame.collect_schema()
    absent = [name for name in columns if name not in schema]
    if absent:
        raise InputError(
            f"missing required column(s) {', '.join(absent)}; the file has {', '.join(schema) or 'none'}",
            file=path,
            column=absent[0],
            expected="columns " + ", ".join(columns),
        )
    extras = [name for name in schema if name not in columns]
    frame = frame.with_row_index(ROW, offset=1).with_columns(
        pl.col(ROW).cast(pl.Int64),
        pl.lit(None, pl.Int8).alias(REASON),
        pl.lit(None, pl.Int8).alias(COLUMN),
        pl.lit(None, pl.String).alias(DETAIL),
    )
    values = {}
    for name, kind in columns.items():
        blank, bad, value = _parse(name, kind, schema[name], path)
        frame = _flag(frame, blank, Reason.MISSING_VALUE, name)
        frame = _flag(frame, bad, Reason.BAD_VALUE, name, detail=pl.col(name))
        values[name] = value.cast(OUTPUT_DTYPES[kind])
    return frame.with_columns(**values), extras


def _materialise(frame: pl.LazyFrame, path: Path) -> pl.DataFrame:
    """Run the per-row checks once; a file without data rows is refused here."""
    table = _collect(frame, path)
    if table.height == 0:
        raise InputError("the file has no data rows", file=path, expected="at least one row")
    return table


# --------------------------------------------------------------------------------------------- images


# A path with an empty, "." or ".." segment needs os.path.normpath; any other path is already normal.
_UNNORMALISED = r"(^|/)\.\.?(/|$)|//|/$"


def _resolve(raw: str, root: str) -> str | None:
    """The absolute, normalised path of an image, or None when it lies outside ``root`` (lexically)."""
    resolved = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(root, raw))
    return resolved if os.path.commonpath([root, resolved]) == root else None


def _resolve_images(table: pl.DataFrame, root: str) -> pl.DataFrame:
    """Make the image paths of clean rows absolute; quarantine the ones that lead outside the image root.

    Normal paths are resolved in Polars (there can be millions); only paths with "."/".." or empty segments
    go through Python's normpath. An escaping row keeps its path as written, for its message.
    """
    raw = pl.col("image")
    table = table.with_columns(raw.str.contains(_UNNORMALISED).alias(_HIT))
    odd = table.filter(ALIVE & pl.col(_HIT)).get_column("image").unique().to_list()
    slow = pl.DataFrame(
        {"image": odd, _RESOLVED: [_resolve(p, root) for p in odd]},
        schema={"image": pl.String, _RESOLVED: pl.String},
    )
    prefix = root if root.endswith("/") else root + "/"
    absolute = raw.str.starts_with("/")
    resolved = (
        pl.when(pl.col(_HIT))
        .then(raw.replace_strict(slow["image"], slow[_RESOLVED], default=None))
        .when(absolute & ~raw.str.starts_with(prefix))
        .then(pl.lit(None, pl.String))
        .when(absolute)
        .then(raw)
        .otherwise(pl.concat_str(pl.lit(prefix), raw))
    )
    table = table.with_columns(pl.when(ALIVE).then(resolved).alias(_RESOLVED))
    table = _flag(table, pl.col(_RESOLVED).is_null(), Reason.IMAGE_PATH_ESCAPE, "image")
    return table.with_columns(pl.coalesce(_RESOLVED, "image").alias("image")).drop(_RESOLVED, _HIT)


def _check_one_image(path: str) -> tuple[str, str]:
    """("ok" | "missing" | "unreadable", detail) for one image file: PIL must open and verify it."""
    if not os.path.isfile(path):
        return "missing", "no such file"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # noqa: BLE001 - whatever PIL raises on a broken file, the image is unreadable
        return "unreadable", f"{type(err).__name__}: {err}"
    return "ok", ""


@dataclass
class ImageCounts:
    """Unique image paths of one file's otherwise-clean rows: how many were checked and how many failed."""

    checked: int = 0
    missing: int = 0
    unreadable: int = 0


class ImageChecker:
    """Checks each unique image path once, across files, with a thread pool (the work is mostly I/O)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.outcomes: dict[str, tuple[str, str]] = {}

    def check(self, paths: Sequence[str], label: str) -> None:
        todo = [p for p in paths if p not in self.outcomes]
        if not todo:
            return
        with (
            ThreadPoolExecutor(self.workers) as pool,
            progress(total=len(todo), desc=f"checking {label} images", unit="img") as bar,
        ):
            for start in range(0, len(todo), _IMAGE_BATCH):
                batch = todo[start : start + _IMAGE_BATCH]
                self.outcomes.update(zip(batch, pool.map(_check_one_image, batch), strict=True))
                bar.update(len(batch))

    def apply(self, table: pl.DataFrame, label: str) -> tuple[pl.DataFrame, ImageCounts]:
        """Check the images of the clean rows of ``table`` and quarantine the rows whose image fails."""
        paths = table.filter(ALIVE).get_column("image").unique().to_list()
        self.check(paths, label)
        failed = [(p, *self.outcomes[p]) for p in paths if self.outcomes[p][0] != "ok"]
        failures = pl.DataFrame(
            failed, schema={"image": pl.String, _STATUS: pl.String, DETAIL: pl.String}, orient="row"
        )
        counts = ImageCounts(
            checked=len(paths),
            missing=failures.filter(pl.col(_STATUS) == "missing").height,
            unreadable=failures.filter(pl.col(_STATUS) == "unreadable").height,
        )
        for status, reason in (("missing", Reason.IMAGE_MISSING), ("unreadable", Reason.IMAGE_UNREADABLE)):
            hits = failures.filter(pl.col(_STATUS) == status)
            if hits.height:
                detail = pl.col("image").replace_strict(hits["image"], hits[DETAIL], default=None)
                table = _flag(table, pl.col("image").is_in(hits["image"].implode()), reason, "image", detail)
        return table, counts


# --------------------------------------------------------------------------------------------- checks


def _check_bad_fraction(table: pl.DataFrame, path: Path, root: str, max_bad_fraction: float) -> None:
    """Stop when a file is mostly bad rows: that is a wrong file or layout, not a few dirty rows."""
    bad = table.filter(~ALIVE)
    if bad.height / table.height <= max_bad_fraction:
        return
    top = bad.group_by(REASON).len().sort(["len", REASON], descending=[True, False]).row(0)
    first = _messages(bad.filter(pl.col(REASON) == top[0]).head(1), root).row(0, named=True)
    raise InputError(
        f"{bad.height} of {table.height} rows are invalid ({bad.height / table.height:.0%}), above "
        f"data.ingest.max_bad_fraction={max_bad_fraction}, so this is most likely the wrong file or layout; "
        f"most common reason {first['reason']} ({top[1]} rows), first here: {first['message']}",
        file=path,
        row=first["row"],
        column=first["column"],
    )


def _validate_catalog(
    path: Path, root: str, max_bad_fraction: float, images: ImageChecker | None
) -> tuple[pl.DataFrame, list[str], ImageCounts]:
    frame, extras = _load(path, CATALOG_COLUMNS)
    table = _resolve_images(_materialise(frame, path), root)
    table = _flag_repeats(table, ["product_id"], Reason.DUPLICATE_PRODUCT, "product_id")
    _check_bad_fraction(table, path, root, max_bad_fraction)
    counts = ImageCounts()
    if images is not None:
        table, counts = images.apply(table, "catalog")
        _check_bad_fraction(table, path, root, max_bad_fraction)
    return table, extras, counts


def _validate_log(
    path: Path, root: str, max_bad_fraction: float, images: ImageChecker | None, catalog: pl.DataFrame
) -> tuple[pl.DataFrame, list[str], ImageCounts]:
    frame, extras = _load(path, LOG_COLUMNS)
    for name in ("impressions", "clicks"):
        frame = _flag(frame, pl.col(name) < 0, Reason.NEGATIVE_COUNT, name)
    frame = _flag(frame, pl.col("clicks") > pl.col("impressions"), Reason.CLICKS_EXCEED_IMPRESSIONS, "clicks")
    table = _resolve_images(_materialise(frame, path), root)
    listed = catalog.get_column("product_id").drop_nulls().unique()
    clean = catalog.filter(ALIVE).get_column("product_id").unique()
    table = table.with_columns(pl.col("product_id").is_in(listed.implode()).alias(_HIT))
    table = _flag(table, ~pl.col(_HIT), Reason.UNKNOWN_PRODUCT, "product_id")
    table = _flag(
        table, ~pl.col("product_id").is_in(clean.implode()), Reason.PRODUCT_QUARANTINED, "product_id"
    ).drop(_HIT)
    table = _flag_creative_conflicts(table)
    table = _flag_repeats(table, ["creative_id", "date"], Reason.DUPLICATE_ROW, "date")
    _check_bad_fraction(table, path, root, max_bad_fraction)
    counts = ImageCounts()
    if images is not None:
        table, counts = images.apply(table, "log")
        _check_bad_fraction(table, path, root, max_bad_fraction)
    return table, extras, counts


# --------------------------------------------------------------------------------------------- outputs


def _message(reason: Reason, root: str) -> pl.Expr:
    """The human message of one reason, from the row's (typed) values, its column and its detail."""
    column, detail, col = pl.col("column"), pl.col(DETAIL), pl.col
    match reason:
        case Reason.MISSING_VALUE:
            return pl.format("required column '{}' is empty", column)
        case Reason.BAD_VALUE:
            expected = column.replace_strict(_EXPECTED, default="valid")
            return pl.format("'{}' value '{}' is not {}", column, detail, expected)
        case Reason.NEGATIVE_COUNT:
            value = pl.when(column == "clicks").then(col("clicks")).otherwise(col("impressions"))
            return pl.format("{} is negative ({})", column, value)
        case Reason.CLICKS_EXCEED_IMPRESSIONS:
            return pl.format("clicks ({}) exceed impressions ({})", col("clicks"), col("impressions"))
        case Reason.IMAGE_PATH_ESCAPE:
            return pl.format("image path '{}' leads outside the image root {}", col("image"), pl.lit(root))
        case Reason.DUPLICATE_PRODUCT:
            return pl.format(
                "product_id '{}' already appears on row {}; the first row is kept", col("product_id"), detail
            )
        case Reason.UNKNOWN_PRODUCT:
            return pl.format("product_id '{}' is not in the catalog", col("product_id"))
        case Reason.PRODUCT_QUARANTINED:
            return pl.format(
                "product_id '{}' has no clean catalog row (its catalog rows are quarantined)",
                col("product_id"),
            )
        case Reason.CREATIVE_PRODUCT_CONFLICT:
            return pl.format(
                "creative_id '{}' appears under several product_ids ({}); all its rows are quarantined",
                col("creative_id"),
                detail,
            )
        case Reason.DUPLICATE_ROW:
            return pl.format(
                "creative_id '{}' on {} already appears on row {}; the first row is kept",
                col("creative_id"),
                col("date"),
                detail,
            )
        case Reason.IMAGE_MISSING:
            return pl.format("image not found: {}", col("image"))
        case Reason.IMAGE_UNREADABLE:
            return pl.format("image cannot be opened: {} ({})", col("image"), detail)
    raise AssertionError(f"no message for {reason}")


def _messages(bad: pl.DataFrame, root: str) -> pl.DataFrame:
    """Decode the quarantined rows' codes into (row, reason, column, message)."""
    decoded = bad.with_columns(
        pl.col(REASON)
        .replace_strict(list(range(len(_REASONS))), [r.value for r in _REASONS])
        .alias("reason"),
        pl.col(COLUMN).replace_strict(list(range(len(_COLUMNS))), _COLUMNS).alias("column"),
    )
    present = [_REASONS[code] for code in decoded.get_column(REASON).unique().sort()]
    message = pl.coalesce(
        [pl.when(pl.col(REASON) == _REASONS.index(r)).then(_message(r, root)) for r in present]
    )
    return decoded.select(pl.col(ROW).alias("row"), "reason", "column", message.alias("message"))


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """One column of an original row, rendered as text for the quarantine's ``values``."""
    col = pl.col(name)
    if isinstance(dtype, (pl.List, pl.Array)):
        return col.cast(pl.List(pl.String)).list.join(LIST_SEPARATOR).alias(name)
    if isinstance(dtype, pl.Struct):
        return pl.struct(col).struct.json_encode().alias(name)
    if dtype == pl.Binary:
        return col.bin.encode("hex").alias(name)
    return col.cast(pl.String).alias(name)


def _quarantine_rows(table: pl.DataFrame, path: Path, root: str) -> pl.DataFrame:
    """The quarantined rows of one file, with messages and their original values re-read from the file."""
    bad = table.filter(~ALIVE)
    if bad.height == 0:
        return pl.DataFrame(schema=QUARANTINE_COLUMNS)
    described = _messages(bad, root).with_columns(pl.lit(str(path)).alias("source"))
    source = read_table(path)
    schema = source.collect_schema()
    original = source.with_row_index("row", offset=1).with_columns(pl.col("row").cast(pl.Int64))
    original = original.filter(pl.col("row").is_in(described.get_column("row").implode())).select(
        "row",
        pl.struct([_as_text(name, dtype) for name, dtype in schema.items()])
        .struct.json_encode()
        .alias("values"),
    )
    joined = described.join(_collect(original, path), on="row", how="left", maintain_order="left")
    return joined.select(pl.col(name).cast(dtype) for name, dtype in QUARANTINE_COLUMNS.items())


def _clean_rows(table: pl.DataFrame, columns: dict[str, Kind], extras: list[str]) -> pl.DataFrame:
    return table.filter(ALIVE).select(*columns, *extras)


@dataclass
class FileReport:
    """What happened to one input file's rows."""

    path: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    quarantined_by_reason: dict[str, int]
    images: ImageCounts = field(default_factory=ImageCounts)


def _file_report(path: Path, table: pl.DataFrame, images: ImageCounts) -> FileReport:
    counts = dict(table.filter(~ALIVE).group_by(REASON).len().iter_rows())
    by_reason = {reason.value: counts[code] for code, reason in enumerate(_REASONS) if code in counts}
    kept = table.filter(ALIVE).height
    return FileReport(str(path), table.height, kept, table.height - kept, by_reason, images)


@dataclass
class IngestReport:
    """The outcome of one ingest run (written as ingest_report.json)."""

    catalog: FileReport
    log: FileReport
    image_root: str | None
    images_checked: bool
    max_bad_fraction: float
    outputs: dict[str, str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------- API


def ingest(
    catalog_path: str | Path,
    log_path: str | Path,
    out_dir: str | Path,
    image_root: str | Path | None = None,
    check_images: bool = True,
    max_bad_fraction: float = 0.5,
    image_check_workers: int = 8,
) -> IngestReport:
    """Validate a catalog and a click log; write the clean tables, the quarantine and a report to ``out_dir``.

    Relative image paths resolve against ``image_root`` when given, else against the folder of the file
    that names them; paths that lead outside that root are quarantined. Raises InputError, having written
    nothing, when a file as a whole is unusable.
    """
    catalog_path, log_path, out_dir = Path(catalog_path), Path(log_path), Path(out_dir)
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ConfigError(f"data.ingest.max_bad_fraction must lie in [0, 1], got {max_bad_fraction}")
    if image_check_workers < 1:
        raise ConfigError(f"data.ingest.image_check_workers must be at least 1, got {image_check_workers}")
    outputs = {name: out_dir / f"{name}.parquet" for name in ("catalog", "log", "quarantine")}
    outputs["report"] = out_dir / "ingest_report.json"
    for target in outputs.values():
        for source in (catalog_path, log_path):
            if source.exists() and target.exists() and target.resolve() == source.resolve():
                raise InputError("ingest would overwrite its own input; choose another --out", file=source)
    if image_root is not None and not Path(image_root).is_dir():
        raise InputError("image root is not a directory", file=image_root)

    def root_of(path: Path) -> str:
        return os.path.abspath(image_root if image_root is not None else path.parent)

    checker = ImageChecker(image_check_workers) if check_images else None
    catalog, catalog_extras, catalog_images = _validate_catalog(
        catalog_path, root_of(catalog_path), max_bad_fraction, checker
    )
    events, log_extras, log_images = _validate_log(
        log_path, root_of(log_path), max_bad_fraction, checker, catalog
    )
    quarantine = pl.concat(
        [
            _quarantine_rows(catalog, catalog_path, root_of(catalog_path)),
            _quarantine_rows(events, log_path, root_of(log_path)),
        ]
    )
    report = IngestReport(
        catalog=_file_report(catalog_path, catalog, catalog_images),
        log=_file_report(log_path, events, log_images),
        image_root=None if image_root is None else os.path.abspath(image_root),
        images_checked=check_images,
        max_bad_fraction=max_bad_fraction,
        outputs={name: str(path) for name, path in outputs.items()},
    )
    io.write_parquet(_clean_rows(catalog, CATALOG_COLUMNS, catalog_extras), outputs["catalog"])
    io.write_parquet(_clean_rows(events, LOG_COLUMNS, log_extras), outputs["log"])
    io.write_parquet(quarantine, outputs["quarantine"])
    io.write_json(report.to_dict(), outputs["report"])
    for part in (report.catalog, report.log):
        log.info(
            "%s: %d rows read, %d kept, %d quarantined %s",
            part.path,
            part.rows_read,
            part.rows_kept,
            part.rows_quarantined,
            part.quarantined_by_reason or "",
        )
    return report


# --------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", required=True, type=Path, help="product catalog (.parquet or .csv)")
    parser.add_argument("--log", required=True, type=Path, help="creative click log (.parquet or .csv)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="folder that relative image paths resolve against (default: each file's folder)",
    )
    parser.add_argument(
        "--no-image-check",
        action="store_true",
        help="do not open the images (sets data.ingest.check_images=false)",
    )


def overrides(args: argparse.Namespace) -> list[str]:
    return ["data.ingest.check_images=false"] if args.no_image_check else []


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    settings = cfg.data.ingest
    ingest(
        args.catalog,
        args.log,
        args.out,
        image_root=args.image_root,
        check_images=bool(settings.check_images),
        max_bad_fraction=float(settings.max_bad_fraction),
        image_check_workers=int(settings.image_check_workers),
    )
