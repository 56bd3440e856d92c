"""caig.launch.runlock: a live run's lock refuses a second run; a killed run's lock is free again, and its stale
Snakemake locks are cleared unless jobs it started still run (local processes or Slurm jobs)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from caig.launch import runlock
from caig.launch.runlock import LOCK_NAME, RUN_ID_VARIABLE, RunInProgress, claim_run_lock

# A run's main process in miniature: claims the lock, optionally starts a job process (it inherits the run's
# environment), reports, and lives until its stdin closes or it is killed.
HOLDER = textwrap.dedent(
    """
    import subprocess, sys
    from caig.launch.runlock import claim_run_lock
    claim_run_lock(sys.argv[1], [sys.argv[1] + "/.snakemake/log/run.snakemake.log"])
    job = subprocess.Popen(["sleep", "120"]) if sys.argv[2] == "with-job" else None
    print(job.pid if job else 0, flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture(autouse=True)
def released(monkeypatch):
    """Every lock a test claims in this process is released after it, and the run id it sets is undone."""
    os.environ.pop(RUN_ID_VARIABLE, None)
    monkeypatch.setenv("PATH", "/nonexistent")  # no squeue unless a test puts one first
    yield
    os.environ.pop(RUN_ID_VARIABLE, None)
    while runlock._held:
        _, lock = runlock._held.popitem()
        os.close(lock.fd)


class Holder:
    """A holder process and, where asked, its job process."""

    def __init__(self, workdir: Path, with_job: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(workdir), "with-job" if with_job else "alone"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PATH": "/usr/bin:/bin"},
        )
        self.job_pid = int(self.process.stdout.readline())
        assert self.process.poll() is None, "the holder did not start"

    def kill(self) -> None:
        """SIGKILL the holder alone (its job, if any, lives on, as a job does when only Snakemake is killed)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def kill_job(self) -> None:
        os.kill(self.job_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it is reaped, or a zombie (no environment left)
            try:
                if Path(f"/proc/{self.job_pid}/stat").read_text().split()[2] == "Z":
                    return
            except OSError:
                return
            time.sleep(0.05)


def stale_snakemake_locks(workdir: Path) -> list[Path]:
    """Lock files as Snakemake writes them (and leaves behind when it is killed)."""
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    paths = [locks / "0.input.lock", locks / "0.output.lock"]
    for path in paths:
        path.write_text(f"{workdir}/results/tiny/some/file\n")
    return paths


def record(workdir: Path) -> dict:
    return json.loads((workdir / ".snakemake" / LOCK_NAME).read_text())


def test_a_live_run_refuses_a_second_one_which_changes_nothing(tmp_path):
    holder = Holder(tmp_path)
    try:
        locks = stale_snakemake_locks(tmp_path)  # the live run's own locks
        before = record(tmp_path)
        with pytest.raises(RunInProgress) as refused:
            claim_run_lock(tmp_path)
        message = str(refused.value)
        assert f"PID {holder.process.pid}" in message
        assert f"ps -fp {holder.process.pid}" in message
        assert "tail -f .snakemake/log/run.snakemake.log" in message
        assert all(path.exists() for path in locks)
        assert record(tmp_path) == before
        assert RUN_ID_VARIABLE not in os.environ
    finally:
        holder.kill()


def test_a_killed_run_frees_the_lock_and_its_stale_locks_are_cleared(tmp_path):
    holder = Holder(tmp_path)
    locks = stale_snakemake_locks(tmp_path)
    holder.kill()
    lock = claim_run_lock(tmp_path, [str(tmp_path / ".snakemake" / "log" / "mine.snakemake.log")])
    assert lock is not None
    assert sorted(lock.cleared) == sorted(locks)
    assert not any(path.exists() for path in locks)
    mine = record(tmp_path)
    assert mine["pid"] == os.getpid()
    assert mine["log"] == ".snakemake/log/mine.snakemake.log"
    assert os.environ[RUN_ID_VARIABLE] == mine["run_id"]


def test_the_lock_is_held_until_the_process_ends(tmp_path):
    lock = claim_run_lock(tmp_path)
    assert claim_run_lock(tmp_path) is lock  # a second parse of the Snakefile in the same process
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n"
    )
    taken = subprocess.run([sys.executable, "-c", probe, str(lock.path)], timeout=30)
    assert taken.returncode == 3, "another process could take the lock while this one holds it"


def test_no_stale_locks_means_nothing_is_cleared(tmp_path):
    lock = claim_run_lock(tmp_path)
    assert lock is not None and lock.cleared == ()


def test_job_processes_of_a_killed_run_keep_its_locks_until_they_end(tmp_path):
    holder = Holder(tmp_path, with_job=True)
    locks = stale_snakemake_locks(tmp_path)
    holder.kill()  # Snakemake alone: its job process lives on
    try:
        with pytest.raises(RunInProgress) as refused:
            claim_run_lock(tmp_path)
        assert f"local processes: {holder.job_pid}" in str(refused.value)
        assert f"kill {holder.job_pid}" in str(refused.value)
        assert all(path.exists() for path in locks)
    finally:
        holder.kill_job()
    assert claim_run_lock(tmp_path).cleared


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """A fake ``squeue`` on PATH printing the given lines; records each call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "squeue.calls"

    def install(lines: list[str], status: int = 0) -> Path:
        script = bin_dir / "squeue"
        body = "".join(f"echo '{line}'\n" for line in lines)
        script.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n{body}exit {status}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
        return calls

    return install


def test_slurm_jobs_left_in_this_directory_keep_the_stale_locks(tmp_path, squeue, monkeypatch):
    workdir = tmp_path / "work"
    holder = Holder(workdir)
    locks = stale_snakemake_locks(workdir)
    holder.kill()
    monkeypatch.setenv("SLURM_JOB_ID", "125")  # this head's own allocation, in the same directory
    squeue(
        [
            f"123|caig_1f2e|RUNNING|{workdir}",
            "124|caig_9a9a|PENDING|/somewhere/else",
            f"125|interactive|RUNNING|{workdir}",
        ]
    )
    with pytest.raises(RunInProgress) as refused:
        claim_run_lock(workdir)
    message = str(refused.value)
    assert "Slurm job 123 caig_1f2e RUNNING" in message and "scancel 123" in message
    assert "124" not in message and "125" not in message
    assert all(path.exists() for path in locks)


def test_slurm_is_asked_only_when_stale_locks_are_found(tmp_path, squeue):
    calls = squeue([])
    claim_run_lock(tmp_path / "clean")
    assert not calls.exists()
    workdir = tmp_path / "killed"
    stale_snakemake_locks(workdir)
    assert claim_run_lock(workdir).cleared
    assert "--me" in calls.read_text()


def test_a_failing_squeue_warns_and_does_not_block(tmp_path, squeue, caplog):
    squeue([], status=1)
    stale_snakemake_locks(tmp_path)
    assert claim_run_lock(tmp_path).cleared
    assert "squeue --me" in caplog.text


def test_a_file_system_without_flock_leaves_snakemakes_lock_alone(tmp_path, monkeypatch, caplog):
    def unsupported(fd: int, operation: int) -> None:
        raise OSError(37, "No locks available")

    locks = stale_snakemake_locks(tmp_path)
    monkeypatch.setattr(fcntl, "flock", unsupported)
    assert claim_run_lock(tmp_path) is None
    assert "cannot take the run lock" in caplog.text
    assert all(path.exists() for path in locks)
