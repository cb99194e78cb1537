"""Startup latency: expctl commands, bare and with their common flags, against their floors.

Baselines measured in the same run, interleaved (noisy shared machines drift):
  python -c "import typer"   — the floor for any Typer CLI: `expctl --help`, `expctl run --help`
                               (goal <= 1.3x)
  bare compose               — a script doing what `config show` must do with Hydra alone:
                               initialize_config_dir + compose + OmegaConf.to_yaml of the same
                               config, with the same overrides (goal: each `config show` form,
                               --config-dir DIR and --set a=b included, <= 1.2x)
  bare scan                  — `import typer` + listing the runs dir + json.dumps: the floor of
                               `runs list --runs-dir DIR --format json` (an empty runs dir: the
                               start-up, not the reading, which benchmarks/runs.py measures)
                               (goal <= 1.2x)
  bare optuna                — Optuna alone loading the same journal storage and every trial of
                               the sweep: the floor of `sweep status ID --storage PATH` (goal <= 1.2x)
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
OVERRIDE = "optim.lr=0.5"


def bare_compose(overrides: list[str]) -> str:
    return f"""
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

with initialize_config_dir(config_dir={str(CONFIG_DIR)!r}, version_base=None):
    cfg = compose("config", overrides={overrides!r})
print(OmegaConf.to_yaml(cfg, resolve=True), end="")
"""


BARE_SCAN = """
import json, os, sys
import typer
print(json.dumps(sorted(os.listdir(sys.argv[1]))))
"""

BARE_OPTUNA = """
import sys
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = JournalStorage(JournalFileBackend(sys.argv[1]))
for study in storage.get_all_studies():
    trials = storage.get_all_trials(study._study_id, deepcopy=False)
    print(study.study_name, [(t.number, t.state.name, t.params) for t in trials])
"""

TYPER = "python -c 'import typer'"
HELP = "expctl --help"
RUN_HELP = "expctl run --help"
BARE = "bare compose + to_yaml"
SHOW = "expctl config show"
BARE_SET = f"bare compose {OVERRIDE}"
SHOW_DIR = "expctl config show --config-dir DIR"
SHOW_SET = f"expctl config show --set {OVERRIDE}"
SCAN = "bare scan (typer + listdir)"
RUNS = "expctl runs list --runs-dir DIR --format json"
OPTUNA = "bare optuna (load journal)"
STATUS = "expctl sweep status ID --storage PATH"
HYDRA = "python -c 'import hydra'"
WANDB = "wandb --help"

# (command, its floor, goal): the ratios printed
RATIOS = [
    (HELP, TYPER, "(goal <= 1.3)"),
    (RUN_HELP, TYPER, "(goal <= 1.3)"),
    (SHOW, BARE, "(goal <= 1.2)"),
    (SHOW_DIR, BARE, "(goal <= 1.2)"),
    (SHOW_SET, BARE_SET, "(goal <= 1.2)"),
    (RUNS, SCAN, "(goal <= 1.2)"),
    (STATUS, OPTUNA, "(goal <= 1.2)"),
    (SHOW, HYDRA, "(reference)"),
    (WANDB, HELP, "(goal: several)"),
    (WANDB, SHOW, ""),
]
# each `config show` form prints what its bare compose prints
SAME_OUTPUT = [(SHOW, BARE), (SHOW_DIR, BARE), (SHOW_SET, BARE_SET)]


def executable(name: str) -> str:
    bindir = Path(sys.executable).parent
    found = str(bindir / name) if (bindir / name).exists() else shutil.which(name)
    assert found, "install the project first: pip install -e ."
    return found


def commands(scratch: Path) -> dict[str, list[str]]:
    """Every command timed; ``scratch`` holds an empty runs dir and a journal with one sweep."""
    expctl, py = executable("expctl"), sys.executable
    runs_dir, journal = scratch / "runs", scratch / "sweeps.journal"
    runs_dir.mkdir()
    sweep_id = subprocess.run(
        [
            expctl,
            "sweep",
            "create",
            str(CONFIG_DIR / "sweeps" / "grid.yaml"),
            "--storage",
            str(journal),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        TYPER: [py, "-c", "import typer"],
        HELP: [expctl, "--help"],
        RUN_HELP: [expctl, "run", "--help"],
        BARE: [py, "-c", bare_compose([])],
        SHOW: [expctl, "config", "show"],
        SHOW_DIR: [expctl, "config", "show", "--config-dir", str(CONFIG_DIR)],
        BARE_SET: [py, "-c", bare_compose([OVERRIDE])],
        SHOW_SET: [expctl, "config", "show", "--set", OVERRIDE],
        SCAN: [py, "-c", BARE_SCAN, str(runs_dir)],
        RUNS: [expctl, "runs", "list", "--runs-dir", str(runs_dir), "--format", "json"],
        OPTUNA: [py, "-c", BARE_OPTUNA, str(journal)],
        STATUS: [expctl, "sweep", "status", sweep_id, "--storage", str(journal)],
        HYDRA: [py, "-c", "import hydra"],
        WANDB: [executable("wandb"), "--help"],
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
    """The baselines must do the same work: each `config show` prints its bare compose's YAML."""
    for form, floor in SAME_OUTPUT:
        shown, bare = (
            subprocess.run(cmds[name], cwd=REPO, capture_output=True, text=True, check=True).stdout
            for name in (form, floor)
        )
        assert shown.strip() == bare.strip(), f"{floor} and `{form}` differ"


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
    with tempfile.TemporaryDirectory(prefix="expctl-bench-startup-") as scratch:
        cmds = commands(Path(scratch))
        check_same_output(cmds)
        wall, cpu = measure(cmds, args.repeats)
    report(wall, cpu, args.repeats, cache)
    if args.bytecode_cache:
        shutil.rmtree(os.environ["PYTHONPYCACHEPREFIX"], ignore_errors=True)


def measure(
    cmds: dict[str, list[str]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    wall: dict[str, list[float]] = {name: [] for name in cmds}
    cpu: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():  # warm the page cache (and the bytecode cache) once
        time_once(cmd)
    for _ in range(repeats):  # interleaved: every round times each command once
        for name, cmd in cmds.items():
            w, c = time_once(cmd)
            wall[name].append(w)
            cpu[name].append(c)
    return wall, cpu


def report(
    wall: dict[str, list[float]], cpu: dict[str, list[float]], repeats: int, cache: str
) -> None:
    print(f"{repeats} interleaved runs each; bytecode cache {cache}")
    print(f"  {'':46s} {'wall: median (quartiles)':>26s} {'CPU: median':>12s}")
    for name in wall:
        q1, _, q3 = statistics.quantiles(wall[name], n=4) if repeats > 1 else [wall[name][0]] * 3
        quartiles = f"({q1 * 1000:.0f}-{q3 * 1000:.0f})"
        print(
            f"  {name:46s} {statistics.median(wall[name]) * 1000:8.1f} ms {quartiles:<11s}"
            f"  {statistics.median(cpu[name]) * 1000:8.1f} ms"
        )
    med = {name: statistics.median(v) for name, v in wall.items()}
    med_cpu = {name: statistics.median(v) for name, v in cpu.items()}
    print("ratios (wall medians; CPU medians, which a loaded machine disturbs less)")
    for a, b, goal in RATIOS:
        label = f"{a} / {b}"
        print(
            f"  {label:78s} {med[a] / med[b]:5.2f}x  (CPU {med_cpu[a] / med_cpu[b]:4.2f}x)  {goal}".rstrip()
        )


if __name__ == "__main__":
    main()
