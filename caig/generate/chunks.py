"""Resumable generation: ``sample``, ``render`` and ``judge`` work through their products in chunks, and each
finished chunk gets a completion record, so an attempt that is killed resumes at the first unfinished chunk.

Beside the output folder OUT, ``OUT.parts/`` holds ``chunk-00003.parquet`` (the chunk's rows) and
``chunk-00003.json`` (its record: the chunk's products, the digest of the inputs and settings it was made from,
the SHA-256 of the data file, the files it wrote with their sizes, and its counts). Every file goes through
caig.io, and the record is written last, so a record means a finished chunk. On start the main rank keeps the
chunks whose record matches the current digest and products, and clears the rest: data without a record (an
attempt stopped mid-chunk), a record made from other inputs or settings (logged), and anything in the folder
that no kept record names. The output is then assembled from the chunk files.

Split across jobs (Snakemake's scatter/gather, ``--shard I-of-K``): shard I of K does a contiguous run of whole
chunks (``shard_indices``) in its own parts folder, so each shard resumes like a whole run, and publishes them as its
output folder with a manifest (``shard.json``). The gather (``--gather DIR...``) moves, never copies, every shard's
chunk files into the output's parts folder, checks them as a resume would, and assembles the output from them:
byte-identical to a whole run, as each chunk is the same work whichever job does it.

Chunk boundaries depend only on the product order and ``preference.chunk_products``, and every random draw is
seeded per product or candidate (never from a generator carried across chunks), so an attempt's output does not
depend on how many chunks earlier attempts finished: it is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, ListConfig, OmegaConf

from caig.errors import ConfigError, InputError
from caig.io import write_json, write_parquet
from caig.logs import get_logger
from caig.preference.sharding import World, broadcast_object, gather_in_order, gather_objects, my_share

log = get_logger("chunks")

PARTS_SUFFIX = ".parts"
MANIFEST = "shard.json"


def parts_folder(out: str | Path) -> Path:
    """Where the chunks of output folder ``out`` are kept until the output is assembled: ``out.parts``."""
    out = Path(out)
    return out.with_name(out.name + PARTS_SUFFIX)


def chunk_products(cfg: DictConfig) -> int:
    """``preference.chunk_products``: products per chunk, or a ConfigError naming the key and value."""
    value = OmegaConf.select(cfg, "preference.chunk_products")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"preference.chunk_products={value!r} (expected an integer >= 1: products per chunk)")
    return value


def plan_chunks(product_ids: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """Consecutive runs of ``size`` products in the given order; one empty chunk when there are no products,
    so the output (with its columns) is still made the same way."""
    ids = tuple(product_ids)
    return [ids[start : start + size] for start in range(0, len(ids), size)] or [()]


def parse_shard(text: str) -> tuple[int, int]:
    """``I-of-K`` (Snakemake's scatteritem, 1-based) as (I, K), or an InputError naming the value."""
    parts = text.split("-of-")
    if len(parts) == 2 and all(part.isdigit() for part in parts):
        shard, shards = int(parts[0]), int(parts[1])
        if 1 <= shard <= shards:
            return shard, shards
    raise InputError(f"--shard {text!r}", expected="I-of-K with 1 <= I <= K, e.g. 2-of-4")


def shard_indices(n_chunks: int, shard: int, shards: int) -> range:
    """The chunks shard ``shard`` of ``shards`` does: a contiguous run, the runs as even as whole chunks allow
    (a shard beyond the number of chunks gets none)."""
    return range((shard - 1) * n_chunks // shards, shard * n_chunks // shards)


def input_identity(path: str | Path) -> str:
    """What an input is, cheaply. A file: the SHA-256 of its bytes. A folder (a model, a folder of ads): the
    relative names, sizes and modification times of its files, since hashing 14 GB of weights or 25 GB of ads on
    every attempt would cost minutes; a folder its rule wrote again has new times, so this errs toward redoing."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def work_digest(
    command: str, inputs: Mapping[str, Path], cfg: DictConfig, settings: Iterable[str], **facts: Any
) -> str:
    """The digest a chunk record carries: the command, the identity of each input, the config nodes the work
    reads (``settings``, dotted keys) and any other ``facts`` the output depends on (epoch, world size)."""
    nodes = {}
    for key in settings:
        node = OmegaConf.select(cfg, key, throw_on_missing=True)
        nodes[key] = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node
    payload = {
        "command": command,
        "inputs": {name: input_identity(path) for name, path in sorted(inputs.items())},
        "settings": nodes,
        "facts": facts,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class ChunkStore:
    """The parts folder of one output: ``chunks`` (product ids per chunk) made from inputs and settings with
    ``digest``; ``files_dir`` names the sub-folder where chunks write files of their own (render: the ads);
    ``indices`` the chunks this store does (a shard's), by default all."""

    folder: Path
    digest: str
    chunks: Sequence[tuple[str, ...]]
    files_dir: str | None = None
    indices: Sequence[int] | None = None

    @property
    def mine(self) -> Sequence[int]:
        """The chunks this store does, in order."""
        return range(len(self.chunks)) if self.indices is None else self.indices

    def data_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.parquet"

    def record_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.json"

    def _kept_record(self, index: int) -> dict[str, Any] | None:
        """The chunk's record when it is finished with the current inputs and settings; logs why not, when an
        earlier attempt left something for it."""
        data, record_file = self.data_path(index), self.record_path(index)
        if not record_file.is_file():
            if data.exists():
                log.info("chunk %d: data without a completion record (an attempt stopped mid-chunk); redoing it", index)
            return None
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            log.info("chunk %d: unreadable completion record; redoing it", index)
            return None
        if record.get("digest") != self.digest or record.get("products") != list(self.chunks[index]):
            log.info("chunk %d: made from other inputs, settings or products; discarded and redone", index)
            return None
        files = record.get("files", {})
        intact = data.is_file() and _file_sha256(data) == record.get("data_sha256")
        intact = intact and all(
            (self.folder / name).is_file() and (self.folder / name).stat().st_size == size
            for name, size in files.items()
        )
        if not intact:
            log.info("chunk %d: files named by its record are missing or changed; redoing it", index)
            return None
        return record

    def resume(self) -> list[int]:
        """Keep the finished chunks, clear everything else in the folder; the chunks still to do, in order."""
        self.folder.mkdir(parents=True, exist_ok=True)
        kept: list[int] = []
        keep_names: set[str] = set()
        for index in self.mine:
            record = self._kept_record(index)
            if record is not None:
                kept.append(index)
                keep_names |= {self.data_path(index).name, self.record_path(index).name, *record.get("files", {})}
        for entry in sorted(self.folder.iterdir()):
            if entry.name == self.files_dir and entry.is_dir():
                for file in sorted(entry.iterdir()):
                    if f"{self.files_dir}/{file.name}" not in keep_names:
                        _remove(file)
            elif entry.name not in keep_names:
                _remove(entry)
        if self.files_dir is not None:
            (self.folder / self.files_dir).mkdir(exist_ok=True)
        todo = [index for index in self.mine if index not in set(kept)]
        if kept:
            log.info("resuming: %d of %d chunks finished by an earlier attempt, %d to do", len(kept), len(self.mine),
                     len(todo))
        else:
            log.info("%d chunks of up to %d products to do", len(todo), max(len(c) for c in self.chunks))
        return todo

    def finish(self, index: int, frame: pl.DataFrame, counts: Mapping[str, int], files: Mapping[str, int]) -> None:
        """Write chunk ``index``'s rows, then its completion record (``files``: relative name -> size)."""
        data = write_parquet(frame, self.data_path(index))
        record = {
            "chunk": index,
            "products": list(self.chunks[index]),
            "digest": self.digest,
            "rows": frame.height,
            "data_sha256": _file_sha256(data),
            "files": dict(sorted(files.items())),
            "counts": dict(counts),
        }
        write_json(record, self.record_path(index))

    def table(self) -> pl.DataFrame:
        """Every chunk's rows, in chunk order."""
        frames = [pl.read_parquet(self.data_path(index)) for index in self.mine]
        return pl.concat(frames, how="vertical").rechunk()

    def counts(self) -> dict[str, int]:
        """Every chunk's counts, summed."""
        total: dict[str, int] = {}
        for index in self.mine:
            for key, value in json.loads(self.record_path(index).read_text())["counts"].items():
                total[key] = total.get(key, 0) + value
        return total

    def remove(self) -> None:
        """Drop the parts folder once the output is in place."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ChunkWork:
    """What one rank made of its share of a chunk: rows (with ``product_id``), counts to sum, and the files it
    wrote into the parts folder (relative name -> size)."""

    frame: pl.DataFrame
    counts: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, int] = field(default_factory=dict)


def work_through(store: ChunkStore, world: World, work: Callable[[list[str]], ChunkWork]) -> int:
    """Do the chunks that are not finished: every rank does ``work`` on its share (every N-th product) of a
    chunk, and the main rank records the chunk. The main rank decides what is left (other ranks may pass a store
    with an empty digest). Returns the number of chunks done in this attempt."""
    todo: list[int] = broadcast_object(store.resume() if world.is_main else None, world) or []
    for done, index in enumerate(todo, start=1):
        products = store.chunks[index]
        made = work(my_share(products, world))
        frame = gather_in_order(made.frame, "product_id", products, world)
        extras = gather_objects((dict(made.counts), dict(made.files)), world)
        if frame is None or extras is None:
            continue  # not the main rank
        counts: dict[str, int] = {}
        for rank_counts, _ in extras:
            for key, value in rank_counts.items():
                counts[key] = counts.get(key, 0) + value
        store.finish(index, frame, counts, {name: size for _, files in extras for name, size in files.items()})
        log.info("chunk %d finished (%d of %d in this attempt)", index, done, len(todo))
    return len(todo)


# ---------------------------------------------------------------------------------------------- scatter/gather
def add_shard_options(parser: argparse.ArgumentParser) -> None:
    """``--shard I-of-K`` and ``--gather DIR...``: the two halves of a command split across jobs."""
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--shard", help="do only shard I-of-K of the chunks and write them to --out (a gather joins them)")
    split.add_argument("--gather", type=Path, nargs="+", metavar="SHARD",
                       help="assemble --out from these shard folders (moving their files) instead of working")


@dataclass(frozen=True)
class ShardManifest:
    """What a shard folder holds: chunks ``indices`` of ``n_chunks``, made with ``digest`` by ``ranks`` ranks."""

    folder: Path
    shard: int
    shards: int
    digest: str
    ranks: int
    n_chunks: int
    indices: tuple[int, ...]


def shard_of(args: argparse.Namespace) -> tuple[int, int] | None:
    """The command's ``--shard`` as (I, K); None for a whole run (a namespace built without the option is one)."""
    text = getattr(args, "shard", None)
    return parse_shard(text) if text else None


def read_manifests(args: argparse.Namespace) -> list[ShardManifest] | None:
    """The manifests of the command's ``--gather`` folders; None when it does not gather. The shards must have
    been made by equally many ranks: that count is part of every chunk's digest."""
    folders = getattr(args, "gather", None)
    if not folders:
        return None
    manifests = []
    for folder in folders:
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(path.read_text())
            manifests.append(ShardManifest(Path(folder), int(data["shard"]), int(data["shards"]), str(data["digest"]),
                                           int(data["ranks"]), int(data["n_chunks"]), tuple(data["indices"])))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"not a finished shard ({err})", file=path,
                             expected="the folder a `--shard I-of-K` run wrote") from err
    if len({m.ranks for m in manifests}) > 1:
        raise InputError(f"shards made by different numbers of ranks: {sorted({m.ranks for m in manifests})}",
                         file=manifests[0].folder, expected="every shard run on the same node shape")
    return manifests


def publish_shard(store: ChunkStore, out: Path, shard: tuple[int, int], ranks: int) -> None:
    """Make a shard's finished parts folder its output folder ``out`` (one rename), with its manifest."""
    manifest = {"shard": shard[0], "shards": shard[1], "digest": store.digest, "ranks": ranks,
                "n_chunks": len(store.chunks), "indices": list(store.mine)}
    write_json(manifest, store.folder / MANIFEST)
    if out.exists():
        _remove(out)
    os.replace(store.folder, out)
    log.info("shard %d of %d: chunks %s -> %s", shard[0], shard[1], list(store.mine), out)


def collect_shards(store: ChunkStore, manifests: Sequence[ShardManifest]) -> None:
    """Move every shard's chunks into ``store``'s parts folder and check them as a resume would.

    Files move by rename (a shard's images are never copied), each chunk's record last, so a gather killed
    midway leaves each chunk either still in its shard or with its files in the parts folder, and the rerun
    moves what is left. A shard made from other inputs or settings, or chunks no shard holds, are an
    InputError: the gather never does work of its own."""
    covered: list[int] = []
    for manifest in manifests:
        if manifest.digest != store.digest or manifest.n_chunks != len(store.chunks):
            raise InputError("shard made from other inputs or settings than this gather's", file=manifest.folder,
                             expected="shards of the same inputs and settings (rerun the shards)")
        covered += manifest.indices
    if sorted(covered) != list(range(len(store.chunks))):
        raise InputError(f"the shards hold chunks {sorted(covered)}", file=manifests[0].folder if manifests else None,
                         expected=f"each of the {len(store.chunks)} chunks in exactly one shard")
    store.folder.mkdir(parents=True, exist_ok=True)
    for manifest in manifests:
        for index in manifest.indices:
            _move_chunk(store, manifest.folder, index)
    missing = store.resume()
    if missing:
        raise InputError(f"chunks {missing} are missing or damaged in the shards", file=manifests[0].folder,
                         expected="finished shards (rerun the shards that made these chunks)")


def _move_chunk(store: ChunkStore, shard_folder: Path, index: int) -> None:
    record = shard_folder / store.record_path(index).name
    if not record.is_file():
        return  # moved by an earlier attempt of this gather (resume checks it is whole)
    names = [*json.loads(record.read_text()).get("files", {}), store.data_path(index).name, record.name]
    for name in names:
        source, target = shard_folder / name, store.folder / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)


def work_or_gather(
    store: ChunkStore,
    world: World,
    make_work: Callable[[], Callable[[list[str]], ChunkWork]],
    *,
    out: Path,
    shard: tuple[int, int] | None,
    manifests: Sequence[ShardManifest] | None,
) -> bool:
    """Fill ``store`` with finished chunks: gathered from shards (``manifests``), or made by ``make_work()`` (called
    only when there is work, so a gather loads no model). A shard publishes its chunks as ``out``. True where
    the caller assembles the output: on the main rank of a whole run or of a gather."""
    if manifests is not None:
        if world.is_main:
            collect_shards(store, manifests)
        return world.is_main
    work_through(store, world, make_work())
    if not world.is_main:
        return False
    if shard is not None:
        publish_shard(store, out, shard, world.size)
        return False
    return True


def work_ranks(manifests: Sequence[ShardManifest] | None, world: World) -> int:
    """The number of ranks the chunks are made with (part of their digest): the shards' for a gather."""
    return manifests[0].ranks if manifests else world.size


def shard_store(folder: Path, digest: str, chunks: Sequence[tuple[str, ...]], shard: tuple[int, int] | None,
                files_dir: str | None = None) -> ChunkStore:
    """The store of a whole run, a gather, or shard (I, K) (its chunks only)."""
    indices = None if shard is None else shard_indices(len(chunks), *shard)
    return ChunkStore(folder, digest, chunks, files_dir=files_dir, indices=indices)
