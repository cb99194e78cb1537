"""``scheduler.source`` with ``optimizer`` / ``search_space`` (W&B's contract, as in the SDK's
sweep scheduler): the user's file is code, loaded by every agent like ``program:``. ``optimizer``
builds the Optuna study whose sampler expctl uses; ``search_space`` is a define-by-run trial
constructor that returns the trial's values (``parameters:`` may then be omitted)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sweep_helpers import agent, create, open_
from test_sweep_multiobjective_engine import dtlz2

from expctl.errors import UsageError
from expctl.sweeps.spec import parse_spec

SOURCE = """
import optuna

def build(sweep):
    assert sweep.config["method"] == "custom"  # W&B hands the sweep's config over
    sampler = optuna.samplers.NSGAIISampler(seed=1, population_size=4)
    return optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)

def wrong(sweep):
    return optuna.create_study(directions=["maximize", "minimize"])

def space(trial):
    kind = trial.suggest_categorical("kind", ["edge", "free"])
    x0 = 0.0 if kind == "edge" else trial.suggest_float("x0", 0.0, 1.0)
    return {"x0": x0, "x1": trial.suggest_float("x1", 0.0, 1.0), "x2": 0.5, "kind": kind}

def not_a_dict(trial):
    return [1, 2]
"""


def spec(**scheduler: str) -> dict:
    return {
        "method": "custom",
        "scheduler": {"engine": "optuna", "source": "sched.py", **scheduler},
        "metrics": [{"name": "f1"}, {"name": "f2"}],
        "run_cap": 6,
    }


@pytest.fixture
def source(isolated: Path) -> Path:
    path = isolated / "sched.py"
    path.write_text(SOURCE)
    return path


def test_search_space_defines_each_trials_values(source: Path, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    info = create(parse_spec(spec(search_space="space")), url)
    summary = agent(info.id, url, objective=lambda ctx: dtlz2(ctx.params), seed=2)
    assert summary.count("complete") == 6
    for t in summary.trials:
        assert set(t.params) == {"x0", "x1", "x2", "kind"} and t.params["x2"] == 0.5
        assert (t.params["x0"] == 0.0) == (t.params["kind"] == "edge")
    trials = open_(info.id, url).study.trials
    pairs = zip(trials, summary.trials, strict=True)
    assert all(t.user_attrs["expctl:params"] == s.params for t, s in pairs)


def test_a_dead_agents_define_by_run_trial_is_rerun_with_its_values(
    source: Path, isolated: Path
) -> None:
    url = f"sqlite:///{isolated / 's.db'}"
    info = create(parse_spec({**spec(search_space="space"), "run_cap": 2}), url)
    dead = open_(info.id, url).claim("deadhost:1")
    assert not isinstance(dead, str)
    time.sleep(1.2)
    summary = agent(
        info.id,
        url,
        objective=lambda ctx: dtlz2(ctx.params),
        stale_after=1.0,
        handle_signals=False,
    )
    assert summary.recovered == [(0, 1)]
    assert next(t for t in summary.trials if t.number == 1).params == dead.params


def test_optimizer_builds_the_study_whose_sampler_runs_the_sweep(
    source: Path, isolated: Path
) -> None:
    url = str(isolated / "s.journal")
    info = create(
        parse_spec(
            {
                **spec(optimizer="build"),
                "parameters": {
                    "x0": {"min": 0.0, "max": 1.0},
                    "x1": {"min": 0.0, "max": 1.0},
                    "x2": {"min": 0.0, "max": 1.0},
                },
            }
        ),
        url,
    )
    sweep = open_(info.id, url)
    assert type(sweep.study.sampler).__name__ == "NSGAIISampler"
    summary = agent(info.id, url, objective=lambda ctx: dtlz2(ctx.params))
    assert summary.count("complete") == 6


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ({"optimizer": "wrong"}, "directions ['maximize', 'minimize']; the sweep file's metrics"),
        ({"optimizer": "nope"}, "has no function 'nope'"),
        ({"search_space": "not_a_dict"}, "returned list, not a dict"),
    ],
)
def test_the_users_code_failing_its_contract_is_a_clear_error(
    scheduler: dict, message: str, source: Path, isolated: Path
) -> None:
    url = str(isolated / "s.journal")
    raw = {**spec(**scheduler), "parameters": {"x0": {"min": 0.0, "max": 1.0}}}
    info = create(parse_spec(raw), url)
    with pytest.raises(UsageError, match=re.escape(message)):
        if "search_space" in scheduler:
            open_(info.id, url).claim("me:1")
        else:
            open_(info.id, url)


def test_a_missing_source_file_is_named(isolated: Path) -> None:
    url = str(isolated / "s.journal")
    info = create(parse_spec({**spec(search_space="space")}), url)
    with pytest.raises(UsageError, match=re.escape("scheduler.source 'sched.py' does not exist")):
        open_(info.id, url).claim("me:1")
