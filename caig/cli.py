"""``caig <command> [options] [hydra.overrides ...]``: the one entry point Snakemake rules call.

Each command lives in the module that implements its stage, which defines ``configure(parser)`` (its
options) and ``run(args, cfg)``. Modules are imported only when their command runs, so ``caig --help``
stays fast. Options may also contribute Hydra overrides through an optional ``overrides(args)``.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from caig.errors import CaigError
from caig.logs import get_logger, quiet_library_bars

COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("caig.sim.cli", "generate the synthetic click world (catalog, creatives, click log)"),
    "import": ("caig.data.importers", "convert an Alibaba CreativeRanking or CG4CTR dataset to the native schema"),
    "ingest": ("caig.data.ingest", "validate a catalog and click log; quarantine bad rows"),
    "pairs": ("caig.data.pairs", "build reward-model pairs (train/test) from a click log"),
    "data-report": ("caig.data.report", "summarise the data stage (Markdown + figure)"),
    "init-model": ("caig.models.init", "write the base LLaVA-NeXT model (tiny: random init + local tokenizer)"),
    "preference-products": ("caig.preference.products", "choose the preference stage's training and held-out products"),
    "sample": ("caig.generate.sampling", "sample two background descriptions per product from the prompt model"),
    "render": ("caig.preference.render", "render sampled descriptions into ad images (world or diffusion back end)"),
    "judge": ("caig.generate.judge", "let the frozen reward model pick y+ / y- per product: the preference set"),
    "preference-train": ("caig.preference.train", "one DPO/PCPO epoch (LoRA, merged at the end)"),
    "evaluate-match": ("caig.evaluate.match", "match rate, oracle CTR and RM win rate of a prompt model"),
    "judge-audit": ("caig.evaluate.judge_audit", "check every preference set against the synthetic world's truth (reward hacking)"),
    "preference-report": ("caig.report.preference", "match-rate table, figure and contact sheet of the methods"),
    "online": ("caig.evaluate.online", "simulated online A/B: each method's ads served by a bandit, CTR lift vs control"),
    "online-report": ("caig.report.online", "online CTR-lift table by category (paper values beside ours)"),
    "pretrain-data": ("caig.pretrain.build", "build the e-commerce pre-training records (three task families)"),
    "vision-pretrain": ("caig.pretrain.vision", "pre-train the tiny vision tower on rendered ads and their descriptions (CLIP in miniature)"),
    "pretrain-report": ("caig.report.pretrain", "loss curves of the pre-training steps and the vision tower's probes (figure)"),
    "training-curves": ("caig.report.curves", "loss curves of the RM variants, baselines and preference epochs from their TensorBoard event files (figure)"),
    "pretrain": ("caig.pretrain.train", "e-commerce knowledge pre-training of LLaVA-NeXT (HF Trainer + DeepSpeed)"),
    "reward-train": ("caig.reward.train", "train one reward-model variant (HF Trainer + DeepSpeed)"),
    "reward-eval": ("caig.reward.eval", "pair accuracy of a reward-model variant or baseline, with a bootstrap CI"),
    "bench-summary": ("caig.report.benchmarks", "gather the run's per-rule benchmark records into one table"),
    "baseline-train": ("caig.reward.baselines", "train a VAM- or CG4CTR-style baseline ranker on the RM pairs"),
    "pair-ceiling": ("caig.evaluate.pairs", "Bayes ceiling of the RM test pairs and models judged by the true order (synthetic world)"),
    "reward-tables": ("caig.report.tables", "reward-model ablation and comparison tables (Markdown, CSV, LaTeX)"),
    "readme-tables": ("caig.report.readme", "put a finished run's tables and figure into the README"),
    "launch": ("caig.launch.cli", "run a caig command as one rank per GPU (torchrun / srun), or one on CPU"),
}


def named_path(value: str) -> tuple[str, Path]:
    """An option value ``NAME=PATH`` (a row's name and its file), for commands taking several named files."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caig", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage / unknown-command error and exits
    name, rest = argv[0], argv[1:]
    quiet_library_bars()  # before the command imports transformers
    module = importlib.import_module(COMMANDS[name][0])
    if name == "launch":  # forwards a whole command line (after --) untouched, and composes no config
        return module.main(rest)
    parser = argparse.ArgumentParser(prog=f"caig {name}", description=COMMANDS[name][1])
    module.configure(parser)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preset=paper data.pairs.seed=1")
    args = parser.parse_intermixed_args(rest)
    from caig.config import compose  # Hydra: only once a command runs, so `caig --help` stays fast

    log = get_logger(name)
    try:
        overrides = [*getattr(module, "overrides", lambda a: [])(args), *args.overrides]
        log.info("caig %s %s", name, shlex.join(rest))
        cfg = compose(overrides)
        module.run(args, cfg)
    except CaigError as err:
        print(f"caig {name}: error: {err}", file=sys.stderr)
        return 2
    return 0


def entry() -> None:
    """The console script and ``python -m caig``: ``main``, then a fast exit.

    A job's work is done (outputs written atomically, files closed) when ``main`` returns; what remains is
    Python tearing down torch and transformers module by module, about a second per job and ~100 jobs per
    tiny run. So the exit handlers run (the distributed teardown is one), streams are flushed, and the
    process ends without that teardown.
    """
    code = main()
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
