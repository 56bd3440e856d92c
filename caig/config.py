"""Hydra config composition for stage commands.

The tree lives in ``config/`` at the repository root (``caig.yaml`` is its root; groups ``preset``, ``sim``,
``data``, ...). ``compose`` is Hydra's compose API rather than ``@hydra.main`` so a command neither changes
directory nor takes over ``argv``, and tests can compose configs directly. ``CAIG_CONFIG_DIR`` points it at
another tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from caig.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The Hydra config tree: ``$CAIG_CONFIG_DIR`` or ``<repo>/config``."""
    return Path(os.environ.get("CAIG_CONFIG_DIR", REPO_ROOT / "config")).resolve()


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the stage config from the tree with Hydra command-line style overrides.

    Raises ConfigError naming the offending key when an override does not fit the tree.
    """
    root = config_dir()
    if not (root / "caig.yaml").is_file():
        raise ConfigError(f"no Hydra config tree at {root} (expected {root / 'caig.yaml'})")
    try:
        with initialize_config_dir(config_dir=str(root), version_base="1.3"):
            cfg = hydra_compose(config_name="caig", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"config: {err}") from err
    OmegaConf.set_readonly(cfg, True)
    return cfg
