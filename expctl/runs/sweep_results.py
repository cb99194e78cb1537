"""A sweep's results with their run records: leaderboard, best-N, publishing (parameter
importance: :mod:`expctl.runs.sweep_importance`).

Everything about the sweep is read through :func:`expctl.sweeps.service.sweep_status` (its
trial rows name each trial's W&B parameter values and run directory); everything about a
trial's run is read from that run directory, as for any run. Optuna is imported by the
functions that need it (the sweep storage is Optuna's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.errors import UsageError
from expctl.record.jsonpolicy import is_finite_number
from expctl.record.scan import looks_like_run_dir
from expctl.runs.records import RunInfo, load_run

TOP_ALIAS = re.compile(r"^top-(\d+)$")


@dataclass
class Trial:
    """A sweep trial (from the sweep storage) and its run record (from its run directory)."""

    number: int
    state: str  # complete | pruned | fail | running | waiting
    value: float | None
    params: dict[str, Any]
    run_dir: Path | None
    duration: float | None = None
    message: str | None = None
    run: RunInfo | None = None
    notes: list[str] = field(default_factory=list)
    values: dict[str, float] | None = None  # a multi-objective sweep: each objective's value
    pareto: bool = False  # ... and whether the trial is on its Pareto front

    @property
    def overrides(self) -> list[str]:
        """What this trial ran with: its run's overrides (trainer) or parameters (program)."""
        if self.run is not None and self.run.overrides:
            return self.run.overrides
        return [f"{k}={_text(v)}" for k, v in self.params.items()]

    def to_json(self) -> dict[str, Any]:
        run = self.run
        return {
            "number": self.number,
            "state": self.state,
            "value": self.value,
            **({"values": self.values, "pareto": self.pareto} if self.values else {}),
            "params": self.params,
            "overrides": self.overrides,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "run_id": run.id if run else None,
            "run_status": run.status if run else None,
            "duration": self.duration,
            "best_checkpoint": _best_checkpoint(run),
            "message": self.message,
            "notes": self.notes,
        }


@dataclass
class SweepResults:
    status: dict[str, Any]  # sweep_status() as returned
    trials: list[Trial]

    @property
    def id(self) -> str:
        return str(self.status["id"])

    @property
    def metric(self) -> str | None:
        metric = self.status.get("metric") or {}
        return metric.get("name")

    @property
    def maximize(self) -> bool:
        metric = self.status.get("metric") or {}
        return metric.get("goal") == "maximize"

    @property
    def objectives(self) -> list[dict[str, Any]] | None:
        """A multi-objective sweep's ``[{name, goal, target}]``; None for one metric."""
        return self.status.get("objectives")

    def front(self, by: str | None = None) -> list[Trial]:
        """The Pareto-optimal trials, best first by objective ``by`` (default: the first);
        ties by the next objectives, then the earlier trial."""
        objectives = self.objectives or []
        names = [o["name"] for o in objectives]
        if by is not None and by not in names:
            raise UsageError(
                f"--by {by!r}: not an objective of sweep {self.id}",
                hint=f"objectives: {', '.join(names)}",
            )
        order = ([by] if by else []) + [n for n in names if n != by]
        signs = {o["name"]: -1.0 if o["goal"] == "maximize" else 1.0 for o in objectives}
        front = [t for t in self.trials if t.pareto and t.values]

        def key(t: Trial) -> tuple:
            return (*(signs[n] * t.values[n] for n in order), t.number)  # type: ignore[index]

        return sorted(front, key=key)

    def varying(self) -> list[str]:
        """The parameters whose value differs between trials (the ones worth showing)."""
        seen: dict[str, set[str]] = {}
        for t in self.trials:
            for k, v in t.params.items():
                seen.setdefault(k, set()).add(value_key(v))
        return [k for k, values in seen.items() if len(values) > 1]

    def params_text(self, trial: Trial, names: Sequence[str] | None = None) -> str:
        """``key=value`` of the varying parameters, floats to 4 significant digits."""
        names = self.varying() if names is None else names
        shown = [k for k in names if k in trial.params] or list(trial.params)
        return " ".join(f"{k}={_short(trial.params[k])}" for k in shown)

    def ranked(self) -> list[Trial]:
        """Complete trials with a value, best first (ties: the earlier trial)."""
        done = [t for t in self.trials if t.state == "complete" and _finite(t.value)]
        sign = -1.0 if self.maximize else 1.0
        return sorted(done, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]


def load_sweep(sweep_id: str, storage: str | None = None) -> SweepResults:
    """The sweep's status and each trial's run record (unknown id: exit 2 with did-you-mean)."""
    from expctl.sweeps.service import sweep_status

    status = sweep_status(sweep_id, storage)
    trials = []
    for row in status.get("trials") or []:
        run_dir = Path(row["run_dir"]) if row.get("run_dir") else None
        trial = Trial(
            number=int(row["number"]),
            state=str(row.get("state")),
            value=row.get("value"),
            params=dict(row.get("params") or {}),
            run_dir=run_dir,
            duration=row.get("duration"),
            message=row.get("message"),
            values=row.get("values"),
            pareto=bool(row.get("pareto")),
        )
        if run_dir is not None:
            if looks_like_run_dir(run_dir):
                trial.run = load_run(run_dir)
                trial.notes += trial.run.notes
            else:
                trial.notes.append(f"run directory {run_dir} is missing (moved or deleted?)")
        trials.append(trial)
    return SweepResults(status, trials)


def sweep_run_dirs(sweep_id: str, storage: str | None = None) -> list[tuple[Path, int]]:
    """``(run directory, trial number)`` of every trial the sweep storage knows a run
    directory of (``runs list --sweep``)."""
    from expctl.sweeps.service import sweep_status

    status = sweep_status(sweep_id, storage)
    return [
        (Path(t["run_dir"]), int(t["number"]))
        for t in status.get("trials") or []
        if t.get("run_dir")
    ]


# -- best N --------------------------------------------------------------------------------------


def best_trials(results: SweepResults, top: int | None, by: str | None = None) -> list[Trial]:
    """The ``top`` best complete trials; of a multi-objective sweep, its Pareto front (all of
    it unless ``top``), ordered by objective ``by``."""
    if top is not None and top < 1:
        raise UsageError(f"--top {top}: give 1 or more", hint="e.g. --top 3")
    if results.objectives:
        front = results.front(by)
        if not front:
            raise UsageError(
                f"sweep {results.id} has no complete trial yet, so no Pareto front",
                hint=f"run an agent first: expctl sweep agent {results.id}",
            )
        return front[:top] if top is not None else front
    if by is not None and by != results.metric:
        raise UsageError(
            f"--by {by!r}: sweep {results.id} has one objective, {results.metric!r}",
            hint="--by picks an objective of a multi-objective sweep (`metrics:`)",
        )
    top = 1 if top is None else top
    if results.metric is None:
        raise UsageError(
            f"sweep {results.id} has no metric: there is no best trial",
            hint="the sweep file needs metric: {name: ..., goal: minimize|maximize}",
        )
    ranked = results.ranked()
    if not ranked:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(results.status.get("counts", {}).items()))
        raise UsageError(
            f"sweep {results.id} has no complete trial yet ({counts or 'no trials'})",
            hint=f"run an agent first: expctl sweep agent {results.id}",
        )
    return ranked[:top]


@dataclass(frozen=True)
class Published:
    rank: int
    number: int
    ref: str  # NAME:vN
    aliases: tuple[str, ...]
    reused: bool


def publish_best(
    results: SweepResults,
    trials: Sequence[Trial],
    name: str,
    store_root: Path | None = None,
    by: str | None = None,
) -> list[Published]:
    """Each trial's checkpoints as a version of ``name``; aliases ``top-1``…``top-N`` and
    ``best`` (= ``top-1``) set explicitly (a worse trial published later never takes them).
    ``top-K`` aliases beyond N, left by an earlier, longer ``--top``, are removed."""
    # One sequence in three steps a reader follows top to bottom: check every trial, publish
    # worst first, then move the top-K aliases and drop stale ones.
    from expctl.artifacts.aliases import remove_alias, set_alias
    from expctl.artifacts.publish import publish_checkpoints
    from expctl.artifacts.refs import validate_name
    from expctl.artifacts.store import ArtifactStore

    validate_name(name)
    files = [_checkpoint_files(t) for t in trials]  # every problem before anything is published
    missing = [t for t, f in zip(trials, files, strict=True) if f is None]
    if missing:
        numbers = ", ".join(str(t.number) for t in missing)
        raise UsageError(
            f"trial{'s' if len(missing) > 1 else ''} {numbers} of sweep {results.id} "
            "left no checkpoints to publish",
            hint="program trials publish nothing by themselves; for expctl's trainer check "
            "the trials' run directories (expctl sweep best ID shows them)",
        )
    store = ArtifactStore(store_root)
    versions = []
    # worst first: `latest` ends on the best, as a person reading the store expects
    for rank in range(len(trials), 0, -1):
        trial = trials[rank - 1]
        found = files[rank - 1]
        assert found is not None
        checkpoints, best_file = found
        run = trial.run
        assert run is not None
        version = publish_checkpoints(
            name,
            checkpoints,
            best_file,
            {
                "run_dir": str(trial.run_dir),
                "sweep": {"id": results.id, "trial": trial.number, "rank": rank},
                "value": trial.value,
                **({"values": trial.values} if trial.values else {}),
                "params": trial.params,
                "overrides": trial.overrides,
                "best_metrics": run.best_metrics,
                "final_metrics": run.final_metrics,
                **_monitor(results, by),
            },
            store_root=store.root,
            aliases=(),
        )
        versions.append((rank, trial, version))
    published = []
    for rank, trial, version in sorted(versions, key=lambda v: v[0]):
        aliases = [f"top-{rank}"] + (["best"] if rank == 1 else [])
        for alias in aliases:
            set_alias(store, version.ref, alias)
        published.append(Published(rank, trial.number, version.ref, tuple(aliases), version.reused))
    for alias, _number in sorted(store.aliases(name).items()):
        m = TOP_ALIAS.match(alias)
        if m and int(m.group(1)) > len(trials):
            holder = store.resolve(f"{name}:{alias}")
            remove_alias(store, holder.ref, alias)
    return published


def _monitor(results: SweepResults, by: str | None) -> dict[str, Any]:
    """What the published rank follows: the metric, or the objective the front is ordered by
    (``--by``, default the first)."""
    if not results.objectives:
        return {"monitor": results.metric, "mode": "max" if results.maximize else "min"}
    chosen = next((o for o in results.objectives if o["name"] == by), results.objectives[0])
    return {"monitor": chosen["name"], "mode": "max" if chosen["goal"] == "maximize" else "min"}


def _checkpoint_files(trial: Trial) -> tuple[list[Path], Path] | None:
    run = trial.run
    if run is None:
        return None
    best = _best_checkpoint(run)
    listed = [c for c in run.summary.get("checkpoints") or [] if isinstance(c, str)]
    paths = [run.path / c for c in listed if (run.path / c).is_file()]
    if best is None or not (run.path / best).is_file():
        return None
    best_path = run.path / best
    if best_path not in paths:
        paths.insert(0, best_path)
    return paths, best_path


def _best_checkpoint(run: RunInfo | None) -> str | None:
    if run is None:
        return None
    best = run.summary.get("best_checkpoint")
    return best if isinstance(best, str) and best else None


def value_key(value: Any) -> str:
    """A parameter value as comparable text (lists and dicts included)."""
    return json.dumps(value, sort_keys=True, default=str)


def _finite(value: Any) -> bool:
    return is_finite_number(value)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _text(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
