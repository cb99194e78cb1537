"""W&B mode resolution, credentials detection, and the tracker wrapper (offline, real wandb)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from expctl.errors import ConfigError
from expctl.tracking import (
    NullTracker,
    artifact_name,
    has_credentials,
    resolve_mode,
    start_tracker,
    sync_command,
)


def test_wandb_mode_env_wins_over_config():
    assert resolve_mode("online", {"WANDB_MODE": "offline"}) == "offline"
    assert resolve_mode("offline", {"WANDB_MODE": "dryrun"}) == "offline"
    assert resolve_mode("offline", {"WANDB_MODE": "run"}) == "online"
    assert resolve_mode("online", {"WANDB_MODE": "disabled"}) == "disabled"
    assert resolve_mode("online", {"WANDB_DISABLED": "true"}) == "disabled"


def test_auto_is_online_only_with_credentials():
    assert resolve_mode("auto", {}, credentials=True) == "online"
    assert resolve_mode("auto", {}, credentials=False) == "offline"
    assert resolve_mode(None, {}, credentials=False) == "offline"
    assert resolve_mode("offline", {}, credentials=True) == "offline"
    assert resolve_mode("auto", {"WANDB_API_KEY": "x" * 40, "NETRC": "/nonexistent"}) == "online"


def test_bad_modes_are_usage_errors():
    with pytest.raises(ConfigError) as info:
        resolve_mode("sometimes", {})
    assert info.value.where == "wandb.mode"
    with pytest.raises(ConfigError):
        resolve_mode("auto", {"WANDB_MODE": "loud"})


def test_credentials_from_netrc_for_the_wandb_host_only(tmp_path: Path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret123\n")
    netrc.chmod(0o600)
    assert has_credentials({"NETRC": str(netrc)})
    assert not has_credentials({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.corp"})
    other = tmp_path / "other"
    other.write_text("machine github.com\n  login a\n  password b\n")
    other.chmod(0o600)
    assert not has_credentials({"NETRC": str(other)})
    assert not has_credentials({"NETRC": str(tmp_path / "missing")})
    assert has_credentials({"WANDB_API_KEY": "k", "NETRC": str(other)})


def test_disabled_tracking_never_imports_wandb():
    code = (
        "import sys\n"
        "from expctl.tracking import start_tracker\n"
        "t = start_tracker({'mode': 'disabled'}, run_name='x', config={})\n"
        "t.log({'a': 1.0}, step=1)\n"
        "assert t.finish(0) is None and t.path is None\n"
        "print('wandb' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"


def test_disabled_mode_gives_the_null_tracker(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert isinstance(start_tracker({"mode": "online"}, run_name="x", config={}), NullTracker)


def test_offline_tracker_logs_and_returns_the_sync_command(tmp_path: Path):
    tracker = start_tracker(
        {"mode": "offline", "project": "p", "tags": ["t1"], "group": "g"},
        run_name="demo",
        config={"optim": {"lr": 0.1}},
    )
    assert tracker.mode == "offline" and tracker.run_id
    assert tracker.path is not None and tracker.path.endswith(f"p/{tracker.run_id}")
    tracker.log({"val_loss": 0.5}, step=10)
    ckpt = tmp_path / "epoch=001-val_loss=0.5000.pt"
    ckpt.write_bytes(b"weights")
    tracker.log_checkpoints("demo model", [ckpt], ckpt, {"best": {"val_loss": 0.5}})
    command = tracker.finish(0)
    assert tracker.sync_dir is not None and tracker.sync_dir.is_dir()
    assert command == f"wandb sync {tracker.sync_dir}"
    assert list(tracker.sync_dir.glob("run-*.wandb"))
    assert tracker.finish(0) is None  # finishing twice is harmless


@pytest.mark.slow
def test_auto_mode_falls_back_to_offline_when_the_server_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # credentials, so auto means online ...
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # ... but nothing listens
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    tracker = start_tracker({"mode": "auto"}, run_name="x", config={})
    assert tracker.mode == "offline"
    assert "logging offline instead" in tracker.notes[0]
    assert tracker.finish(0).startswith("wandb sync ")


def test_sync_command_quotes_and_artifact_names_are_sanitised():
    assert sync_command(["/a b/run-1", "/c"]) == "wandb sync '/a b/run-1' /c"
    assert artifact_name("digits mlp/model:v1") == "digits-mlp-model-v1"
    assert artifact_name("///") == "model"


@pytest.mark.slow
def test_the_wandb_run_lives_inside_the_run_dir_unless_wandb_dir_is_set(
    project: Path, monkeypatch: pytest.MonkeyPatch
):
    from expctl.config import ConfigSource, compose_config
    from expctl.train import train

    monkeypatch.delenv("WANDB_DIR")
    cfg = compose_config(ConfigSource(project / "configs", "config", ("trainer.epochs=1",)))
    result = train(cfg, run_dir=project / "run")
    assert result.sync_command is not None
    (offline,) = (project / "run" / "wandb").glob("offline-run-*")
    assert str(offline) in result.sync_command
    assert not (project / "wandb").exists()  # nothing outside the run dir


def test_a_wandb_failure_mid_run_is_noted_once_and_never_raised():
    from expctl.tracking import WandbTracker

    class DeadService:  # what a killed wandb-core leaves: every call raises
        id, entity, project = "r1", "e", "p"

        class settings:
            sync_dir = None

        def log(self, *args, **kwargs):
            raise ConnectionResetError("Connection lost")

        finish = log

    tracker = WandbTracker(DeadService(), "offline", [])
    tracker.log({"loss": 1.0}, step=1)
    tracker.log({"loss": 0.5}, step=2)
    assert tracker.finish(143) is None
    assert len(tracker.notes) == 1 and "Connection lost" in tracker.notes[0]
