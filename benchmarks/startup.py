"""Startup latency: `expctl --help` and `expctl config show` against their physical floors.

Baselines measured in the same run, interleaved (noisy shared machines drift):
  python -c "import typer"   — the floor for any Typer CLI        (goal: --help within 1.5x)
  python -c "import hydra"   — the floor for composing a config  (goal: config show within 1.3x)
  wandb --help               — what W&B users wait for today      (goal: several times slower)

    python benchmarks/startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands() -> dict[str, list[str]]:
    bindir = Path(sys.executable).parent
    expctl = str(bindir / "expctl") if (bindir / "expctl").exists() else shutil.which("expctl")
    wandb = str(bindir / "wandb") if (bindir / "wandb").exists() else shutil.which("wandb")
    assert expctl and wandb, "install the project first: pip install -e ."
    return {
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "expctl --help": [expctl, "--help"],
        "python -c 'import hydra'": [sys.executable, "-c", "import hydra"],
        "expctl config show": [expctl, "config", "show"],
        "wandb --help": [wandb, "--help"],
    }


def time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    cmds = commands()
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():  # warm the page cache once
        time_once(cmd)
    for _ in range(args.repeats):  # interleaved: every round times each command once
        for name, cmd in cmds.items():
            samples[name].append(time_once(cmd))
    med = {name: statistics.median(v) for name, v in samples.items()}

    print(f"median wall time over {args.repeats} interleaved runs")
    for name, value in med.items():
        print(f"  {name:28s} {value * 1000:8.1f} ms")
    typer_floor, hydra_floor, wandb_help = (
        med["python -c 'import typer'"],
        med["python -c 'import hydra'"],
        med["wandb --help"],
    )
    print("ratios")
    print(
        f"  expctl --help / import typer       {med['expctl --help'] / typer_floor:5.2f}x  (goal <= 1.5)"
    )
    print(
        f"  expctl config show / import hydra  {med['expctl config show'] / hydra_floor:5.2f}x  (goal <= 1.3)"
    )
    print(
        f"  wandb --help / expctl --help       {wandb_help / med['expctl --help']:5.2f}x  (goal: several)"
    )
    print(f"  wandb --help / expctl config show  {wandb_help / med['expctl config show']:5.2f}x")


if __name__ == "__main__":
    main()
