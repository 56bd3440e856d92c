"""Put a finished run's tables and figure into the README, between marker comments, so the README shows
generated numbers rather than typed ones.

``caig readme-tables --run results/tiny --readme README.md`` replaces what lies between
``<!-- BEGIN generated: results -->`` and ``<!-- END generated: results -->`` with the run's Markdown tables (in
study order) and its match-rate figure, copied to ``docs/figures/`` (``results/`` is not in git, the README's
figure must be). Run it (``make readme``) after a run whose tables should be shown.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from omegaconf import DictConfig

from caig.errors import InputError
from caig.io import write_text
from caig.logs import get_logger

log = get_logger("readme-tables")

BEGIN = "<!-- BEGIN generated: results -->"
END = "<!-- END generated: results -->"
# (heading, file under <run>/tables/) in the order the README shows them
TABLES = (
    ("Reward model: ablation", "reward_ablation.md"),
    ("Reward model: against the baselines", "reward_comparison.md"),
    ("Preference stage: match rate over epochs", "match_rate.md"),
    ("Preference stage: what each epoch's judge taught (synthetic world)", "judge_audit.md"),
    ("Simulated online A/B: CTR lift over the pre-trained prompt model", "online_lift.md"),
)
FIGURE = ("figures", "match_rate.png")


def demoted(markdown: str) -> str:
    """A table file's own headings moved below the README's section level (``#`` -> ``#####``)."""
    return re.sub(r"^(#{1,6}) ", lambda m: "#" * min(len(m.group(1)) + 4, 6) + " ", markdown, flags=re.MULTILINE)


def generated_block(run: Path, readme: Path, figure: Path) -> str:
    """The README block for ``run``: each table under a heading, then ``figure`` (linked relative to the README)."""
    parts = [BEGIN, f"<!-- written by `caig readme-tables --run {run}`; edit the tables there, not here -->", ""]
    for heading, name in TABLES:
        path = run / "tables" / name
        if not path.is_file():
            raise InputError("the run has no such table (has `snakemake all` finished?)", file=path)
        parts += [f"#### {heading}", "", demoted(path.read_text().strip()), ""]
    relative = Path(os.path.relpath(figure.resolve(), readme.resolve().parent)).as_posix()
    parts += [f"![Match rate over epochs]({relative})", "", END]
    return "\n".join(parts)


def replace_block(text: str, block: str, source: Path) -> str:
    """``text`` with the marked block replaced by ``block``; the markers must occur once each, in order."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise InputError(f"expected one {BEGIN} ... {END} block", file=source)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder, e.g. results/tiny")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="the README to update")
    parser.add_argument(
        "--figures", type=Path, default=Path("docs/figures"), help="where the README's copy of the figure goes"
    )


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    del cfg  # the tables already hold everything
    source = args.run.joinpath(*FIGURE)
    if not source.is_file():
        raise InputError("the run has no match-rate figure (has `snakemake all` finished?)", file=source)
    args.figures.mkdir(parents=True, exist_ok=True)
    figure = args.figures / f"{FIGURE[1].removesuffix('.png')}_{args.run.name}.png"
    shutil.copyfile(source, figure)
    text = args.readme.read_text()
    updated = replace_block(text, generated_block(args.run, args.readme, figure), args.readme)
    write_text(updated, args.readme)
    log.info("%s: tables of %s written between the markers", args.readme, args.run)
