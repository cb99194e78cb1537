"""``sweep create --backend wandb`` with the new keys: the file goes to W&B unchanged where the
installed wandb can drive it (wandb 0.31 has the sweep scheduler, ``wandb sweep-scheduler``), and
is refused in one line, before anything reaches W&B, where it cannot (an older wandb, made here by
hiding ``wandb.sdk.sweeps`` from the import system).

W&B's server boundary (``wandb.sweep``) is a recording fake, as in test_sweep_backend.py.
"""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wandb

MULTI = """\
program: mo.py
method: custom
scheduler: {engine: optuna}
metrics:
  - {name: val_loss, goal: minimize}
  - {name: latency_ms, goal: minimize}
parameters:
  lr: {min: 0.001, max: 0.1}
"""


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_sweep(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "abc123"

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(default_entity="me"))
    return calls


class _NoSweepScheduler(importlib.abc.MetaPathFinder):
    """An import system on which wandb has no ``sdk.sweeps`` (wandb before the scheduler)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "wandb.sdk.sweeps" or name.startswith("wandb.sdk.sweeps."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def test_a_custom_sweep_goes_to_wandb_unchanged_when_wandb_can_drive_it(
    cli, isolated: Path, created: list
) -> None:
    (isolated / "mo.py").write_text("")
    (isolated / "mo.yaml").write_text(MULTI)
    result = cli("sweep", "create", "mo.yaml", "--backend", "wandb", "--project", "p")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "me/p/abc123"
    (call,) = created
    assert call["sweep"]["scheduler"] == {"engine": "optuna"}
    assert [m["name"] for m in call["sweep"]["metrics"]] == ["val_loss", "latency_ms"]
    assert call["sweep"]["method"] == "custom"
    assert "wandb sweep-scheduler me/p/abc123" in result.stderr  # what drives it on W&B


def test_a_custom_sweep_is_refused_in_one_line_by_a_wandb_without_scheduler(
    cli, isolated: Path, created: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.startswith("wandb.sdk.sweeps")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoSweepScheduler(), *sys.meta_path])
    (isolated / "mo.py").write_text("")
    (isolated / "mo.yaml").write_text(MULTI)
    result = cli("sweep", "create", "mo.yaml", "--backend", "wandb", "--project", "p")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint:"), lines
    assert f"with the installed wandb {wandb.__version__}" in lines[0]
    assert "method: custom (engine optuna)" in lines[0] and "drop --backend wandb" in lines[1]
    assert created == [] and result.stdout == ""  # nothing reached W&B


def test_the_same_file_runs_on_expctls_engine(cli, isolated: Path) -> None:
    (isolated / "mo.py").write_text("")
    (isolated / "mo.yaml").write_text(MULTI)
    result = cli("sweep", "create", "mo.yaml")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.strip()) == 8  # a local sweep id
    assert "  metrics: val_loss (minimize)\n           latency_ms (minimize)\n" in result.stderr


def test_an_engine_wandb_file_goes_to_wandb_unchanged(cli, isolated: Path, created: list) -> None:
    text = (
        "program: mo.py\nmethod: bayes\nmetric: {name: val_loss}\n"
        "scheduler: {engine: wandb}\nparameters:\n  lr: {min: 0.001, max: 0.1}\n"
    )
    (isolated / "mo.py").write_text("")
    (isolated / "s.yaml").write_text(text)
    result = cli("sweep", "create", "s.yaml", "--backend", "wandb", "--project", "p")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "me/p/abc123"
    (call,) = created
    assert call["sweep"]["scheduler"] == {"engine": "wandb"}
    assert call["sweep"]["method"] == "bayes"
