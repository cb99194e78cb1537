"""Reading records: `expctl runs list` over 1,000 run dirs and `expctl sweep report` of a
200-trial sweep, each against a baseline measured in the same run.

  runs list       goal ≤ 1 s wall on a 2-core box; baseline `expctl --help` (the CLI's start-up
                  floor), so the ratio says what listing adds on top of starting at all
  sweep report    goal ≤ 5 s and the HTML ≤ 10 MB; baseline `expctl sweep status ID` (opening
                  the same storage and reading the same trials)

The 1,000 run dirs are copies of one real `expctl run` record (summary.json, overrides.yaml,
config.yaml, metrics.jsonl, each run its own id and learning rate); the 200-trial sweep is a
real random sweep of expctl's trainer, run by one agent (tiny trials: ~1 min to build).

    python benchmarks/runs.py [--runs 1000] [--trials 200] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["trainer.epochs=2", "data=synthetic", "data.num_samples=256"]
SWEEP = """
name: bench
method: random
metric: {name: val_loss, goal: minimize}
parameters:
  optim.lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
  optim.weight_decay: {distribution: uniform, min: 0.0, max: 0.01}
  data.batch_size: {distribution: int_uniform, min: 16, max: 128}
  model: {values: [small, large]}
  trainer.epochs: {value: 3}
  data: {value: synthetic}
  data.num_samples: {value: 256}
"""


def expctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "expctl", *args]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCTL_", "WANDB_"))}
    e.update(WANDB_MODE="disabled", WANDB_SILENT="true", NO_COLOR="1")
    return e


def run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{proc.stderr}")
    return proc.stdout.strip()


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    run(cmd, cwd)
    return time.perf_counter() - start


def make_runs(work: Path, n: int) -> Path:
    """``n`` run directories: copies of one real run, each with its own id and lr."""
    source = Path(run(expctl("run", *TINY, "optim.lr=0.01", "-q"), work))
    root = work / "many-runs"
    names = [f"exp-{i % 10}" for i in range(n)]
    for i, name in enumerate(names):
        target = root / name / f"20260101-{i // 60 % 60:02d}{i % 60:02d}00-{secrets.token_hex(3)}"
        target.mkdir(parents=True)
        for f in ("config.yaml", "overrides.yaml", "metrics.jsonl"):
            shutil.copyfile(source / f, target / f)
        summary = json.loads((source / "summary.json").read_text())
        summary["run_dir"] = str(target)
        summary["final_metrics"]["val_loss"] *= 1 + i / n
        (target / "summary.json").write_text(json.dumps(summary, indent=2))
        (target / "overrides.yaml").write_text(
            "\n".join(f"- {o}" for o in [*TINY, f"optim.lr={0.01 * (1 + i % 7)}"]) + "\n"
        )
    return root


def make_sweep(work: Path, trials: int) -> str:
    (work / "bench.yaml").write_text(SWEEP)
    sweep_id = run(expctl("sweep", "create", "bench.yaml"), work)
    start = time.perf_counter()
    run(expctl("sweep", "agent", sweep_id, "--count", str(trials)), work)
    print(f"(built a {trials}-trial sweep in {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return sweep_id


def timed(label: str, cmds: dict[str, list[str]], cwd: Path, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():
        wall(cmd, cwd)  # warm the page cache
    for _ in range(repeats):  # interleaved: machine noise hits every command alike
        for name, cmd in cmds.items():
            samples[name].append(wall(cmd, cwd))
    med = {name: statistics.median(v) for name, v in samples.items()}
    print(f"\n{label} (median of {repeats}, wall seconds)")
    for name, seconds in med.items():
        print(f"  {name:<58} {seconds:6.3f} s")
    return med


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="expctl-bench-runs-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "configs").exists():
        shutil.copytree(REPO / "configs", work / "configs")
    try:
        root = make_runs(work, args.runs)
        listing = timed(
            f"runs list over {args.runs} run dirs",
            {
                "baseline: expctl --help": expctl("--help"),
                "expctl runs list": expctl("runs", "list", "--runs-dir", str(root)),
                "expctl runs list --format json": expctl(
                    "runs", "list", "--runs-dir", str(root), "--format", "json"
                ),
                "expctl runs list --where config.optim.lr<0.05 --sort val_loss": expctl(
                    "runs",
                    "list",
                    "--runs-dir",
                    str(root),
                    "--where",
                    "config.optim.lr<0.05",
                    "--sort",
                    "val_loss",
                ),
            },
            work,
            args.repeats,
        )
        base = listing["baseline: expctl --help"]
        plain = listing["expctl runs list"]
        print(
            f"  runs list: {plain:.3f} s = {plain / base:.2f}x expctl --help "
            f"(goal <= 1 s: {'ok' if plain <= 1 else 'MISSED'})"
        )

        sweep_id = make_sweep(work, args.trials)
        out = work / "report.html"
        report = timed(
            f"sweep report of a {args.trials}-trial sweep",
            {
                "baseline: expctl sweep status ID": expctl("sweep", "status", sweep_id),
                "expctl sweep report ID --out report.html": expctl(
                    "sweep", "report", sweep_id, "--out", str(out)
                ),
            },
            work,
            args.repeats,
        )
        seconds = report["expctl sweep report ID --out report.html"]
        ratio = seconds / report["baseline: expctl sweep status ID"]
        size = out.stat().st_size / 1e6
        print(
            f"  sweep report: {seconds:.3f} s = {ratio:.2f}x sweep status "
            f"(goal <= 5 s: {'ok' if seconds <= 5 else 'MISSED'}); "
            f"HTML {size:.1f} MB (goal <= 10 MB: {'ok' if size <= 10 else 'MISSED'})"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
