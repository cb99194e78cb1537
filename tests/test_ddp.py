"""Multi-process training: real torchrun subprocesses, 2 CPU processes on gloo, a tiny model.

The single-process reference trains in this process with the same config: ``data.batch_size``
is the global batch, so both see the same batches and should agree up to float summation order
(the all-reduced gradients and metrics add the same numbers in a different order: ~1e-7
relative after a few epochs, compared at 1e-4).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expctl.config import ConfigSource, compose_config
from expctl.train import train

pytestmark = pytest.mark.slow

# 481 samples: 385 train = 6 batches of 64 + 1, so the last global batch has one sample and
# rank 1's shard of it is empty (the hardest case for uneven shards).
SMALL = (
    "data=synthetic",
    "data.num_samples=481",
    "trainer.device=cpu",
    "trainer.num_threads=1",
    "trainer.log_every_n_steps=5",
    "artifact.publish=false",
)
COMPARED = ("step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def torchrun(nproc: int, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "expctl", "run", *args]  # fmt: skip
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def expctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "expctl", "run", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def single_process(project: Path, *overrides: str) -> dict[str, float]:
    cfg = compose_config(ConfigSource(project / "configs", "config", overrides))
    return train(cfg, run_dir=project / "single").final_metrics


def assert_close(ddp: dict[str, float], single: dict[str, float], rel: float = 1e-4) -> None:
    for key in COMPARED:
        assert ddp[key] == pytest.approx(single[key], rel=rel), key


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def offline_runs(work: Path) -> list[Path]:
    return sorted(Path(os.environ["WANDB_DIR"]).glob("wandb/offline-run-*"))


def test_two_processes_agree_with_one_and_write_one_record(project: Path):
    done = torchrun(2, *SMALL, "trainer.epochs=3", cwd=project)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()  # stdout is data: rank 0's run directory, once
    run_dir = Path(line)
    assert [p.name for p in (project / "runs" / "digits-mlp").iterdir()] == [run_dir.name]
    record = summary(run_dir)
    assert (record["status"], record["world_size"], record["step"]) == ("completed", 2, 21)
    assert done.stderr.count("epoch 3/3") == 1  # only rank 0 reports progress

    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [(r["step"], "val_loss" in r) for r in rows]
    assert steps == sorted(set(steps)), "each row once: only rank 0 writes metrics"
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names[-1] == "last.pt" and len(names) == 4 and not any(".tmp" in n for n in names)
    (wandb_run,) = offline_runs(project)  # one W&B run, rank 0's
    assert record["wandb"]["sync_dirs"] == [str(wandb_run.resolve())]

    single = single_process(project, *SMALL, "trainer.epochs=3")
    assert_close(record["final_metrics"], single)


def test_devices_launcher_sigterm_then_resume_matches_an_uninterrupted_run(project: Path):
    # Long enough to be signalled mid-run: 2 x 250 steps of 16000 samples.
    overrides = (*SMALL, "data.num_samples=20000", "trainer.epochs=2", "trainer.devices=2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "expctl", "run", *overrides],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = project / "runs" / "digits-mlp"
    deadline = time.monotonic() + 60
    while not list(runs.glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    (run_dir,) = runs.iterdir()
    assert stdout.strip() == str(run_dir)
    record = summary(run_dir)
    assert record["status"] == "interrupted" and record["world_size"] == 2
    stopped_at = record["step"]
    assert 0 < stopped_at < 500 and (run_dir / "checkpoints" / "last.pt").is_file()

    resumed = expctl("--resume", str(run_dir), cwd=project)  # devices=2 from its config
    assert resumed.returncode == 0, resumed.stderr
    record = summary(run_dir)
    assert (record["status"], record["step"]) == ("completed", 500)
    assert record["resumed_from_step"] == stopped_at
    assert len(offline_runs(project)) == 2  # one W&B run per attempt (rank 0 only)

    single = single_process(project, *overrides[:-1])
    assert_close(record["final_metrics"], single)
