"""Match rate of a prompt model on the fixed held-out products, per method and epoch.

The policy samples ``preference.evaluate.samples_per_product`` descriptions per held-out product, always from
the same seed stream (so methods and epochs differ only through their models), and each is rendered into an ad.
Then, per ad:

- synthetic world (``--judge oracle``): the annotators' judgement of the world's oracle, "available" or the
  first mismatch reason (scale, scene, color), and the true CTR of the ad;
- real data (``--judge annotators``): an annotation sheet (product image, title, generated ad and the four
  labels of the paper's guideline) to be filled in; ``--labels FILLED.csv`` reads it back into the same metrics.

With ``--baseline DIR`` (the epoch-0 evaluation of the method) the frozen RM compares each ad with the epoch-0 ad
of the same product and sample (symmetric scorer): the RM win rate against epoch 0.

``caig evaluate-match --model DIR --catalog FILE --products FILE --reward-model DIR --method M --epoch E
--out DIR [--baseline DIR] [--judge oracle|annotators]`` writes ``DIR/ads/``, ``DIR/ads.parquet`` and
``DIR/metrics.json`` (and ``DIR/annotation.csv`` for annotators).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.errors import ConfigError, InputError
from caig.io import atomic_path, write_json, write_parquet
from caig.logs import get_logger

log = get_logger("evaluate-match")

#: The annotators' labels of the paper's guideline: the background fits, or the first mismatch seen.
LABELS: tuple[str, ...] = ("available", "scale", "scene", "color")
#: Seed stream of the evaluation samples (training epochs use streams 0..N).
EVAL_STREAM = 1_000_000
ANNOTATION_COLUMNS = ("item", "method", "epoch", "product_id", "title", "product_image", "ad_image", "label")


# ---------------------------------------------------------------------------------------------- metrics
def match_summary(labels: Sequence[str]) -> dict[str, Any]:
    """Match rate (share of "available") and the count of every label, from one label per ad."""
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown match label(s) {unknown} (expected one of {', '.join(LABELS)})")
    n = len(labels)
    counts = {label: int(sum(1 for value in labels if value == label)) for label in LABELS}
    return {
        "ads": n,
        "match_rate": counts["available"] / n if n else None,
        "reasons": counts,
        "mismatch_shares": {label: counts[label] / n if n else None for label in LABELS[1:]},
    }


def win_rate(p_new: np.ndarray) -> float | None:
    """Share of comparisons the RM gives to the new ad (p > 0.5); a tie (identical ads: 0.5 up to float
    rounding, ``TIE_TOLERANCE``) counts half."""
    from caig.reward.scoring import TIE_TOLERANCE

    p_new = np.asarray(p_new, dtype=np.float64)
    if p_new.size == 0:
        return None
    tie = np.abs(p_new - 0.5) <= TIE_TOLERANCE
    return float(np.mean(np.where(tie, 0.5, np.where(p_new > 0.5, 1.0, 0.0))))


# ---------------------------------------------------------------------------------------------- oracle
def oracle_judgements(
    catalog_titles: Mapping[str, str], product_ids: Sequence[str], descriptions: Sequence[str], sim: Any
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(label, true CTR, eye-catching phrases) per ad from the synthetic world's oracle, recomposed from ``sim``.

    The eye-catching count shows reward hacking: such phrases raise CTR for every product but are wrong for
    many. Refuses when the recomposed world's titles differ from the catalog's (another seed or sim config).
    """
    from caig.sim.oracle import REASONS, Oracle
    from caig.sim.vocabulary import SLOTS, encode_backgrounds, parse_background
    from caig.sim.world import make_world

    world = make_world(sim)
    for product_id in sorted(set(product_ids)):
        if product_id not in world.index or world.product(product_id).title != catalog_titles.get(product_id):
            raise ConfigError(
                f"product {product_id!r} of the catalog is not the synthetic world's (sim.seed={sim.seed}, "
                f"sim.n_products={sim.n_products}); give evaluate-match the same sim.* overrides as caig sim"
            )
    oracle = Oracle(world)
    index = np.array([world.index[pid] for pid in product_ids], dtype=np.int64)
    codes = encode_backgrounds(parse_background(text) for text in descriptions)
    _, reasons = oracle.judge_many(index, codes)
    eye_catching = sum(oracle.is_eye_catching(slot)[codes[:, i].astype(np.int64)] for i, slot in enumerate(SLOTS))
    return [REASONS[int(r)] for r in reasons], oracle.ctr_many(index, codes), np.asarray(eye_catching)


# ---------------------------------------------------------------------------------------------- annotations
def write_annotation_sheet(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The sheet annotators fill in: one ad per row, ``label`` empty (one of ``LABELS`` once filled)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ANNOTATION_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in ANNOTATION_COLUMNS})


def read_annotation_sheet(path: str | Path) -> pl.DataFrame:
    """A filled-in sheet: every row must carry one of ``LABELS`` (case and spaces ignored) in ``label``."""
    path = Path(path)
    try:
        table = pl.read_csv(path, infer_schema=False)
    except FileNotFoundError as err:
        raise InputError("annotation sheet not found", file=path) from err
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the annotation sheet ({err})", file=path) from err
    for column in ("item", "method", "epoch", "label"):
        if column not in table.columns:
            raise InputError("missing column", file=path, column=column, expected=", ".join(ANNOTATION_COLUMNS))
    labels = table.get_column("label").fill_null("").str.strip_chars().str.to_lowercase()
    for row, value in enumerate(labels.to_list(), start=2):  # row 1 is the header
        if value not in LABELS:
            raise InputError(
                f"label {value!r} is not a label" if value else "label is empty",
                file=path,
                row=row,
                column="label",
                expected=" | ".join(LABELS),
            )
    return table.with_columns(labels.alias("label"))


def metrics_from_sheet(path: str | Path) -> dict[str, Any]:
    """The match metrics of one filled-in sheet (it must hold a single method and epoch)."""
    table = read_annotation_sheet(path)
    runs = table.select("method", "epoch").unique()
    if runs.height != 1:
        raise InputError(
            f"the sheet mixes {runs.height} (method, epoch) runs", file=path, column="method",
            expected="one sheet per method and epoch",
        )
    method, epoch = runs.row(0)
    summary = match_summary(table.get_column("label").to_list())
    return {"method": method, "epoch": int(epoch), "judge": "annotators", **summary}


# ---------------------------------------------------------------------------------------------- evaluation
def rm_win_rates(
    cfg: DictConfig, reward_model_dir: Path, ads: pl.DataFrame, out_dir: Path, baseline_dir: Path,
    products: Mapping[str, Any],
) -> np.ndarray:
    """P(the ad beats the baseline's ad of the same product and sample) per ad, by the symmetric RM scorer."""
    from caig.generate.judge import rm_question_index
    from caig.generate.sampling import product_attributes
    from caig.instruct import RM_QUESTIONS
    from caig.preference.render import INDEX_FILE, read_candidates
    from caig.preference.sharding import local_device
    from caig.reward.judging import PairJudge

    baseline = read_candidates(baseline_dir / INDEX_FILE, ("product_id", "candidate", "image"))
    joined = ads.select("product_id", "candidate", "image").join(
        baseline.select("product_id", "candidate", pl.col("image").alias("baseline_image")),
        on=["product_id", "candidate"],
        how="left",
        maintain_order="left",
    )
    if joined.get_column("baseline_image").null_count():
        raise InputError(
            "the baseline evaluation lacks ads this evaluation has (different held-out set or samples?)",
            file=baseline_dir / INDEX_FILE,
        )
    settings = cfg.preference.judge
    reward_model = PairJudge(
        reward_model_dir,
        dtype=str(cfg.preference.dtype),
        device=local_device(),
        pair_size=int(cfg.model.pair_image_size),
        batch_size=int(settings.batch_size),
    )
    ids = joined.get_column("product_id").to_list()
    return reward_model.p_left(
        [str(out_dir / name) for name in joined.get_column("image").to_list()],
        [str(baseline_dir / name) for name in joined.get_column("baseline_image").to_list()],
        [product_attributes(products[pid]) for pid in ids],
        [RM_QUESTIONS[rm_question_index(int(cfg.seed), EVAL_STREAM, pid)] for pid in ids],
        caption=bool(settings.caption),
        info=bool(settings.info),
    )


def evaluate(args: argparse.Namespace, cfg: DictConfig) -> dict[str, Any]:
    """Sample, render and judge the held-out ads of one (method, epoch); writes ``args.out``."""
    from caig.generate.backends import make_generator
    from caig.generate.sampling import load_products, sample_candidates, select_products
    from caig.models import load_llava
    from caig.preference.products import products_for
    from caig.preference.render import INDEX_FILE, render_candidates
    from caig.preference.sharding import local_device

    settings = cfg.preference.evaluate
    catalog = load_products(args.catalog, args.image_root)
    products = select_products(catalog, products_for(args.products, "heldout"), args.products)
    by_id = {p.product_id: p for p in products}
    model, processor = load_llava(args.model, dtype=str(cfg.preference.dtype))
    sample = cfg.preference.sample
    candidates, _ = sample_candidates(
        model.to(local_device()), processor, products, seed=int(cfg.seed), stream=EVAL_STREAM,
        n_candidates=int(settings.samples_per_product), distinct=False,
        max_new_tokens=int(sample.max_new_tokens), temperature=float(sample.temperature),
        top_k=int(sample.top_k), top_p=float(sample.top_p), batch_size=int(sample.batch_size),
    )
    del model
    metrics: dict[str, Any] = {"method": args.method, "epoch": args.epoch, "model": str(args.model)}
    with atomic_path(args.out) as tmp:
        ads = render_candidates(make_generator(cfg), by_id, candidates, tmp)
        titles = {p.product_id: str(p.attributes.get("title", p.caption)) for p in products}
        if args.judge == "oracle":
            labels, ctr, eye = oracle_judgements(
                titles, ads["product_id"].to_list(), ads["description"].to_list(), cfg.sim
            )
            ads = ads.with_columns(
                pl.Series("label", labels, dtype=pl.String), pl.Series("true_ctr", ctr),
                pl.Series("eye_catching", eye, dtype=pl.Int32),
            )
            metrics.update(judge="oracle", **match_summary(labels), mean_oracle_ctr=float(np.mean(ctr)),
                           eye_catching_per_ad=float(np.mean(eye)))
        else:
            (tmp / "products").mkdir()
            for product in products:
                product.image.save(tmp / "products" / f"{product.product_id}.png")
            final = args.out.resolve()
            sheet = [
                {
                    "item": i, "method": args.method, "epoch": args.epoch, "product_id": row["product_id"],
                    "title": titles[row["product_id"]],
                    "ad_image": str(final / row["image"]),
                    "product_image": str(final / "products" / f"{row['product_id']}.png"), "label": "",
                }
                for i, row in enumerate(ads.iter_rows(named=True))
            ]
            write_annotation_sheet(sheet, tmp / "annotation.csv")
            metrics.update(judge="annotators", ads=ads.height, match_rate=None, mean_oracle_ctr=None)
        if args.baseline is not None:
            p_new = rm_win_rates(cfg, args.reward_model, ads, tmp, args.baseline, by_id)
            ads = ads.with_columns(pl.Series("p_beats_baseline", p_new))
            metrics["rm_win_rate_vs_epoch0"] = win_rate(p_new)
        else:
            metrics["rm_win_rate_vs_epoch0"] = None
        write_parquet(ads, tmp / INDEX_FILE)
        write_json(metrics, tmp / "metrics.json")
    return metrics


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="prompt model to evaluate")
    parser.add_argument("--catalog", type=Path, help="catalog (.parquet/.csv) or CAIG JSON")
    parser.add_argument("--image-root", type=Path, help="resolve relative image paths against this folder")
    parser.add_argument("--products", type=Path, help="product sets (caig preference-products)")
    parser.add_argument("--reward-model", type=Path, help="reward model (for the win rate against epoch 0)")
    parser.add_argument("--baseline", type=Path, help="the method's epoch-0 evaluation folder")
    parser.add_argument("--judge", choices=("oracle", "annotators"), default="oracle",
                        help="who judges the match: the synthetic world's oracle or human annotators (a sheet)")
    parser.add_argument("--labels", type=Path, help="a filled-in annotation sheet: compute its metrics only")
    parser.add_argument("--method", default="", help="method name (recorded in the metrics)")
    parser.add_argument("--epoch", type=int, default=0, help="epoch (recorded in the metrics)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (or metrics file with --labels)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.training import configure_threads

    if args.labels is not None:
        metrics = metrics_from_sheet(args.labels)
        write_json(metrics, args.out)
        log.info("%s epoch %d: match rate %.3f over %d ads -> %s", metrics["method"], metrics["epoch"],
                 metrics["match_rate"], metrics["ads"], args.out)
        return
    configure_threads(cfg)  # train.torch_threads: one thread per job on a shared CPU (tiny preset)
    missing = [name for name in ("model", "catalog", "products") if getattr(args, name) is None]
    if args.baseline is not None and args.reward_model is None:
        missing.append("reward_model")
    if missing:
        raise InputError(f"missing option(s) {', '.join('--' + m.replace('_', '-') for m in missing)}")
    metrics = evaluate(args, cfg)
    rate = metrics.get("match_rate")
    log.info(
        "%s epoch %d: match rate %s, mean oracle CTR %s, RM win rate vs epoch 0 %s -> %s",
        args.method, args.epoch, "n/a" if rate is None else f"{rate:.3f}",
        "n/a" if metrics.get("mean_oracle_ctr") is None else f"{metrics['mean_oracle_ctr']:.4f}",
        "n/a" if metrics["rm_win_rate_vs_epoch0"] is None else f"{metrics['rm_win_rate_vs_epoch0']:.3f}", args.out,
    )
