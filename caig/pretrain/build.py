"""``caig pretrain-data``: the e-commerce pre-training set of a preset, plus the tiny tokenizer's corpus.

From observable data (the synthetic world, or any log whose creatives have descriptions)::

    caig pretrain-data --catalog data/catalog.parquet --log data/log.parquet \\
        --creatives world/creatives.parquet --exclude-pairs pairs/test.parquet --out pretrain/

or from a prepared JSONL file (docs/pretrain-data.md)::

    caig pretrain-data --jsonl my_pretrain.jsonl --out pretrain/

Writes ``data.jsonl`` (the records), ``corpus.txt`` (their texts, one per line) and ``summary.json``
(records per task and family). The number of records per task is ``pretrain.mix`` scaled to
``pretrain.samples`` (the paper's proportions at any size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from omegaconf import DictConfig, OmegaConf

from caig.errors import InputError
from caig.io import write_json, write_text
from caig.logs import get_logger
from caig.pretrain.data import (
    TASKS,
    observed_creatives,
    read_records,
    scale_mix,
    synthetic_records,
    task_counts,
    write_records,
)
from caig.pretrain.data import corpus as record_texts
from caig.pretrain.products import read_catalog

log = get_logger("pretrain-data")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, help="product catalog (Parquet, from caig ingest)")
    parser.add_argument("--log", type=Path, help="click log (Parquet, from caig ingest)")
    parser.add_argument(
        "--creatives", type=Path, help="creative descriptions (creative_id, product_id, description)"
    )
    parser.add_argument(
        "--exclude-pairs", type=Path, help="pairs file whose products are left out (the RM's test split)"
    )
    parser.add_argument(
        "--jsonl", type=Path, help="prepared pre-training records instead of the three tables"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")


def _read(path: Path, columns: tuple[str, ...]) -> pl.DataFrame:
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read: {err}", file=path, expected="a Parquet file") from err
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise InputError(f"lacks column {missing[0]!r}", file=path, expected=f"columns {list(columns)}")
    return table


def build_records(args: argparse.Namespace, cfg: DictConfig) -> list[dict]:
    """The records: the JSONL file as given, or the mix built from catalog, log and creatives."""
    node = cfg.pretrain
    if args.jsonl is not None:
        return read_records(args.jsonl)
    missing = [flag for flag in ("catalog", "log", "creatives") if getattr(args, flag) is None]
    if missing:
        raise InputError(
            f"--{missing[0]} is required without --jsonl", expected="--catalog, --log and --creatives"
        )
    products = read_catalog(args.catalog)
    log_table = _read(args.log, ("product_id", "creative_id", "image", "impressions", "clicks"))
    creatives = observed_creatives(
        log_table, _read(args.creatives, ("creative_id", "product_id", "description"))
    )
    excluded: set[str] = set()
    if args.exclude_pairs is not None:
        excluded = set(_read(args.exclude_pairs, ("product_id",))["product_id"].cast(pl.String).to_list())
    mix = OmegaConf.to_container(node.mix, resolve=True)
    counts = scale_mix(mix, None if node.samples is None else int(node.samples))  # type: ignore[arg-type]
    records = synthetic_records(
        products,
        creatives,
        counts,
        min_impressions=int(node.min_impressions),
        good_per_product=int(node.good_per_product),
        exclude_products=excluded,
        seed=int(node.seed),
    )
    log.info(
        "%d products (%d excluded as test products), %d creatives",
        len(products),
        len(excluded),
        len(creatives),
    )
    return records


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    records = build_records(args, cfg)
    if not records:
        raise InputError(
            "no pre-training records could be built", expected="products with described creatives"
        )
    counts = task_counts(records)
    families: dict[str, int] = {}
    for task, count in counts.items():
        families[TASKS[task].family] = families.get(TASKS[task].family, 0) + count
    write_records(records, args.out / "data.jsonl")
    write_text(
        "\n".join(text.replace("\n", " ") for text in record_texts(records)) + "\n", args.out / "corpus.txt"
    )
    write_json({"records": len(records), "tasks": counts, "families": families}, args.out / "summary.json")
    log.info("wrote %d records to %s: %s", len(records), args.out, families)
