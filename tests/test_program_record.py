"""A program trial leaves the same record as a trainer run: metrics.jsonl and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SWEEP = f"""
program: {REPO / "examples" / "tutorial_sweep" / "train.py"}
method: grid
metric: {{name: val_loss, goal: minimize}}
parameters:
  lr: {{values: [0.1]}}
  batch_size: {{values: [64]}}
  epochs: {{value: 3}}
"""


@pytest.mark.slow
def test_program_trials_have_metrics_and_a_summary(cli, isolated: Path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR")  # then the trial's W&B run goes into its run dir
    (isolated / "sweep.yaml").write_text(SWEEP)
    sweep_id = cli("sweep", "create", "sweep.yaml").stdout.strip()
    agent = cli("sweep", "agent", sweep_id)
    assert agent.exit_code == 0, agent.stderr
    (summary_path,) = (isolated / "runs").glob("*/*/summary.json")
    run_dir = summary_path.parent
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]  # what the script logged with wandb.log
    assert all({"step", "val_loss", "val_acc"} <= set(r) for r in rows)
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed" and summary["kind"] == "program"
    assert summary["params"] == {"batch_size": 64, "epochs": 3, "lr": 0.1}
    assert summary["final_metrics"]["val_loss"] == rows[-1]["val_loss"]
    assert summary["best_metrics"]["val_loss"] == min(r["val_loss"] for r in rows)
    assert summary["sweep"] == {"id": sweep_id, "trial": 0}
    assert summary["wandb"]["sync_dirs"][0].startswith(str(run_dir))  # inside the run dir
    status = json.loads(cli("sweep", "status", sweep_id, "--format", "json").stdout)
    assert status["best"]["value"] == summary["final_metrics"]["val_loss"]
