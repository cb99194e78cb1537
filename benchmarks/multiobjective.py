"""Multi-objective sweeps: DTLZ2 (3 parameters, 2 objectives), 100 trials, hypervolume to the
reference point (1.1, 1.1) (the optimum is 1.21 - pi/4 = 0.4246), over N seeds:

* expctl's engine (``method: custom``, ``scheduler: {engine: optuna}``: TPE multivariate with
  constant liar) with 1 agent, and with 4 agents in flight (4 trials claimed and not yet told at
  every moment, the oldest told first: asynchronous agents, deterministic per seed), and with 4
  real agent processes (``expctl sweep agent --objective``) sharing one journal file, each trial
  taking 20 ms (unseeded, as agents are: one repetition per seed);
* plain Optuna, the same sampler and the same budget: ``study.optimize`` (1 worker) and ask/tell
  with 4 in flight — the baselines, measured in the same run;
* for the choice of sampler, plain Optuna with NSGA-II (population 50 and 20) and random.

    python benchmarks/multiobjective.py               # 10 seeds, ~3 minutes on 2 cores
    python benchmarks/multiobjective.py --seeds 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # sweep_helpers

from sweep_helpers import create, open_

from expctl.sweeps.engine import Claim
from expctl.sweeps.methods import method_for
from expctl.sweeps.pareto import hypervolume_2d, pareto_front
from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import quiet_optuna

REFERENCE = (1.1, 1.1)
OPTIMUM = 1.21 - math.pi / 4
NAMES = ("x0", "x1", "x2")


def dtlz2(x: list[float]) -> list[float]:
    g = sum((v - 0.5) ** 2 for v in x[1:])
    return [(1 + g) * math.cos(x[0] * math.pi / 2), (1 + g) * math.sin(x[0] * math.pi / 2)]


def hypervolume(points: list[list[float]]) -> float:
    front = [points[i] for i in pareto_front(points, [False, False])]
    return hypervolume_2d(front, REFERENCE, [False, False])


def dtlz2_sweep(budget: int) -> Any:
    """The two-objective sweep over DTLZ2's parameters that expctl runs, ``budget`` trials."""
    return parse_spec(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna"},
            "metrics": [{"name": "f1"}, {"name": "f2"}],
            "parameters": {n: {"min": 0.0, "max": 1.0} for n in NAMES},
            "run_cap": budget,
        }
    )


def expctl_run(seed: int, budget: int, in_flight: int) -> float:
    spec = dtlz2_sweep(budget)
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "b.journal")
        info = create(spec, url)
        sweep = open_(info.id, url, seed=seed)
        flying: list[Claim] = []
        points: list[list[float]] = []
        while len(points) < budget:
            while len(flying) < in_flight and len(points) + len(flying) < budget:
                claim = sweep.claim("bench")
                assert isinstance(claim, Claim), claim
                flying.append(claim)
            claim = flying.pop(0)
            values = dtlz2([claim.params[n] for n in NAMES])
            assert sweep.finish(claim, "complete", values)
            points.append(values)
        return hypervolume(points)


def objective(ctx: Any) -> dict[str, float]:
    """For agent processes: ``--objective multiobjective:objective``."""
    time.sleep(0.02)  # long enough that the 4 agents really run trials side by side
    f1, f2 = dtlz2([ctx.params[n] for n in NAMES])
    return {"f1": f1, "f2": f2}


def processes_run(budget: int, agents: int) -> float:
    import os
    import subprocess

    spec = dtlz2_sweep(budget)
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "b.journal")
        info = create(spec, url)
        cmd = [
            sys.executable,
            "-m",
            "expctl",
            "sweep",
            "agent",
            info.id,
            "--storage",
            url,
            "--objective",
            "multiobjective:objective",
        ]
        procs = [
            subprocess.Popen(cmd, env=env, cwd=tmp, stderr=subprocess.PIPE, text=True)
            for _ in range(agents)
        ]
        for proc in procs:
            _, err = proc.communicate()
            assert proc.returncode == 0, err
        trials = open_(info.id, url).study.get_trials(deepcopy=False)
        points = [list(t.values) for t in trials if t.state.name == "COMPLETE"]
        assert len(points) == budget, len(points)
        return hypervolume(points)


def optuna_run(make_sampler: Callable[[int], Any], seed: int, budget: int, in_flight: int) -> float:
    import optuna

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler(seed))
    if in_flight == 1:
        study.optimize(
            lambda t: dtlz2([t.suggest_float(n, 0.0, 1.0) for n in NAMES]), n_trials=budget
        )
        return hypervolume([list(t.values) for t in study.trials])
    flying: list[Any] = []
    points: list[list[float]] = []
    while len(points) < budget:
        while len(flying) < in_flight and len(points) + len(flying) < budget:
            trial = study.ask()
            flying.append((trial, [trial.suggest_float(n, 0.0, 1.0) for n in NAMES]))
        trial, x = flying.pop(0)
        values = dtlz2(x)
        study.tell(trial, values)
        points.append(values)
    return hypervolume(points)


def expctl_sampler(seed: int) -> Any:
    """The very sampler expctl's ``method: custom`` uses."""
    return method_for(dtlz2_sweep(100)).make_sampler(seed)


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args()
    quiet_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = range(args.seeds)
    samplers = {
        "NSGA-II (population 50)": lambda s: optuna.samplers.NSGAIISampler(seed=s),
        "NSGA-II (population 20)": lambda s: optuna.samplers.NSGAIISampler(
            seed=s, population_size=20
        ),
        "TPE, Optuna's defaults (W&B SDK's study)": lambda s: optuna.samplers.TPESampler(seed=s),
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
    }
    rows: list[tuple[str, list[float], float]] = []

    def measure(name: str, run: Callable[[int], float]) -> list[float]:
        start = time.perf_counter()
        found = [run(s) for s in seeds]
        rows.append((name, found, (time.perf_counter() - start) / len(found)))
        print(f"  {name}: median {statistics.median(found):.4f}", file=sys.stderr, flush=True)
        return found

    budget = args.budget
    print(
        f"DTLZ2, 3 parameters, 2 objectives, {budget} trials, seeds 0..{args.seeds - 1}, "
        f"hypervolume to {REFERENCE} (optimum {OPTIMUM:.4f})",
        file=sys.stderr,
    )
    base1 = measure(
        "plain Optuna, TPE as expctl, 1 worker", lambda s: optuna_run(expctl_sampler, s, budget, 1)
    )
    base4 = measure(
        "plain Optuna, TPE as expctl, 4 in flight",
        lambda s: optuna_run(expctl_sampler, s, budget, 4),
    )
    one = measure("expctl custom, 1 agent", lambda s: expctl_run(s, budget, 1))
    four = measure("expctl custom, 4 agents in flight", lambda s: expctl_run(s, budget, 4))
    procs = measure("expctl custom, 4 agent processes", lambda s: processes_run(budget, 4))
    for name, make in samplers.items():
        measure(f"plain Optuna, {name}, 1 worker", lambda s, m=make: optuna_run(m, s, budget, 1))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'':{width}}  median   mean     min      max      s/seed")
    for name, found, seconds in rows:
        print(
            f"{name:{width}}  {statistics.median(found):.4f}   {statistics.mean(found):.4f}   "
            f"{min(found):.4f}   {max(found):.4f}   {seconds:.2f}"
        )
    for label, mine, base in (
        ("expctl 1 agent / plain Optuna 1 worker", one, base1),
        ("expctl 4 agents / plain Optuna 1 worker", four, base1),
        ("expctl 4 agents / plain Optuna 4 in flight", four, base4),
        ("expctl 4 agent processes / plain Optuna 1 worker", procs, base1),
    ):
        ratio = statistics.mean(mine) / statistics.mean(base)
        print(f"{label}: mean hypervolume ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
