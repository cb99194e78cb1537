"""W&B mode resolution, credentials detection, and the tracker wrapper (offline, real wandb)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from expctl.errors import ConfigError
from expctl.trackers.wandb import (
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
        "from expctl.trackers.wandb import start_tracker\n"
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


def test_a_run_that_will_start_wandb_imports_it_early_and_only_then():
    """warm_up (called as train() starts, before the model is built) imports wandb on a helper
    thread when W&B will start, so a short run's end does not wait for that import; disabled
    W&B, another logger or a bad mode import nothing and raise nothing (start_trackers says)."""
    import os

    code = (
        "import sys, threading\n"
        "from expctl.trackers import warm_up\n"
        "warm_up({'wandb': {'mode': 'disabled'}}); warm_up({'csv': {}})\n"
        "warm_up({'wandb': {'mode': 'sometimes'}})\n"
        "before = 'wandb' in sys.modules\n"
        "warm_up({'wandb': {'mode': 'offline'}, 'csv': {}})\n"
        "[t.join() for t in threading.enumerate() if t.name == 'expctl-wandb-import']\n"
        "print(before, 'wandb' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["False", "True"]


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
    from expctl.trackers.wandb import WandbTracker

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


# -- W&B in the background (expctl.trackers.background) -------------------------------------


class Recorder:
    """A tracker that records what reached it."""

    mode, run_id, path, sync_dir = "offline", "r1", "p/r1", None

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.calls: list[tuple] = []

    def log(self, metrics, step):
        self.calls.append(("log", step, dict(metrics)))

    def log_checkpoints(self, name, files, best, metadata):
        self.calls.append(("log_checkpoints", name))

    def summarize(self, values):
        self.calls.append(("summarize", dict(values)))

    def finish(self, exit_code):
        self.calls.append(("finish", exit_code))
        return "wandb sync somewhere"


def test_rows_logged_before_wandb_is_up_reach_it_in_order_and_finish_waits_for_them():
    import threading
    import time

    from expctl.trackers.background import BackgroundTracker

    up = threading.Event()
    inner = Recorder()

    def start():
        assert up.wait(10)
        return inner

    tracker = BackgroundTracker(start, "offline")
    before = time.time()
    for step in range(1, 6):
        tracker.log({"loss": 1.0 / step}, step=step)  # none of this waits for W&B
    tracker.log_checkpoints("model", [], None, {})
    assert not tracker.ready and tracker.path is None and tracker.run_id is None
    assert tracker.mode == "offline" and tracker.notes == []
    up.set()
    assert tracker.finish(143) == "wandb sync somewhere"
    logged = [call for call in inner.calls if call[0] == "log"]
    assert [step for _, step, _ in logged] == [1, 2, 3, 4, 5]
    assert [row["loss"] for *_, row in logged] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    # each row keeps the time it was logged, not the time W&B got it
    assert all(before <= row["_timestamp"] < time.time() for *_, row in logged)
    assert inner.calls[-2:] == [("log_checkpoints", "model"), ("finish", 143)]
    assert tracker.ready and (tracker.path, tracker.run_id) == ("p/r1", "r1")
    assert tracker.finish(0) is None  # once


def test_a_failing_tracker_call_stops_logging_with_a_note_but_finish_still_happens():
    from expctl.trackers.background import BackgroundTracker

    inner = Recorder()

    def broken(metrics, step):
        raise ValueError("bad row")

    inner.log = broken  # type: ignore[method-assign]
    tracker = BackgroundTracker(lambda: inner, "offline")
    tracker.log({"loss": 1.0}, step=1)
    tracker.log({"loss": 0.5}, step=2)
    tracker.finish(0)
    assert inner.calls == [("finish", 0)]
    assert tracker.notes == ["W&B logging stopped (ValueError: bad row)"]


def test_a_background_start_that_raises_is_one_note_and_no_wandb():
    from expctl.trackers.background import BackgroundTracker

    def start():
        raise OSError("no space for wandb's files")

    tracker = BackgroundTracker(start, "offline")
    tracker.log({"loss": 1.0}, step=1)
    assert tracker.finish(1) is None
    assert tracker.mode == "disabled" and tracker.path is None
    assert len(tracker.notes) == 1 and "no space for wandb's files" in tracker.notes[0]


def test_background_start_checks_the_mode_at_once_and_disabled_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
):
    from expctl.trackers.background import start_in_background

    monkeypatch.setenv("WANDB_MODE", "loud")
    with pytest.raises(ConfigError):
        start_in_background({"mode": "offline"}, run_name="x", config={})
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(ConfigError):
        start_in_background({"mode": "sometimes"}, run_name="x", config={})
    code = (
        "import sys, threading\n"
        "from expctl.trackers.background import start_in_background\n"
        "t = start_in_background({'mode': 'disabled'}, run_name='x', config={})\n"
        "t.log({'a': 1.0}, step=1)\n"
        "assert t.finish(0) is None and t.path is None\n"
        "print(type(t).__name__, threading.active_count(), 'wandb' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["NullTracker", "1", "False"]


def test_when_wandb_cannot_start_the_run_completes_and_says_so_once(
    project: Path, monkeypatch: pytest.MonkeyPatch
):
    import json

    import expctl.trackers.wandb
    from expctl.config import ConfigSource, compose_config
    from expctl.train import train

    def no_service(*args, **kwargs):
        raise RuntimeError("wandb-core did not start")

    monkeypatch.setattr(expctl.trackers.wandb, "_init", no_service)
    overrides = ("trainer.epochs=2", "trainer.num_threads=1", "trainer.log_every_n_steps=10")
    cfg = compose_config(ConfigSource(project / "configs", "config", overrides))
    result = train(cfg, run_dir=project / "run")
    assert result.status == "completed" and result.wandb_path is None
    (note,) = [n for n in result.notes if "W&B" in n]
    assert "W&B init failed in offline mode (wandb-core did not start)" in note
    summary = json.loads((project / "run" / "summary.json").read_text())
    assert summary["notes"] == result.notes and summary["wandb"]["mode"] == "disabled"
    rows = (project / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 4 + 2  # every row is in the local record (steps 10..40, 2 epochs)
