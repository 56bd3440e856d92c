"""``caig import {alibaba,cg4ctr}``: convert a public CTR dataset to the native catalog + click log.

Importers translate layouts; they do not judge values. A line that does not fit the layout (wrong field
count, malformed JSON, a count or date that does not parse) raises InputError naming the file and line.
Values that are well-formed but wrong (negative counts, clicks above impressions, duplicates, a creative
under two products, missing images) are passed through unchanged for ``caig ingest`` to quarantine and count.
Image paths are written relative to the dataset's image folder: run ingest with ``--image-root`` that folder.
"""

from __future__ import annotations

import argparse
import json
import re
import string
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig

from caig.data.ingest import table_format, write_table
from caig.data.schema import CREATIVE_COLUMNS, LOG_COLUMNS, OUTPUT_DTYPES
from caig.errors import ConfigError, InputError
from caig.logs import get_logger

log = get_logger("import")

ALIBABA_FIELDS = ("item_id", "image_name", "ds", "pv", "clk")
#: Catalog attribute column saying where the catalog image came from: a creative, not a plain product shot.
IMAGE_SOURCE = "image_source"
CREATIVE_IMAGE = "creative"
_INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass
class ImportSummary:
    """What an importer wrote, with the counts of anything it could not carry over."""

    layout: str
    outputs: dict[str, str]
    products: int
    creatives: int
    log_rows: int
    notes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- shared


def image_pattern_fields(pattern: str, key: str) -> list[str]:
    """The field names a pattern such as ``"{creative_image_hash}.jpg"`` uses; ConfigError if malformed."""
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as err:
        raise ConfigError(f"{key}: malformed pattern {pattern!r}: {err}") from err
    names = [name for _, name, spec, conv in parts if name is not None]
    if any(spec or conv for _, name, spec, conv in parts if name is not None) or not all(names):
        raise ConfigError(
            f"{key}: pattern {pattern!r} may only use plain named fields such as {{image_name}}"
        )
    if not names:
        raise ConfigError(
            f"{key}: pattern {pattern!r} names no field, so every creative would share one image"
        )
    return names


def _pattern_expr(pattern: str, key: str, available: list[str]) -> pl.Expr:
    """A vectorised ``pattern.format(**row)`` over the columns of a frame."""
    unknown = [name for name in image_pattern_fields(pattern, key) if name not in available]
    if unknown:
        raise ConfigError(f"{key}: pattern {pattern!r} uses {unknown}; available fields: {available}")
    pieces: list[pl.Expr] = []
    for literal, name, _, _ in string.Formatter().parse(pattern):
        if literal:
            pieces.append(pl.lit(literal))
        if name is not None:
            pieces.append(pl.col(name).cast(pl.String))
    return pl.concat_str(pieces)


def _catalog_from_log(events: pl.DataFrame, category: str, image_dir: Path) -> pl.DataFrame:
    """One catalog row per product: title = product_id, the placeholder category, a creative's image.

    The image is that of the product's earliest creative (by date, then line) whose file exists in
    ``image_dir``, else the earliest creative's, so one missing creative image does not lose the product.
    The image_source column says the catalog image is a creative, not a plain product shot.
    """
    candidates = (
        events.filter(pl.col("product_id").str.strip_chars() != "")
        .with_row_index("order")
        .sort("date", "order", nulls_last=True)
        .unique(["product_id", "image"], keep="first", maintain_order=True)
        .select("product_id", "image")
    )
    chosen: dict[str, tuple[str, bool]] = {}
    for product, image in candidates.iter_rows():
        if product in chosen and chosen[product][1]:
            continue
        exists = image is not None and (image_dir / image).is_file()
        if product not in chosen or exists:
            chosen[product] = (image, exists)
    return pl.DataFrame(
        {
            "product_id": list(chosen),
            "title": list(chosen),
            "category": [category] * len(chosen),
            "image": [image for image, _ in chosen.values()],
            IMAGE_SOURCE: [CREATIVE_IMAGE] * len(chosen),
        },
        schema={
            "product_id": pl.String,
            "title": pl.String,
            "category": pl.String,
            "image": pl.String,
            IMAGE_SOURCE: pl.String,
        },
    )


def _check_image_dir(images: Path, sample: list[str]) -> None:
    """The image folder must exist; warn when none of the first images is in it (wrong pattern or folder)."""
    if not images.is_dir():
        raise InputError("image folder does not exist", file=images)
    if sample and not any((images / name).is_file() for name in sample):
        log.warning(
            "none of the first %d image paths (e.g. %s) exists under %s: check the image pattern",
            len(sample),
            sample[0],
            images,
        )


def _write(tables: dict[str, pl.DataFrame], paths: dict[str, Path]) -> dict[str, str]:
    for name, table in tables.items():
        write_table(table, paths[name])
    return {name: str(paths[name]) for name in tables}


def _native_log(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col(name).cast(OUTPUT_DTYPES[kind]) for name, kind in LOG_COLUMNS.items())


# --------------------------------------------------------------------------------------------- Alibaba


def _parse_alibaba(path: Path) -> pl.DataFrame:
    """The TSV as string columns item_id..clk plus ``line`` (1-based line in the file); skips blank lines."""
    try:
        lines = pl.scan_lines(path, name="text").with_row_index("line", offset=1).collect()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read: {err}", file=path) from err
    lines = lines.filter(pl.col("text").str.strip_chars() != "").with_columns(pl.col("line").cast(pl.Int64))
    if lines.height == 0:
        raise InputError(
            "the file has no lines", file=path, expected="tab-separated " + ", ".join(ALIBABA_FIELDS)
        )
    order = list(ALIBABA_FIELDS)
    header = [name.strip().lower() for name in lines.item(0, "text").split("\t")]
    if set(header) & set(ALIBABA_FIELDS):
        if sorted(header) != sorted(ALIBABA_FIELDS):
            raise InputError(
                f"header has fields {header}",
                file=path,
                row=lines.item(0, "line"),
                expected="the fields " + ", ".join(ALIBABA_FIELDS) + " in any order",
            )
        order = header
        lines = lines.slice(1)
        if lines.height == 0:
            raise InputError(
                "the file has a header but no data lines", file=path, expected="at least one line"
            )
    fields = pl.col("text").str.count_matches("\t", literal=True) + 1
    ragged = lines.filter(fields != len(order))
    if ragged.height:
        bad = ragged.row(0, named=True)
        count = bad["text"].count("\t") + 1
        raise InputError(
            f"line has {count} tab-separated fields",
            file=path,
            row=bad["line"],
            expected=f"{len(order)}: " + ", ".join(order),
        )
    split = pl.col("text").str.split_exact("\t", len(order) - 1).struct.rename_fields(order)
    return (
        lines.select("line", split.alias("fields"))
        .unnest("fields")
        .with_columns(pl.col(order).str.strip_chars())
    )


def _typed_alibaba(lines: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Counts to integers, ds (YYYYMMDD or YYYY-MM-DD) to dates; InputError on the first line that fails."""
    ds = pl.col("ds")
    iso = (
        pl.when(ds.str.contains(r"^\d{8}$"))
        .then(pl.concat_str(ds.str.slice(0, 4), ds.str.slice(4, 2), ds.str.slice(6, 2), separator="-"))
        .otherwise(ds)
    )
    typed = lines.with_columns(
        pl.when(iso.str.contains(r"^\d{4}-\d{2}-\d{2}$"))
        .then(iso.str.to_date("%Y-%m-%d", strict=False))
        .alias("date"),
        *(
            pl.when(pl.col(c).str.contains(_INTEGER.pattern))
            .then(pl.col(c).cast(pl.Int64, strict=False))
            .alias(out)
            for c, out in (("pv", "impressions"), ("clk", "clicks"))
        ),
    )
    for column, parsed, expected in (
        ("ds", "date", "a date YYYYMMDD or YYYY-MM-DD"),
        ("pv", "impressions", "an integer"),
        ("clk", "clicks", "an integer"),
    ):
        bad = typed.filter(pl.col(parsed).is_null())
        if bad.height:
            row = bad.row(0, named=True)
            raise InputError(
                f"value {row[column]!r} does not parse",
                file=path,
                row=row["line"],
                column=column,
                expected=expected,
            )
    return typed


def import_alibaba(
    data_path: str | Path,
    image_dir: str | Path,
    catalog_out: str | Path,
    log_out: str | Path,
    image_pattern: str = "{image_name}",
    category: str = "unknown",
) -> ImportSummary:
    """Convert Alibaba CreativeRanking (TSV ``item_id, image_name, ds, pv, clk``) to a native catalog and log.

    The log keeps one row per input line: product_id = item_id, creative_id = image_name, image from
    ``image_pattern`` (fields item_id, image_name; relative to ``image_dir``). The dataset has no titles or
    categories, so the catalog uses title = item_id, ``category``, and a creative's image (see
    ``_catalog_from_log``).
    """
    data_path, image_dir = Path(data_path), Path(image_dir)
    paths = {"catalog": Path(catalog_out), "log": Path(log_out)}
    for target in paths.values():
        table_format(target)
    lines = _parse_alibaba(data_path)
    image = _pattern_expr(image_pattern, "data.import.alibaba.image_pattern", list(ALIBABA_FIELDS))
    typed = _typed_alibaba(lines, data_path).with_columns(
        pl.col("item_id").alias("product_id"),
        pl.col("image_name").alias("creative_id"),
        image.alias("image"),
    )
    _check_image_dir(image_dir, typed.get_column("image").head(20).to_list())
    events = _native_log(typed)
    catalog = _catalog_from_log(events, category, image_dir)
    outputs = _write({"catalog": catalog, "log": events}, paths)
    summary = ImportSummary(
        "alibaba", outputs, catalog.height, events.get_column("creative_id").n_unique(), events.height
    )
    log.info(
        "alibaba: %d log rows -> %d products, %d creatives; ingest with --image-root %s",
        events.height,
        summary.products,
        summary.creatives,
        image_dir,
    )
    return summary


# --------------------------------------------------------------------------------------------- CG4CTR


def _count(value: Any) -> int | None:
    """A count from JSON: an int, a whole float, or a string of digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    return None


def _read_cg4ctr(path: Path, image_pattern: str) -> tuple[list[dict[str, Any]], int]:
    """Flatten ``{product_key: [creative, ...]}`` into log records, and count the products with no creatives.

    InputError names the product key, the creative's position and the field of the first bad creative.
    """
    fields = image_pattern_fields(image_pattern, "data.import.cg4ctr.image_pattern")
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise InputError(
            f"malformed JSON: {err.msg} (column {err.colno})", file=path, row=err.lineno
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read: {err}", file=path) from err
    if not isinstance(data, dict):
        raise InputError(
            f"top level is a JSON {type(data).__name__}",
            file=path,
            expected="an object {product_key: [creative, ...]}",
        )
    records, empty = [], 0
    for key, creatives in data.items():
        if not isinstance(creatives, list):
            raise InputError(
                f"product {key!r}: value is a JSON {type(creatives).__name__}",
                file=path,
                expected="a list of creative objects",
            )
        empty += not creatives
        for index, creative in enumerate(creatives):
            where = f"product {key!r}, creative #{index}"
            if not isinstance(creative, dict):
                raise InputError(f"{where}: not a JSON object", file=path, expected="a creative object")
            needed = [
                "creative_id",
                "exp_impression_cnt",
                "exp_click_cnt",
                *(f for f in fields if f != "product_key"),
            ]
            for name in needed:
                if creative.get(name) is None:
                    raise InputError(f"{where}: field {name!r} is missing or null", file=path, column=name)
            counts = {}
            for name in ("exp_impression_cnt", "exp_click_cnt"):
                counts[name] = _count(creative[name])
                if counts[name] is None:
                    raise InputError(
                        f"{where}: {name} is {creative[name]!r}",
                        file=path,
                        column=name,
                        expected="an integer count",
                    )
            values = {name: creative[name] for name in fields if name != "product_key"}
            records.append(
                {
                    "product_id": str(key),
                    "creative_id": str(creative["creative_id"]),
                    "image": image_pattern.format(product_key=key, **values),
                    "impressions": counts["exp_impression_cnt"],
                    "clicks": counts["exp_click_cnt"],
                }
            )
    if not records:
        raise InputError(
            "no creatives in the file", file=path, expected="at least one product with creatives"
        )
    return records, empty


def _read_captions(path: Path) -> pl.DataFrame:
    """JSON lines ``{creative_id, prompt_creative}`` as (creative_id, description); InputError if bad."""
    rows = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read: {err}", file=path) from err
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(f"malformed JSON line: {err.msg}", file=path, row=number) from err
            if not isinstance(record, dict):
                raise InputError(
                    "line is not a JSON object",
                    file=path,
                    row=number,
                    expected='{"creative_id": ..., "prompt_creative": ...}',
                )
            for name in ("creative_id", "prompt_creative"):
                if record.get(name) is None:
                    raise InputError(f"field {name!r} is missing or null", file=path, row=number, column=name)
            if not isinstance(record["prompt_creative"], str):
                raise InputError(
                    "prompt_creative is not a string", file=path, row=number, column="prompt_creative"
                )
            rows.append({"creative_id": str(record["creative_id"]), "description": record["prompt_creative"]})
    return pl.DataFrame(rows, schema={"creative_id": pl.String, "description": pl.String})


def import_cg4ctr(
    json_path: str | Path,
    image_dir: str | Path,
    catalog_out: str | Path,
    log_out: str | Path,
    creatives_out: str | Path | None = None,
    captions_path: str | Path | None = None,
    image_pattern: str = "{creative_image_hash}.jpg",
    log_date: str = "1970-01-01",
    category: str = "unknown",
) -> ImportSummary:
    """Convert CG4CTR's JSON (and optional caption JSON lines) to a native catalog, log and creatives table.

    The JSON holds aggregated counts, so each creative becomes one log row dated ``log_date``. Captions
    become the creatives table (creative_id, product_id, description); captions of creatives that are not
    in the JSON, and repeated captions of one creative after the first, are counted in ``notes`` and skipped.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    if (creatives_out is None) != (captions_path is None):
        raise InputError(
            "a creatives output and a captions file go together: give both or neither",
            file=captions_path or creatives_out,
        )
    paths = {"catalog": Path(catalog_out), "log": Path(log_out)}
    if creatives_out is not None:
        paths["creatives"] = Path(creatives_out)
    for target in paths.values():
        table_format(target)
    try:
        day = date.fromisoformat(log_date)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.import.cg4ctr.date must be YYYY-MM-DD, got {log_date!r}") from err
    records, empty = _read_cg4ctr(json_path, image_pattern)
    schema = {
        "product_id": pl.String,
        "creative_id": pl.String,
        "image": pl.String,
        "impressions": pl.Int64,
        "clicks": pl.Int64,
    }
    events = _native_log(pl.DataFrame(records, schema=schema).with_columns(pl.lit(day).alias("date")))
    _check_image_dir(image_dir, events.get_column("image").head(20).to_list())
    catalog = _catalog_from_log(events, category, image_dir)
    tables = {"catalog": catalog, "log": events}
    notes = {"products_without_creatives": empty}
    if captions_path is not None:
        captions = _read_captions(Path(captions_path))
        owners = events.select("creative_id", "product_id").unique(maintain_order=True)
        first = captions.unique("creative_id", keep="first", maintain_order=True)
        matched = first.join(owners, on="creative_id", how="inner", maintain_order="left")
        tables["creatives"] = matched.select(pl.col(n).cast(t) for n, t in CREATIVE_COLUMNS.items())
        notes["captions_duplicate"] = captions.height - first.height
        notes["captions_unmatched"] = first.join(owners, on="creative_id", how="anti").height
        notes["creatives_without_caption"] = owners.join(first, on="creative_id", how="anti").height
    outputs = _write(tables, paths)
    summary = ImportSummary(
        "cg4ctr", outputs, catalog.height, events.get_column("creative_id").n_unique(), events.height, notes
    )
    log.info(
        "cg4ctr: %d products, %d creatives %s; ingest with --image-root %s",
        summary.products,
        summary.creatives,
        notes,
        image_dir,
    )
    return summary


# --------------------------------------------------------------------------------------------- CLI

LAYOUTS = ("alibaba", "cg4ctr")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layout", choices=LAYOUTS, help="the source dataset's layout")
    parser.add_argument(
        "--log",
        required=True,
        type=Path,
        help="click log: alibaba, the TSV; cg4ctr, the {product_key: [creative, ...]} JSON",
    )
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        help="the dataset's image folder; image paths are written relative to it "
        "(pass it to `caig ingest --image-root`)",
    )
    parser.add_argument(
        "--captions", type=Path, help="cg4ctr: caption JSON lines {creative_id, prompt_creative}"
    )
    parser.add_argument(
        "--out", type=Path, help="output folder for catalog.parquet, log.parquet (and creatives.parquet)"
    )
    parser.add_argument("--catalog-out", type=Path, help="catalog file (.parquet or .csv); overrides --out")
    parser.add_argument("--log-out", type=Path, help="log file (.parquet or .csv); overrides --out")
    parser.add_argument("--creatives-out", type=Path, help="cg4ctr: creatives file; overrides --out")
    parser.add_argument(
        "--image-pattern", help="image file pattern (sets data.import.<layout>.image_pattern)"
    )
    parser.add_argument("--date", help="cg4ctr: the date of every log row (sets data.import.cg4ctr.date)")


def _quoted(value: str) -> str:
    """A Hydra override value as a quoted string, so braces and colons are taken literally."""
    # Hydra reads a backslash literally except before a quote or at the end, where it must be doubled.
    escaped = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return f"'{escaped}'"


def overrides(args: argparse.Namespace) -> list[str]:
    sugar = []
    if args.image_pattern is not None:
        sugar.append(f"data.import.{args.layout}.image_pattern={_quoted(args.image_pattern)}")
    if args.date is not None:
        sugar.append(f"data.import.cg4ctr.date={_quoted(args.date)}")
    return sugar


def _output_paths(args: argparse.Namespace, names: list[str]) -> dict[str, Path]:
    paths = {}
    for name in names:
        explicit = getattr(args, f"{name}_out")
        if explicit is None and args.out is None:
            raise InputError(f"no output for the {name}: give --out DIR or --{name}-out FILE")
        paths[name] = explicit if explicit is not None else args.out / f"{name}.parquet"
    return paths


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    settings = cfg.data["import"]
    if args.layout == "alibaba":
        stray = [
            flag
            for flag, value in (
                ("--captions", args.captions),
                ("--date", args.date),
                ("--creatives-out", args.creatives_out),
            )
            if value is not None
        ]
        if stray:
            raise InputError(f"{', '.join(stray)} only apply to the cg4ctr layout")
        paths = _output_paths(args, ["catalog", "log"])
        import_alibaba(
            args.log,
            args.images,
            paths["catalog"],
            paths["log"],
            image_pattern=str(settings.alibaba.image_pattern),
            category=str(settings.placeholder_category),
        )
        return
    if args.creatives_out is not None and args.captions is None:
        raise InputError("--creatives-out needs --captions (the creatives table holds the captions)")
    paths = _output_paths(args, ["catalog", "log", *(["creatives"] if args.captions is not None else [])])
    import_cg4ctr(
        args.log,
        args.images,
        paths["catalog"],
        paths["log"],
        creatives_out=paths.get("creatives"),
        captions_path=args.captions,
        image_pattern=str(settings.cg4ctr.image_pattern),
        log_date=str(settings.cg4ctr.date),
        category=str(settings.placeholder_category),
    )
