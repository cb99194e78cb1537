"""The SLURM examples, driven locally with SLURM's environment variables (no SLURM here).

What SLURM does on preemption or at the time limit is send SIGTERM to the batch shell (with
`--signal=B:TERM@...`), then SIGKILL after a grace period, then requeue the job with
SLURM_RESTART_COUNT incremented. The tests do exactly that to the real scripts.
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
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "examples" / "slurm"


def slurm_env(**extra: str) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)  # the scripts call `expctl` from PATH
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], **extra}


def wait_until(predicate, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_train_script_is_preempted_then_requeued_and_resumes(project: Path) -> None:
    args = ["trainer.epochs=60", "trainer.device=cpu", "data=synthetic", "data.num_samples=4096"]
    env = slurm_env(SLURM_JOB_ID="4242", SLURM_RESTART_COUNT="0")
    first = subprocess.Popen(
        ["bash", str(SLURM / "train.sbatch"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = project / "runs" / "slurm-4242"
    metrics = lambda: list(runs.glob("*/*/metrics.jsonl"))  # noqa: E731
    wait_until(lambda: any(p.read_text().strip() for p in metrics()), what="the first epoch")
    first.send_signal(signal.SIGTERM)  # SLURM: --signal=B:TERM to the batch shell
    out, err = first.communicate(timeout=60)
    assert first.returncode == 143, err
    [run_dir] = [p.parent for p in metrics()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert out.strip() == str(run_dir.resolve()) or Path(out.strip()).resolve() == run_dir.resolve()

    env["SLURM_RESTART_COUNT"] = "1"  # the requeued job
    second = subprocess.run(
        ["bash", str(SLURM / "train.sbatch"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert second.returncode == 0, second.stderr
    assert "resuming the latest run" in second.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final_metrics"]["epoch"] == 60
    assert len(list(runs.glob("*/*"))) == 1  # the same run continued, no second run dir


def test_sweep_array_tasks_share_a_sweep_and_a_preempted_trial_is_rerun(project: Path) -> None:
    spec = yaml.safe_load((REPO / "configs" / "sweeps" / "tutorial_program.yaml").read_text())
    spec.update(method="grid", program=str(REPO / "examples" / "tutorial_sweep" / "train.py"))
    spec["parameters"] = {
        "lr": {"values": [0.01, 0.03, 0.1]},
        "batch_size": {"values": [32, 64]},
        "epochs": {"value": 30},
    }
    (project / "sweep.yaml").write_text(yaml.safe_dump(spec))
    storage = str(project / "shared" / "sweeps.journal")
    env = slurm_env(EXPCTL_STORAGE=storage, SLURM_ARRAY_JOB_ID="77", TRIALS_PER_TASK="6")
    created = subprocess.run(
        [sys.executable, "-m", "expctl", "sweep", "create", "sweep.yaml"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    env["SWEEP_ID"] = created.stdout.strip()

    def task(i: int) -> subprocess.Popen:
        return subprocess.Popen(
            ["bash", str(SLURM / "sweep_array.sbatch")],
            env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def status() -> dict:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "expctl",
                "sweep",
                "status",
                env["SWEEP_ID"],
                "--format",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        return json.loads(proc.stdout)

    preempted = task(0)
    wait_until(
        lambda: any(t["state"] == "running" for t in status()["trials"]), what="a running trial"
    )
    preempted.send_signal(signal.SIGTERM)
    _, err = preempted.communicate(timeout=90)
    assert preempted.returncode == 143, err
    assert "preempted: the running trial was re-queued" in err

    others = [task(1), task(2)]
    for proc in others:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    final = status()
    complete = [t for t in final["trials"] if t["state"] == "complete"]
    points = sorted((t["params"]["lr"], t["params"]["batch_size"]) for t in complete)
    assert points == sorted((lr, bs) for lr in (0.01, 0.03, 0.1) for bs in (32, 64))
    assert final["state"] == "finished"
