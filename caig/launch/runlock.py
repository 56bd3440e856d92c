"""One workflow run per working directory, and a safe restart after a run that was killed.

Snakemake marks the files a run works on in ``.snakemake/locks/`` and removes the marks when it ends; a run
killed with SIGKILL (or on a machine that went down) leaves them behind, and the next run stops with
``LockException``. Snakemake cannot tell those stale marks from a live run's. This module can: the
workflow's main process holds an OS lock (``flock``) on ``.snakemake/caig-run.lock`` for its whole life, and
the kernel releases it when that process dies, however it dies. So when the lock is free no run of this
working directory is alive, and its leftover marks can be cleared before Snakemake looks at them.

Before clearing them, two kinds of leftovers of the dead run are looked for, since a new run would redo
their jobs while they still write the same outputs: local job processes (they inherit ``CAIG_RUN_ID``, the
dead run's id in the lock file) and Slurm jobs still queued or running in this working directory (where
``squeue`` is on PATH). Either stops the new run with a message saying what is left and how to end it.

``workflow/Snakefile`` calls :func:`claim_run_lock` while it is parsed, which is before Snakemake takes its
own lock, in the main process of every run that is not a dry run (job subprocesses and the jobs Slurm runs
are not main processes).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from caig.errors import CaigError
from caig.logs import get_logger

LOCK_NAME = "caig-run.lock"
RUN_ID_VARIABLE = "CAIG_RUN_ID"
SQUEUE_TIMEOUT_SECONDS = 30
SQUEUE_FAILED = "could not ask Slurm for jobs a killed run left (%s); look with `squeue --me` yourself"

log = get_logger("runlock")


class RunInProgress(CaigError):
    """A run of this working directory (its main process, or jobs a dead one left) is still going."""


@dataclass(frozen=True)
class Holder:
    """Who holds the run lock: written into the lock file, read back by a run that finds it taken."""

    pid: int
    host: str
    started: str
    command: str
    run_id: str
    log: str


@dataclass(frozen=True)
class SlurmJob:
    """A queued or running Slurm job, as ``squeue`` lists it."""

    job_id: str
    name: str
    state: str


@dataclass(frozen=True)
class RunLock:
    """The held lock: its file and the open descriptor that holds it (closing it releases the lock)."""

    path: Path
    fd: int
    holder: Holder
    cleared: tuple[Path, ...]


# Locks this process holds, by lock file: a second claim (the Snakefile parsed twice) returns the same one,
# as a second flock on a new descriptor would conflict with the first. Keeping the RunLock referenced here
# keeps its descriptor open until the process exits.
_held: dict[Path, RunLock] = {}


def claim_run_lock(workdir: str | Path, log_files: Sequence[str] = ()) -> RunLock | None:
    """Hold ``workdir``'s run lock until this process exits, after clearing Snakemake's stale locks.

    Raises :class:`RunInProgress`, having changed nothing, when another live run holds the lock or when a dead
    run's jobs are still running. Returns None (with a warning) where the file system has no ``flock``;
    Snakemake's own lock then works as it always does.
    """
    workdir = Path(workdir).resolve()
    state = workdir / ".snakemake"
    path = state / LOCK_NAME
    if path in _held:
        return _held[path]
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd)
        os.close(fd)
        raise RunInProgress(describe_live_run(holder, path)) from None
    except OSError as error:
        os.close(fd)
        log.warning(
            "cannot take the run lock %s (%s): a run killed here leaves Snakemake's lock behind; "
            "see README.md, Troubleshooting",
            path,
            error,
        )
        return None
    try:
        previous = read_holder(fd)
        cleared = clear_stale_locks(state, workdir, previous)
    except BaseException:
        os.close(fd)
        raise
    holder = Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        started=datetime.now().astimezone().isoformat(timespec="seconds"),
        command=shlex.join(sys.argv),
        run_id=uuid.uuid4().hex[:12],
        log=os.path.relpath(log_files[0], workdir) if log_files else "",
    )
    write_holder(fd, holder)
    os.environ[RUN_ID_VARIABLE] = holder.run_id
    _held[path] = RunLock(path, fd, holder, cleared)
    return _held[path]


def clear_stale_locks(state: Path, workdir: Path, previous: Holder | None) -> tuple[Path, ...]:
    """Remove the lock files in ``state/locks`` that a dead run left, unless that run's jobs still run.

    Called with the run lock held, so no run that writes such files is alive.
    """
    stale = tuple(sorted((state / "locks").glob("*.lock")))
    if not stale:
        return ()
    orphans = processes_of_run(previous.run_id) if previous and previous.run_id else []
    jobs = slurm_jobs_in(workdir)
    if orphans or jobs:
        raise RunInProgress(describe_leftovers(previous, orphans, jobs))
    for lock_file in stale:
        lock_file.unlink(missing_ok=True)
    log.info(
        "cleared %d stale Snakemake lock file(s) in %s left by a run that is no longer alive (%s)",
        len(stale),
        state / "locks",
        describe_holder(previous) if previous else "no record of it",
    )
    return stale


def read_holder(fd: int) -> Holder | None:
    """The record in the lock file; None when it is empty or not one of ours (never written, or cut short)."""
    size = os.fstat(fd).st_size
    try:
        return Holder(**json.loads(os.pread(fd, size, 0)))
    except (ValueError, TypeError):
        return None


def write_holder(fd: int, holder: Holder) -> None:
    """Overwrite the lock file's record in place: the lock belongs to this inode, so it is never replaced."""
    data = (json.dumps(asdict(holder), indent=2) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def processes_of_run(run_id: str) -> list[int]:
    """PIDs of live processes whose environment carries ``CAIG_RUN_ID=run_id`` (Linux; empty elsewhere)."""
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if marker in environment.split(b"\0") and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return sorted(found)


def slurm_jobs_in(workdir: Path) -> list[SlurmJob]:
    """This user's Slurm jobs (queued or running) whose working directory is ``workdir``; empty without Slurm.

    The job this process runs in (a head started inside an allocation) is not counted.
    """
    try:
        result = subprocess.run(
            ["squeue", "--me", "--noheader", "--format=%i|%j|%T|%Z"],
            capture_output=True,
            text=True,
            timeout=SQUEUE_TIMEOUT_SECONDS,
        )
    except FileNotFoundError:
        return []
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning(SQUEUE_FAILED, error)
        return []
    if result.returncode != 0:
        log.warning(SQUEUE_FAILED, result.stderr.strip())
        return []
    own = os.environ.get("SLURM_JOB_ID")
    jobs = []
    for line in result.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        job_id, name, state, job_dir = fields
        if job_id != own and Path(job_dir).resolve() == workdir:
            jobs.append(SlurmJob(job_id, name, state))
    return jobs


def describe_holder(holder: Holder) -> str:
    return f"PID {holder.pid} on {holder.host}, started {holder.started}: {holder.command}"


def describe_live_run(holder: Holder | None, path: Path) -> str:
    if holder is None:
        return (
            f"another run of this working directory holds {path} (it has not written its details yet); "
            "this run stops without touching anything. Wait for it, then rerun."
        )
    on_host = "" if holder.host == socket.gethostname() else f" (on {holder.host}: ssh {holder.host} first)"
    lines = [
        "another run of this working directory is going; this run stops without touching anything.",
        f"  running: {describe_holder(holder)}",
        f"  see it:  ps -fp {holder.pid}{on_host}",
    ]
    if holder.log:
        lines.append(f"  its log: tail -f {holder.log}")
    lines.append(
        "  Wait for it to finish, or stop it (Ctrl-C in its terminal; or `kill "
        f"{holder.pid}`, which lets its running jobs finish first), then run your command again."
    )
    return "\n".join(lines)


def describe_leftovers(previous: Holder | None, orphans: list[int], jobs: list[SlurmJob]) -> str:
    who = describe_holder(previous) if previous else "no record of it"
    lines = [f"the last run of this working directory is gone ({who}), but jobs it started still run:"]
    ends = []
    if orphans:
        pids = " ".join(map(str, orphans))
        lines.append(f"  local processes: {pids}  (ps -fp {pids})")
        ends.append(f"kill {pids}")
    if jobs:
        lines += [f"  Slurm job {job.job_id} {job.name} {job.state}" for job in jobs]
        lines.append("  (squeue --me -O jobid,name,comment,state shows them; the comment names the rule)")
        ends.append("scancel " + " ".join(job.job_id for job in jobs))
    lines.append(
        "A new run would redo their jobs while they still write the same outputs, so this run stops without "
        f"touching anything. Wait for them to end, or end them ({'; '.join(ends)}), then rerun your command."
    )
    return "\n".join(lines)
