"""The native raw schema: the product catalog and the creative click log every data source is turned into.

Real logs (after ``caig import``) and the synthetic world (``caig sim``) both arrive in this one layout, so
``caig ingest`` is the only place that has to distrust input. docs/data-format.md is the user-facing
description of the same facts; keep the two in step.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl


class Kind(StrEnum):
    """What a required column holds; decides which input dtypes fit and how a CSV cell is parsed."""

    ID = "id"  # an identifier: strings, or integers in Parquet (cast to strings)
    TEXT = "text"  # free text that must not be empty
    PATH = "path"  # an image path, relative to the naming file's folder or the image root
    DATE = "date"  # a calendar day, YYYY-MM-DD
    COUNT = "count"  # a non-negative integer


#: Required catalog columns (one row per product). Other columns are optional attributes, kept as read.
CATALOG_COLUMNS: dict[str, Kind] = {
    "product_id": Kind.ID,
    "title": Kind.TEXT,
    "category": Kind.TEXT,
    "image": Kind.PATH,
}

#: Required click-log columns (one row per creative per day). Other columns are kept as read.
LOG_COLUMNS: dict[str, Kind] = {
    "product_id": Kind.ID,
    "creative_id": Kind.ID,
    "image": Kind.PATH,
    "date": Kind.DATE,
    "impressions": Kind.COUNT,
    "clicks": Kind.COUNT,
}

#: Creative descriptions (the synthetic world's creatives.parquet; the CG4CTR importer's captions).
CREATIVE_COLUMNS: dict[str, pl.DataType] = {
    "creative_id": pl.String(),
    "product_id": pl.String(),
    "description": pl.String(),
}

#: The dtype each kind has in ingest's clean output.
OUTPUT_DTYPES: dict[Kind, pl.DataType] = {
    Kind.ID: pl.String(),
    Kind.TEXT: pl.String(),
    Kind.PATH: pl.String(),
    Kind.DATE: pl.Date(),
    Kind.COUNT: pl.Int64(),
}

#: One row per rejected input row.
QUARANTINE_COLUMNS: dict[str, pl.DataType] = {
    "source": pl.String(),  # the input file, as given
    "row": pl.Int64(),  # 1-based data row number (the CSV header is not counted)
    "reason": pl.String(),  # a Reason code
    "column": pl.String(),  # the offending column, where one column is to blame
    "message": pl.String(),  # what is wrong, for a person
    "values": pl.String(),  # the original row as a JSON object of strings
}

DATE_FORMAT = "%Y-%m-%d"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
#: Joins list-valued attributes (tags, colors, ...) into one string cell.
LIST_SEPARATOR = ";"
#: File suffixes read and written by the data stage, and the format each one means.
TABLE_FORMATS: dict[str, str] = {".parquet": "parquet", ".csv": "csv"}


class Reason(StrEnum):
    """Why a row was quarantined. A row gets the first reason that applies, in this order."""

    MISSING_VALUE = "missing_value"  # a required cell is empty (or the row has too few fields)
    BAD_VALUE = "bad_value"  # a cell does not parse as its column's type
    NEGATIVE_COUNT = "negative_count"  # impressions or clicks below zero
    CLICKS_EXCEED_IMPRESSIONS = "clicks_exceed_impressions"
    IMAGE_PATH_ESCAPE = "image_path_escape"  # the image path leaves the image root
    DUPLICATE_PRODUCT = "duplicate_product"  # catalog: a product_id seen on an earlier row
    UNKNOWN_PRODUCT = "unknown_product"  # log: product_id absent from the catalog
    PRODUCT_QUARANTINED = "product_quarantined"  # log: every catalog row of the product was quarantined
    CREATIVE_PRODUCT_CONFLICT = "creative_product_conflict"  # log: one creative_id under several products
    DUPLICATE_ROW = "duplicate_row"  # log: a (creative_id, date) seen on an earlier row
    IMAGE_MISSING = "image_missing"  # no file at the resolved image path
    IMAGE_UNREADABLE = "image_unreadable"  # a file that PIL cannot open and verify
