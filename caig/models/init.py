"""``caig init-model --corpus FILE --out DIR``: write the base LLaVA-NeXT model directory of a preset.

Tiny preset: a random-init tiny model whose tokenizer is trained on the corpus (text lines, or every string
field of a Parquet / JSON / JSON-lines table such as the product catalog). Paper preset: the local
checkpoint named by ``model.path``, checked and written in the same layout (the corpus is not needed).
Later stages load the directory with ``caig.models.load_llava``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from omegaconf import DictConfig

from caig.errors import InputError
from caig.logs import get_logger
from caig.models.llava import build_llava, count_parameters, save_pretrained_model

log = get_logger("init-model")
TABLE_READERS = {
    ".parquet": pl.read_parquet,
    ".json": pl.read_json,
    ".jsonl": pl.read_ndjson,
    ".ndjson": pl.read_ndjson,
}


def read_corpus(path: str | Path) -> list[str]:
    """Texts for the tokenizer: the non-empty lines of a .txt file, or every string (and list-of-string)
    value of a .parquet / .json (list of objects) / .jsonl table."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "corpus file not found", file=path, expected="a .txt, .parquet, .json or .jsonl file"
        )
    if path.suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix not in TABLE_READERS:
        raise InputError(
            f"unsupported corpus format {path.suffix!r}",
            file=path,
            expected="a .txt, .parquet, .json or .jsonl file",
        )
    try:
        table = TABLE_READERS[path.suffix](path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise InputError(f"cannot read corpus table: {err}", file=path) from err
    texts: list[str] = []
    for name, dtype in table.schema.items():
        column = table.get_column(name)
        if dtype == pl.List(pl.String):
            column = column.explode()
        elif dtype != pl.String:
            continue
        texts.extend(text for text in column.drop_nulls().to_list() if text.strip())
    if not texts:
        raise InputError(
            "corpus table has no text (string) columns", file=path, expected="at least one string column"
        )
    return texts


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus", type=Path, help="texts for the tiny tokenizer (.txt / .parquet / .json / .jsonl)"
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    if cfg.model.source == "random" and args.corpus is None:
        raise InputError("--corpus is required to train the tiny model's tokenizer", expected="--corpus FILE")
    texts = read_corpus(args.corpus) if cfg.model.source == "random" else []
    model, processor = build_llava(cfg.model, texts)
    save_pretrained_model(model, processor, args.out)
    log.info(
        "wrote %s: %s parameters, vocabulary %d",
        args.out,
        f"{count_parameters(model):,}",
        len(processor.tokenizer),
    )
