"""The engine in one process: claims, dead-agent recovery, run_cap, target, stop, hyperband,
status — on every storage (journal file, SQLite, PostgreSQL when EXPCTL_TEST_POSTGRES_URL is set).

Two `Sweep` objects opened on separate storage handles behave like two agents: each has its own
connection / journal replay, exactly as two processes would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import agent, create, open_

from expctl.errors import NotFoundError, RuntimeFailure
from expctl.sweeps.engine import Claim
from expctl.sweeps.methods.hyperband import WandbHyperbandPruner
from expctl.sweeps.service import stop_sweep, sweep_status, sweeps_in_storage
from expctl.sweeps.spec import EarlyTerminate, parse_spec
from expctl.sweeps.storage import open_storage
from expctl.sweeps.trial import TrialContext, TrialOutcome


def grid_spec(n: int = 4, **extra: Any):
    raw = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": list(range(n))}},
        **extra,
    }
    return parse_spec(raw)


def objective(ctx: TrialContext) -> float:
    return float(sum(v for v in ctx.params.values() if isinstance(v, int | float)))


def test_a_requeue_cut_short_before_its_rerun_exists_keeps_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FAIL and the re-run are one step: a reaper stopped between them (here an exception
    where it creates the re-run; a SIGKILL there) left the point failed for a re-run nobody
    created — lost, and every agent waiting for it forever."""
    info = create(grid_spec(2), url)
    owner, reaper = open_(info.id, url), open_(info.id, url)
    claim = owner.claim("owner")
    assert isinstance(claim, Claim)
    trial = reaper.study.get_trials()[claim.number]
    storage = reaper.handle.storage
    builder = "_get_prepared_new_trial" if "://" in url else "create_new_trial"

    def cut(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # nothing after it runs, as after a SIGKILL

    monkeypatch.setattr(storage, builder, cut)
    with pytest.raises(KeyboardInterrupt):
        reaper.liveness.fail_and_requeue(claim.trial_id, claim.number, trial.params, claim.params)
    monkeypatch.undo()
    again = open_(info.id, url)
    left = again.study.get_trials()[claim.number]
    assert left.state.name == "RUNNING" and "expctl:requeue" not in left.user_attrs
    rerun = again.liveness.fail_and_requeue(
        claim.trial_id, claim.number, trial.params, claim.params
    )
    assert rerun is not None
    assert owner.finish(claim, "complete", 1.0) is False
    reruns = [t for t in again.study.get_trials() if t.user_attrs.get("expctl:retry_of") == 0]
    assert claim.number == 0 and [t.number for t in reruns] == [rerun]  # one re-run, no more


def test_grid_points_are_claimed_exactly_once(url: str) -> None:
    info = create(grid_spec(4), url)
    a, b = open_(info.id, url), open_(info.id, url)
    claims = [a.claim("a"), b.claim("b"), a.claim("a"), b.claim("b")]
    assert all(isinstance(c, Claim) for c in claims)
    assert sorted(c.params["x"] for c in claims) == [0, 1, 2, 3]  # type: ignore[union-attr]
    assert a.claim("a") == "wait"  # nothing queued, but trials still running
    for c in claims:
        assert a.finish(c, "complete", 1.0)  # type: ignore[arg-type]
    assert b.claim("b") == "finished"
    status = sweep_status(info.id, url)
    assert status["state"] == "finished" and status["planned"] == 4 and status["done"] == 4


def test_a_dead_agents_trial_is_requeued_exactly_once(url: str) -> None:
    info = create(grid_spec(2), url)
    owner, reaper1, reaper2 = (open_(info.id, url) for _ in range(3))
    claim = owner.claim("owner")
    assert isinstance(claim, Claim)
    trial = owner.study.get_trials()[claim.number]
    # two agents race to fail the same stale trial: exactly one wins and re-enqueues
    first = reaper1.liveness.fail_and_requeue(
        claim.trial_id, claim.number, trial.params, claim.params
    )
    second = reaper2.liveness.fail_and_requeue(
        claim.trial_id, claim.number, trial.params, claim.params
    )
    assert first is not None and second is None
    assert reaper2.liveness.reap_stale(0.0) == []  # nothing RUNNING is left to reap
    # the owner was only slow: its result is discarded, the re-run counts
    assert owner.finish(claim, "complete", 1.0) is False
    rerun = reaper1.claim("r1")
    other = reaper1.claim("r1")
    assert isinstance(rerun, Claim) and isinstance(other, Claim)
    assert {rerun.retry_of, other.retry_of} == {claim.number, None}
    assert {rerun.params["x"], other.params["x"]} == {0, 1}
    # and goes on: on the journal its refused result and state were one append, and the
    # state's refusal surfaced from its next read (the agent died at its next claim)
    assert owner.claim("owner") == "wait"


def test_stale_heartbeats_are_reaped_fresh_ones_are_not(url: str) -> None:
    import time

    info = create(grid_spec(1), url)
    owner, reaper = open_(info.id, url), open_(info.id, url)
    claim = owner.claim("owner")
    assert isinstance(claim, Claim)
    assert owner.liveness.heartbeat(claim.trial_id)
    assert reaper.liveness.reap_stale(30.0) == []
    time.sleep(0.3)
    assert reaper.liveness.reap_stale(0.2) == [(claim.number, claim.number + 1)]
    assert owner.liveness.heartbeat(claim.trial_id) is False  # the owner learns it lost the trial


def test_random_sweep_honours_run_cap(url: str) -> None:
    spec = parse_spec(
        {
            "method": "random",
            "run_cap": 3,
            "metric": {"name": "loss"},
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    info = create(spec, url)
    summary = agent(info.id, url, objective=objective, handle_signals=False)
    assert summary.count("complete") == 3
    assert "run_cap" in summary.reason
    assert open_(info.id, url).claim() == "finished"


def test_trials_created_past_run_cap_by_a_race_are_discarded(url: str) -> None:
    spec = parse_spec(
        {
            "method": "random",
            "run_cap": 1,
            "metric": {"name": "loss"},
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    info = create(spec, url)
    a, b = open_(info.id, url), open_(info.id, url)
    claim = a.claim("a")
    assert isinstance(claim, Claim)
    extra = b.study.ask()  # what a racing agent does just before it sees the cap
    assert b.run_cap.over_cap(extra.number)
    b.run_cap.discard(extra)
    status = sweep_status(info.id, url)
    assert [t["number"] for t in status["trials"]] == [claim.number]


def test_target_finishes_the_sweep(url: str) -> None:
    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "loss", "goal": "minimize", "target": 1.5},
            "parameters": {"x": {"values": [3, 1, 0, 2]}},
        }
    )
    info = create(spec, url)
    summary = agent(info.id, url, objective=objective, handle_signals=False)
    assert [t.value for t in summary.trials] == [3.0, 1.0]
    assert "metric.target reached" in summary.reason
    assert sweep_status(info.id, url)["state"] == "finished"


def test_stop_means_no_new_trials(url: str) -> None:
    info = create(grid_spec(3), url)
    stop_sweep(info.id, url)
    summary = agent(info.id, url, objective=objective, handle_signals=False)
    assert summary.trials == [] and "stopped" in summary.reason


def test_status_json_has_the_leaderboard_and_best_overrides(url: str) -> None:
    spec = parse_spec(
        {
            "name": "demo",
            "method": "grid",
            "metric": {"name": "loss"},
            "parameters": {"x": {"values": [2, 1, 3]}, "model": {"value": "large"}},
        }
    )
    info = create(spec, url, overrides=("trainer.epochs=1",))
    agent(info.id, url, objective=objective, handle_signals=False)
    status = sweep_status(info.id, url)
    assert {"id", "method", "metric", "state", "planned", "trials", "best"} <= status.keys()
    assert status["metric"] == {"name": "loss", "goal": "minimize", "target": None}
    row = status["trials"][0]
    assert {"number", "state", "params", "value", "duration", "run_dir"} <= row.keys()
    assert status["best"]["params"] == {"model": "large", "x": 1}
    assert status["best"]["overrides"] == ["trainer.epochs=1", "model=large", "x=1"]
    assert status["best"]["command"] == "expctl run trainer.epochs=1 model=large x=1"
    listed = {
        r["id"]: r for r in [r.to_json() for r in sweeps_in_storage(url)]
    }  # a shared PostgreSQL holds other sweeps
    assert (listed[info.id]["complete"], listed[info.id]["best"]) == (3, 1.0)


def test_unknown_sweep_lists_known_ids(url: str) -> None:
    info = create(grid_spec(1), url)
    with pytest.raises(NotFoundError) as e:
        open_("nosuchid", url)
    assert info.id in (e.value.hint or "")


def test_failing_trials_trip_the_flapping_guard(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(grid_spec(10), url)

    def boom(ctx: TrialContext) -> float:
        raise ValueError("bad luck")

    with pytest.raises(RuntimeFailure, match="3 trials failed within 60 s"):
        agent(info.id, url, objective=boom, handle_signals=False)
    rows = sweep_status(info.id, url)["trials"]
    failed = [r for r in rows if r["state"] == "fail"]
    assert len(failed) == 3 and "ValueError: bad luck" in failed[0]["message"]
    # nothing claimed ahead with the last result is left RUNNING (Sweep.finish_then_claim)
    assert [r["state"] for r in rows].count("waiting") == 7


def test_a_metric_never_logged_fails_the_trial(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(grid_spec(1), url)
    summary = agent(info.id, url, handle_signals=False, objective=lambda ctx: {"other": 1.0})
    assert summary.trials[0].status == "failed"
    assert "metric 'loss' was never logged (logged: other)" in (summary.trials[0].message or "")


def test_sweeps_without_metric_complete_without_value(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(parse_spec({"method": "grid", "parameters": {"x": {"values": [1, 2]}}}), url)
    summary = agent(
        info.id, url, handle_signals=False, objective=lambda ctx: TrialOutcome("completed")
    )
    assert summary.count("complete") == 2
    status = sweep_status(info.id, url)
    assert [t["value"] for t in status["trials"]] == [None, None] and status["best"] is None


# -- hyperband -----------------------------------------------------------------------------------


def wandb_hyperband_stop_runs(
    histories: list[list[float]], running: list[int], bands: list[int], eta: float, strict: bool
) -> set[int]:
    """A transcription of wandb/sweeps ``hyperband_stop_runs`` (src/sweeps/hyperband_stopping.py
    at b1dfc5f, the rule since PR #99), for minimised metrics: which running runs it stops."""
    import numpy as np

    r = 1.0 / eta
    all_run_histories = [h for h in histories if len(h) > 0]
    thresholds = []
    for band in bands:
        band_values = [h[band - 1] for h in all_run_histories if len(h) >= band]
        if len(band_values) == 0:
            threshold = np.inf
        else:
            threshold = sorted(band_values)[int(r * len(band_values))]
        thresholds.append(threshold)
    stop = set()
    for i in running:
        history = histories[i]
        closest_band, closest_threshold = -1, 0.0
        for band, threshold in zip(bands, thresholds, strict=True):
            if band <= len(history):
                closest_band, closest_threshold = band, threshold
            else:
                break
        if closest_band != -1:
            condition_val = min(history)
            if strict is True:
                condition_val = history[closest_band - 1]
            if condition_val > closest_threshold:
                stop.add(i)
    return stop


@pytest.mark.parametrize("strict", [True, False])
def test_hyperband_stops_exactly_the_runs_wandb_stops_on_random_histories(strict: bool) -> None:
    import random

    rng = random.Random(99 + strict)
    for _ in range(2000):
        eta = rng.choice([2.0, 3.0, 4.0, 1.5])
        if rng.random() < 0.5:
            spec_bands = EarlyTerminate(min_iter=rng.randint(1, 3), eta=eta).bands()
        else:
            spec_bands = EarlyTerminate(
                max_iter=rng.randint(3, 30), s=rng.randint(1, 4), eta=eta
            ).bands()
        if not spec_bands:
            continue
        histories = [
            [round(rng.uniform(0, 10), 1) for _ in range(rng.randint(0, 12))]
            for _ in range(rng.randint(1, 9))
        ]
        running = [i for i in range(len(histories)) if rng.random() < 0.6]
        pruner = WandbHyperbandPruner(spec_bands, eta=eta, strict=strict)
        every = [h for h in histories if h]
        ours = {i for i in running if histories[i] and pruner.should_stop(histories[i], every)}
        theirs = wandb_hyperband_stop_runs(histories, running, spec_bands[:100], eta, strict)
        assert ours == theirs, (spec_bands, eta, histories, running)


def test_a_bad_run_is_stopped_once_it_has_logged_min_iter_values() -> None:
    """min_iter: 2, eta: 3 — W&B stops a bad run after its 2nd value (the old rule waited for
    a 3rd)."""
    bands = EarlyTerminate(min_iter=2, eta=3.0).bands()
    pruner = WandbHyperbandPruner(bands, eta=3.0, strict=True)
    good = [[1.0, 1.0, 1.0], [1.2, 1.1, 1.0]]
    bad = [5.0, 5.0]
    assert pruner.should_stop(bad, [*good, bad])


def test_strict_compares_the_band_value_not_the_best_so_far() -> None:
    histories = [[5.0, 9.0, 1.0], [5.0, 2.0, 2.0], [5.0, 3.0, 3.0]]
    me = [5.0, 9.0, 1.0]  # best so far is great, but the value at band 2 is the worst
    assert WandbHyperbandPruner([2], eta=3.0, strict=True).should_stop(me, histories)
    assert not WandbHyperbandPruner([2], eta=3.0, strict=False).should_stop(me, histories)


def test_hyperband_prunes_bad_trials_and_records_them(url: str) -> None:
    import test_sweep_support as support

    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "loss"},
            "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3},
            "parameters": {"x": {"values": [1, 9, 2, 8, 3, 7, 4, 6, 5]}},
        }
    )
    info = create(spec, url)
    summary = agent(info.id, url, objective=support.epochs, handle_signals=False)
    pruned = [t for t in summary.trials if t.status == "pruned"]
    complete = [t for t in summary.trials if t.status == "complete"]
    assert pruned and complete
    assert min(t.params["x"] for t in pruned) > 1 and 1 in [t.params["x"] for t in complete]
    status = sweep_status(info.id, url)
    rows = {r["params"]["x"]: r for r in status["trials"]}
    assert rows[9]["state"] == "pruned" and rows[9]["epochs"] < 9
    assert rows[1]["state"] == "complete" and rows[1]["epochs"] == 9


# -- bayes -------------------------------------------------------------------------------------------


def test_bayes_searches_every_distribution_family(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    spec = parse_spec(
        {
            "method": "bayes",
            "metric": {"name": "loss"},
            "run_cap": 8,
            "parameters": {
                "u": {"min": -1.0, "max": 1.0},
                "n": {"distribution": "normal"},
                "c": {"values": ["a", "b"]},
                "i": {"min": 1, "max": 4},
            },
        }
    )
    info = create(spec, url)

    def bowl(ctx: TrialContext) -> float:
        p = ctx.params
        return p["u"] ** 2 + p["n"] ** 2 + (p["c"] == "b") + p["i"]

    summary = agent(info.id, url, objective=bowl, handle_signals=False, seed=1)
    assert summary.count("complete") == 8
    study = open_(info.id, url).study
    # every complete trial carries all latent params: the model's search space stays intact
    assert all(set(t.params) == {"u", "n", "c", "i"} for t in study.get_trials())


def test_storage_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from expctl.errors import UsageError
    from expctl.sweeps.storage import DEFAULT_STORAGE, normalise_url, resolve_url

    assert resolve_url(None) == f"journal://{DEFAULT_STORAGE.resolve()}"
    monkeypatch.setenv("EXPCTL_STORAGE", "x.journal")
    assert resolve_url(None) == f"journal://{Path('x.journal').resolve()}"
    assert resolve_url("sqlite:///a.db") == f"sqlite:///{Path('a.db').resolve()}"
    assert normalise_url("postgresql://u:p@h/db") == "postgresql://u:p@h/db"
    with pytest.raises(UsageError, match="unsupported storage"):
        normalise_url("ftp://x")
    handle = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    assert handle.kind == "sqlite" and handle.lock_path == tmp_path / "x.db.lock"
    with handle.transition_lock():
        pass
    handle.close()


def test_storage_passwords_are_never_shown() -> None:
    from expctl.sweeps.storage import describe

    assert describe("postgresql://ann:s3cret@db:5432/x") == "postgresql://ann:***@db:5432/x"
    assert describe("postgresql://ann@db/x") == "postgresql://ann@db/x"
    assert describe("/nfs/sweeps.journal") == "/nfs/sweeps.journal"


def test_bayes_over_a_small_discrete_space_keeps_going(tmp_path: Path) -> None:
    """Repeating a finished point is allowed (a 2x2 space must): the sweep never ends itself."""
    url = str(tmp_path / "s.journal")
    spec = parse_spec(
        {
            "method": "bayes",
            "metric": {"name": "loss"},
            "parameters": {"opt": {"values": ["adam", "sgd"]}, "bs": {"values": [16, 32]}},
        }
    )
    info = create(spec, url)

    def loss(ctx: TrialContext) -> float:
        return (ctx.params["opt"] == "sgd") + ctx.params["bs"] / 32

    summary = agent(info.id, url, objective=loss, count=10, handle_signals=False, seed=0)
    assert summary.count("complete") == 10
    status = sweep_status(info.id, url)
    assert status["state"] == "running"
    points = {(t["params"]["opt"], t["params"]["bs"]) for t in status["trials"]}
    assert points == {("adam", 16), ("adam", 32), ("sgd", 16), ("sgd", 32)}


def test_a_command_without_program_runs_the_users_command_and_status_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W&B runs `command` even without `program`; the best command is the one the agent ran."""
    from expctl.sweeps.objectives import default_objective, program_objective

    url = str(tmp_path / "s.journal")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "loss"},
            "command": [
                "${env}",
                "python",
                "train.py",
                "--data=${envvar:DATA}",
                "${args_no_hyphens}",
            ],
            "parameters": {
                "lr": {"values": [0.2, 0.1]},
                "optimizer": {"parameters": {"momentum": {"values": [0.9]}}},
            },
        }
    )
    assert spec.runs_own_command and default_objective(spec) is program_objective
    info = create(spec, url)
    agent(info.id, url, objective=objective, handle_signals=False)
    best = sweep_status(info.id, url)["best"]
    assert best["params"] == {"lr": 0.1, "optimizer.momentum": 0.9}
    assert best["command"] == (
        "/usr/bin/env python train.py '--data=$DATA' lr=0.1 'optimizer={'\"'\"'momentum'\"'\"': 0.9}'"
    )
    assert not list(tmp_path.glob("**/config-best.json"))  # showing it wrote nothing
