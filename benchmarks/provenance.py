"""Provenance capture (expctl.provenance) on this repository, against baselines in the same run.

Goal (issue 21): capture adds ≤ 50 ms to process start → first step, and ≤ 1 MB per run beyond
the diff cap. Measured, medians of interleaved repeats:

* baselines: ``python -c pass`` (a fresh interpreter) and ``git status --porcelain=v2
  --branch`` alone (the least any git-based capture costs), each a subprocess timed here;
* ``capture, synchronous``: ``capture_provenance`` into a fresh directory, in-process, warm —
  what the first step would wait if the caller did not use the helper thread — and its CPU time
  in this process (``time.thread_time``: the most it can hold the GIL) and git's (its child
  processes: what it takes from the run only where every core is busy);
* ``critical path, pure Python``: a fixed CPU-bound workload (~0.1 s, standing in for a run's
  start-up) timed alone and right after ``start_capture`` (capture on the helper thread);
  the difference is what the main thread loses to the capture (GIL, CPU) — the cost the first
  step really pays;
* ``critical path, import torch``: a fresh process that imports torch and takes one optimizer
  step, timed from process start (/proc) to that step, without and with ``start_capture`` as
  its first statement (a realistic start-up, but on a shared machine its wall-time spread is
  larger than the effect; its CPU time, user + system of all its threads, is printed too).

Per-run bytes: provenance.json + requirements.txt (beyond the diff) and diff.patch.

    python benchmarks/provenance.py [--repeats 9]

The repository's own state decides the diff's size (a dirty working tree writes diff.patch).
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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FIRST_STEP = """
import os, sys, time
from pathlib import Path
def since_start():
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    start = float(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start
handle = None
if sys.argv[1] == "capture":
    from expctl.provenance import start_capture
    handle = start_capture(Path(sys.argv[2]), argv=sys.argv, cwd=Path(sys.argv[3]))
import torch
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
model(torch.randn(64, 64)).sum().backward()
optimizer.step()
times = os.times()
print(since_start(), times.user + times.system)
if handle is not None:
    assert handle.wait().error is None
"""


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def workload() -> int:
    """Pure-Python work of ~0.1 s: holds the GIL the whole time, like module imports do."""
    total = 0
    for i in range(3_000_000):
        total += i % 7
    return total


def fresh_dir(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    from expctl.provenance import capture_provenance, start_capture

    root = Path(tempfile.mkdtemp(prefix="expctl-provenance-"))
    git = shutil.which("git")
    assert git, "needs git"
    argv = ["expctl", "run", "optim.lr=0.1"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    names = ("python -c pass", "git status", "capture, synchronous")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: list[float] = []  # the capture's own CPU time in this process: all it can hold the GIL
    git_cpu: list[float] = []  # git's processes: what they take from a core the run could use
    alone: list[float] = []
    beside: list[float] = []
    steps: dict[str, list[float]] = {"plain": [], "capture": []}
    steps_cpu: dict[str, list[float]] = {"plain": [], "capture": []}  # the process's, all threads
    try:
        capture_provenance(fresh_dir(root), argv=argv, cwd=REPO)  # warm caches
        for rep in range(args.repeats):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                if name == "python -c pass":
                    command = [sys.executable, "-c", "pass"]
                    wall[name].append(timed(lambda c=command: subprocess.run(c, check=True)))
                elif name == "git status":
                    command = [git, "status", "--porcelain=v2", "--branch"]
                    wall[name].append(
                        timed(lambda c=command: subprocess.run(c, cwd=REPO, capture_output=True))
                    )
                else:
                    target = fresh_dir(root)
                    cpu_start, children_start = time.thread_time(), children_cpu()
                    wall[name].append(
                        timed(lambda t=target: capture_provenance(t, argv=argv, cwd=REPO))
                    )
                    cpu.append(time.thread_time() - cpu_start)
                    git_cpu.append(children_cpu() - children_start)
            # the main thread's loss while the capture runs beside it
            for with_capture in (rep % 2 == 0, rep % 2 != 0):
                if with_capture:
                    start = time.perf_counter()
                    handle = start_capture(fresh_dir(root), argv=argv, cwd=REPO)
                    workload()
                    beside.append(time.perf_counter() - start)
                    handle.wait()  # after the measured work: joins what is left
                else:
                    alone.append(timed(workload))
            for mode in ("plain", "capture") if rep % 2 == 0 else ("capture", "plain"):
                out = subprocess.run(
                    [sys.executable, "-c", FIRST_STEP, mode, str(fresh_dir(root)), str(REPO)],
                    capture_output=True, text=True, check=True, env=env, cwd=REPO,
                )  # fmt: skip
                step, step_cpu = map(float, out.stdout.split())
                steps[mode].append(step)
                steps_cpu[mode].append(step_cpu)
            print(f"  repeat {rep + 1}/{args.repeats} done", file=sys.stderr)

        sample = fresh_dir(root)
        capture_provenance(sample, argv=argv, cwd=REPO)
        sizes = {p.name: p.stat().st_size for p in sample.iterdir()}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ms = {name: 1000 * statistics.median(values) for name, values in wall.items()}
    print(f"provenance capture on {REPO} ({args.repeats} interleaved repeats, medians)")
    for name in names:
        print(
            f"  {name:34s} {ms[name]:7.1f} ms   ×{ms[name] / ms['python -c pass']:.2f} of "
            f"python -c pass, ×{ms[name] / ms['git status']:.2f} of git status"
        )
    print(
        f"  capture's CPU time in-process      {1000 * statistics.median(cpu):7.1f} ms   (the most "
        "it can take from the main thread through the GIL; git runs in its own processes)"
    )
    print(
        f"  git's CPU time (its processes)     {1000 * statistics.median(git_cpu):7.1f} ms   (taken "
        "from the run only where no core is free)"
    )
    base, loaded = 1000 * statistics.median(alone), 1000 * statistics.median(beside)
    print(
        f"  critical path, pure Python work   {base:7.1f} ms alone, {loaded:.1f} ms beside a "
        f"capture: +{loaded - base:.1f} ms (×{loaded / base:.3f})"
    )
    plain, captured = (1000 * statistics.median(steps[m]) for m in ("plain", "capture"))
    spread = ", ".join(
        f"{m}: {', '.join(f'{1000 * v:.0f}' for v in sorted(steps[m]))}" for m in steps
    )
    print(
        f"  critical path, import torch + step {plain:6.0f} ms plain, {captured:.0f} ms with "
        f"capture: {captured - plain:+.0f} ms (×{captured / plain:.3f}; sorted ms {spread})"
    )
    plain, captured = (1000 * statistics.median(steps_cpu[m]) for m in ("plain", "capture"))
    print(
        f"  … its CPU time at the first step   {plain:6.0f} ms plain, {captured:.0f} ms with "
        f"capture: {captured - plain:+.0f} ms (10 ms ticks; a busy machine disturbs it far less)"
    )
    beyond = sum(size for name, size in sizes.items() if name != "diff.patch")
    shown = ", ".join(f"{name} {size:,} B" for name, size in sorted(sizes.items()))
    print(f"  per-run bytes: {shown}; beyond the diff {beyond:,} B (goal ≤ 1,000,000)")


if __name__ == "__main__":
    main()
