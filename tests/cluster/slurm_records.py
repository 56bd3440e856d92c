"""Compare what the Slurm profile asks for with what Slurm recorded for each job.

Expectations come from the (test) profile itself, evaluated per rule and attempt the way Snakemake does
(``default-resources`` overlaid by the rule's ``set-resources``; string values are Python expressions in
``attempt``). Records come from ``scontrol -d -o show job``. A job's rule is read from the comment the
executor plugin gives it (``rule_<name>`` or ``rule_<name>_wildcards_<values>``), and the k-th job with the
same comment is attempt k. Any rule named in ``set-resources`` (the GPU rules) is checked for its GPUs,
nodes and exclusivity as soon as it appears in a workflow.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One job of ``scontrol -o show job`` (``Key=Value Key=Value ...``) as a dict."""
    return dict(match.groups() for match in re.finditer(r"(\S+?)=(\S*)", line))


def rule_of(record: dict[str, str]) -> str:
    comment = record.get("Comment", "")
    if not comment.startswith("rule_"):
        raise AssertionError(f"job {record.get('JobId')} has no Snakemake rule comment: {comment!r}")
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def with_attempts(records: list[dict[str, str]]) -> list[tuple[dict[str, str], int]]:
    """Each job with its attempt number: the k-th submission of the same rule and wildcards is attempt k."""
    seen: dict[str, int] = defaultdict(int)
    numbered = []
    for record in sorted(records, key=lambda r: int(r["JobId"])):
        seen[record["Comment"]] += 1
        numbered.append((record, seen[record["Comment"]]))
    return numbered


def evaluate(value: Any, attempt: int) -> Any:
    """A profile resource value as Snakemake evaluates it: strings are expressions in ``attempt``."""
    if not isinstance(value, str):
        return value
    try:
        return eval(value, {"__builtins__": {"min": min, "max": max}, "attempt": attempt})  # noqa: S307
    except (NameError, SyntaxError):
        return value


def minutes(limit: str) -> int:
    """Slurm's TimeLimit (``[D-]HH:MM:SS`` or ``MM:SS``) in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, mins, secs = parts
    return (int(days or 0) * 24 + hours) * 60 + mins + (1 if secs else 0)


def megabytes(size: str) -> int:
    """Slurm's ``16000M`` / ``15.62G`` / ``1T`` in MB."""
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[size[-1]]
    return round(float(size[:-1]) * factor)


def gpu_count(gres: str | None) -> int:
    """GPUs in a gres string (``gpu:8``, ``gpu:a100:8``, ``gres:gpu:8``, with an optional ``(IDX:..)``)."""
    if not gres or gres == "(null)":
        return 0
    total = 0
    for item in gres.split(","):
        item = item.split("(")[0]
        if "gpu" in item:
            total += int(item.rsplit(":", 1)[1]) if item.rsplit(":", 1)[1].isdigit() else 1
    return total


@dataclass(frozen=True)
class Request:
    """What the profile asks Slurm for one job."""

    partition: str | None
    cpus_per_task: int
    mem_mb: int | None
    runtime_min: int | None
    gpus: int
    nodes: int
    exclusive: bool


def expected_request(profile: dict[str, Any], rule: str, attempt: int, threads: int) -> Request:
    resources = {**profile.get("default-resources", {}), **profile.get("set-resources", {}).get(rule, {})}
    value = {key: evaluate(raw, attempt) for key, raw in resources.items()}
    gpus = int(value["gpu"]) if "gpu" in value else gpu_count(value.get("gres"))
    return Request(
        partition=value.get("slurm_partition"),
        cpus_per_task=int(value.get("cpus_per_task") or threads),
        mem_mb=int(value["mem_mb"]) if "mem_mb" in value else None,
        runtime_min=int(value["runtime"]) if "runtime" in value else None,
        gpus=gpus,
        nodes=int(value.get("nodes", 1)),
        exclusive="--exclusive" in str(value.get("slurm_extra", "")),
    )


def recorded_request(record: dict[str, str]) -> Request:
    return Request(
        partition=record["Partition"],
        cpus_per_task=int(record["CPUs/Task"]),
        mem_mb=megabytes(record["MinMemoryNode"]),
        runtime_min=minutes(record["TimeLimit"]),
        gpus=gpu_count(record.get("JOB_GRES")),
        nodes=int(record["NumNodes"].split("-")[0]),
        exclusive=record.get("OverSubscribe") == "NO",
    )


def rule_threads(snakemake_log: str) -> dict[str, int]:
    """Threads per submitted rule, from the job blocks Snakemake prints (``rule X:`` ... ``threads: N``)."""
    threads: dict[str, int] = {}
    current = None
    for line in snakemake_log.splitlines():
        header = re.fullmatch(r"rule (\S+):", line.strip()) if not line.startswith(" ") else None
        if header:
            current = header.group(1)
            threads.setdefault(current, 1)
        elif current and (match := re.fullmatch(r"\s+threads: (\d+)", line)):
            threads[current] = int(match.group(1))
        elif not line.strip():
            current = None
    return threads


def mismatches(profile: dict[str, Any], records: list[dict[str, str]], threads: dict[str, int]) -> list[str]:
    """Every job whose Slurm record differs from the profile's request, described; empty when all match."""
    problems = []
    for record, attempt in with_attempts(records):
        rule = rule_of(record)
        want = expected_request(profile, rule, attempt, threads.get(rule, 1))
        got = recorded_request(record)
        if want.mem_mb is None:  # no request: Slurm's default applies, nothing to compare
            got = replace(got, mem_mb=None)
        if want.runtime_min is None:
            got = replace(got, runtime_min=None)
        if want != got:
            problems.append(
                f"job {record['JobId']} (rule {rule}, attempt {attempt}): asked {want}, Slurm has {got}"
            )
    return problems
