"""The fixed product sets of the preference stage: M training products and a disjoint held-out set.

Every epoch samples candidates for the same M training products (as Algorithm 1 of the paper does), and every
method and epoch is evaluated on the same held-out products, so match rates are comparable across the table.

``caig preference-products --catalog FILE --out FILE`` writes ``product_id, role`` (``train`` | ``heldout``)
with the sizes from ``preference.products``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.errors import ConfigError, InputError
from caig.generate.products import ProductInput, load_caig_json, load_catalog_products
from caig.io import write_parquet
from caig.logs import get_logger

ROLES = ("train", "heldout")

log = get_logger("preference-products")


def choose_product_sets(product_ids: list[str], n_train: int, n_heldout: int, seed: int) -> pl.DataFrame:
    """Draw ``n_heldout`` held-out and ``n_train`` training products (disjoint) from ``product_ids``, seeded.

    The draw depends on the set of ids, not on their order in the catalog.
    """
    if n_train < 1 or n_heldout < 1:
        raise ConfigError(f"preference.products needs train >= 1 and heldout >= 1, got {n_train}, {n_heldout}")
    unique = sorted(set(product_ids))
    if len(unique) < n_train + n_heldout:
        raise ConfigError(
            f"preference.products asks for {n_train} training + {n_heldout} held-out products but the catalog has "
            f"{len(unique)}; lower preference.products.train / .heldout"
        )
    order = np.random.default_rng([seed, 21]).permutation(len(unique))
    heldout = [unique[i] for i in order[:n_heldout]]
    train = [unique[i] for i in order[n_heldout : n_heldout + n_train]]
    return pl.DataFrame(
        {"product_id": heldout + train, "role": ["heldout"] * n_heldout + ["train"] * n_train},
        schema={"product_id": pl.String, "role": pl.String},
    )


def read_catalog_ids(path: str | Path) -> list[str]:
    """The product ids of a catalog (.parquet/.csv: ``product_id``; CAIG JSON: ``id``) without loading images."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            return [str(record["id"]) for record in records]
        table = pl.read_csv(path, infer_schema=False) if suffix == ".csv" else pl.read_parquet(path)
    except FileNotFoundError as err:
        raise InputError("catalog not found", file=path) from err
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as err:
        raise InputError(
            f"cannot read product ids ({err!r})", file=path, expected="product_id / id values"
        ) from err
    if "product_id" not in table.columns:
        raise InputError("missing column", file=path, column="product_id")
    return [str(v) for v in table.get_column("product_id").to_list()]


def load_product_images(path: str | Path, image_root: str | Path | None = None) -> list[ProductInput]:
    """Product cut-outs from a native catalog (.parquet/.csv) or the CAIG prompt-model JSON (.json); no text
    presentation (``caig.generate.sampling.load_products`` adds it), so rendering stays free of torch."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return load_caig_json(path, image_root)
    return load_catalog_products(path, image_root)


def products_for(path: str | Path, role: str) -> list[str]:
    """The product ids of one role, in file order, from a file written by ``choose_product_sets``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    path = Path(path)
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the product sets ({err})", file=path) from err
    for column in ("product_id", "role"):
        if column not in table.columns:
            raise InputError("missing column", file=path, column=column, expected="product_id, role")
    ids = table.filter(pl.col("role") == role).get_column("product_id").to_list()
    if not ids:
        raise InputError(f"no products with role {role!r}", file=path, column="role", expected=" | ".join(ROLES))
    return ids


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, required=True, help="ingested catalog (.parquet/.csv)")
    parser.add_argument("--out", type=Path, required=True, help="product-set file to write (.parquet)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    sizes = cfg.preference.products
    ids = read_catalog_ids(args.catalog)
    table = choose_product_sets(ids, int(sizes.train), int(sizes.heldout), int(cfg.seed))
    write_parquet(table, args.out)
    log.info("%d training and %d held-out products -> %s", int(sizes.train), int(sizes.heldout), args.out)
