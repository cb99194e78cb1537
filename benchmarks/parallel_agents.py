"""Two sweep agents on one machine must not fight over its CPUs.

A grid sweep of the example trainer (8 points, the bundled configs) run by 2 agent processes
at once, against the baseline of 1 agent running the same 8 trials one after another, on the
same machine in the same run (interleaved, medians). With ``trainer.num_threads: auto`` each
trainer takes its share of the CPUs it is allotted (expctl.host_share), so on 2 cores the
2 agents should finish no later than the 1 agent: ratio (2 agents / 1 agent wall) ≤ 1.0.

    python benchmarks/parallel_agents.py              # ~2 minutes on 2 cores
    python benchmarks/parallel_agents.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SWEEP = """
name: parallel-agents
method: grid
metric: {name: val_loss, goal: minimize}
parameters:
  optim.lr: {values: [0.1, 0.03, 0.01, 0.003]}
  model: {values: [small, large]}
"""
POINTS = 8


def expctl(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCTL_", "WANDB_"))}
    env.update(WANDB_MODE="disabled", WANDB_SILENT="true", NO_COLOR="1")
    return subprocess.Popen(
        [sys.executable, "-m", "expctl", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"expctl failed ({proc.returncode}): {err}")
    return out.strip()


def sweep_wall(project: Path, agents: int) -> float:
    """Seconds from starting ``agents`` agent processes to the last one exiting."""
    sweep_id = finish(expctl(project, "sweep", "create", "sweep.yaml"))
    start = time.perf_counter()
    procs = [expctl(project, "sweep", "agent", sweep_id) for _ in range(agents)]
    for proc in procs:
        finish(proc)
    wall = time.perf_counter() - start
    status = finish(expctl(project, "sweep", "status", sweep_id, "--format", "json"))
    if f'"complete": {POINTS}' not in status:
        raise SystemExit(f"sweep {sweep_id} did not complete its {POINTS} points: {status}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(REPO / "configs", project / "configs")
        (project / "sweep.yaml").write_text(SWEEP)
        one, two = [], []
        for _ in range(args.repeats):  # interleaved: drift hits both alike
            one.append(sweep_wall(project, 1))
            two.append(sweep_wall(project, 2))
    cpus = len(os.sched_getaffinity(0))
    print(f"{POINTS}-point grid of the example trainer on {cpus} CPUs, medians of {args.repeats}")
    print(f"{'agents':<28}{'wall s':>10}{'s/trial':>10}")
    base, par = statistics.median(one), statistics.median(two)
    print(f"{'1 agent x 8 (baseline)':<28}{base:>10.1f}{base / POINTS:>10.2f}")
    print(f"{'2 agents x 4':<28}{par:>10.1f}{par / POINTS:>10.2f}")
    print(f"ratio 2 agents / 1 agent: {par / base:.2f}x (goal <= 1.00x)")


if __name__ == "__main__":
    main()
