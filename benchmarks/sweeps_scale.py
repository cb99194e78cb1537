"""Sweeps at a hundred times the tests' sizes: the figures of issue 23, printed.

(a) ``expctl sweep create`` of a 10⁶-point grid: seconds and peak memory of the process.
(b) A sweep with N (default 100,000) finished trials on the journal (and PostgreSQL with
    --postgres): ``expctl sweep status`` (table and --format json), an agent's claim of the next
    trial (first, with the storage's load, and then steady), and ``expctl sweep report``
    (seconds, HTML size). The trials are written in bulk (the journal: Optuna's
    ``create_new_trial`` with finished templates, one append; PostgreSQL: Optuna's own tables in
    one transaction per 5,000), as agents would have recorded them.

    python benchmarks/sweeps_scale.py                       # journal only
    python benchmarks/sweeps_scale.py --postgres "$(cat /tmp/pg_url)" --trials 100000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # sweep_helpers

from sweep_helpers import create, open_

from expctl.sweeps.engine import Claim
from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import quiet_optuna

MILLION_GRID = """\
program: train.py
method: grid
metric: {name: loss}
parameters:
  a: {distribution: int_uniform, min: 0, max: 999}
  b: {values: [a, b, c, d, e, f, g, h, i, j]}
  c: {distribution: int_uniform, min: 1, max: 100}
"""

RANDOM_SPEC = {
    "program": "train.py",
    "method": "random",
    "metric": {"name": "loss"},
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "width": {"values": [64, 128, 256, 512]},
        "dropout": {"min": 0.0, "max": 0.5},
    },
}


def expctl(*args: str, cwd: Path) -> tuple[float, float, str]:
    """Seconds, peak MB (of this child, from wait4) and stdout of ``expctl ARGS``."""
    # GNU time's %M: a child forked from this (large) process would report our peak as its own
    with tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-o", peak.name, "-f", "%M", sys.executable, "-m", "expctl", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"expctl {' '.join(args)} failed:\n{done.stderr}")
        kilobytes = float(peak.read().split()[-1])
    return seconds, kilobytes / 1024, done.stdout


def median_of(runs: int, *args: str, cwd: Path) -> tuple[float, float, str]:
    results = [expctl(*args, cwd=cwd) for _ in range(runs)]
    return (
        statistics.median(r[0] for r in results),
        max(r[1] for r in results),
        results[-1][2],
    )


# -- (a) create a 10⁶-point grid ------------------------------------------------------------------


def bench_create(tmp: Path, runs: int) -> None:
    (tmp / "grid.yaml").write_text(MILLION_GRID)
    (tmp / "train.py").write_text("")
    times, peaks = [], []
    for i in range(runs):
        seconds, peak, _ = expctl(
            "sweep", "create", "grid.yaml", "--storage", str(tmp / f"g{i}.journal"), cwd=tmp
        )
        times.append(seconds)
        peaks.append(peak)
    print(
        f"(a) sweep create, 10^6-point grid (journal): {statistics.median(times):.2f} s "
        f"(median of {runs}), peak RSS {max(peaks):.0f} MB"
    )


# -- (b) a sweep with N finished trials ----------------------------------------------------------


def finished_trial(sweep: Any, number: int, rng: random.Random) -> Any:
    """A COMPLETE trial as an agent records it: latent params, W&B values, claim, result."""
    from optuna.trial import TrialState, create_trial

    from expctl.sweeps.distributions import latent_distribution, to_value
    from expctl.sweeps.studies import PREFIX

    params, dists, values = {}, {}, {}
    for p in sweep.spec.parameters:
        dist = latent_distribution(p)
        if dist is None:
            values[p.name] = to_value(p, None)
            continue
        if hasattr(dist, "choices"):
            latent: Any = dist.choices[rng.randrange(len(dist.choices))]
        else:
            latent = rng.uniform(dist.low, dist.high)
        params[p.name], dists[p.name] = latent, dist
        values[p.name] = to_value(p, latent)
    return create_trial(
        state=TrialState.COMPLETE,
        value=rng.random(),
        params=params,
        distributions=dists,
        user_attrs={
            PREFIX + "params": values,
            PREFIX + "claim": {"agent": f"node{number % 64}:{1000 + number % 64}", "time": 0.0},
            PREFIX + "result": {"run_dir": f"runs/sweep-{number:06d}", "metrics": {}},
        },
        intermediate_values={epoch: rng.random() for epoch in range(3)},
        system_attrs={PREFIX + "heartbeat": 0.0},
    )


def fill(sweep_id: str, url: str, n: int) -> float:
    """Write ``n`` finished trials; seconds taken."""
    from expctl.sweeps.storage.journal_writes import batched_writes

    sweep = open_(sweep_id, url)
    rng = random.Random(0)
    storage = sweep.handle.storage
    start = time.perf_counter()
    if sweep.handle.kind == "journal":
        for first in range(0, n, 10_000):
            with batched_writes(storage):
                for number in range(first, min(n, first + 10_000)):
                    storage.create_new_trial(sweep.study_id, finished_trial(sweep, number, rng))
    else:
        _fill_rdb(storage, sweep, n, rng)
    sweep.handle.close()
    return time.perf_counter() - start


def _fill_rdb(storage: Any, sweep: Any, n: int, rng: random.Random) -> None:
    """Optuna's own tables, rows as its ``create_new_trial`` writes them, 5,000 per commit
    (SQLAlchemy Core bulk inserts: the ORM took ~5 ms a trial)."""
    import json

    from optuna.storages._rdb import models
    from sqlalchemy import insert

    with storage.engine.begin() as db:
        for first in range(0, n, 5_000):
            trials = [finished_trial(sweep, i, rng) for i in range(first, min(n, first + 5_000))]
            ids = (
                db.execute(
                    insert(models.TrialModel).returning(
                        models.TrialModel.trial_id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "number": first + i,
                            "study_id": sweep.study_id,
                            "state": t.state,
                            "datetime_start": t.datetime_start,
                            "datetime_complete": t.datetime_start + timedelta(seconds=1),
                        }
                        for i, t in enumerate(trials)
                    ],
                )
                .scalars()
                .all()
            )
            rows: dict[Any, list[dict[str, Any]]] = {
                models.TrialValueModel: [],
                models.TrialParamModel: [],
                models.TrialUserAttributeModel: [],
                models.TrialSystemAttributeModel: [],
                models.TrialIntermediateValueModel: [],
            }
            for trial_id, t in zip(ids, trials, strict=True):
                rows[models.TrialValueModel].append(
                    {
                        "trial_id": trial_id,
                        "objective": 0,
                        "value": t.value,
                        "value_type": models.TrialValueModel.TrialValueType.FINITE,
                    }
                )
                for name, value in t.params.items():
                    dist = t.distributions[name]
                    rows[models.TrialParamModel].append(
                        {
                            "trial_id": trial_id,
                            "param_name": name,
                            "param_value": dist.to_internal_repr(value),
                            "distribution_json": _dist_json(dist),
                        }
                    )
                for model, attrs in (
                    (models.TrialUserAttributeModel, t.user_attrs),
                    (models.TrialSystemAttributeModel, t.system_attrs),
                ):
                    rows[model] += [
                        {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                        for k, v in attrs.items()
                    ]
                rows[models.TrialIntermediateValueModel] += [
                    {
                        "trial_id": trial_id,
                        "step": step,
                        "intermediate_value": v,
                        "intermediate_value_type": models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE,
                    }
                    for step, v in t.intermediate_values.items()
                ]
            for model, values in rows.items():
                if values:
                    db.execute(insert(model), values)


def _dist_json(dist: Any) -> str:
    from optuna.distributions import distribution_to_json

    return distribution_to_json(dist)


def claim_times(sweep_id: str, url: str, claims: int) -> tuple[float, float]:
    """(open + first claim, median of the next claims) in seconds, as an agent makes them."""
    start = time.perf_counter()
    sweep = open_(sweep_id, url)
    sweep.liveness.reap_stale(60.0)  # what an agent does before each claim
    first = sweep.claim("bench")
    opened = time.perf_counter() - start
    assert isinstance(first, Claim), first
    sweep.finish(first, "complete", 0.5)
    steady = []
    for _ in range(claims):
        t0 = time.perf_counter()
        sweep.liveness.reap_stale(60.0)
        claim = sweep.claim("bench")
        steady.append(time.perf_counter() - t0)
        assert isinstance(claim, Claim), claim
        sweep.finish(claim, "complete", 0.5)
    sweep.handle.close()
    return opened, statistics.median(steady)


def bench_finished(tmp: Path, url: str, name: str, n: int, runs: int) -> None:
    info = create(parse_spec(RANDOM_SPEC), url)
    filled = fill(info.id, url, n)
    (tmp / "train.py").write_text("")
    storage = ["--storage", url]
    # the first read of a journal replays it whole (and writes its snapshot); later ones start
    # from the snapshot
    if "://" not in url:  # a journal: its snapshot was written while filling it
        Path(f"{url}.snapshot").unlink(missing_ok=True)
    cold_s, cold_mb, _ = expctl("sweep", "status", info.id, *storage, cwd=tmp)
    status_s, status_mb, _ = median_of(runs, "sweep", "status", info.id, *storage, cwd=tmp)
    json_s, json_mb, _ = median_of(
        runs, "sweep", "status", info.id, "--format", "json", *storage, cwd=tmp
    )
    opened, steady = claim_times(info.id, url, 20)
    report = tmp / f"report-{name}.html"
    report_args = ("sweep", "report", info.id, *storage, "--out", str(report))
    report_s, report_mb, _ = median_of(runs, *report_args, cwd=tmp)
    print(f"(b) {name}: a sweep with {n:,} finished trials (written in {filled:.1f} s)")
    print(f"    sweep status, first read    {cold_s:6.2f} s   peak RSS {cold_mb:5.0f} MB")
    print(f"    sweep status (table)        {status_s:6.2f} s   peak RSS {status_mb:5.0f} MB")
    print(f"    sweep status --format json  {json_s:6.2f} s   peak RSS {json_mb:5.0f} MB")
    print(f"    agent: open + first claim   {opened * 1e3:6.0f} ms")
    print(f"    agent: next claim (median)  {steady * 1e3:6.1f} ms")
    print(
        f"    sweep report                {report_s:6.2f} s   peak RSS {report_mb:5.0f} MB   "
        f"HTML {report.stat().st_size / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="median of this many runs")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EXPCTL_TEST_POSTGRES_URL"),
        help="also measure a PostgreSQL storage at this URL",
    )
    parser.add_argument("--only", choices=["a", "b"], help="run one part")
    args = parser.parse_args()
    quiet_optuna()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "a"):
            bench_create(Path(tmp), args.runs)
        if args.only in (None, "b"):
            bench_finished(
                Path(tmp), str(Path(tmp) / "s.journal"), "journal", args.trials, args.runs
            )
            if args.postgres:
                bench_finished(Path(tmp), args.postgres, "postgresql", args.trials, args.runs)


if __name__ == "__main__":
    main()
