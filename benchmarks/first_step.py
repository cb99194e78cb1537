"""`expctl run`: process start → first training step, against the floor of that work.

Measured in the same run, interleaved (plain, expctl, expctl, plain, ...), medians:

* ``floor``: a fresh ``python`` that does what any trainer must before its first step —
  ``import torch``, build the example config's data (``expctl.train.data.digits``) and model
  (the 64-128-10 MLP of ``model=small``), the optimizer (Adam: building one imports
  ``torch._dynamo``), one thread like expctl's, then one forward/backward/optimizer step;
* ``expctl``: ``expctl run trainer.epochs=1 trainer.num_threads=1 -q`` of the example project,
  W&B offline (a real offline run, started in the background), the whole record written (run
  directory, config, summary, metrics, checkpoints) — its summary's
  ``timings.process_start_to_first_step_s``;
* ``expctl, W&B disabled``: the same without W&B (what W&B still costs the first step);
* ``expctl, W&B disabled, provenance off``: the same with ``provenance=false`` — the
  difference to the row above is what recording git/diff/packages costs the first step (the
  project is a git repository with an uncommitted change, so the capture does real work).

Both sides take the time from process start the same way: /proc's start time of the process
against CLOCK_BOOTTIME (expctl.record.timings.process_start_time). The whole process
(start → exit, incl. W&B's finish and the checkpoint files) is printed too: nothing is just
moved past the first step unnoticed. Goal: expctl ≤ 1.3× the floor.

    python benchmarks/first_step.py [--repeats 7] [--bytecode-cache]

--bytecode-cache: every process with Python's bytecode cache on (a temporary
PYTHONPYCACHEPREFIX), as an installed expctl runs; without it the environment decides (where
PYTHONDONTWRITEBYTECODE=1 is set, expctl's own modules are compiled at every start, the floor's
few are not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOOR = """
import os, time
def since_start():
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    start = float(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start
import torch
from expctl.train.data import digits
torch.manual_seed(42)
torch.set_num_threads(1)
data = digits(batch_size=64)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss = torch.nn.functional.cross_entropy(model(data.train_x[:64]), data.train_y[:64])
loss.backward()
optimizer.step()
optimizer.zero_grad(set_to_none=True)
print(since_start())
"""

FLOOR_NAME = "floor: import torch + data/model/Adam + 1 step"
OFFLINE = "expctl run, W&B offline"
DISABLED = "expctl run, W&B disabled"
NO_PROVENANCE = "expctl run, W&B disabled, provenance off"
SHORT = {FLOOR_NAME: "floor", OFFLINE: "offline", DISABLED: "disabled", NO_PROVENANCE: "no-prov"}


def expctl_command() -> list[str]:
    exe = Path(sys.executable).parent / "expctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "expctl"]


def run_floor(env: dict[str, str], cwd: Path) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FLOOR], capture_output=True, text=True, env=env, cwd=cwd, check=True
    )
    return float(out.stdout.strip()), time.perf_counter() - start


def run_expctl(env: dict[str, str], cwd: Path, wandb: str, *extra: str) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [*expctl_command(), "run", "trainer.epochs=1", "trainer.num_threads=1", "-q",
         "--config-dir", str(cwd / "configs"), "--runs-dir", str(cwd / "runs"),
         "artifact.publish=false", *extra],
        capture_output=True, text=True, env={**env, "WANDB_MODE": wandb}, cwd=cwd, check=True,
    )  # fmt: skip
    whole = time.perf_counter() - start
    summary = json.loads((Path(out.stdout.strip()) / "summary.json").read_text())
    return summary["timings"]["process_start_to_first_step_s"], whole


def make_dirty_repository(path: Path) -> None:
    """A git repository with one commit and an uncommitted change, as a project mid-work."""
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "configs"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "configs"], cwd=path, check=True)
    with (path / "configs" / "config.yaml").open("a") as f:
        f.write("# an uncommitted change\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--bytecode-cache", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="expctl-first-step-"))
    shutil.copytree(REPO / "configs", work / "configs")
    make_dirty_repository(work)
    env = {**os.environ, "WANDB_DIR": str(work), "WANDB_SILENT": "true"}
    if args.bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    names = (FLOOR_NAME, OFFLINE, DISABLED, NO_PROVENANCE)
    first: dict[str, list[float]] = {name: [] for name in names}
    whole: dict[str, list[float]] = {name: [] for name in names}
    try:
        run_floor(env, work)  # warm the page cache (and the bytecode cache, if on)
        run_expctl(env, work, "offline")
        for rep in range(args.repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                if name == FLOOR_NAME:
                    step, total = run_floor(env, work)
                else:
                    extra = ("provenance=false",) if name == NO_PROVENANCE else ()
                    wandb = "offline" if name == OFFLINE else "disabled"
                    step, total = run_expctl(env, work, wandb, *extra)
                first[name].append(step)
                whole[name].append(total)
            shown = ", ".join(f"{SHORT[n]} {first[n][-1]:.2f} s" for n in names)
            print(f"  repeat {rep + 1}: {shown}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor = statistics.median(first[FLOOR_NAME])
    cache = (
        "bytecode cache on" if args.bytecode_cache else "bytecode cache as the environment has it"
    )
    print(f"process start → first training step, {args.repeats} interleaved repeats, {cache}")
    for name in names:
        step = statistics.median(first[name])
        spread = ", ".join(f"{v:.2f}" for v in sorted(first[name]))
        print(f"  {name:48s} {step:5.2f} s  ratio {step / floor:.2f}   (sorted: {spread}; "
              f"whole process {statistics.median(whole[name]):.2f} s)")  # fmt: skip
    cost = statistics.median(first[DISABLED]) - statistics.median(first[NO_PROVENANCE])
    print(f"  provenance capture's cost to the first step: {cost * 1000:+.0f} ms (goal <= 50 ms)")


if __name__ == "__main__":
    main()
