"""caig.launch: the plan the launcher picks per environment, a real one-rank gloo launch, process-group
teardown, and checkpoint/resume on SIGTERM/SIGUSR1 (plain loop in-process; HF Trainer in a subprocess).

Run as a script (``python tests/unit/test_launch.py OUT --steps N [--pause-at K]``) this file is the tiny
Trainer job the preemption test starts, interrupts and resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def no_gpus(env: object) -> int:
    return 0


def eight_gpus(env: object) -> int:
    return 8


# ---- the plan per environment -------------------------------------------------------------------------


def test_cpu_plan_is_one_gloo_rank_with_the_env_deepspeed_needs_and_no_port():
    from caig.launch import plan_launch

    plan = plan_launch(["caig", "pretrain", "preset=tiny"], env={}, count_gpus=no_gpus)
    assert plan.mode == "single" and plan.world_size == 1
    assert plan.argv == [PYTHON, "-m", "caig", "pretrain", "preset=tiny"]
    # No MASTER_ADDR/MASTER_PORT: the rank's group lives on an in-process store (caig.launch.dist).
    assert plan.env == {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    assert plan.shell().startswith("RANK=0 WORLD_SIZE=1 ")


def test_one_node_with_eight_gpus_uses_torchrun_one_rank_per_gpu():
    from caig.launch import plan_launch

    slurm_step = {
        "SLURM_JOB_ID": "41",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_CPUS_ON_NODE": "64",
        "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
    }
    plan = plan_launch(["caig", "reward-train", "--out", "m"], env=slurm_step, count_gpus=eight_gpus)
    assert plan.mode == "torchrun" and plan.world_size == 8
    assert plan.argv == [
        *(PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"),
        "--shutdown-timeout=900",  # workers get the profile's 15-minute warning to checkpoint
        *("-m", "caig", "reward-train", "--out", "m"),
    ]
    # torchrun sets rank, world and master for each worker; its workers join the agent's store, whose
    # kernel-assigned port the agent holds, instead of a port picked free and bound later
    assert plan.env == {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"}


def test_two_nodes_under_slurm_use_srun_with_a_task_per_gpu():
    from caig.launch import plan_launch

    batch_env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "2", "SLURM_CPUS_ON_NODE": "64"}
    plan = plan_launch(["caig", "pretrain"], env=batch_env, count_gpus=eight_gpus)
    assert plan.mode == "srun" and plan.world_size == 16
    assert plan.argv == [
        *("srun", "--jobid=1234", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8", "--cpus-per-task=8"),
        *("--kill-on-bad-exit=1", PYTHON, "-m", "caig.launch.rank", "caig", "pretrain"),
    ]
    assert plan.env == {}  # the tasks meet on rank 0's store (caig.launch.rendezvous), no port set here


def test_stripped_jobstep_env_asks_slurm_for_the_node_count(monkeypatch):
    """Snakemake's jobstep leaves only SLURM_JOB_ID; the launcher then reads the job from scontrol."""
    from caig.launch import launcher

    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout="JobId=77 NumNodes=2 NumCPUs=128 NumTasks=2\n")

    monkeypatch.setattr(launcher.subprocess, "run", fake_run)
    plan = launcher.plan_launch(["caig", "generate"], env={"SLURM_JOB_ID": "77"}, count_gpus=eight_gpus)
    assert calls == [["scontrol", "show", "job", "-o", "77"]]
    assert plan.mode == "srun" and plan.nodes == 2 and "--cpus-per-task=8" in plan.argv


def test_explicit_counts_override_the_environment():
    from caig.launch import plan_launch

    plan = plan_launch(["caig", "judge"], nodes=1, gpus_per_node=2, env={}, count_gpus=eight_gpus)
    assert plan.mode == "torchrun" and "--nproc_per_node=2" in plan.argv


def test_several_nodes_outside_slurm_is_an_error():
    from caig.errors import ConfigError
    from caig.launch import plan_launch

    with pytest.raises(ConfigError, match="needs a Slurm allocation"):
        plan_launch(["caig", "pretrain"], nodes=2, env={}, count_gpus=no_gpus)


@pytest.mark.skipif(torch.cuda.is_available(), reason="counts real CUDA devices")
def test_slurm_gpus_that_torch_cannot_see_count_as_none():
    """The test cluster's fake GPUs (or a CPU torch build): CUDA_VISIBLE_DEVICES alone does not make ranks."""
    from caig.launch import plan_launch

    plan = plan_launch(["caig", "render"], env={"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"})
    assert plan.mode == "single" and plan.gpus_per_node == 0


def test_without_an_nvidia_driver_the_launcher_counts_no_gpu_and_never_imports_torch():
    """Every launched job would otherwise import torch twice (here and in its rank): ~1.3 s each on CPU."""
    probe = (
        "import sys\n"
        "from caig.launch.launcher import visible_gpus\n"
        "count = visible_gpus({'CUDA_VISIBLE_DEVICES': '0,1'}, driver=lambda: False)\n"
        "print(count, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.split() == ["0", "False"]


def test_cli_passes_the_command_after_the_separator_untouched(capsys):
    from caig.cli import main

    assert main(["launch", "--dry-run", "--gpus-per-node", "0", "--", "pairs", "--out", "x y", "a.b=1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith(f"{PYTHON} -m caig pairs --out 'x y' a.b=1")


def test_cli_needs_a_command_or_check():
    from caig.launch.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--nodes", "1"])
    assert exit_info.value.code == 2


def test_real_cpu_launch_initialises_gloo_and_exits_cleanly():
    result = subprocess.run(
        [PYTHON, "-m", "caig", "launch", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "single plan" in result.stderr and "-m caig.launch.check" in result.stderr
    assert "MASTER_PORT" not in result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "rank": 0,
        "world_size": 1,
        "local_rank": 0,
        "backend": "gloo",
        "device": "cpu",
        "all_reduce_sum": 1,
        "expected": 1,
    }


def test_real_two_rank_torchrun_launch_on_cpu_meets_on_the_agents_store():
    """The one-node multi-rank plan, for real on CPU: torchrun's standalone agent holds the store's port."""
    result = subprocess.run(
        [PYTHON, "-m", "caig", "launch", "--gpus-per-node", "2", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torchrun plan" in result.stderr and "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=0" in result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["world_size"], r["backend"], r["all_reduce_sum"]) for r in reports] == [(2, "gloo", 3)] * 2


# ---- process group ------------------------------------------------------------------------------------


def test_distributed_joins_the_launch_env_and_always_tears_down(monkeypatch):
    import torch.distributed as dist

    from caig.launch.dist import distributed

    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="stage failed"):
        with distributed() as world:
            assert dist.is_initialized() and world.backend == "gloo" and world.world_size == 1
            raise RuntimeError("stage failed")
    assert not dist.is_initialized()


def test_a_world_of_one_takes_no_port_even_one_that_is_named_and_taken(monkeypatch):
    """Jobs side by side cannot race for a port a world of one never binds: here MASTER_PORT is held by
    another listener (env:// would fail with EADDRINUSE) and the group still forms, on an in-process store."""
    import socket

    import torch.distributed as dist

    from caig.launch.dist import distributed

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for key, value in {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(taken.getsockname()[1]),
            "RANK": "0",
            "WORLD_SIZE": "1",
        }.items():
            monkeypatch.setenv(key, value)
        with distributed() as world:
            store = dist.distributed_c10d._get_default_store()
            assert isinstance(getattr(store, "underlying_store", store), dist.HashStore)
            value = torch.tensor([5])
            dist.all_reduce(value)
            dist.barrier()
            assert (world.world_size, world.backend, int(value.item())) == (1, "gloo", 5)
    assert not dist.is_initialized()


def test_without_launch_env_the_world_is_one_process_and_no_group(monkeypatch):
    import torch.distributed as dist

    from caig.launch.dist import init_distributed

    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    world = init_distributed()
    assert (world.rank, world.world_size, world.backend, world.is_main) == (0, 1, None, True)
    assert not dist.is_initialized()


def test_incomplete_launch_env_names_the_missing_variables(monkeypatch):
    from caig.errors import ConfigError
    from caig.launch.dist import init_distributed

    monkeypatch.setenv("RANK", "0")
    for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="WORLD_SIZE unset"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")  # a larger world without a store needs the env:// address
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT unset for WORLD_SIZE=2"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match=r"RANK=1 is not in \[0, WORLD_SIZE=1\)"):
        init_distributed()
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ConfigError, match="RANK='zero' is not an integer"):
        init_distributed()


# ---- multi-node rendezvous (caig.launch.rank under srun, faked on this host) ---------------------------


def fake_srun_task(
    step_id: str, rank: int, world_size: int, cwd: Path, taken_port: int
) -> subprocess.Popen[str]:
    """What srun starts on every task of a step: one node (localhost), ``world_size`` tasks, job 4242."""
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "MASTER_PORT": str(taken_port),  # inherited, and held by another listener: the ranks must not use it
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": step_id,
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NODEID": "0",
        "SLURM_NTASKS": str(world_size),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank),
    }
    argv = [PYTHON, "-m", "caig.launch.rank", "caig.launch.check"]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_steps_of_one_job_on_one_node_each_form_their_own_world(tmp_path):
    """Two srun steps of job 4242 side by side (the job-id rule gave both the same port), with the inherited
    MASTER_PORT held by another listener: each step's ranks meet on their own rank 0's store."""
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        tasks = {
            (step, rank): fake_srun_task(step, rank, 2, tmp_path, port)
            for step in ("0", "1")
            for rank in (0, 1)
        }
        outputs = {key: outcome(task, timeout=120) for key, task in tasks.items()}
    for (step, rank), (code, out, err) in outputs.items():
        assert code == 0, (step, rank, err[-3000:])
        assert f"rank {rank} joined the store of step 4242.{step}.0" in err
        report = json.loads(out.splitlines()[-1])
        assert (report["rank"], report["world_size"], report["all_reduce_sum"]) == (rank, 2, 3)
    assert list(tmp_path.iterdir()) == []  # rank 0 removed its address file once its world had joined


def test_a_rank_whose_rank_0_never_publishes_fails_naming_the_file(tmp_path):
    from datetime import timedelta

    from caig.errors import CaigError
    from caig.launch.rendezvous import SlurmStep, join_store

    step = SlurmStep("77", "2", "1")
    with pytest.raises(CaigError, match=r"no address in .*\.caig-rendezvous-77\.2\.1\.json"):
        join_store("127.0.0.1", 2, step, tmp_path, timedelta(seconds=0.5))


def test_a_rank_refuses_a_store_of_another_step(tmp_path):
    """An address file that points at another step's store (a bug, or a stale file) is caught, not joined."""
    from datetime import timedelta

    from caig.errors import CaigError
    from caig.io import write_json
    from caig.launch.rendezvous import SlurmStep, host_store, join_store

    mine, other = SlurmStep("77", "0", "0"), SlurmStep("77", "1", "0")
    store = host_store("127.0.0.1", 1, other, tmp_path, timedelta(seconds=5))  # a world of one: no wait
    assert not other.address_file(tmp_path).exists()
    write_json({"port": store.port}, mine.address_file(tmp_path))
    with pytest.raises(CaigError, match="belongs to step 77.1.0, not 77.0.0"):
        join_store("127.0.0.1", 2, mine, tmp_path, timedelta(seconds=5))


def test_slurm_step_needs_srun_variables():
    from caig.errors import ConfigError
    from caig.launch.rendezvous import SlurmStep

    assert SlurmStep.from_env({"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "4"}).token == "9.4.0"
    requeued = {"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "4", "SLURM_RESTART_COUNT": "2"}
    assert SlurmStep.from_env(requeued).token == "9.4.2"  # a requeued job counts its steps from 0 again
    with pytest.raises(ConfigError, match="SLURM_STEP_ID unset"):
        SlurmStep.from_env({"SLURM_JOB_ID": "9"})


# ---- preemption: plain loop ---------------------------------------------------------------------------


def run_counting_loop(output: Path, total: int, signal_at: int | None) -> int:
    """A loop whose state is a running sum; returns the sum. Sends itself SIGUSR1 after step ``signal_at``."""
    from caig.launch.preemption import ResumableLoop

    with ResumableLoop(output, save_every=4) as loop:
        start, acc = 0, 0
        if (ckpt := loop.resume_from()) is not None:
            state = json.loads((ckpt / "state.json").read_text())
            start, acc = state["step"], state["acc"]
        for step in range(start, total):
            acc += step * step
            if step + 1 == signal_at:
                os.kill(os.getpid(), signal.SIGUSR1)
            done = {"step": step + 1, "acc": acc}
            loop.step_end(
                step + 1, save=lambda folder, s=done: (folder / "state.json").write_text(json.dumps(s))
            )
    return acc


def test_plain_loop_checkpoints_on_signal_and_resumes_to_the_same_result(tmp_path):
    from caig.errors import CaigError
    from caig.launch.preemption import Preempted, checkpoint_dir, checkpoints, finish, last_checkpoint

    out = tmp_path / "model.json"
    with pytest.raises(Preempted) as preempted:
        run_counting_loop(out, total=20, signal_at=7)
    assert preempted.value.code == 128 + signal.SIGUSR1
    assert [p.name for p in checkpoints(out)] == ["checkpoint-7"]  # the periodic checkpoint-4 was replaced
    assert last_checkpoint(out) == checkpoint_dir(out) / "checkpoint-7"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored

    with pytest.raises(CaigError, match="not written yet"):
        finish(out)
    result = run_counting_loop(out, total=20, signal_at=None)
    assert result == sum(i * i for i in range(20))
    out.write_text(json.dumps(result))
    finish(out)
    assert not checkpoint_dir(out).exists()


def test_incomplete_checkpoint_folders_are_ignored(tmp_path):
    from caig.launch.preemption import checkpoint_dir, last_checkpoint

    out = tmp_path / "adapter"
    (checkpoint_dir(out) / "checkpoint-5").mkdir(parents=True)  # a save that was killed half-way
    (checkpoint_dir(out) / "checkpoint-3").mkdir()
    (checkpoint_dir(out) / "checkpoint-3" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(out) == checkpoint_dir(out) / "checkpoint-3"


# ---- preemption: HF Trainer in a subprocess, SIGTERM mid-run -------------------------------------------


def train_tiny(output: Path, steps: int, pause_at: int | None) -> None:
    """Train a tiny random LlamaForCausalLM for ``steps`` steps; resumable; final weights to ``output``.

    With ``pause_at`` it prints ``PAUSED <step>`` after that step and waits (up to 60 s) for a signal, so
    the test interrupts at a known step without racing a fast loop.
    """
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from caig.io import atomic_path
    from caig.launch.preemption import PreemptionCallback, checkpoint_dir, finish, last_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = LlamaForCausalLM(config)
    tokens = torch.randint(0, 64, (48, 12), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": row, "labels": row} for row in tokens]
    preemption = PreemptionCallback()

    class Pause(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == pause_at:
                print(f"PAUSED {state.global_step}", flush=True)
                deadline = time.monotonic() + 60
                while preemption.signal.received is None and time.monotonic() < deadline:
                    time.sleep(0.02)

    args = TrainingArguments(
        output_dir=str(checkpoint_dir(output)),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        seed=0,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Pause(), preemption])
    trainer.train(resume_from_checkpoint=str(ckpt) if (ckpt := last_checkpoint(output)) else None)
    with atomic_path(output) as folder:
        trainer.save_model(str(folder))
    finish(output)


def run_tiny_training(output: Path, steps: int, pause_at: int | None = None) -> subprocess.Popen[str]:
    argv = [PYTHON, str(Path(__file__).resolve()), str(output), "--steps", str(steps)]
    if pause_at is not None:
        argv += ["--pause-at", str(pause_at)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def outcome(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``process``; killed (and the timeout re-raised) if it overruns."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, out, err


def finished(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    code, _, err = outcome(process, timeout)
    return code, err


def test_trainer_preempted_by_sigterm_resumes_to_the_uninterrupted_weights(tmp_path):
    """SIGTERM a training subprocess at step 9, resume it here, compare with an uninterrupted run."""
    from safetensors.torch import load_file

    from caig.launch.preemption import checkpoint_dir, checkpoints

    steps = 24  # two epochs of 12 batches: the resume also crosses an epoch boundary
    interrupted_out = tmp_path / "interrupted"
    interrupted = run_tiny_training(interrupted_out, steps, pause_at=9)
    threads = torch.get_num_threads()
    try:
        train_tiny(tmp_path / "reference", steps, pause_at=None)  # while the subprocess starts up
        lines = iter(interrupted.stdout.readline, "")  # blocks until the job prints (or dies)
        paused = next((line.strip() for line in lines if line.startswith("PAUSED")), None)
        assert paused == "PAUSED 9", interrupted.poll()
        interrupted.send_signal(signal.SIGTERM)
        code, err = finished(interrupted)
        assert code == 128 + signal.SIGTERM, err[-3000:]
        assert not interrupted_out.exists()
        assert [p.name for p in checkpoints(interrupted_out)] == ["checkpoint-9"]

        train_tiny(interrupted_out, steps, pause_at=None)  # the rerun: resumes from checkpoint-9
    finally:
        torch.set_num_threads(threads)
        if interrupted.poll() is None:
            interrupted.kill()
            interrupted.communicate()
    assert not checkpoint_dir(interrupted_out).exists()
    expected = load_file(tmp_path / "reference" / "model.safetensors")
    resumed = load_file(interrupted_out / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        # Same seed and batch order, optimizer/scheduler/RNG state restored, one thread each: bit-identical
        # (measured max |difference| 0.0). A multi-threaded BLAS could reorder sums; then allow ~1e-6.
        assert torch.equal(resumed[name], tensor), name


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="tiny resumable HF Trainer job for the preemption test")
    cli.add_argument("output", type=Path)
    cli.add_argument("--steps", type=int, required=True)
    cli.add_argument("--pause-at", type=int)
    options = cli.parse_args()
    train_tiny(options.output, options.steps, options.pause_at)
