"""Shared fixtures: every test runs in its own directory with W&B offline and nothing global."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory, W&B offline into it, and no EXPCTL_* leaking in."""
    for var in list(os.environ):
        if var.startswith(("EXPCTL_TEST_", "EXPCTL_REQUIRE_")):
            continue  # CI's test settings (e.g. the PostgreSQL server URL)
        if var.startswith(("EXPCTL_", "WANDB_")):
            monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("NO_COLOR", "1")
    # the runs index is a per-user cache (~/.cache/expctl): each test gets its own
    monkeypatch.setenv("EXPCTL_INDEX_DIR", str(tmp_path / "runs-index"))
    (tmp_path / "wandb").mkdir()
    yield work
    from expctl.secrets import forget_all

    forget_all()  # secret values remembered by one test must not scrub another's output
    # wandb keeps process-wide settings (its dir among them) once a run has been opened; tear
    # them down so the next test's runs land in its own WANDB_DIR whatever the test order.
    wandb = sys.modules.get("wandb")
    # (no teardown while trackers.warm_up's thread is still importing it: no run was opened)
    if getattr(wandb, "run", None) is None and hasattr(wandb, "teardown"):
        wandb.teardown()


@pytest.fixture
def project(isolated: Path) -> Path:
    """The example project's configs copied into the working directory as ./configs."""
    shutil.copytree(CONFIGS, isolated / "configs")
    return isolated


@pytest.fixture
def cli():
    """Invoke the Typer app in-process; returns a function(args) -> Result (stdout/stderr apart)."""
    from typer.testing import CliRunner

    from expctl.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, list(args), env=env)

    return invoke


@pytest.fixture
def expctl_exe() -> list[str]:
    """The installed console script (falls back to `python -m expctl`)."""
    exe = shutil.which("expctl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "expctl"]


def postgres_url_or_skip() -> str:
    """A PostgreSQL server URL (.ci/run starts one on loopback and sets it).

    Outside CI the tests that need it are skipped when no server is configured; CI sets
    EXPCTL_REQUIRE_POSTGRES=1 so a missing server fails instead of silently skipping.
    """
    url = os.environ.get("EXPCTL_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("EXPCTL_REQUIRE_POSTGRES"):
            pytest.fail("EXPCTL_REQUIRE_POSTGRES is set but EXPCTL_TEST_POSTGRES_URL is not")
        pytest.skip(
            "no PostgreSQL server: set EXPCTL_TEST_POSTGRES_URL (bash .ci/start-postgres DIR)"
        )
    return url


@pytest.fixture
def postgres_url() -> str:
    return postgres_url_or_skip()


# The storages the sweep engine's tests run on (PostgreSQL where CI gives a server): a test
# taking `url` runs once on each.
STORAGES = ["journal", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def storage_url(kind: str, tmp_path: Path) -> str:
    if kind == "journal":
        return str(tmp_path / "sweeps.journal")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    return postgres_url_or_skip()


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_url(request.param, tmp_path)
