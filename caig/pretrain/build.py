"""``caig pretrain-data``: the e-commerce pre-training set of a preset, plus the tiny tokenizer's corpus.

From the catalog and a file of reviewed descriptions (the synthetic world's or your own;
docs/pretrain-data.md)::

    caig pretrain-data --catalog data/catalog.parquet \\
        --descriptions world/reviewed_descriptions.parquet --out pretrain/

or from a prepared JSONL file of records (docs/pretrain-data.md)::

    caig pretrain-data --jsonl my_pretrain.jsonl --out pretrain/

Never reads the click log. Products of the reward model's test split (``data.pairs.test_fraction`` and
``data.pairs.seed``, the split ``caig pairs`` uses) are left out. Writes ``data.jsonl`` (the records),
``corpus.txt`` (their texts, one per line) and ``summary.json`` (records per task and family, and what the
descriptions gave). The number of records per task is ``pretrain.mix`` scaled to ``pretrain.samples`` (the
paper's proportions at any size).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from caig.data.pairs import PairConfig
from caig.errors import InputError
from caig.io import write_json, write_text
from caig.logs import get_logger
from caig.pretrain.data import (
    TASKS,
    description_records,
    description_summary,
    held_out_products,
    read_descriptions,
    read_records,
    scale_mix,
    task_counts,
    write_records,
)
from caig.pretrain.data import corpus as record_texts
from caig.pretrain.products import read_catalog

log = get_logger("pretrain-data")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, help="product catalog (Parquet, from caig ingest)")
    parser.add_argument(
        "--descriptions",
        type=Path,
        help="reviewed background descriptions (.jsonl or .parquet: product_id, description, fits, image)",
    )
    parser.add_argument(
        "--jsonl", type=Path, help="prepared pre-training records instead of catalog and descriptions"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")


def build_records(args: argparse.Namespace, cfg: DictConfig) -> tuple[list[dict], dict[str, Any]]:
    """The records and what their source gave: the JSONL file as given, or the mix built from the catalog
    and the reviewed descriptions with the test split's products left out."""
    if args.jsonl is not None:
        return read_records(args.jsonl), {"source": "jsonl"}
    missing = [flag for flag in ("catalog", "descriptions") if getattr(args, flag) is None]
    if missing:
        raise InputError(
            f"--{missing[0]} is required without --jsonl", expected="--catalog and --descriptions"
        )
    node = cfg.pretrain
    products = read_catalog(args.catalog)
    descriptions = read_descriptions(args.descriptions)
    split = PairConfig.from_config(cfg.data.pairs)
    held_out = held_out_products(products, test_fraction=split.test_fraction, seed=split.seed)
    mix = OmegaConf.to_container(node.mix, resolve=True)
    counts = scale_mix(mix, None if node.samples is None else int(node.samples))  # type: ignore[arg-type]
    records = description_records(
        products, descriptions, counts, exclude_products=held_out, seed=int(node.seed)
    )
    source = {"source": "descriptions", **description_summary(products, descriptions, held_out)}
    if source["descriptions_unknown_product"]:
        log.warning(
            "%d reviewed descriptions name products that are not in the catalog; they are skipped",
            source["descriptions_unknown_product"],
        )
    made = task_counts(records)
    for task, count in counts.items():
        if count > 0 and made[task] == 0:
            log.warning("task %s got no records: the descriptions give nothing it can use", task)
    log.info("%s", source)
    return records, source


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    records, source = build_records(args, cfg)
    if not records:
        raise InputError(
            "no pre-training records could be built",
            expected="reviewed descriptions of catalog products outside the test split",
        )
    counts = task_counts(records)
    families: dict[str, int] = {}
    for task, count in counts.items():
        families[TASKS[task].family] = families.get(TASKS[task].family, 0) + count
    write_records(records, args.out / "data.jsonl")
    write_text(
        "\n".join(text.replace("\n", " ") for text in record_texts(records)) + "\n", args.out / "corpus.txt"
    )
    write_json(
        {"records": len(records), "tasks": counts, "families": families, "source": source},
        args.out / "summary.json",
    )
    log.info("wrote %d records to %s: %s", len(records), args.out, families)
