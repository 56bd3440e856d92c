"""A live one-node Slurm for the cluster tests, brought up once per session and torn down at its end.

``slurm_cluster.sh`` installs Debian's Slurm and munge if missing and runs the daemons from a private
folder; it exits 77 where it cannot (not root, no apt), and the tests then skip with its message. Every
call into Slurm or Snakemake goes through a subprocess with a hard timeout, so a wedged daemon or a
status poll that never returns fails a test instead of hanging the suite.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.cluster.slurm_records import parse_scontrol_record
from tests.conftest import REPO

CLUSTER_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
SLURM_PROFILE = REPO / "profiles" / "slurm" / "profile.yaml"
SKIP_EXIT = 77
CPU_PARTITION = "testcpu"
GPU_PARTITION = "testgpu"
# Seconds between the plugin's status polls on the test cluster (the real profile polls less often).
STATUS_POLL_SECONDS = 4


@dataclass(frozen=True)
class LocalSlurm:
    """The running test cluster: its private folder and how long it took to come up.

    ``env`` is what a host-side client (scontrol, snakemake's sbatch) needs on top of the inherited
    environment: nothing for the one-node cluster (its config is at /etc/slurm), SLURM_CONF for a
    multi-node one (its config reaches /etc/slurm only inside its nodes' namespaces).
    """

    folder: Path
    bring_up_seconds: float
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str, timeout: float = 30) -> str:
        """Run a Slurm client command (scontrol, squeue, ...) and return its stdout; fails on error."""
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env}
        )
        if result.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def jobs(self, workdir: Path) -> list[dict[str, str]]:
        """Slurm's own record of every job that ran in ``workdir`` (``scontrol -d show job``), oldest first.

        Without accounting, slurmctld keeps finished jobs for MinJobAge (3600 s on the test cluster).
        """
        records = []
        for line in self.command("scontrol", "-d", "-o", "show", "job").splitlines():
            record = parse_scontrol_record(line)
            if record.get("WorkDir") == str(workdir.resolve()):
                records.append(record)
        return sorted(records, key=lambda r: int(r["JobId"]))


def cluster_script(
    action: str, folder: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), action, str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "CAIG_SLURM_CPU_PARTITION": CPU_PARTITION,
            "CAIG_SLURM_GPU_PARTITION": GPU_PARTITION,
            **(env or {}),
        },
    )


def local_slurm(folder: Path, env: dict[str, str] | None = None) -> Iterator[LocalSlurm]:
    """Bring up a test cluster in ``folder`` (``env``: slurm_cluster.sh's CAIG_SLURM_* settings), yield
    it, and take it down; skips with the script's message where it cannot run here."""
    started = time.monotonic()
    up = cluster_script("up", folder, timeout=900, env=env)
    if up.returncode == SKIP_EXIT:
        pytest.skip(up.stderr.strip().splitlines()[-1])
    try:
        assert up.returncode == 0, f"slurm_cluster.sh up failed:\n{up.stdout}\n{up.stderr}"
        nodes = int((env or {}).get("CAIG_SLURM_NODES", "1"))
        client_env = {"SLURM_CONF": str(folder / "etc" / "slurm.conf")} if nodes > 1 else {}
        yield LocalSlurm(folder, time.monotonic() - started, client_env)
    finally:
        down = cluster_script("down", folder, timeout=120, env=env)
        assert down.returncode == 0, f"slurm_cluster.sh down failed:\n{down.stdout}\n{down.stderr}"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    yield from local_slurm(tmp_path_factory.mktemp("slurm"))


def write_test_profile(dest: Path) -> Path:
    """profiles/slurm adapted to the test cluster, written to ``dest/profile.yaml``.

    Everything (resources, retries, logs) is inherited; only what names the site changes: the partitions,
    the account (none: there is no accounting), the status command (squeue, as there is no slurmdbd for
    sacct), and the polling interval, so a chain of short jobs does not wait 20 s per link.
    """
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    defaults = profile["default-resources"]
    site_cpu_partition = defaults["slurm_partition"]
    partitions = {site_cpu_partition: CPU_PARTITION}
    for resources in profile.get("set-resources", {}).values():
        if "slurm_partition" in resources:
            partitions.setdefault(resources["slurm_partition"], GPU_PARTITION)
    for resources in [defaults, *profile.get("set-resources", {}).values()]:
        if "slurm_partition" in resources:
            resources["slurm_partition"] = partitions[resources["slurm_partition"]]
        resources.pop("slurm_account", None)
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = STATUS_POLL_SECONDS
    profile["seconds-between-status-checks"] = STATUS_POLL_SECONDS
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "profile.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path
