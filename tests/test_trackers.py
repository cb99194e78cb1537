"""Trackers chosen by the ``logger`` config group (expctl.trackers): real runs, each backend read
back with its own library — TensorBoard's event reader, MLflow's client — and the CSV file
with the csv module. W&B's own behaviour is covered by test_train_tracking/test_run_cli."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

FAST = ("trainer.num_threads=1", "trainer.log_every_n_steps=10", "artifact.publish=false")
SECRET = "+extra.api_token=s3cr3t-value"


@pytest.fixture(autouse=True)
def no_mlflow_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def by_step(rows: list[dict], key: str) -> dict[int, float]:
    return {int(r["step"]): float(r[key]) for r in rows if key in r}


def run(cli, *args: str) -> Path:
    result = cli("run", *args, *FAST)
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip())


def test_tensorboard_scalars_by_step_and_hparams_read_back_with_tensorboard(project, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = run(cli, "logger=tensorboard", "trainer.epochs=2", SECRET)
    record = summary(run_dir)
    (entry,) = record["tracking"]
    assert entry["backend"] == "tensorboard" and entry["path"] == str(run_dir / "tensorboard")
    assert record["wandb"]["mode"] == "disabled"  # W&B is not one of this run's loggers
    assert not (run_dir / "wandb").exists()

    events = EventAccumulator(entry["path"], size_guidance={"scalars": 0})
    events.Reload()
    rows = metrics(run_dir)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch"):
        logged = {e.step: e.value for e in events.Scalars(key)}
        expected = by_step(rows, key)
        assert logged.keys() == expected.keys(), key
        assert all(math.isclose(logged[s], v, rel_tol=1e-6) for s, v in expected.items()), key
    best = record["best_metrics"]["val_loss"]
    assert math.isclose(events.Scalars("best/val_loss")[-1].value, best, rel_tol=1e-6)

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.001)
    assert start.hparams["trainer.epochs"].number_value == 2
    assert start.hparams["extra.api_token"].string_value == "********"  # redacted
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    assert "best/val_loss" in {m.name.tag for m in experiment.metric_infos}
    for event_file in (run_dir / "tensorboard").iterdir():
        assert b"s3cr3t" not in event_file.read_bytes()


def test_mlflow_params_metrics_tags_and_checkpoint_read_back_with_mlflow(project, cli):
    import mlflow
    from mlflow.tracking import MlflowClient

    run_dir = run(
        cli, "logger=mlflow", "trainer.epochs=2", SECRET, "--tag", "baseline", "--notes", "hi"
    )
    record = summary(run_dir)
    (entry,) = record["tracking"]
    assert entry["backend"] == "mlflow" and entry["path"].startswith("sqlite:///")
    assert str(run_dir / "mlruns" / "mlflow.db") in entry["path"]  # inside the run directory

    client = MlflowClient(tracking_uri=entry["path"])
    experiment = client.get_experiment_by_name("digits-mlp")  # logger.mlflow: ${name}
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_id == entry["run_id"] and found.info.status == "FINISHED"
    params = found.data.params
    assert params["optim.lr"] == "0.001" and params["trainer.epochs"] == "2"
    assert params["extra.api_token"] == "********"
    tags = found.data.tags
    assert tags["mlflow.runName"] == "digits-mlp" and tags["expctl.tag.baseline"] == "true"
    assert tags["mlflow.note.content"] == "hi" and tags["expctl.run_dir"] == str(run_dir)

    rows = metrics(run_dir)
    for key in ("train_loss", "val_loss", "val_acc"):
        history = {m.step: m.value for m in client.get_metric_history(entry["run_id"], key)}
        assert history == pytest.approx(by_step(rows, key)), key
    assert found.data.metrics["best/val_loss"] == pytest.approx(record["best_metrics"]["val_loss"])

    (artifact,) = client.list_artifacts(entry["run_id"], "checkpoints")
    assert artifact.path == record["best_checkpoint"]
    local = client.download_artifacts(entry["run_id"], artifact.path, str(project / "dl"))
    assert Path(local).read_bytes() == (run_dir / record["best_checkpoint"]).read_bytes()

    mlflow.set_tracking_uri(entry["path"])
    try:
        (listed,) = mlflow.search_runs(experiment_names=["digits-mlp"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert listed.info.run_id == entry["run_id"]


def test_a_resumed_run_continues_its_mlflow_run_and_its_tensorboard_dir(project, cli):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run(cli, "logger=[mlflow,tensorboard,csv]", "trainer.epochs=1")
    first = summary(run_dir)["tracking"][0]["run_id"]
    again = cli("run", "--resume", str(run_dir), "trainer.epochs=2", *FAST)
    assert again.exit_code == 0, again.stderr
    mlflow_entry, tensorboard_entry, _ = summary(run_dir)["tracking"]
    assert mlflow_entry["run_id"] == first
    client = MlflowClient(tracking_uri=mlflow_entry["path"])
    history = client.get_metric_history(first, "val_loss")
    assert sorted(m.step for m in history) == [23, 46]
    assert client.get_run(first).info.status == "FINISHED"
    events = EventAccumulator(tensorboard_entry["path"], size_guidance={"scalars": 0})
    events.Reload()
    rows = metrics(run_dir)
    assert [e.step for e in events.Scalars("train_loss")] == sorted(by_step(rows, "train_loss"))
    assert [e.step for e in events.Scalars("val_loss")] == [23, 46]
    with (run_dir / "metrics.csv").open(newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [int(r["step"]) for r in rows]


def test_csv_holds_the_rows_of_metrics_jsonl(project, cli):
    run_dir = run(cli, "logger=csv", "trainer.epochs=2")
    (entry,) = summary(run_dir)["tracking"]
    assert entry == {
        "backend": "csv",
        "mode": "local",
        "path": str(run_dir / "metrics.csv"),
        "run_id": None,
        "sync_command": None,
    }
    with (run_dir / "metrics.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    rows = metrics(run_dir)
    assert len(table) == len(rows)
    for line, row in zip(table, rows, strict=True):
        assert {k: float(v) for k, v in line.items() if v} == pytest.approx(row)


def test_two_loggers_at_once_wandb_offline_beside_csv(project, cli):
    result = cli("run", "logger=[wandb,csv]", "trainer.epochs=1", *FAST)
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    record = summary(run_dir)
    wandb, table = record["tracking"]
    assert (wandb["backend"], table["backend"]) == ("wandb", "csv")
    assert wandb["mode"] == "offline" and wandb["sync_command"].startswith("wandb sync ")
    assert wandb["sync_command"] == record["wandb"]["sync_command"]  # the old block, still
    assert wandb["run_id"] == record["wandb"]["run_id"] is not None
    assert (run_dir / "metrics.csv").is_file()
    assert "wandb sync" in result.stderr and "csv: " in result.stderr


def test_every_logger_at_once(project, cli):
    run_dir = run(cli, "logger=many", "trainer.epochs=1")
    record = summary(run_dir)
    assert [e["backend"] for e in record["tracking"]] == ["wandb", "tensorboard", "mlflow", "csv"]
    assert all(e["mode"] in ("offline", "local") for e in record["tracking"])
    assert record["notes"] == []


def test_the_default_is_wandb_alone(project, cli):
    run_dir = run(cli, "trainer.epochs=1")
    (entry,) = summary(run_dir)["tracking"]
    assert entry["backend"] == "wandb" and entry["mode"] == "offline"
    assert not (run_dir / "tensorboard").exists() and not (run_dir / "mlruns").exists()


def test_an_unknown_logger_is_exit_2_listing_the_options(project, cli):
    result = cli("run", "logger=tensorbord")
    assert result.exit_code == 2
    assert "logger=tensorboard" in result.stderr  # did you mean
    for option in ("csv", "many", "mlflow", "tensorboard", "wandb"):
        assert option in result.stderr
    assert not (project / "runs").exists()
    bad = cli("run", "+logger.neptune={}")
    assert bad.exit_code == 2 and "logger.neptune" in bad.stderr


def test_a_config_without_the_logger_group_means_wandb_with_its_wandb_node():
    from omegaconf import OmegaConf

    from expctl.train.settings import TrainSettings

    old = OmegaConf.create({"trainer": {"epochs": 1}, "wandb": {"mode": "offline", "project": "p"}})
    assert TrainSettings.from_config(old).loggers == {"wandb": {"mode": "offline", "project": "p"}}
    new = OmegaConf.create(
        {"trainer": {"epochs": 1}, "wandb": {"project": "p"}, "logger": {"wandb": {}, "csv": None}}
    )
    assert TrainSettings.from_config(new).loggers == {"wandb": {"project": "p"}, "csv": {}}


def test_summaries_from_before_the_tracking_list_still_read():
    from expctl.trackers.base import tracking_entries

    old = {"wandb": {"mode": "offline", "run_id": "abc", "sync_command": "wandb sync d"}}
    assert tracking_entries(old) == [
        {"backend": "wandb", "mode": "offline", "run_id": "abc", "sync_command": "wandb sync d"}
    ]
    assert tracking_entries({}) == []
    new = {"tracking": [{"backend": "csv", "path": "m.csv"}], "wandb": {"mode": "disabled"}}
    assert tracking_entries(new) == [{"backend": "csv", "path": "m.csv"}]


def test_a_missing_backend_package_is_bad_input_naming_the_extra(monkeypatch):
    import expctl.trackers as trackers
    from expctl.errors import ConfigError

    monkeypatch.setitem(trackers._PACKAGES, "tensorboard", ("no_such_package_xyz", "tensorboard"))
    with pytest.raises(ConfigError) as info:
        trackers.start_trackers({"tensorboard": {}}, run_name="x", config={})
    assert "expctl[tensorboard]" in (info.value.hint or "")


def test_a_backend_that_fails_to_start_is_one_note_and_the_others_go_on(tmp_path, monkeypatch):
    import expctl.trackers.tensorboard as tb
    from expctl.trackers import start_trackers

    def broken(*args, **kwargs):
        raise OSError("no space for event files")

    monkeypatch.setattr(tb, "start_tensorboard", broken)
    tracker = start_trackers(
        {"tensorboard": {}, "csv": {}}, run_name="x", config={}, directory=tmp_path
    )
    tracker.log({"loss": 1.0}, step=1)
    assert tracker.finish(0) is None
    (note,) = tracker.notes
    assert "TensorBoard could not start (no space for event files)" in note
    assert [e["mode"] for e in tracker.describe()] == ["failed", "local"]  # type: ignore[attr-defined]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,loss", "1,1.0"]


def test_the_end_of_a_run_publishes_while_the_trackers_finish_on_their_thread(tmp_path):
    """RunTrackers.finish runs ``meanwhile`` (the trainer's publishing) after the finish is
    queued, so the end of a run waits for the longer of the two, not for their sum; every row
    is in the tracker's files when finish returns."""
    from expctl.trackers.session import RunTrackers

    trackers = RunTrackers({"csv": {}})
    tracker = trackers.start(
        is_main=True, run_name="x", config={}, group=None, directory=tmp_path, git=None
    )
    tracker.log({"loss": 1.0}, step=1)
    seen: list[bool] = []

    def publish() -> None:
        thread = tracker._thread  # type: ignore[attr-defined]
        thread.join(timeout=60)  # (a guard against a hang, not a timing)
        seen.append(thread.is_alive())

    trackers.finish(0, {"val_loss": 0.5}, meanwhile=publish)
    assert seen == [False]  # the tracker had finished while "publishing" waited for it
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,loss", "1,1.0"]
    assert [e["backend"] for e in trackers.entries()] == ["csv"]
