"""Render sampled descriptions into ad images with the configured back end (``generate`` group).

``caig render --candidates FILE --catalog FILE --out DIR [generate=world|diffusion|diffusion_tiny]`` writes
``DIR/ads/<product_id>_<candidate>.png`` and ``DIR/ads.parquet`` (the candidate rows plus ``image``, relative
to DIR, and ``render_seed``). ``preference.render.seed_per`` says where the diffusion seed comes from: ``product``
(default, as in the authors' code): both candidates of a product share one seed, derived from the run seed and the
product id, so the pair differs only through its descriptions and the reward model judges those, not the noise;
``candidate``: each candidate its own seed, derived from its sampling seed.

The products are rendered chunk by chunk into ``DIR.parts/ads/``, each chunk's record listing its images
(``caig.generate.chunks``), so a killed attempt resumes at the first unfinished chunk. Under ``caig launch`` each
rank renders every N-th product of a chunk. Once all chunks are finished, the images folder is moved (not copied)
into ``DIR.partial`` beside the table, and that is renamed to DIR. Split across jobs, ``--shard I-of-K`` renders
shard I's chunks into its own folder, and ``--gather SHARD...`` moves every shard's images into ``DIR.parts/ads/``
(one rename per image) and assembles DIR as above, loading no generator.
"""

from __future__ import annotations

import argparse
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.errors import ConfigError, InputError
from caig.generate.backends import BackgroundGenerator, make_generator
from caig.generate.chunks import add_shard_options
from caig.generate.products import ProductInput
from caig.io import write_parquet
from caig.logs import get_logger, progress

log = get_logger("render")

IMAGES_DIR = "ads"
INDEX_FILE = "ads.parquet"
#: Values of ``preference.render.seed_per``: one diffusion seed per product, or one per candidate.
SEED_PER = ("product", "candidate")


def _seed_from(entropy: list[int]) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def render_seed(sampling_seed: int) -> int:
    """The render seed of a candidate: a function of its (distinct) sampling seed, in [0, 2**63)."""
    return _seed_from([int(sampling_seed) & 0xFFFFFFFF, int(sampling_seed) >> 32, 17])


def product_render_seed(run_seed: int, product_id: str) -> int:
    """The render seed shared by a product's candidates: a function of the run seed and the product id, in
    [0, 2**63), the same in every call, epoch and process."""
    return _seed_from([int(run_seed), zlib.crc32(product_id.encode()), 23])


def check_seed_per(value: object) -> str:
    """``preference.render.seed_per``, or a ConfigError naming the key, the value and the choices."""
    if value not in SEED_PER:
        raise ConfigError(f"preference.render.seed_per={value!r} (expected one of {', '.join(SEED_PER)})")
    return str(value)


def render_seeds(candidates: pl.DataFrame, seed_per: str, run_seed: int) -> list[int]:
    """One render seed per candidate row (``product_id`` and sampling ``seed`` columns), by ``seed_per``."""
    if check_seed_per(seed_per) == "product":
        return [product_render_seed(run_seed, pid) for pid in candidates.get_column("product_id").to_list()]
    return [render_seed(seed) for seed in candidates.get_column("seed").to_list()]


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
    seeds: Sequence[int] | None = None,
    chunk: int = 64,
) -> pl.DataFrame:
    """Render every candidate row into ``out_dir/ads`` with ``seeds`` (one per row; by default each candidate's
    own, from its sampling seed); returns the rows with ``image`` and ``render_seed``."""
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    rows = candidates.to_dicts()
    seeds = [render_seed(row["seed"]) for row in rows] if seeds is None else [int(seed) for seed in seeds]
    if len(seeds) != len(rows):
        raise ValueError(f"{len(rows)} candidates but {len(seeds)} seeds")
    names = [f"{IMAGES_DIR}/{image_name(row['product_id'], row['candidate'])}" for row in rows]
    for start in progress(range(0, len(rows), chunk), desc="rendering", unit="chunk"):
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
    parser.add_argument("--out", type=Path, required=True, help="output folder (ads/ and ads.parquet; a shard's chunks)")
    add_shard_options(parser)


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.generate.chunks import (
        ChunkWork, chunk_products, parts_folder, plan_chunks, read_manifests, shard_of, shard_store, work_digest,
        work_or_gather, work_ranks,
    )
    from caig.preference.products import load_product_images
    from caig.preference.sharding import join_world

    world = join_world()  # under caig launch: one rank per GPU, each rendering every N-th product of a chunk
    candidates = read_candidates(args.candidates, ("product_id", "candidate", "description", "seed"))
    order = list(dict.fromkeys(candidates.get_column("product_id").to_list()))
    wanted = set(order)
    catalog = load_product_images(args.catalog, args.image_root)
    products = {p.product_id: p for p in catalog if p.product_id in wanted}
    missing = sorted(set(order) - set(products))
    if missing:
        raise InputError(f"candidates name products not in the catalog, e.g. {missing[:3]}", file=args.candidates)
    seed_per = check_seed_per(cfg.preference.render.seed_per)
    parts = parts_folder(args.out)
    staging = Path(f"{args.out}.partial")  # the assembled output, renamed to --out once complete
    shard, manifests = shard_of(args), read_manifests(args)
    if world.is_main and shard is None:
        _recover_images(staging, parts)
    digest = work_digest(
        "render", {"candidates": args.candidates, "catalog": args.catalog}, cfg,
        ("seed", "preference.render", "generate"), image_root=args.image_root, ranks=work_ranks(manifests, world),
    ) if world.is_main else ""
    store = shard_store(parts, digest, plan_chunks(order, chunk_products(cfg)), shard, files_dir=IMAGES_DIR)

    def render_work() -> Callable[[list[str]], ChunkWork]:
        return partial(render_share, make_generator(cfg))

    def render_share(generator: BackgroundGenerator, ids: list[str]) -> ChunkWork:
        mine = candidates.filter(pl.col("product_id").is_in(ids))
        table = render_candidates(generator, products, mine, parts, seeds=render_seeds(mine, seed_per, int(cfg.seed)))
        return ChunkWork(table, files={name: (parts / name).stat().st_size for name in table.get_column("image")})

    if not work_or_gather(store, world, render_work, out=args.out, shard=shard, manifests=manifests):
        return
    table = store.table()
    shutil.rmtree(staging, ignore_errors=True)
    write_parquet(table, staging / INDEX_FILE)
    os.replace(parts / IMAGES_DIR, staging / IMAGES_DIR)  # one rename moves every image
    if args.out.exists():
        shutil.rmtree(args.out)
    os.replace(staging, args.out)
    store.remove()
    log.info(
        "rendered %d ads with the %s back end, one seed per %s -> %s",
        table.height,
        cfg.generate.backend,
        seed_per,
        args.out,
    )


def _recover_images(staging: Path, parts: Path) -> None:
    """Undo an assembly that a kill interrupted: the images go back to the parts folder, whose records list them;
    the staging folder is dropped."""
    images = staging / IMAGES_DIR
    if images.is_dir() and not (parts / IMAGES_DIR).exists():
        parts.mkdir(parents=True, exist_ok=True)
        os.replace(images, parts / IMAGES_DIR)
        log.info("moved the images of an interrupted assembly back to %s", parts)
    shutil.rmtree(staging, ignore_errors=True)
