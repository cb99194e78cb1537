"""What a sweep looks like from outside: its status (``sweep status``) and the list of sweeps.

Typed results the CLI renders (a table) or serialises (``--format json``: :meth:`to_json`).
Values shown or printed hide parameters named like secrets (the storage keeps them: agents
need them).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.secrets import is_secret_path, redact_overrides, redact_params
from expctl.sweeps.spec import Metric, to_overrides
from expctl.sweeps.storage import StorageHandle, describe
from expctl.sweeps.studies import PREFIX, SweepInfo, known_sweeps

if TYPE_CHECKING:
    import optuna

    from expctl.sweeps.engine import Sweep
    from expctl.sweeps.storage.trial_index import TrialRecord


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # waiting | running | complete | pruned | fail (expctl.status)
    params: dict[str, Any]
    value: float | None
    duration: float | None
    run_dir: str | None
    agent: str | None
    retry_of: int | None
    message: str | None
    epochs: int
    # a multi-objective sweep's trial: each objective's value, and whether it is on the front
    values: dict[str, float] | None = None
    pareto: bool = False


@dataclass(frozen=True)
class BestTrial:
    row: TrialRow
    overrides: list[str]
    command: str  # the command that reruns it (`expctl run ...`, or the program's)


@dataclass(frozen=True)
class SweepStatus:
    id: str
    name: str
    method: str
    metric: dict[str, Any] | None  # {name, goal, target}
    state: str  # running | stopped | finished, as stored (W&B's stays RUNNING with no agent too)
    finished_reason: str | None
    idle: bool  # running, but no agent is alive: nothing happens until one starts
    planned: int | None  # runs that will run (a grid: its size capped by run_cap)
    grid_size: int | None
    run_cap: int | None
    done: int
    counts: dict[str, int]
    agents: dict[str, dict[str, Any]]  # name -> {alive, last_beat_s}
    storage: str
    created: str
    config_dir: str | None
    config_name: str
    trials: list[TrialRow]
    best: BestTrial | None
    # a multi-objective sweep: [{name, goal, target}] of `metrics` (``metric`` is then None)
    objectives: list[dict[str, Any]] | None = None
    front: list[int] = dataclasses.field(default_factory=list)  # its Pareto-optimal trials

    @property
    def state_text(self) -> str:
        """The state for people: a sweep nobody works on is not said to be ``running``."""
        if not self.idle:
            return self.state
        waiting, orphaned = self.counts.get("waiting", 0), self.counts.get("running", 0)
        queue = [f"{waiting} trial{'s' if waiting != 1 else ''} waiting"] if waiting else []
        if orphaned:  # the next agent re-queues them once their heartbeat is stale
            queue.append(f"{orphaned} left running by a dead agent")
        return f"idle (no agent alive, {', '.join(queue) or 'nothing waiting'})"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, trials=[]))
        data["state_text"] = self.state_text
        # one level deep by hand: dataclasses.asdict deep-copies every value recursively, which
        # was 30 s of a 100,000-trial status
        data["trials"] = [_trial_json(t) for t in self.trials]
        if self.best is not None:
            data["best"] = {
                **dataclasses.asdict(self.best.row),
                "overrides": self.best.overrides,
                "command": self.best.command,
            }
        return data


_TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialRow))


def _trial_json(row: TrialRow) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in _TRIAL_FIELDS}
    data["params"] = {  # values may be lists or maps (deepcopy of every dict: ~1 s per 10⁵)
        k: copy.deepcopy(v) if isinstance(v, dict | list) else v for k, v in row.params.items()
    }
    return data


@dataclass(frozen=True)
class SweepRow:
    id: str
    name: str
    method: str
    state: str
    metric: str | None
    planned: int | None
    complete: int
    running: int
    trials: int
    best: float | None
    created: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ROW_ATTRS = tuple(PREFIX + k for k in ("params", "result", "claim", "retry_of", "discarded"))


def _trials(sweep: Sweep) -> list[Any]:
    """The sweep's trials as :func:`trial_row` reads them: on an RDB storage only the columns
    and attrs it reads, in a few set queries (:func:`trial_index.records`)."""
    from expctl.sweeps.storage import trial_index

    found = trial_index.records(sweep.handle.storage, sweep.study_id, _ROW_ATTRS)
    return sweep.trials() if found is None else found


def trial_row(
    t: optuna.trial.FrozenTrial | TrialRecord,
    *,
    hide_secrets: bool = True,
    objectives: tuple[str, ...] = (),
) -> TrialRow:
    result = t.user_attrs.get(PREFIX + "result", {}) or {}
    duration = None
    if t.datetime_start and t.datetime_complete:
        duration = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    elif t.datetime_start and t.state.name == "RUNNING":
        duration = round((datetime.now() - t.datetime_start).total_seconds(), 3)
    params = t.user_attrs.get(PREFIX + "params", {})
    return TrialRow(
        number=t.number,
        state=t.state.name.lower(),
        params=_shown_params(params) if hide_secrets else dict(params),
        value=t.values[0]
        if t.values and len(t.values) == 1 and not result.get("no_metric")
        else None,
        duration=duration,
        run_dir=result.get("run_dir"),
        agent=(t.user_attrs.get(PREFIX + "claim") or {}).get("agent"),
        retry_of=t.user_attrs.get(PREFIX + "retry_of"),
        message=result.get("message"),
        epochs=len(t.intermediate_values),
        values=dict(zip(objectives, t.values, strict=True))
        if len(objectives) > 1 and t.values and len(t.values) == len(objectives)
        else None,
    )


def mark_front(rows: list[TrialRow], objectives: tuple[Metric, ...]) -> list[TrialRow]:
    """``rows`` with their complete trials on the Pareto front marked (``pareto=True``)."""
    from expctl.sweeps.pareto import pareto_front

    done = [r for r in rows if r.state == "complete" and r.values is not None]
    points = [[r.values[m.name] for m in objectives] for r in done]  # type: ignore[index]
    front = {done[i].number for i in pareto_front(points, [m.maximize for m in objectives])}
    return [dataclasses.replace(r, pareto=True) if r.number in front else r for r in rows]


def _shown_params(params: dict[str, Any]) -> dict[str, Any]:
    """:func:`expctl.secrets.redact_params`, with a number under a name that is not a secret's
    passed as is without asking again for every trial (a third of a 100,000-trial status)."""
    shown = {}
    for name, value in params.items():
        plain = _PLAIN_NAMES.get(name)
        if plain is None:
            plain = _PLAIN_NAMES[name] = not is_secret_path(name)
        scalar = isinstance(value, int | float | bool) or value is None
        shown[name] = value if plain and scalar else redact_params({name: value})[name]
    return shown


_PLAIN_NAMES: dict[str, bool] = {}  # parameter name -> not named like a secret


def best_row(rows: list[TrialRow], metric: Metric | None) -> TrialRow | None:
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    if not done or metric is None:
        return None
    pick = max if metric.maximize else min
    return pick(done, key=lambda r: r.value)  # type: ignore[arg-type, return-value]


def sweep_status(sweep: Sweep) -> SweepStatus:
    """Everything ``sweep status`` shows."""
    from expctl.sweeps.methods import method_for

    info = sweep.current_info()
    names = tuple(m.name for m in info.spec.objectives)
    rows = [
        trial_row(t, objectives=names)
        for t in _trials(sweep)
        if not t.user_attrs.get(PREFIX + "discarded")
    ]
    multi = info.spec.multi_objective
    if multi:
        rows = mark_front(rows, info.spec.objectives)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    metric = info.spec.metric
    best = best_row(rows, metric)
    agents = sweep.liveness.agents()
    return SweepStatus(
        id=info.id,
        name=info.display_name,
        method=info.spec.method,
        metric=None
        if metric is None
        else {"name": metric.name, "goal": metric.goal, "target": metric.target},
        state=info.state,
        finished_reason=info.finished_reason,
        idle=info.state == "running" and not any(a.get("alive") for a in agents.values()),
        planned=info.planned,
        grid_size=method_for(info.spec).size(),
        run_cap=info.spec.run_cap,
        done=sum(counts.get(s, 0) for s in ("complete", "pruned")),
        counts=counts,
        agents=agents,
        storage=describe(sweep.handle.url),
        created=info.created,
        config_dir=info.config_dir,
        config_name=info.config_name,
        trials=rows,
        best=None if best is None else _best(info, best),
        objectives=[
            {"name": m.name, "goal": m.goal, "target": m.target} for m in info.spec.objectives
        ]
        if multi
        else None,
        front=[r.number for r in rows if r.pareto],
    )


def _best(info: SweepInfo, best: TrialRow) -> BestTrial:
    """The best trial and the command that reruns it (its params are already redacted)."""
    overrides = redact_overrides([*info.overrides, *to_overrides(best.params, info.raw_keys)])
    if info.spec.runs_own_command:
        return BestTrial(best, overrides, _program_command(info, best.params))
    extra = []
    # the project's ./configs is found without the flag when pasted in the project dir
    if info.config_dir and Path(info.config_dir) != Path("configs").resolve():
        extra += ["--config-dir", info.config_dir]
    if info.config_name != "config":
        extra += ["--config-name", info.config_name]
    return BestTrial(best, overrides, shlex.join(["expctl", "run", *extra, *overrides]))


class _ShellVariables(dict):
    """``${envvar:NAME}`` shown as ``$NAME``: the pasted command expands it in the shell."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return f"${key}"


def _program_command(info: SweepInfo, params: dict[str, Any]) -> str:
    """The best trial's command, rendered exactly as the agent ran it (W&B's macros)."""
    from expctl.sweeps.program.macros import build_command, wandb_params

    argv = build_command(
        list(info.spec.command) if info.spec.command else None,
        info.spec.program or "",
        wandb_params(params, info.spec.raw.get("parameters")),
        sweep_id=info.id,
        run_id="best",
        wandb_dir=os.environ.get("WANDB_DIR") or ".",
        environ=_ShellVariables(),
        write_files=False,
    )
    from expctl.secrets import redact_argv  # `--api_key=...` in the spec's command

    return shlex.join(redact_argv(argv))


def list_sweeps(handle: StorageHandle) -> list[SweepRow]:
    """One summary row per sweep, oldest first."""
    from optuna.trial import TrialState

    rows = []
    for info in known_sweeps(handle):
        study_id = handle.storage.get_study_id_from_name(info.id)
        trials = handle.storage.get_all_trials(study_id, deepcopy=False)
        trials = [t for t in trials if not t.user_attrs.get(PREFIX + "discarded")]
        done = [trial_row(t) for t in trials if t.state == TrialState.COMPLETE]
        best = best_row(done, info.spec.metric)
        rows.append(
            SweepRow(
                id=info.id,
                name=info.display_name,
                method=info.spec.method,
                state=info.state,
                metric=", ".join(m.name for m in info.spec.objectives) or None,
                planned=info.planned,
                complete=len(done),
                running=sum(1 for t in trials if t.state == TrialState.RUNNING),
                trials=len(trials),
                best=best.value if best else None,
                created=info.created,
            )
        )
    return rows
