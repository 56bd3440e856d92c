"""``caig sim --out DIR [--no-images] [sim.*=... seed=...]``: write the synthetic click world."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig

from caig.sim.clicklog import generate_click_world


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (catalog, log, creatives, images)")
    parser.add_argument("--no-images", action="store_true", help="write the tables only, no PNGs")
    parser.epilog = "Presets: sim=tiny (default), sim=small (tests), sim=bench (20M log rows, no images)."


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    generate_click_world(cfg, args.out, images=not args.no_images)
