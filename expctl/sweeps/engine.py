"""A sweep is one Optuna study; this module makes it exactly-once and crash-proof on any storage.

Layout in the storage (study name = the 8-character sweep id, like W&B's):

* study user attrs ``expctl:*``: the sweep YAML as given (``spec``), ``state``
  (running | stopped | finished), config dir/name, planned run count, creation time;
* trial user attrs: ``expctl:params`` (the W&B values; Optuna's own params hold the *latent*
  values, see :mod:`expctl.sweeps.distributions`), ``expctl:claim`` (which agent),
  ``expctl:retry_of`` (a re-queued trial), ``expctl:result`` (run dir, metrics, message);
* trial system attr ``expctl:heartbeat``: a timestamp the owning agent refreshes every few
  seconds from a background thread.

Guarantees and how they are kept:

* **Grid points run exactly once.** Every point is enqueued (WAITING) at create time; an agent
  claims one by moving it WAITING → RUNNING, which is atomic on the journal (log order decides),
  PostgreSQL/MySQL (``SELECT … FOR UPDATE``) and, under :meth:`StorageHandle.transition_lock`,
  SQLite. Optuna's GridSampler is not used: under concurrent workers it repeats and misses points.
* **Dead agents are detected and their trial re-run, on every storage.** Before claiming, agents
  fail RUNNING trials whose heartbeat is older than ``stale_after`` seconds. Finishing a trial is
  atomic too: when two agents race to fail the same trial, exactly one succeeds (the other gets
  ``UpdateFinishedTrialError``), and only that one re-enqueues its parameters.
* **run_cap**: grids enqueue at most run_cap points; random/bayes keep the first run_cap fresh
  trials by trial number (trial numbers are allocated atomically) and discard any extra one
  created by a race, so the cap is never exceeded. Re-queued trials do not count twice.
* **metric.target**: the agent that completes a trial reaching it marks the sweep finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import string
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import NotFoundError, SpecError, UsageError
from expctl.secrets import redact_overrides, redact_params
from expctl.sweeps.spec import Metric, SweepSpec, parse_spec, to_overrides
from expctl.sweeps.storage import StorageHandle, describe, open_storage

if TYPE_CHECKING:
    import optuna

PREFIX = "expctl:"
AGENT_PREFIX = PREFIX + "agent:"
STATES = ("running", "stopped", "finished")
# Every point is queued at create time, and every agent reads the whole queue: beyond this many
# points a grid is better searched with method: random and a run_cap (said before building one).
MAX_GRID_POINTS = 10_000
_ID_ALPHABET = string.ascii_lowercase + string.digits
BAYES_STARTUP_TRIALS = 5


def new_sweep_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def agent_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SweepInfo:
    id: str
    spec: SweepSpec
    state: str
    created: str
    config_dir: str | None
    config_name: str
    planned: int | None
    overrides: tuple[str, ...] = ()
    raw_keys: dict[str, str] = field(default_factory=dict)
    finished_reason: str | None = None

    @property
    def name(self) -> str | None:
        return self.spec.name

    @property
    def display_name(self) -> str:
        """The name to show: the spec's, else what it runs (W&B names sweeps itself)."""
        spec = self.spec
        if spec.name:
            return spec.name
        if spec.program:
            return Path(spec.program).name
        return " ".join(spec.command) if spec.command else f"{spec.method} over {self.config_name}"


def _attrs_to_info(sweep_id: str, attrs: dict[str, Any]) -> SweepInfo:
    raw = attrs[PREFIX + "spec"]
    spec = parse_spec(raw, source=attrs.get(PREFIX + "source", sweep_id))
    return SweepInfo(
        id=sweep_id,
        spec=spec,
        state=attrs.get(PREFIX + "state", "running"),
        created=attrs.get(PREFIX + "created", ""),
        config_dir=attrs.get(PREFIX + "config_dir"),
        config_name=attrs.get(PREFIX + "config_name", "config"),
        planned=attrs.get(PREFIX + "planned"),
        overrides=tuple(attrs.get(PREFIX + "overrides", ())),
        raw_keys=dict(attrs.get(PREFIX + "raw_keys", {})),
        finished_reason=attrs.get(PREFIX + "finished_reason"),
    )


# -- creating, finding, listing ------------------------------------------------------------------


def create_sweep(
    spec: SweepSpec,
    *,
    storage: str | StorageHandle | None = None,
    config_dir: Path | str | None = None,
    config_name: str = "config",
    overrides: tuple[str, ...] | list[str] = (),
    raw_keys: dict[str, str] | None = None,
    sweep_id: str | None = None,
) -> SweepInfo:
    """Create the study, store the spec, and enqueue every grid point. Returns the new sweep."""
    import optuna

    from expctl.sweeps.grid import grid_points

    handle = storage if isinstance(storage, StorageHandle) else open_storage(storage)
    planned: int | None = None
    points: list[dict[str, Any]] = []
    if spec.method == "grid":
        points = grid_points(spec, limit=MAX_GRID_POINTS)
        planned = len(points)
    sweep_id = sweep_id or new_sweep_id()
    maximize = bool(spec.metric and spec.metric.maximize)
    study = optuna.create_study(
        study_name=sweep_id,
        storage=handle.storage,
        direction="maximize" if maximize else "minimize",
    )
    attrs: dict[str, Any] = {
        "spec": json.loads(json.dumps(spec.raw, default=str)),
        "source": spec.source,
        "state": "running",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_dir": str(config_dir) if config_dir is not None else None,
        "config_name": config_name,
        "planned": planned,
        "overrides": list(overrides),
        "raw_keys": raw_keys or {},
    }
    from expctl.sweeps.journal import batched_writes

    try:
        with batched_writes(handle.storage):  # the journal: one append for every point
            for point in points:
                study.enqueue_trial({}, user_attrs={PREFIX + "params": point}, skip_if_exists=False)
        # the spec last: a sweep without it is not listed, so a failed create leaves no sweep
        for key, value in attrs.items():
            study.set_user_attr(PREFIX + key, value)
    except BaseException:
        with contextlib.suppress(Exception):
            handle.storage.delete_study(study._study_id)
        raise
    return _attrs_to_info(sweep_id, study.user_attrs)


def known_sweeps(handle: StorageHandle) -> list[SweepInfo]:
    """Every expctl sweep in the storage (studies without expctl's attrs are skipped)."""
    result = []
    for frozen in handle.storage.get_all_studies():
        if PREFIX + "spec" not in frozen.user_attrs:
            continue
        try:
            result.append(_attrs_to_info(frozen.study_name, frozen.user_attrs))
        except SpecError:
            continue
    return sorted(result, key=lambda info: info.created)


def _not_found(sweep_id: str, handle: StorageHandle) -> NotFoundError:
    known = [info.id for info in known_sweeps(handle)]
    from expctl.errors import did_you_mean

    close = did_you_mean(sweep_id, known)
    listing = ", ".join(known[-10:]) if known else "none"
    hint = f"known sweeps in {describe(handle.url)}: {listing}"
    if close:
        hint = f"did you mean {close[0]}? {hint}"
    if not known:
        hint += " (create one with `expctl sweep create SWEEP.yaml`, or pass the --storage it used)"
    return NotFoundError(f"no sweep {sweep_id!r}", hint=hint)


class Sweep:
    """One sweep opened for an agent or for inspection."""

    def __init__(self, handle: StorageHandle, study: optuna.Study, info: SweepInfo, study_id: int):
        self.handle = handle
        self.study = study
        self.study_id = study_id
        self.info = info
        self.spec = info.spec
        self.id = info.id

    # -- state --------------------------------------------------------------------------------

    def state(self) -> str:
        attrs = self.handle.storage.get_study_user_attrs(self.study_id)
        return attrs.get(PREFIX + "state", "running")

    def set_state(self, state: str, reason: str | None = None) -> None:
        assert state in STATES
        self.study.set_user_attr(PREFIX + "state", state)
        if reason:
            self.study.set_user_attr(PREFIX + "finished_reason", reason)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    # -- claiming -----------------------------------------------------------------------------

    def claim(self, agent: str | None = None, *, _attempt: int = 0) -> Claim | str:
        """Claim the next trial, or say why there is none.

        Returns a :class:`Claim`, or one of ``"stopped"``, ``"finished"`` (grid done, run_cap
        reached or target met), ``"wait"`` (nothing to claim now, but trials of other agents are
        still running: if one of them dies its trial comes back).
        """
        from optuna.trial import Trial

        state = self.state()
        if state != "running":
            return state
        agent = agent or agent_name()
        with self.handle.transition_lock():
            trial_id = self._pop_waiting()
            if trial_id is None:
                if self.spec.method == "grid" or self._cap_reached():
                    return self._idle()
                trial = self.study.ask()
            else:
                trial = Trial(self.study, trial_id)
        frozen_attrs = trial.user_attrs
        retry_of = frozen_attrs.get(PREFIX + "retry_of")
        if retry_of is None and self.spec.method != "grid" and self._over_cap(trial.number):
            self._discard(trial)
            return self._idle()
        try:
            params = self._params(trial, frozen_attrs.get(PREFIX + "params"))
        except BaseException as e:  # never leave a trial RUNNING that nobody will run
            self._fail_unstarted(trial._trial_id, f"could not sample its parameters: {e!r}")
            raise
        if retry_of is None and _attempt < 3 and self._repeats_a_point(trial, params):
            # Two agents that ask at the same instant see the same history, and the GP's
            # acquisition optimiser can land both on the very same point (or on a corner it
            # already tried); give this one up and ask again, now that the other point is
            # visible. After a few tries the point is accepted, as W&B's bayes would.
            self._discard(trial)
            return self.claim(agent, _attempt=_attempt + 1)
        claim_info = {"agent": agent, "time": time.time()}
        self.handle.storage.set_trial_user_attr(trial._trial_id, PREFIX + "claim", claim_info)
        return Claim(
            trial=trial,
            trial_id=trial._trial_id,
            number=trial.number,
            params=params,
            retry_of=retry_of,
            started=time.time(),
        )

    def _fail_unstarted(self, trial_id: int, message: str) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage = self.handle.storage
        with contextlib.suppress(UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, PREFIX + "result", {"message": message})
            with self.handle.transition_lock():
                storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def _pop_waiting(self) -> int | None:
        """WAITING → RUNNING for the first queued trial we win (Optuna's own pop protocol)."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage = self.handle.storage
        waiting = storage.get_all_trials(
            self.study_id, deepcopy=False, states=(TrialState.WAITING,)
        )
        for frozen in waiting:
            try:
                if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                    return frozen._trial_id
            except UpdateFinishedTrialError:
                continue
        return None

    def _params(self, trial: optuna.Trial, queued: dict[str, Any] | None) -> dict[str, Any]:
        """The W&B values of a trial; random/bayes trials also get their latent Optuna params."""
        from expctl.sweeps.distributions import latent_distribution, to_value

        if self.spec.method == "grid":
            return dict(queued or {})
        values: dict[str, Any] = {}
        for p in self.spec.parameters:
            dist = latent_distribution(p)
            latent = None if dist is None else _suggest(trial, p.name, dist)
            values[p.name] = to_value(p, latent)
        if queued is None:
            self.handle.storage.set_trial_user_attr(trial._trial_id, PREFIX + "params", values)
        return values

    def _repeats_a_point(self, trial: optuna.Trial, params: dict[str, Any]) -> bool:
        """A bayes suggestion identical to a point another agent is running now, or — in a
        space with a continuous parameter, where an exact repeat is a wasted trial — to any
        point tried before. (Small discrete spaces must repeat points; that is fine.)"""
        from optuna.trial import TrialState

        if self.spec.method != "bayes":
            return False  # grids are exact; random repeats only by chance, as in W&B
        continuous = any(p.is_continuous for p in self.spec.parameters)
        return any(
            t.number != trial.number
            and (t.state == TrialState.RUNNING or (continuous and t.state.is_finished()))
            and not t.user_attrs.get(PREFIX + "discarded")
            and t.user_attrs.get(PREFIX + "params") == params
            for t in self.trials()
        )

    def _counts_toward_cap(self, t: optuna.trial.FrozenTrial) -> bool:
        return PREFIX + "retry_of" not in t.user_attrs and not t.user_attrs.get(
            PREFIX + "discarded"
        )

    def _cap_reached(self) -> bool:
        cap = self.spec.run_cap
        if cap is None:
            return False
        return sum(1 for t in self.trials() if self._counts_toward_cap(t)) >= cap

    def _over_cap(self, number: int) -> bool:
        cap = self.spec.run_cap
        if cap is None:
            return False
        before = sum(1 for t in self.trials() if t.number < number and self._counts_toward_cap(t))
        return before >= cap

    def _discard(self, trial: optuna.Trial) -> None:
        """A trial created past run_cap by a race: failed and excluded from counts and status."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage = self.handle.storage
        try:
            storage.set_trial_user_attr(trial._trial_id, PREFIX + "discarded", True)
            with self.handle.transition_lock():
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass

    def _idle(self) -> str:

        if self._unfinished():
            return "wait"
        reason = "grid complete" if self.spec.method == "grid" else "run_cap reached"
        if self.state() == "running":
            self.set_state("finished", reason)
        return "finished"

    # -- liveness -----------------------------------------------------------------------------

    def heartbeat(self, trial_id: int) -> bool:
        """Refresh a running trial's heartbeat; False once it is finished (maybe by others)."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.handle.storage.set_trial_system_attr(trial_id, PREFIX + "heartbeat", time.time())
        except (UpdateFinishedTrialError, KeyError):
            return False
        return True

    def agent_beat(self, agent: str, stale_after: float, *, exited: bool = False) -> None:
        """The agent's own heartbeat (a study attr per agent): alive, or gone."""
        beat = {"at": time.time(), "stale_after": stale_after, "exited": exited}
        self.handle.storage.set_study_system_attr(self.study_id, AGENT_PREFIX + agent, beat)

    def agents(self) -> dict[str, dict[str, Any]]:
        """Each agent that ever joined: ``{"alive": bool, "last_beat_s": seconds ago}``."""
        now = time.time()
        found = {}
        attrs = self.handle.storage.get_study_system_attrs(self.study_id)
        for key, beat in attrs.items():
            if not key.startswith(AGENT_PREFIX) or not isinstance(beat, dict):
                continue
            age = now - float(beat.get("at", 0))
            alive = not beat.get("exited") and age <= float(beat.get("stale_after", 60))
            found[key[len(AGENT_PREFIX) :]] = {"alive": alive, "last_beat_s": round(age, 1)}
        return found

    def reap_stale(self, stale_after: float) -> list[tuple[int, int]]:
        """Fail RUNNING trials whose agent stopped heartbeating; re-queue each exactly once.

        Returns ``(failed trial number, new trial number)`` for each trial this agent re-queued.
        """
        from optuna.trial import TrialState

        now = time.time()
        requeued = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            last = t.system_attrs.get(PREFIX + "heartbeat")
            if last is None and t.datetime_start is not None:
                last = t.datetime_start.timestamp()
            if last is None or now - float(last) <= stale_after:
                continue
            new = self._fail_and_requeue(
                t._trial_id, t.number, t.params, t.user_attrs.get(PREFIX + "params")
            )
            if new is not None:
                requeued.append((t.number, new))
        return requeued

    def _fail_and_requeue(
        self, trial_id: int, number: int, latent: dict[str, Any], params: dict[str, Any] | None
    ) -> int | None:
        """Only the agent whose RUNNING → FAIL transition succeeds re-enqueues the parameters."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState, create_trial

        with self.handle.transition_lock():
            try:
                # said before the FAIL: until the re-run exists the sweep is not finished
                self.handle.storage.set_trial_user_attr(trial_id, PREFIX + "requeue", True)
                self.handle.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                return None
            user_attrs: dict[str, Any] = {PREFIX + "retry_of": number}
            if params is not None:
                user_attrs[PREFIX + "params"] = params
            # what Study.enqueue_trial does, but we need the new trial's number back
            template = create_trial(
                state=TrialState.WAITING,
                system_attrs={"fixed_params": latent},
                user_attrs=user_attrs,
            )
            new_id = self.handle.storage.create_new_trial(self.study_id, template_trial=template)
        return self.handle.storage.get_trial(new_id).number

    # -- reporting and finishing --------------------------------------------------------------

    def report(self, claim: Claim, step: int, value: float) -> bool:
        """Record the metric after ``step`` (an epoch); True when hyperband says stop."""
        import math

        if value is None or math.isnan(value) or math.isinf(value):
            return False
        if step in claim.reported:
            return False
        claim.reported.add(step)
        claim.trial.report(float(value), step)
        return self.spec.early_terminate is not None and claim.trial.should_prune()

    def finish(
        self,
        claim: Claim,
        state: str,
        value: float | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Move the claimed trial to complete | pruned | failed. False if another agent already
        finished it (it was considered dead and re-queued): the result is then discarded."""
        import math

        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        result = dict(result or {})
        target = {
            "complete": TrialState.COMPLETE,
            "pruned": TrialState.PRUNED,
            "failed": TrialState.FAIL,
        }[state]
        values: list[float] | None = None
        if target == TrialState.COMPLETE:
            if value is None:
                result["no_metric"] = True
                values = [0.0]
            elif math.isnan(value):
                target, result["message"] = TrialState.FAIL, "the metric is NaN"
            else:
                values = [float(value)]
        elif target == TrialState.PRUNED:
            values = [float(value)] if value is not None and math.isfinite(value) else None
        storage = self.handle.storage
        try:
            storage.set_trial_user_attr(claim.trial_id, PREFIX + "result", _jsonable(result))
            with self.handle.transition_lock():
                storage.set_trial_state_values(claim.trial_id, target, values)
        except UpdateFinishedTrialError:
            return False
        metric = self.spec.metric
        if target == TrialState.COMPLETE and metric is not None and metric.reached(value):
            self.set_state("finished", f"metric.target reached by trial {claim.number}")
        elif self.spec.method == "grid" and not self._unfinished():
            # the last point: say so now, not when some agent next asks for a trial (agents
            # that stop on --count never would)
            self.set_state("finished", "grid complete")
        return True

    def _unfinished(self) -> bool:
        """A trial is queued or running — or being re-queued: failed for a re-run whose new
        trial another agent is creating this instant (it marks the old one first)."""
        from optuna.trial import TrialState

        trials = self.trials()
        if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
            return True
        retried = {t.user_attrs.get(PREFIX + "retry_of") for t in trials}
        return any(
            t.state == TrialState.FAIL
            and t.user_attrs.get(PREFIX + "requeue")
            and t.number not in retried
            for t in trials
        )

    def requeue(self, claim: Claim, result: dict[str, Any] | None = None) -> int | None:
        """Give a claimed trial back (agent interrupted): failed here, re-run by another agent."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.handle.storage.set_trial_user_attr(
                claim.trial_id,
                PREFIX + "result",
                _jsonable({**(result or {}), "message": "interrupted; re-queued"}),
            )
        except UpdateFinishedTrialError:
            return None
        frozen = self.handle.storage.get_trial(claim.trial_id)
        return self._fail_and_requeue(claim.trial_id, claim.number, frozen.params, claim.params)


@dataclass
class Claim:
    trial: optuna.Trial
    trial_id: int
    number: int
    params: dict[str, Any]
    retry_of: int | None
    started: float
    reported: set[int] = field(default_factory=set)

    def overrides(self, raw_keys: dict[str, str] | None = None) -> list[str]:
        return to_overrides(self.params, raw_keys)


def _suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    raise TypeError(f"unsupported distribution {dist!r}")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, allow_nan=True))


def make_sampler(spec: SweepSpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """random: exact W&B distributions; bayes: Optuna's GPSampler (see benchmarks/sweeps.py).

    Chosen by benchmarks/sweeps.py (Branin, 10 seeds, trials to within 1% of the optimum):
    GP 30 (median), TPE ~200, random > 1000. GPSampler also models the *running* trials of other
    agents (q-batch LogEI), so parallel agents do not all propose the same point: 4 trials in
    flight needed 38 (1.3× sequential). It costs ~0.1 s per suggestion, nothing next to a trial.
    """
    import optuna

    if spec.method == "bayes":
        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=BAYES_STARTUP_TRIALS,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    import optuna

    from expctl.sweeps.hyperband import WandbHyperbandPruner

    et = spec.early_terminate
    if et is None:
        return optuna.pruners.NopPruner()
    maximize = bool(spec.metric and spec.metric.maximize)
    return WandbHyperbandPruner(et.bands(), et.eta, strict=et.strict, maximize=maximize)


def open_sweep(
    sweep_id: str,
    storage: str | StorageHandle | None = None,
    *,
    seed: int | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> Sweep:
    """Open an existing sweep (NotFoundError listing the known ids when there is none)."""
    import optuna

    handle = storage if isinstance(storage, StorageHandle) else open_storage(storage, create=False)
    try:
        study_id = handle.storage.get_study_id_from_name(sweep_id)
    except KeyError:
        raise _not_found(sweep_id, handle) from None
    attrs = handle.storage.get_study_user_attrs(study_id)
    if PREFIX + "spec" not in attrs:
        raise UsageError(
            f"study {sweep_id!r} was not created by expctl",
            hint="create sweeps with `expctl sweep create SWEEP.yaml`",
        )
    info = _attrs_to_info(sweep_id, attrs)
    study = optuna.load_study(
        study_name=sweep_id,
        storage=handle.storage,
        sampler=sampler or make_sampler(info.spec, seed),
        pruner=make_pruner(info.spec),
    )
    return Sweep(handle, study, info, study_id)


def stop_sweep(sweep_id: str, storage: str | StorageHandle | None = None) -> SweepInfo:
    """No new trials: agents finish their current trial and exit."""
    sweep = open_sweep(sweep_id, storage)
    if sweep.state() == "running":
        sweep.set_state("stopped")
    return _attrs_to_info(sweep_id, sweep.study.user_attrs)


# -- status ---------------------------------------------------------------------------------------


def _trial_row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    result = t.user_attrs.get(PREFIX + "result", {}) or {}
    value = t.value if t.values and not result.get("no_metric") else None
    duration = None
    if t.datetime_start and t.datetime_complete:
        duration = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    elif t.datetime_start and t.state.name == "RUNNING":
        duration = round((datetime.now() - t.datetime_start).total_seconds(), 3)
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "params": t.user_attrs.get(PREFIX + "params", {}),
        "value": value,
        "duration": duration,
        "run_dir": result.get("run_dir"),
        "agent": (t.user_attrs.get(PREFIX + "claim") or {}).get("agent"),
        "retry_of": t.user_attrs.get(PREFIX + "retry_of"),
        "message": result.get("message"),
        "epochs": len(t.intermediate_values),
    }


def best_row(rows: list[dict[str, Any]], metric: Metric | None) -> dict[str, Any] | None:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not done or metric is None:
        return None
    pick = max if metric.maximize else min
    return pick(done, key=lambda r: r["value"])


def sweep_status(sweep_id: str, storage: str | StorageHandle | None = None) -> dict[str, Any]:
    """Everything `sweep status` shows, JSON-ready."""
    import shlex

    from expctl.sweeps.grid import grid_size

    sweep = open_sweep(sweep_id, storage)
    info = _attrs_to_info(sweep_id, sweep.study.user_attrs)
    rows = [_trial_row(t) for t in sweep.trials() if not t.user_attrs.get(PREFIX + "discarded")]
    shown_rows = [{**r, "params": redact_params(r["params"])} for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    best = best_row(rows, info.spec.metric)
    best_out = None
    if best is not None:
        params = redact_params(best["params"])  # shown and printed: secrets hidden
        overrides = redact_overrides([*info.overrides, *to_overrides(params, info.raw_keys)])
        extra = []
        # the project's ./configs is found without the flag when pasted in the project dir
        if info.config_dir and Path(info.config_dir) != Path("configs").resolve():
            extra += ["--config-dir", info.config_dir]
        if info.config_name != "config":
            extra += ["--config-name", info.config_name]
        command = shlex.join(["expctl", "run", *extra, *overrides])
        if info.spec.runs_own_command:
            command = _program_command(info, sweep_id, params)
        best_out = {**best, "params": params, "overrides": overrides, "command": command}
    metric = info.spec.metric
    done = sum(counts.get(s, 0) for s in ("complete", "pruned"))
    return {
        "id": sweep_id,
        "name": info.display_name,
        "method": info.spec.method,
        "metric": None
        if metric is None
        else {"name": metric.name, "goal": metric.goal, "target": metric.target},
        "state": info.state,
        "finished_reason": info.finished_reason,
        "planned": info.planned,
        "grid_size": grid_size(info.spec) if info.spec.method == "grid" else None,
        "run_cap": info.spec.run_cap,
        "done": done,
        "counts": counts,
        "agents": sweep.agents(),
        "storage": describe(sweep.handle.url),
        "created": info.created,
        "config_dir": info.config_dir,
        "config_name": info.config_name,
        "trials": shown_rows,
        "best": best_out,
    }


class _ShellVariables(dict):
    """``${envvar:NAME}`` shown as ``$NAME``: the pasted command expands it in the shell."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return f"${key}"


def _program_command(info: SweepInfo, sweep_id: str, params: dict[str, Any]) -> str:
    """The best trial's command, rendered exactly as the agent ran it (W&B's macros)."""
    import shlex

    from expctl.sweeps.macros import build_command, wandb_params

    argv = build_command(
        list(info.spec.command) if info.spec.command else None,
        info.spec.program or "",
        wandb_params(params, info.spec.raw.get("parameters")),
        sweep_id=sweep_id,
        run_id="best",
        wandb_dir=os.environ.get("WANDB_DIR") or ".",
        environ=_ShellVariables(),
        write_files=False,
    )
    return shlex.join(argv)


def list_sweeps(storage: str | StorageHandle | None = None) -> list[dict[str, Any]]:
    """One summary row per sweep, oldest first."""
    from optuna.trial import TrialState

    handle = storage if isinstance(storage, StorageHandle) else open_storage(storage, create=False)
    rows = []
    for info in known_sweeps(handle):
        study_id = handle.storage.get_study_id_from_name(info.id)
        trials = handle.storage.get_all_trials(study_id, deepcopy=False)
        trials = [t for t in trials if not t.user_attrs.get(PREFIX + "discarded")]
        metric = info.spec.metric
        done = [_trial_row(t) for t in trials if t.state == TrialState.COMPLETE]
        best = best_row(done, metric)
        rows.append(
            {
                "id": info.id,
                "name": info.display_name,
                "method": info.spec.method,
                "state": info.state,
                "metric": metric.name if metric else None,
                "planned": info.planned,
                "complete": len(done),
                "running": sum(1 for t in trials if t.state == TrialState.RUNNING),
                "trials": len(trials),
                "best": best["value"] if best else None,
                "created": info.created,
            }
        )
    return rows
