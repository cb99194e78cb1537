"""Startup latency: `expctl --help` and `expctl config show` against their physical floors.

Baselines measured in the same run, interleaved (noisy shared machines drift):
  python -c "import typer"   — the floor for any Typer CLI                (goal: --help <= 1.3x)
  bare compose               — a script doing what `config show` must do with Hydra alone:
                               initialize_config_dir + compose + OmegaConf.to_yaml of the same
                               config (goal: config show <= 1.2x)
  python -c "import hydra"   — importing Hydra, composing nothing (for reference)
  wandb --help               — what W&B users wait for today            (goal: several times slower)

    python benchmarks/startup.py [--repeats 15] [--bytecode-cache]

Each ratio is printed for wall-time medians (the goals) and for CPU-time medians (user + system),
which a shared machine's load disturbs much less: when the two disagree, the machine was busy.

--bytecode-cache: time every command with Python's bytecode cache on (in a temporary
PYTHONPYCACHEPREFIX), as an installed expctl runs; without it the environment decides (where
PYTHONDONTWRITEBYTECODE=1 is set, expctl's own modules are compiled again at every start).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"  # the example project: `expctl config show` run in REPO uses it

BARE_COMPOSE = f"""
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

with initialize_config_dir(config_dir={str(CONFIG_DIR)!r}, version_base=None):
    cfg = compose("config")
print(OmegaConf.to_yaml(cfg, resolve=True), end="")
"""

TYPER = "python -c 'import typer'"
HELP = "expctl --help"
BARE = "bare compose + to_yaml"
SHOW = "expctl config show"
HYDRA = "python -c 'import hydra'"
WANDB = "wandb --help"


def commands() -> dict[str, list[str]]:
    bindir = Path(sys.executable).parent
    expctl = str(bindir / "expctl") if (bindir / "expctl").exists() else shutil.which("expctl")
    wandb = str(bindir / "wandb") if (bindir / "wandb").exists() else shutil.which("wandb")
    assert expctl and wandb, "install the project first: pip install -e ."
    return {
        TYPER: [sys.executable, "-c", "import typer"],
        HELP: [expctl, "--help"],
        BARE: [sys.executable, "-c", BARE_COMPOSE],
        SHOW: [expctl, "config", "show"],
        HYDRA: [sys.executable, "-c", "import hydra"],
        WANDB: [wandb, "--help"],
    }


def time_once(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and what it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def check_same_output(cmds: dict[str, list[str]]) -> None:
    """The baseline must do the same work: both print the same YAML."""
    shown, bare = (
        subprocess.run(cmds[name], cwd=REPO, capture_output=True, text=True, check=True).stdout
        for name in (SHOW, BARE)
    )
    assert shown.strip() == bare.strip(), "bare compose and `expctl config show` differ"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--bytecode-cache", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.pop("EXPCTL_CONFIG_DIR", None)
    if args.bytecode_cache:  # filled by the warm-up round below
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="expctl-bench-pycache-")
    cache = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    cmds = commands()
    check_same_output(cmds)
    wall: dict[str, list[float]] = {name: [] for name in cmds}
    cpu: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():  # warm the page cache once
        time_once(cmd)
    for _ in range(args.repeats):  # interleaved: every round times each command once
        for name, cmd in cmds.items():
            w, c = time_once(cmd)
            wall[name].append(w)
            cpu[name].append(c)

    print(f"{args.repeats} interleaved runs each; bytecode cache {cache}")
    print(f"  {'':28s} {'wall: median (quartiles)':>26s} {'CPU: median':>12s}")
    for name in cmds:
        q1, _, q3 = (
            statistics.quantiles(wall[name], n=4) if args.repeats > 1 else [wall[name][0]] * 3
        )
        quartiles = f"({q1 * 1000:.0f}-{q3 * 1000:.0f})"
        print(
            f"  {name:28s} {statistics.median(wall[name]) * 1000:8.1f} ms {quartiles:<11s}"
            f"  {statistics.median(cpu[name]) * 1000:8.1f} ms"
        )
    med = {name: statistics.median(v) for name, v in wall.items()}
    med_cpu = {name: statistics.median(v) for name, v in cpu.items()}
    rows = [
        (f"{HELP} / import typer", HELP, TYPER, "(goal <= 1.3)"),
        (f"{SHOW} / bare compose", SHOW, BARE, "(goal <= 1.2)"),
        (f"{SHOW} / import hydra", SHOW, HYDRA, "(reference)"),
        (f"{WANDB} / {HELP}", WANDB, HELP, "(goal: several)"),
        (f"{WANDB} / {SHOW}", WANDB, SHOW, ""),
    ]
    print("ratios (wall medians; CPU medians, which a loaded machine disturbs less)")
    for label, a, b, goal in rows:
        print(
            f"  {label:38s} {med[a] / med[b]:5.2f}x  (CPU {med_cpu[a] / med_cpu[b]:4.2f}x)  {goal}".rstrip()
        )
    if args.bytecode_cache:
        shutil.rmtree(os.environ["PYTHONPYCACHEPREFIX"], ignore_errors=True)


if __name__ == "__main__":
    main()
