"""Many one-process launches at once on one host all succeed: no port to race for (issue #13).

The launcher used to pick a free port, close it and hand the number to the rank, which bound it seconds
later; a second job (or anything else on the host) could take it in between (``EADDRINUSE`` at job 61 of
``make demo``). Now a world of one takes no store port at all. Each launch here is the launcher's path as
a rule runs it on a CPU node: ``caig launch --gpus-per-node 0 --check`` plans, execs the rank, which joins
its process group and all-reduces (the GPU count is given so that the launcher itself skips importing
torch, which does not touch the port and would cost CI ~40% more CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
LAUNCHES = 32
DEADLINE_SECONDS = 600  # for all of them together, on a loaded 2-core CI machine


def test_32_one_process_launches_started_at_once_all_succeed():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    launches = [
        subprocess.Popen(
            [PYTHON, "-m", "caig", "launch", "--gpus-per-node", "0", "--check"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(LAUNCHES)
    ]
    deadline = time.monotonic() + DEADLINE_SECONDS
    outcomes = []
    try:
        for launch in launches:
            out, err = launch.communicate(timeout=max(deadline - time.monotonic(), 1))
            outcomes.append((launch.returncode, out, err))
    finally:
        for launch in launches:
            if launch.poll() is None:
                launch.kill()
                launch.communicate()
    failed = [(number, code, err[-2000:]) for number, (code, _, err) in enumerate(outcomes) if code != 0]
    assert not failed, failed
    sums = [json.loads(out.strip().splitlines()[-1])["all_reduce_sum"] for _, out, _ in outcomes]
    assert sums == [1] * LAUNCHES
