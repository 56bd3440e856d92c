"""``caig launch [--nodes N] [--gpus-per-node auto|N] [--dry-run] -- <command> [args ...]``.

Runs ``caig <command> [args ...]`` as one rank per GPU (or one rank on CPU). Everything after ``--`` is
passed through untouched, which is why ``caig.cli`` hands this command its raw argv. ``--check`` runs the
distributed smoke test (``caig.launch.check``) instead of a command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from caig.errors import CaigError
from caig.launch.launcher import launch, plan_launch


def count_arg(value: str) -> int | None:
    """``auto`` (None: read it from the environment) or a non-negative integer."""
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caig launch",
        description="Run a caig command as one rank per GPU (torchrun on one node, srun across nodes), "
        "or as one rank on CPU.",
        usage="caig launch [--nodes N] [--gpus-per-node auto|N] [--dry-run] (--check | -- <command> [args])",
    )
    parser.add_argument(
        "--nodes", type=count_arg, default=None, help="nodes (default: the Slurm job's, else 1)"
    )
    parser.add_argument(
        "--gpus-per-node",
        type=count_arg,
        default=None,
        help="ranks per node (default auto: CUDA devices seen)",
    )
    parser.add_argument("--check", action="store_true", help="run the distributed smoke test instead")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    return parser


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    options, command = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = build_parser()
    args = parser.parse_args(options)
    if args.check == bool(command):
        parser.error("give either --check or '-- <command> [args ...]'")
    target = ["caig.launch.check"] if args.check else ["caig", *command]
    try:
        if args.dry_run:
            plan = plan_launch(target, nodes=args.nodes, gpus_per_node=args.gpus_per_node)
            print(plan.shell())
            return 0
        launch(target, nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    except CaigError as err:
        print(f"caig launch: error: {err}", file=sys.stderr)
        return 2
