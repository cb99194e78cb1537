"""The W&B server backend, tested at the wandb API boundary (no server is reachable here)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import wandb
import wandb.errors

from expctl.errors import RuntimeFailure, UsageError
from expctl.sweeps.wandb.cloud import create_cloud_sweep, parse_sweep_path, run_cloud_agent

SPEC = {
    "program": "examples/tutorial_sweep/train.py",
    "method": "random",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "parameters": {"lr": {"distribution": "log_uniform", "min": -9.21, "max": -4.61}},
}


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple, dict]]:
    """Replace wandb.sweep / wandb.agent / wandb.Api with recording fakes."""
    calls: list[tuple[str, tuple, dict]] = []

    def fake_sweep(*args, **kwargs):
        calls.append(("sweep", args, kwargs))
        print("Create sweep with ID: abc123")  # what the real one prints, on stdout
        return "abc123"

    def fake_agent(*args, **kwargs):
        calls.append(("agent", args, kwargs))

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "agent", fake_agent)
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(default_entity="me"))
    return calls


def test_create_calls_wandb_sweep_and_returns_the_full_path(online, recorded, capsys):
    path = create_cloud_sweep(SPEC, project="proj", entity="team")

    assert path == "team/proj/abc123"
    assert recorded == [("sweep", (), {"sweep": SPEC, "project": "proj", "entity": "team"})]
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays data: `SWEEP_ID=$(expctl sweep create ...)`
    assert "Create sweep with ID" in captured.err


def test_create_takes_project_and_entity_from_the_spec_then_the_environment(
    online, recorded, monkeypatch
):
    assert create_cloud_sweep({**SPEC, "project": "p1", "entity": "e1"}) == "e1/p1/abc123"
    monkeypatch.setenv("WANDB_PROJECT", "p2")
    assert create_cloud_sweep(SPEC) == "me/p2/abc123"  # entity: the logged-in default
    assert [c[2]["project"] for c in recorded] == ["p1", "p2"]
    assert [c[2]["entity"] for c in recorded] == ["e1", None]


def test_create_without_a_project_is_a_usage_error(online, recorded):
    with pytest.raises(UsageError, match="needs a project") as err:
        create_cloud_sweep(SPEC)
    assert "--project" in (err.value.hint or "")
    assert recorded == []


def test_offline_mode_is_refused_before_calling_wandb(recorded):
    # the test environment runs with WANDB_MODE=offline
    with pytest.raises(UsageError, match="WANDB_MODE=offline"):
        create_cloud_sweep(SPEC, project="proj")
    with pytest.raises(UsageError, match="WANDB_MODE=offline"):
        run_cloud_agent("team/proj/abc123")
    assert recorded == []


def test_agent_calls_wandb_agent_with_the_parsed_path(online, recorded):
    def trial() -> None:
        pass

    run_cloud_agent("team/proj/abc123", count=5, function=trial)
    run_cloud_agent("abc123")

    assert recorded == [
        (
            "agent",
            ("abc123",),
            {"function": trial, "entity": "team", "project": "proj", "count": 5},
        ),
        ("agent", ("abc123",), {"function": None, "entity": None, "project": None, "count": None}),
    ]


def test_sweep_paths():
    assert parse_sweep_path("team/proj/abc") == ("team", "proj", "abc")
    assert parse_sweep_path("proj/abc") == (None, "proj", "abc")
    assert parse_sweep_path("abc") == (None, None, "abc")
    for bad in ("a/b/c/d", "a//c", ""):
        with pytest.raises(UsageError, match="not a W&B sweep path"):
            parse_sweep_path(bad)


def test_wandb_errors_become_expctl_errors(online, monkeypatch):
    def unreachable(*args, **kwargs):
        raise wandb.errors.CommError("Could not connect to api.wandb.ai")

    def bad_spec(*args, **kwargs):
        raise wandb.errors.UsageError("Invalid sweep config")

    monkeypatch.setattr(wandb, "agent", unreachable)
    with pytest.raises(RuntimeFailure, match="Could not connect") as err:
        run_cloud_agent("team/proj/abc123")
    assert "wandb login" in (err.value.hint or "")

    monkeypatch.setattr(wandb, "sweep", bad_spec)
    with pytest.raises(UsageError, match="Invalid sweep config"):
        create_cloud_sweep(SPEC, project="proj", entity="team")
