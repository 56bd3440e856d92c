"""What each epoch's judge taught the prompt model, checked against the synthetic world's truth.

The paper's failure mode of plain DPO is reward hacking: the reward model prefers ads that get clicks but do
not fit the product, and the prompt model learns to write them. Whether a run can show it depends on its
preference sets, so this audit reads every one and asks the oracle, per (method, epoch):

- ``truth_agreement``: share of pairs where y+ has the higher true CTR (equal true CTR counts half);
- ``chosen_match`` / ``rejected_match``: share of y+ / y- whose background fits the product;
- ``hacking``: among pairs where exactly one ad fits, the share where y+ is the one that does not;
- ``eye_catching_gain``: mean eye-catching phrases of y+ minus y-;
- ``oracle_hacking``: the same share for a judge that always picks the higher true CTR (a perfect RM) on the
  same pairs: what reward hacking the world offers on this prompt model's candidates at all.

``caig judge-audit --preferences dpo:2=PATH ... --catalog FILE --tables DIR`` writes ``judge_audit.{md,csv,tex}``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.errors import InputError
from caig.logs import get_logger

log = get_logger("judge-audit")
COLUMNS = ("product_id", "chosen", "rejected")


def audit_preferences(
    preferences: pl.DataFrame, titles: Mapping[str, str], sim: Any, source: str | Path = "preferences"
) -> dict[str, Any]:
    """The audit of one preference set (see the module docstring); ``titles`` checks the world is the catalog's."""
    from caig.evaluate.match import oracle_judgements

    missing = [c for c in COLUMNS if c not in preferences.columns]
    if missing:
        raise InputError("missing column", file=source, column=missing[0], expected="a preference set of caig judge")
    n = preferences.height
    if n == 0:
        return {"pairs": 0}
    ids = preferences.get_column("product_id").cast(pl.String).to_list()
    labels, ctr, eye = oracle_judgements(
        titles, ids * 2, [*preferences.get_column("chosen").to_list(), *preferences.get_column("rejected").to_list()],
        sim,
    )
    fits = np.array([label == "available" for label in labels])
    chosen_fits, rejected_fits = fits[:n], fits[n:]
    chosen_ctr, rejected_ctr = ctr[:n], ctr[n:]
    one_fits = chosen_fits != rejected_fits
    oracle_picks_chosen = chosen_ctr >= rejected_ctr
    oracle_chosen_fits = np.where(oracle_picks_chosen, chosen_fits, rejected_fits)
    agreement = np.where(chosen_ctr > rejected_ctr, 1.0, np.where(chosen_ctr == rejected_ctr, 0.5, 0.0))
    return {
        "pairs": n,
        "truth_agreement": float(agreement.mean()),
        "chosen_match": float(chosen_fits.mean()),
        "rejected_match": float(rejected_fits.mean()),
        "one_fits": int(one_fits.sum()),
        "hacking": float((~chosen_fits[one_fits]).mean()) if one_fits.any() else None,
        "oracle_hacking": float((~oracle_chosen_fits[one_fits]).mean()) if one_fits.any() else None,
        "eye_catching_gain": float((eye[:n] - eye[n:]).mean()),
    }


def audit_table(records: list[dict[str, Any]]) -> Any:
    """The audit as a ``caig.report.tables.Table`` (one row per method and epoch)."""
    from caig.report.tables import Column, Table

    def share(value: float) -> str:
        return f"{value:.2f}"

    columns = [
        Column("method", "method"),
        Column("epoch", "epoch", align="r"),
        Column("pairs", "pairs", align="r"),
        Column("truth_agreement", "y+ has higher true CTR", share, "r"),
        Column("chosen_match", "y+ fits", share, "r"),
        Column("rejected_match", "y- fits", share, "r"),
        Column("hacking", "y+ misfits (one fits)", share, "r"),
        Column("oracle_hacking", "same, perfect RM", share, "r"),
        Column("eye_catching_gain", "eye-catching y+ minus y-", lambda v: f"{v:+.2f}", "r"),
    ]
    return Table(
        columns,
        records,
        caption="What the judge taught: each epoch's preference set checked against the world's truth",
        notes=[
            "y+ / y-: the judge's chosen / rejected description of a product's two candidates. "
            "'y+ misfits (one fits)': of the pairs where exactly one ad fits the product, the share where the judge "
            "chose the one that does not (reward hacking; 0.5 = blind to fit; empty: no such pair). 'same, perfect "
            "RM': that share for a judge ranking by the true CTR, on the same pairs.",
        ],
    )


def parse_run(value: str) -> tuple[str, int, Path]:
    """``METHOD:EPOCH=PATH``."""
    name, sep, path = value.partition("=")
    method, colon, epoch = name.partition(":")
    if not (sep and colon and method and epoch.isdigit() and path):
        raise argparse.ArgumentTypeError(f"expected METHOD:EPOCH=PATH, got {value!r}")
    return method, int(epoch), Path(path)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preferences", type=parse_run, action="append", required=True, metavar="METHOD:EPOCH=PATH",
        help="a preference set of caig judge (repeat for each method and epoch)",
    )
    parser.add_argument("--catalog", type=Path, required=True, help="the catalog (checks the world is its own)")
    parser.add_argument("--tables", type=Path, required=True, help="folder for judge_audit.{md,csv,tex}")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.generate.sampling import load_products
    from caig.report.tables import write_table

    products = load_products(args.catalog)
    titles = {p.product_id: str(p.attributes.get("title", p.caption)) for p in products}
    records = []
    for method, epoch, path in args.preferences:
        try:
            preferences = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as err:
            raise InputError(f"cannot read the preference set ({err})", file=path) from err
        records.append({"method": method, "epoch": epoch, **audit_preferences(preferences, titles, cfg.sim, path)})
    write_table(audit_table(records), args.tables / "judge_audit", label="tab:judge-audit")
    log.info("audited %d preference sets -> %s", len(records), args.tables / "judge_audit.md")
