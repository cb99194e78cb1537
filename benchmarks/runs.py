"""Reading records: `expctl runs list` over many run dirs and `expctl sweep report` of a
200-trial sweep, each against a baseline measured in the same run.

  runs list       goal (issue 23, 100,000 run dirs): ≤ 1 s warm (the runs index present) and
                  ≤ 15 s cold (the first listing after the runs appeared: no index yet).
                  Baselines: `expctl --help` (the CLI's start-up floor) and the same listing
                  without the index (EXPCTL_RUNS_INDEX=0: every run dir read, as before)
  sweep report    goal ≤ 5 s and the HTML ≤ 10 MB; baseline `expctl sweep status ID` (opening
                  the same storage and reading the same trials)

The run dirs are copies of one real `expctl run` record with ~130 metric rows (summary.json,
overrides.yaml, config.yaml, metrics.jsonl, provenance.json; each run its own id, stamp, loss
and learning rate); the 200-trial sweep is a real random sweep of expctl's trainer, run by one
agent (tiny trials: ~1 min to build).

    python benchmarks/runs.py [--runs 1000] [--trials 200] [--repeats 5] [--keep DIR]
    python benchmarks/runs.py --runs 100000 --only list --repeats 3   # issue 23's figures
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
# the run every listed dir is a copy of: ~130 rows of metrics, as a real short run logs
SOURCE = [
    *("trainer.epochs=10", "data=synthetic", "data.num_samples=2048"),
    "trainer.log_every_n_steps=2",
]
WHERE_SORT = ["--where", "optim.lr<0.05", "--sort", "val_loss", "--limit", "10"]
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


def expctl_args(*args: str) -> list[str]:
    return list(args)


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCTL_", "WANDB_"))}
    e.update(WANDB_MODE="disabled", WANDB_SILENT="true", NO_COLOR="1")
    return e


def run(cmd: list[str], cwd: Path, **extra_env: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **extra_env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{proc.stderr}")
    return proc.stdout.strip()


def wall(cmd: list[str], cwd: Path, **extra_env: str) -> float:
    start = time.perf_counter()
    run(cmd, cwd, **extra_env)
    return time.perf_counter() - start


def make_runs(work: Path, n: int) -> Path:
    """``n`` run directories: copies of one real run, each with its own id, stamp and lr."""
    import datetime

    source = Path(run(expctl("run", *SOURCE, "optim.lr=0.01", "-q"), work))
    root = work / "many-runs"
    summary = json.loads((source / "summary.json").read_text())
    start = datetime.datetime(2026, 1, 1)
    began = time.perf_counter()
    for i in range(n):
        stamp = (start + datetime.timedelta(seconds=7 * i)).strftime("%Y%m%d-%H%M%S")
        target = root / f"exp-{i % 10}" / f"{stamp}-{secrets.token_hex(3)}"
        target.mkdir(parents=True)
        for f in ("config.yaml", "metrics.jsonl", "provenance.json"):
            shutil.copyfile(source / f, target / f)
        final = {**summary["final_metrics"]}
        final["val_loss"] *= 1 + i / n
        (target / "summary.json").write_text(
            json.dumps({**summary, "run_dir": str(target), "final_metrics": final}, indent=2)
        )
        (target / "overrides.yaml").write_text(
            "\n".join(f"- {o}" for o in [*SOURCE, f"optim.lr={0.01 * (1 + i % 7)}"]) + "\n"
        )
    print(f"(made {n} run dirs in {time.perf_counter() - began:.0f} s)", file=sys.stderr)
    return root


def make_sweep(work: Path, trials: int) -> str:
    (work / "bench.yaml").write_text(SWEEP)
    sweep_id = run(expctl("sweep", "create", "bench.yaml"), work)
    start = time.perf_counter()
    run(expctl("sweep", "agent", sweep_id, "--count", str(trials)), work)
    print(f"(built a {trials}-trial sweep in {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return sweep_id


Command = tuple[list[str], dict[str, str]]  # argv and the environment it adds


def timed(label: str, cmds: dict[str, Command], cwd: Path, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd, extra in cmds.values():
        wall(cmd, cwd, **extra)  # warm the page cache
    for _ in range(repeats):  # interleaved: machine noise hits every command alike
        for name, (cmd, extra) in cmds.items():
            samples[name].append(wall(cmd, cwd, **extra))
    med = {name: statistics.median(v) for name, v in samples.items()}
    print(f"\n{label} (median of {repeats}, wall seconds)")
    for name, seconds in med.items():
        print(f"  {name:<66} {seconds:7.3f} s")
    return med


def first_listings(root: Path, work: Path, repeats: int) -> float:
    """The first `runs list` after the runs appeared: no index yet (a new index dir each time;
    the run dirs were just written, so their files are in the page cache)."""
    samples = []
    for i in range(repeats):
        fresh = work / f"cold-index-{i}"
        cmd = expctl("runs", "list", "--runs-dir", str(root), *WHERE_SORT)
        samples.append(wall(cmd, work, EXPCTL_INDEX_DIR=str(fresh)))
        shutil.rmtree(fresh, ignore_errors=True)
    return statistics.median(samples)


def disk_cold_listing(root: Path, work: Path) -> float | None:
    """The same with the page cache dropped too (root only; None where that is not allowed)."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return None
    cmd = expctl("runs", "list", "--runs-dir", str(root), *WHERE_SORT)
    seconds = wall(cmd, work, EXPCTL_INDEX_DIR=str(work / "disk-cold-index"))
    shutil.rmtree(work / "disk-cold-index", ignore_errors=True)
    return seconds


def bench_list(root: Path, work: Path, runs: int, repeats: int) -> None:
    index = {"EXPCTL_INDEX_DIR": str(work / "index")}
    no_index = {"EXPCTL_RUNS_INDEX": "0"}
    listing = f"runs list --runs-dir DIR {' '.join(WHERE_SORT)}"
    cmd = expctl("runs", "list", "--runs-dir", str(root), *WHERE_SORT)
    med = timed(
        f"runs list over {runs} run dirs",
        {
            "baseline: expctl --help": (expctl("--help"), {}),
            f"baseline: {listing} (no index)": (cmd, no_index),
            f"{listing}": (cmd, index),
            "runs list --limit 10 (newest first)": (
                expctl("runs", "list", "--runs-dir", str(root), "--limit", "10"),
                index,
            ),
            "runs list --sort -val_loss --limit 10 --format json": (
                expctl("runs", "list", "--runs-dir", str(root), "--sort", "-val_loss")
                + expctl_args("--limit", "10", "--format", "json"),
                index,
            ),
            "runs list --where config.optim.lr<0.05 --sort val_loss --limit 10": (
                expctl("runs", "list", "--runs-dir", str(root), "--where", "config.optim.lr<0.05")
                + expctl_args("--sort", "val_loss", "--limit", "10"),
                index,
            ),
            "runs show latest": (expctl("runs", "show", "latest", "--runs-dir", str(root)), index),
        },
        work,
        repeats,
    )
    warm = med[listing]
    plain = med[f"baseline: {listing} (no index)"]
    base = med["baseline: expctl --help"]
    print(
        f"  warm: {warm:.3f} s = {warm / base:.2f}x expctl --help, {plain / warm:.1f}x faster "
        f"than reading every run dir ({plain:.1f} s) (goal <= 1 s: "
        f"{'ok' if warm <= 1 else 'MISSED'})"
    )
    cold = first_listings(root, work, repeats)
    print(
        f"  cold (first listing, no index yet): {cold:.2f} s = {plain / cold:.1f}x faster than "
        f"without an index (goal <= 15 s: {'ok' if cold <= 15 else 'MISSED'})"
    )
    disk = disk_cold_listing(root, work)
    if disk is not None:
        print(f"  cold disk too (page cache dropped, no index): {disk:.2f} s")


def bench_report(work: Path, trials: int, repeats: int) -> None:
    sweep_id = make_sweep(work, trials)
    out = work / "report.html"
    report = timed(
        f"sweep report of a {trials}-trial sweep",
        {
            "baseline: expctl sweep status ID": (expctl("sweep", "status", sweep_id), {}),
            "expctl sweep report ID --out report.html": (
                expctl("sweep", "report", sweep_id, "--out", str(out)),
                {},
            ),
        },
        work,
        repeats,
    )
    seconds = report["expctl sweep report ID --out report.html"]
    ratio = seconds / report["baseline: expctl sweep status ID"]
    size = out.stat().st_size / 1e6
    print(
        f"  sweep report: {seconds:.3f} s = {ratio:.2f}x sweep status "
        f"(goal <= 5 s: {'ok' if seconds <= 5 else 'MISSED'}); "
        f"HTML {size:.1f} MB (goal <= 10 MB: {'ok' if size <= 10 else 'MISSED'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["list", "report"], help="run one of the two parts")
    parser.add_argument(
        "--keep", type=Path, help="build in this directory and keep it (a second run reuses it)"
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="expctl-bench-runs-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "configs").exists():
        shutil.copytree(REPO / "configs", work / "configs")
    try:
        if args.only != "report":
            root = work / "many-runs"
            made = (work / "many-runs.count").read_text() if root.exists() else ""
            if made != str(args.runs):
                shutil.rmtree(root, ignore_errors=True)
                root = make_runs(work, args.runs)
                (work / "many-runs.count").write_text(str(args.runs))
            bench_list(root, work, args.runs, args.repeats)
        if args.only != "list":
            bench_report(work, args.trials, args.repeats)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
