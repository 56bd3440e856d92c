"""CAIG: CTR-driven advertising image generation, as a reproducible Snakemake study.

One sub-package per pipeline stage; each has a function API and a ``caig <command>`` CLI entry that the
Snakemake rules call with Hydra overrides (see ``caig.cli``).
"""

__version__ = "0.1.0"
