"""Sweep engine benchmarks, printed side by side with baselines measured in the same run.

(a) Agent bookkeeping per trial (claim, params, heartbeat thread, result, state — everything but
    the objective) on each storage, next to plain Optuna ``study.optimize`` on the same storage;
    and trials/s with 1, 2, 4 and 8 agent *processes* sharing one grid.
(c) Many agents on a shared filesystem: 64 agent processes, trials of 2 s, the journal with each
    lock and each fsync (held under the lock) delayed 5 ms (NFS): trials/s against the ideal
    64 / 2 s, and the agents' time between two trials as a share of the trials' time
    (goals: ≥ 0.9× ideal, ≤ 1 %).
(b) Sample efficiency: trials until within 1% of the optimum of Branin (and Hartmann-6 without
    --quick), expctl bayes vs expctl random vs plain Optuna TPE and GP, over N seeds, with the
    time per suggestion; and expctl bayes with 4 agents in flight (asynchronous, interleaved).

    python benchmarks/sweeps.py --quick               # a few minutes on 2 cores
    python benchmarks/sweeps.py --postgres postgresql://user@host/db
    python benchmarks/sweeps.py --only c              # 64 agents: ~30 s on 2 cores
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # sweep_helpers

from sweep_helpers import agent, create, open_

from expctl.sweeps.agent import AgentOptions, run_agent
from expctl.sweeps.engine import Claim, open_sweep
from expctl.sweeps.methods.grid import QUEUED_GRID_POINTS
from expctl.sweeps.service import opened
from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import quiet_optuna

TRIAL_TIMES: list[tuple[float, float]] = []  # this agent process's trials: (start, end)


def noop(ctx: Any) -> float:
    now = time.time()
    TRIAL_TIMES.append((now, now))
    return 0.0


TRIAL_SECONDS_ENV = "EXPCTL_BENCH_TRIAL_SECONDS"


def sleeper(ctx: Any) -> float:
    """A trial that takes its time without using a CPU (a GPU job, as far as the host sees)."""
    start = time.time()
    time.sleep(float(os.environ[TRIAL_SECONDS_ENV]))
    TRIAL_TIMES.append((start, time.time()))
    return 0.0


# -- (a) bookkeeping -------------------------------------------------------------------------------


def storages(tmp: Path, postgres: str | None) -> dict[str, str]:
    urls = {"journal (default)": str(tmp / "a.journal"), "sqlite": f"sqlite:///{tmp / 'a.db'}"}
    if postgres:
        urls["postgresql"] = postgres
    return urls


def agent_overhead(url: str, method: str, n: int) -> float:
    """Seconds per trial of run_agent with an objective that does nothing."""
    if method == "grid":
        spec = parse_spec(
            {
                "method": "grid",
                "metric": {"name": "loss"},
                "parameters": {"x": {"values": list(range(n))}},
            }
        )
    else:
        spec = parse_spec(
            {
                "method": "random",
                "run_cap": n,
                "metric": {"name": "loss"},
                "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"values": ["a", "b"]}},
            }
        )
    info = create(spec, url)
    start = time.perf_counter()
    summary = agent(info.id, url, objective=noop, handle_signals=False)
    elapsed = time.perf_counter() - start
    assert summary.count("complete") == n, summary.reason
    return elapsed / n


def optuna_baseline(url: str, n: int) -> float:
    """Plain Optuna: study.optimize with a trivial objective, random sampler, same storage."""
    import optuna

    from expctl.sweeps.storage import open_storage

    handle = open_storage(url)
    study = optuna.create_study(
        storage=handle.storage, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    start = time.perf_counter()
    study.optimize(
        lambda t: t.suggest_float("x", 0, 1) * 0 + (t.suggest_categorical("y", ["a", "b"]) == "a"),
        n_trials=n,
    )
    return (time.perf_counter() - start) / n


NFS_DELAY_ENV = "EXPCTL_BENCH_JOURNAL_DELAY_MS"


def inject_journal_delay(ms: float) -> None:
    """Benchmark only: every journal lock acquisition and every fsync waits ``ms`` more, as a
    shared filesystem (NFS) makes each lock round trip and each write-back cost milliseconds.
    The fsync of an append happens while the lock is held, as it does on a network filesystem
    (here the disk is local, where it would come after: see storage/filesystems.py)."""
    from expctl.sweeps.storage import journal
    from expctl.sweeps.storage.journal_lock import AgentJournalLock

    journal.fsync_under_lock = lambda path: True  # type: ignore[assignment]

    acquire, fsync = AgentJournalLock.acquire, os.fsync

    def slow_acquire(self: AgentJournalLock) -> bool:
        time.sleep(ms / 1e3)
        return acquire(self)

    def slow_fsync(fd: int) -> None:
        time.sleep(ms / 1e3)
        fsync(fd)

    AgentJournalLock.acquire = slow_acquire  # type: ignore[method-assign]
    os.fsync = slow_fsync


def worker(sweep_id: str, url: str, go: str) -> None:
    """One agent process for the throughput measurement: imported and ready, it waits for the
    ``go`` file (so process start-up is not measured), runs, prints its first/last timestamps.
    Start-up includes importing the storage's modules (SQLAlchemy and alembic: 0.3 s of CPU
    per agent, which 8 agents starting at once on 2 cores took 1.2 s over)."""
    if os.environ.get(NFS_DELAY_ENV):
        inject_journal_delay(float(os.environ[NFS_DELAY_ENV]))
    if "://" in url:
        import alembic.migration  # noqa: F401
        import optuna.storages._rdb.models  # noqa: F401
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    start = time.time()
    objective = sleeper if os.environ.get(TRIAL_SECONDS_ENV) else noop
    with opened(url) as handle:  # what `expctl sweep agent` does (service.run_agent_for)
        sweep = open_sweep(sweep_id, handle)
        gc.freeze()  # as the CLI does once the sweep is open (cli.sweep_agent)
        summary = run_agent(sweep, AgentOptions(handle_signals=False), objective=objective)
    end, n = time.time(), summary.count("complete")
    print(json.dumps({"start": start, "end": end, "n": n, "trials": TRIAL_TIMES}))


def throughput(
    url: str, agents: int, n: int, delay_ms: float = 0.0, trial_s: float = 0.0
) -> tuple[float, float, int]:
    """Trials/s from the first trial's start to the last one's end (the agents' opening of the
    sweep, one replay each, is not throughput), and from the start signal (with it)."""
    reports = agent_reports(url, agents, n, delay_ms, trial_s)
    total = sum(r["n"] for r in reports)
    trials = [t for r in reports for t in r["trials"]]
    steady = max(end for _, end in trials) - min(start for start, _ in trials)
    overall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return total / steady, total / overall, total


def agent_reports(
    url: str, agents: int, n: int, delay_ms: float = 0.0, trial_s: float = 0.0
) -> list[dict[str, Any]]:
    """Each agent process's report (``worker``) after ``agents`` of them shared an n-point grid."""
    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "loss"},
            "parameters": {"x": {"values": list(range(n))}},
        }
    )
    info = create(spec, url)
    env = {**os.environ, NFS_DELAY_ENV: str(delay_ms)} if delay_ms else dict(os.environ)
    if trial_s:
        env[TRIAL_SECONDS_ENV] = str(trial_s)
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", info.id, url, str(go)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(agents)
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()  # every agent starts at once
        return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def bench_bookkeeping(args: argparse.Namespace) -> None:
    n = 100 if args.quick else 400
    print(
        f"\n(a) agent bookkeeping per trial, no-op objective, {n} trials "
        "(baseline: plain Optuna study.optimize, same storage)"
    )
    print(f"{'storage':<20}{'grid ms':>10}{'random ms':>11}{'optuna ms':>11}{'random/optuna':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in storages(Path(tmp), args.postgres).items():
            grid_s = agent_overhead(url, "grid", n)
            random_s = agent_overhead(url, "random", n)
            base_s = optuna_baseline(url, n)
            print(
                f"{name:<20}{grid_s * 1e3:>10.1f}{random_s * 1e3:>11.1f}{base_s * 1e3:>11.1f}"
                f"{random_s / base_s:>14.2f}x"
            )
    m = 200 if args.quick else 800
    print(
        f"\n    trials/s with agent processes sharing a {m}-point grid (exactly once), from the "
        "first trial's start to the last one's end; '+5 ms': each journal lock and fsync "
        "delayed 5 ms, as on NFS; 'with opening': 8 vs 1 from the start signal, each agent's "
        "opening of the sweep counted; the 8-vs-1 rows (all but '+5 ms'): a grid one agent "
        f"runs in ~{STEADY_S:g} s (at least {m * 5} points, at most {QUEUED_GRID_POINTS:,}; "
        f"'points'), the median of {3 if args.quick else 5} runs"
    )
    counts = (1, 2, 4, 8)
    print(
        f"{'storage':<20}"
        + "".join(f"{f'{k} agents':>11}" for k in counts)
        + f"{'8 vs 1':>9}{'with opening':>14}{'points':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        names = [*storages(Path(tmp), args.postgres)]
        names.insert(1, "journal +5 ms (NFS)")
        for name in names:
            rates, overall = [], []
            # a 200-point grid takes the default journal a tenth of a second and SQLite well
            # under one, with 8 agents' opening of the sweep overlapping the first trials: a
            # larger grid and the median of several runs. '+5 ms' runs ~100 trials/s: its 200
            # points already take seconds
            nfs = name == names[1]
            repeats = 1 if nfs else (3 if args.quick else 5)
            points = m if nfs else steady_points(name, names, args.postgres, Path(tmp), m * 5)
            for k in counts:
                measured = []
                for repeat in range(repeats):
                    # a fresh journal / SQLite file for each run: agents open a journal by
                    # replaying it, and the earlier runs' sweeps would be in that replay
                    fresh = Path(tmp) / f"{k}-{names.index(name)}-{repeat}"
                    fresh.mkdir()
                    urls = {**storages(fresh, args.postgres), names[1]: str(fresh / "nfs.journal")}
                    delay_ms = 5.0 if nfs else 0.0
                    rate, with_opening, total = throughput(urls[name], k, points, delay_ms)
                    assert total == points, (name, k, total)
                    measured.append((rate, with_opening))
                rates.append(statistics.median(r for r, _ in measured))
                overall.append(statistics.median(o for _, o in measured))
            print(
                f"{name:<20}"
                + "".join(f"{r:>11.0f}" for r in rates)
                + f"{rates[-1] / rates[0]:>8.2f}x{overall[-1] / overall[0]:>13.2f}x{points:>8}"
            )


STEADY_S = 5.0


def steady_points(name: str, names: list[str], postgres: str | None, tmp: Path, least: int) -> int:
    """Points one agent runs in ~STEADY_S on storage ``name`` (a first run of ``least`` points
    says its rate). Each agent's first trials carry its start (imports done, but SQLAlchemy's
    first statements, the first replay): with SQLite at ~700 trials/s, 1,000 points took 8
    agents under 1.5 s, and the same code measured 0.86-1.03x there and 1.08-1.14x on 5,000.
    At most the grid queued at create: past it a grid is claimed by index (another path)."""
    fresh = tmp / f"calibrate-{names.index(name)}"
    fresh.mkdir()
    rate, _, _ = throughput(storages(fresh, postgres)[name], 1, least)
    return max(least, min(QUEUED_GRID_POINTS, round(rate * STEADY_S / 100) * 100))


def bench_many_agents(args: argparse.Namespace) -> None:
    """64 agents on an NFS-like journal. The rate is the trials over the time from the start
    signal to the last trial's end (agents that found nothing left and poll for the others'
    last trials are idle, not slow); bookkeeping is what each agent spends between two of its
    trials (finish one, claim the next), as a share of its trials' time — measured by the
    agents themselves — and the start (opening the sweep, the first claim) is shown apart."""
    agents, per_agent, trial_s = 64, args.trials_per_agent, 2.0
    n = agents * per_agent
    with tempfile.TemporaryDirectory() as tmp:
        reports = agent_reports(str(Path(tmp) / "nfs.journal"), agents, n, 5.0, trial_s)
    total = sum(r["n"] for r in reports)
    assert total == n, total
    go = min(r["start"] for r in reports)
    last_end = max(end for r in reports for _, end in r["trials"])
    rate, ideal = total / (last_end - go), agents / trial_s
    trial_time = sum(end - start for r in reports for start, end in r["trials"])
    between = sum(
        later[0] - earlier[1]
        for r in reports
        for earlier, later in zip(r["trials"], r["trials"][1:], strict=False)
    )
    first = sorted(r["trials"][0][0] - go for r in reports)
    print(
        f"\n(c) {agents} agents, {n} trials of {trial_s:g} s, journal +5 ms per lock and fsync "
        f"(NFS): {rate:.1f} trials/s = {rate / ideal:.2f}x the ideal {ideal:.0f}/s "
        f"(goal >= 0.9x); bookkeeping between trials {between / trial_time:.2%} of trial time "
        f"(goal <= 1%); first trial started {first[0]:.2f}-{first[-1]:.2f} s after the start"
    )


# -- (b) sample efficiency -----------------------------------------------------------------------


def branin(p: dict[str, float]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, r, s, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


HA = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
HP = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
HALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict[str, float]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(HALPHA * np.exp(-np.sum(HA * (x - HP) ** 2, axis=1))))


PROBLEMS: dict[str, tuple[Callable, dict, float]] = {
    "branin": (branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}, 0.397887),
    "hartmann6": (hartmann6, {f"x{i}": (0.0, 1.0) for i in range(6)}, -3.32237),
}


def reached(value: float, optimum: float) -> bool:
    return value - optimum <= 0.01 * abs(optimum)


def expctl_run(
    problem: str, method: str, seed: int, budget: int, parallel: int = 1
) -> tuple[int | None, float]:
    """Trials until within 1%, and mean seconds per suggestion, through expctl's engine.

    ``parallel`` > 1 keeps that many trials in flight (claimed, not yet told) like asynchronous
    agents do: each step tells the oldest and claims a new one.
    """
    fn, space, optimum = PROBLEMS[problem]
    spec = parse_spec(
        {
            "method": method,
            "metric": {"name": "f", "goal": "minimize"},
            "parameters": {k: {"min": lo, "max": hi} for k, (lo, hi) in space.items()},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "b.journal")
        info = create(spec, url)
        sweep = open_(info.id, url, seed=seed)
        in_flight: list[Claim] = []
        suggest_time, told = 0.0, 0
        while told < budget:
            while len(in_flight) < parallel:
                t0 = time.perf_counter()
                claim = sweep.claim("bench")
                suggest_time += time.perf_counter() - t0
                assert isinstance(claim, Claim)
                in_flight.append(claim)
            claim = in_flight.pop(0)
            value = fn(claim.params)
            sweep.finish(claim, "complete", value)
            told += 1
            if reached(value, optimum):
                return told, suggest_time / (told + len(in_flight))
        return None, suggest_time / (told + len(in_flight))


def optuna_run(problem: str, sampler_name: str, seed: int, budget: int) -> tuple[int | None, float]:
    import optuna

    fn, space, optimum = PROBLEMS[problem]
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if sampler_name == "tpe"
        else optuna.samplers.GPSampler(seed=seed)
    )
    study = optuna.create_study(sampler=sampler)
    suggest_time = 0.0
    for n in range(1, budget + 1):
        t0 = time.perf_counter()
        trial = study.ask()
        params = {k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in space.items()}
        suggest_time += time.perf_counter() - t0
        value = fn(params)
        study.tell(trial, value)
        if reached(value, optimum):
            return n, suggest_time / n
    return None, suggest_time / budget


def summarise(results: list[tuple[int | None, float]], budget: int) -> str:
    counts = [n if n is not None else math.inf for n, _ in results]
    median = statistics.median(counts)
    hit = sum(1 for n, _ in results if n is not None)
    med = f">{budget}" if math.isinf(median) else f"{median:g}"
    ms = statistics.mean(t for _, t in results) * 1e3
    return f"{med:>8}  {hit:>3}/{len(results):<3} {ms:>9.1f}"


def bench_efficiency(args: argparse.Namespace) -> None:
    seeds = range(args.seeds)
    problems = ["branin"] if args.quick else ["branin", "hartmann6"]
    print(
        f"\n(b) trials to reach 1% of the optimum (median over {args.seeds} seeds; "
        "'>N' = not reached within the budget), ms per suggestion"
    )
    print(f"{'problem':<11}{'method':<34}{'median':>8}  {'hit':>7} {'ms/sugg':>9}")
    for problem in problems:
        gp_budget = 60 if problem == "branin" else 100
        rows: list[tuple[str, int, Callable[[int], tuple[int | None, float]]]] = [
            (
                "expctl bayes (GP), 1 agent",
                gp_budget,
                lambda s, p=problem, b=gp_budget: expctl_run(p, "bayes", s, b),
            ),
            (
                "expctl bayes (GP), 4 in flight",
                gp_budget,
                lambda s, p=problem, b=gp_budget: expctl_run(p, "bayes", s, b, parallel=4),
            ),
            (
                "optuna GPSampler (baseline)",
                gp_budget,
                lambda s, p=problem, b=gp_budget: optuna_run(p, "gp", s, b),
            ),
            (
                "optuna TPESampler (baseline)",
                300,
                lambda s, p=problem: optuna_run(p, "tpe", s, 300),
            ),
            ("expctl random", 1000, lambda s, p=problem: expctl_run(p, "random", s, 1000)),
        ]
        for label, budget, run in rows:
            t0 = time.perf_counter()
            results = [run(seed) for seed in seeds]
            print(
                f"{problem:<11}{label:<34}{summarise(results, budget)}   "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer trials, Branin only")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EXPCTL_TEST_POSTGRES_URL"),
        help="also measure a PostgreSQL storage at this URL",
    )
    parser.add_argument("--only", choices=["a", "b", "c"], help="run one part")
    parser.add_argument(
        "--trials-per-agent", type=int, default=8, help="(c): trials each of the 64 agents runs"
    )
    parser.add_argument(
        "--worker", nargs=3, metavar=("SWEEP_ID", "URL", "GO"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    quiet_optuna()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.worker:
        worker(*args.worker)
        return
    if args.only in (None, "a"):
        bench_bookkeeping(args)
    if args.only in (None, "b"):
        bench_efficiency(args)
    if args.only in (None, "c"):
        bench_many_agents(args)


if __name__ == "__main__":
    main()
