"""Render sampled descriptions into ad images with the configured back end (``generate`` group).

``caig render --candidates FILE --catalog FILE --out DIR [generate=world|diffusion|diffusion_tiny]`` writes
``DIR/ads/<product_id>_<candidate>.png`` and ``DIR/ads.parquet`` (the candidate rows plus ``image``, relative
to DIR, and ``render_seed``). Every candidate renders with its own seed, derived from its sampling seed. Under
``caig launch`` each rank renders every N-th product into ``DIR.partial``, renamed to DIR when complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from omegaconf import DictConfig
from tqdm import tqdm

from caig.errors import InputError
from caig.generate.backends import BackgroundGenerator, make_generator
from caig.generate.products import ProductInput
from caig.io import write_parquet
from caig.logs import get_logger

log = get_logger("render")

IMAGES_DIR = "ads"
INDEX_FILE = "ads.parquet"


def render_seed(sampling_seed: int) -> int:
    """The render seed of a candidate: a function of its (distinct) sampling seed, in [0, 2**63)."""
    state = np.random.SeedSequence([int(sampling_seed) & 0xFFFFFFFF, int(sampling_seed) >> 32, 17])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def image_name(product_id: str, candidate: int) -> str:
    """File name of one candidate's ad (unique per product and candidate; no timestamps)."""
    return f"{product_id}_{candidate}.png"


def read_candidates(path: str | Path, required: Sequence[str]) -> pl.DataFrame:
    """A candidates/ads table with the ``required`` columns, or an InputError naming the missing one."""
    path = Path(path)
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read ({err})", file=path) from err
    for column in required:
        if column not in table.columns:
            raise InputError("missing column", file=path, column=column, expected=", ".join(required))
    return table


def render_candidates(
    generator: BackgroundGenerator,
    products: dict[str, ProductInput],
    candidates: pl.DataFrame,
    out_dir: Path,
    *,
    chunk: int = 64,
) -> pl.DataFrame:
    """Render every candidate row into ``out_dir/ads``; returns the rows with ``image`` and ``render_seed``."""
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    rows = candidates.to_dicts()
    seeds = [render_seed(row["seed"]) for row in rows]
    names = [f"{IMAGES_DIR}/{image_name(row['product_id'], row['candidate'])}" for row in rows]
    for start in tqdm(range(0, len(rows), chunk), desc="rendering", unit="chunk", disable=len(rows) <= chunk):
        part = rows[start : start + chunk]
        images = generator.generate(
            [products[row["product_id"]] for row in part],
            [row["description"] for row in part],
            seeds[start : start + chunk],
        )
        for name, image in zip(names[start : start + chunk], images):
            image.save(out_dir / name)
    return candidates.with_columns(
        pl.Series("image", names, dtype=pl.String), pl.Series("render_seed", seeds, dtype=pl.Int64)
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=Path, required=True, help="candidates.parquet from caig sample")
    parser.add_argument("--catalog", type=Path, required=True, help="catalog (.parquet/.csv) or CAIG JSON")
    parser.add_argument("--image-root", type=Path, help="resolve relative image paths against this folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (ads/ and ads.parquet)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.preference.products import load_product_images
    from caig.preference.sharding import barrier, gather_in_order, join_world, my_share

    world = join_world()  # under caig launch: one rank per GPU, each rendering every N-th product
    candidates = read_candidates(args.candidates, ("product_id", "candidate", "description", "seed"))
    order = list(dict.fromkeys(candidates.get_column("product_id").to_list()))
    wanted = set(order)
    catalog = load_product_images(args.catalog, args.image_root)
    products = {p.product_id: p for p in catalog if p.product_id in wanted}
    missing = sorted(set(order) - set(products))
    if missing:
        raise InputError(f"candidates name products not in the catalog, e.g. {missing[:3]}", file=args.candidates)
    generator = make_generator(cfg)
    staging = Path(f"{args.out}.partial")  # every rank writes here; renamed to --out once complete
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier(world)
    mine = candidates.filter(pl.col("product_id").is_in(my_share(order, world)))
    table = gather_in_order(render_candidates(generator, products, mine, staging), "product_id", order, world)
    if table is None:
        return  # not the main rank
    write_parquet(table, staging / INDEX_FILE)
    if args.out.exists():
        shutil.rmtree(args.out)
    os.replace(staging, args.out)
    log.info("rendered %d ads with the %s back end -> %s", table.height, cfg.generate.backend, args.out)
