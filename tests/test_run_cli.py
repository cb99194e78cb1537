"""`expctl run` end to end: real training on CPU, real offline W&B runs, real signals."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FAST = ("trainer.num_threads=1", "trainer.log_every_n_steps=10")


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def wandb_records(run_dir: Path) -> Iterator[object]:
    """Decode an offline run's ``run-*.wandb`` file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind in (1, 4):  # full record, or last chunk of one
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:  # first/middle chunks
            pending += chunk


def offline_run(sync_command: str) -> Path:
    path = Path(sync_command.removeprefix("wandb sync ").split()[-1])
    assert path.is_dir() and path.name.startswith("offline-run-")
    return path


def test_run_leaves_a_complete_record_and_an_offline_wandb_run(project: Path, cli):
    result = cli("run", "trainer.epochs=4", *FAST)
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    assert result.stdout == f"{run_dir}\n"  # stdout is data: the run directory alone
    assert run_dir.parent == (project / "runs" / "digits-mlp").resolve()

    for name in ("config.yaml", "overrides.yaml", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert "epochs: 4" in (run_dir / "config.yaml").read_text()
    assert "trainer.epochs=4" in (run_dir / "overrides.yaml").read_text()

    rows = metrics(run_dir)
    epoch_rows = [r for r in rows if "val_loss" in r]
    assert [r["epoch"] for r in epoch_rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_acc", "lr", "samples_per_s"} <= set(epoch_rows[-1])
    assert [r["step"] for r in rows if "val_loss" not in r] == list(range(10, 92 + 1, 10))

    record = summary(run_dir)
    assert record["status"] == "completed" and record["device"] == "cpu"
    assert record["final_metrics"] == epoch_rows[-1]
    assert record["best_metrics"]["val_loss"] == min(r["val_loss"] for r in epoch_rows)
    assert record["timings"]["train_call_to_first_step_s"] > 0
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("epoch=*.pt"))
    assert len(kept) == 3 and (run_dir / "checkpoints" / "last.pt").is_file()
    assert record["best_checkpoint"] == f"checkpoints/{kept[-1]}"  # val_loss falls every epoch

    assert "wandb sync" in result.stderr and "val_acc" in result.stderr
    wandb_dir = offline_run(record["wandb"]["sync_command"])
    assert record["wandb"]["run_id"] in wandb_dir.name
    records = list(wandb_records(wandb_dir))
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert len(artifacts) == 1
    assert (artifacts[0].name, artifacts[0].type) == ("digits-mlp-model", "model")
    assert set(artifacts[0].aliases) == {"latest", "best"}
    assert sorted(e.path for e in artifacts[0].manifest.contents) == kept
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert {"optim", "model", "trainer"} <= {item.key for item in run_record.config.update}


def test_run_says_which_aliases_its_published_version_got(project: Path, cli):
    first = cli("run", "trainer.epochs=2", *FAST)
    assert first.exit_code == 0, first.stderr
    assert "published: digits-mlp-model:v0 (latest, best)" in first.stderr
    worse = cli("run", "trainer.epochs=1", "optim.lr=0.0", *FAST)  # cannot beat v0
    assert "published: digits-mlp-model:v1 (latest)\n" in worse.stderr
    assert worse.stderr.count("best stays on digits-mlp-model:v0") == 1  # said once, live


def test_a_store_that_cannot_be_written_is_a_note_and_the_run_still_succeeds(project: Path, cli):
    (project / "not-a-dir").write_text("")
    result = cli("run", "trainer.epochs=1", *FAST, env={"EXPCTL_ARTIFACTS": "not-a-dir/store"})
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("publishing checkpoints failed") == 1  # said once
    assert "published:" not in result.stderr
    run_dir = Path(result.stdout.strip())
    assert summary(run_dir)["artifact"] is None
    assert list((run_dir / "checkpoints").glob("epoch=*.pt"))  # kept where they were written


def test_secrets_are_redacted_in_the_record_and_in_wandb(project: Path, cli):
    result = cli("run", "trainer.epochs=1", "+extra.api_token=s3cr3t-value", "-q", *FAST)
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    saved = (run_dir / "config.yaml").read_text()
    assert "api_token: '********'" in saved and "s3cr3t" not in saved
    wandb_dir = offline_run(summary(run_dir)["wandb"]["sync_command"])
    assert b"s3cr3t" not in next(wandb_dir.glob("run-*.wandb")).read_bytes()


def test_nan_loss_exits_1_marks_the_run_failed_and_finishes_wandb_with_1(project: Path, cli):
    result = cli("run", "optim.lr=1e30", "trainer.epochs=3", *FAST)
    assert result.exit_code == 1
    assert "nan" in result.stderr and "hint:" in result.stderr
    (run_dir,) = (project / "runs" / "digits-mlp").iterdir()
    record = summary(run_dir)
    assert record["status"] == "failed"
    records = wandb_records(offline_run(record["wandb"]["sync_command"]))
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 1


def test_absent_device_is_exit_2_naming_what_is_available(project: Path, cli):
    result = cli("run", "trainer.device=cuda:3")
    assert result.exit_code == 2
    assert "trainer.device" in result.stderr and "cpu" in result.stderr
    assert result.stdout == ""
    assert not any((project / "runs").glob("*/*")), "no run directory for a bad config"


def test_bad_target_is_exit_2_naming_the_config_path(project: Path, cli):
    result = cli("run", "model._args_.2._target_=torch.nn.Linearr")
    assert result.exit_code == 2
    assert "model._args_.2" in result.stderr
    assert "did you mean torch.nn.Linear" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_value_is_exit_2_before_any_run_directory(project: Path, cli):
    result = cli("run", "--config-name", "tutorial")
    assert result.exit_code == 2
    assert "name" in result.stderr and "--set name=" in result.stderr
    assert not (project / "runs").exists()


def test_user_model_module_in_the_project_directory(project: Path, cli):
    (project / "cli_models.py").write_text(
        "import torch\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, num_features: int, num_classes: int, hidden: int = 32):\n"
        "        super().__init__()\n"
        "        self.layers = torch.nn.Sequential(torch.nn.Linear(num_features, hidden),\n"
        "            torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))\n\n"
        "    def forward(self, x):\n"
        "        return self.layers(x)\n"
    )
    (project / "configs" / "model" / "mine.yaml").write_text(
        "_target_: cli_models.Net\n"
        "num_features: ${data.num_features}\n"
        "num_classes: ${data.num_classes}\n"
    )
    result = cli("run", "model=mine", "trainer.epochs=2", "--quiet", *FAST)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # --quiet: nothing but errors
    assert summary(Path(result.stdout.strip()))["status"] == "completed"


def test_resume_latest_continues_in_the_same_directory(project: Path, cli):
    first = cli("run", "trainer.epochs=1", "-q", *FAST)
    run_dir = Path(first.stdout.strip())
    again = cli("run", "--resume", "latest", "trainer.epochs=2", *FAST)
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()) == run_dir
    record = summary(run_dir)
    assert record["resumed_from_step"] == 23 and record["final_metrics"]["epoch"] == 2
    assert "trainer.epochs=2" in (run_dir / "overrides.yaml").read_text()
    # one offline W&B directory per attempt, both named in the sync command
    assert len(record["wandb"]["sync_dirs"]) == 2
    refused = cli("run", "--resume", "latest", "model=large")
    assert refused.exit_code == 2 and "config group" in refused.stderr
    nothing = cli("run", "--resume", str(project / "configs"))
    assert nothing.exit_code == 2 and "last.pt" in nothing.stderr


def test_init_from_a_checkpoint_path(project: Path, cli):
    first = cli("run", "trainer.epochs=1", "artifact.publish=false", "-q", *FAST)
    best = summary(Path(first.stdout.strip()))["best_checkpoint"]
    path = Path(first.stdout.strip()) / best
    ok = cli("run", "trainer.epochs=1", "--init-from", str(path), "-q", *FAST)
    assert ok.exit_code == 0, ok.stderr
    missing = cli("run", "trainer.epochs=1", "--init-from", "nowhere.pt", "-q")
    assert missing.exit_code == 2 and "nowhere.pt" in missing.stderr


def test_multirun_cannot_resume(project: Path, cli):
    result = cli("run", "-m", "optim.lr=0.1,0.01", "--resume", "latest")
    assert result.exit_code == 2 and "--multirun" in result.stderr


@pytest.mark.slow
def test_multirun_lists_every_run_and_exits_1_when_one_fails(project: Path, cli):
    result = cli("run", "-m", "optim.lr=0.05,1e30", "trainer.epochs=1", *FAST)
    assert result.exit_code == 1, result.stderr
    run_dirs = [Path(line) for line in result.stdout.splitlines()]  # stdout: the run dirs alone
    assert len(run_dirs) == 2 and all(d.is_dir() for d in run_dirs)
    by_status = {summary(d)["status"]: d for d in run_dirs}
    assert set(by_status) == {"completed", "failed"}

    # stderr: progress lines, then a table: number, status, val_loss, overrides, run dir
    assert "multirun: 2 runs as grid sweep" in result.stderr
    assert "trial 1: failed" in result.stderr
    rows = {
        cells[1]: cells[2:]
        for cells in (line.split() for line in result.stderr.splitlines())
        if cells and cells[0] in ("0", "1")
    }
    completed, failed = by_status["completed"], by_status["failed"]
    value, overrides, run_dir = rows["complete"]
    assert (overrides, run_dir) == ("optim.lr=0.05", str(completed))
    assert float(value) == pytest.approx(summary(completed)["final_metrics"]["val_loss"], rel=1e-5)
    overrides, run_dir = rows["failed"]  # no value
    assert overrides.startswith("optim.lr=1e") and run_dir == str(failed)

    assert "error: 1 of 2 runs failed" in result.stderr and "hint:" in result.stderr
    assert f"{overrides}: training loss became nan" in result.stderr


@pytest.mark.slow
def test_quiet_multirun_prints_the_run_dirs_and_the_error_only(project: Path, cli):
    result = cli("run", "-m", "-q", "optim.lr=1e30,1e31", "trainer.epochs=1", *FAST)
    assert result.exit_code == 1
    run_dirs = [Path(line) for line in result.stdout.splitlines()]
    assert [summary(d)["status"] for d in run_dirs] == ["failed", "failed"]
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: 2 of 2 runs failed")
    assert len(rest) == 3 and rest[-1].startswith("hint:")
    assert all(line.endswith("training loss became nan at step 10 (epoch 1)") for line in rest[:2])


def test_multirun_with_a_bad_value_is_exit_2_before_any_run(project: Path, cli):
    result = cli("run", "-m", "model=small,larg", "trainer.epochs=1")
    assert result.exit_code == 2
    assert "model=larg" in result.stderr and result.stdout == ""
    assert not (project / "runs").exists()


def test_help_ends_with_examples(cli):
    result = cli("run", "--help")
    assert result.exit_code == 0
    assert "expctl run --resume latest" in result.stdout


@pytest.mark.slow
def test_sigterm_mid_run_saves_last_and_resume_completes(project: Path, expctl_exe):
    runs = project / "runs"
    process = subprocess.Popen(
        [
            *expctl_exe,
            "run",
            "trainer.epochs=100000",
            "trainer.log_every_n_steps=5",
            "-q",
            "trainer.num_threads=1",
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    rows: list[dict] = []
    while time.monotonic() < deadline and len([r for r in rows if "val_loss" in r]) < 2:
        time.sleep(0.2)
        found = list(runs.glob("digits-mlp/*/metrics.jsonl"))
        rows = metrics(found[0].parent) if found and found[0].stat().st_size else []
    assert rows, "training never started"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "--resume" in stderr
    (run_dir,) = runs.glob("digits-mlp/*")
    assert stdout.strip() == str(run_dir.resolve())  # still printed: scripts resume with it
    record = summary(run_dir)
    assert record["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    records = wandb_records(offline_run(record["wandb"]["sync_command"]))
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 143

    stopped_at = record["step"]
    target = record["epochs_completed"] + 2
    resumed = subprocess.run(
        [*expctl_exe, "run", "--resume", str(run_dir), f"trainer.epochs={target}", "-q"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(run_dir.resolve())
    record = summary(run_dir)
    assert record["status"] == "completed" and record["resumed_from_step"] == stopped_at
    assert record["final_metrics"]["epoch"] == target
    keys = [(r["step"], "val_loss" in r) for r in metrics(run_dir)]
    assert keys == sorted(set(keys))


@pytest.mark.slow
def test_default_example_reaches_95_percent_validation_accuracy(project: Path, cli):
    result = cli("run", "trainer.num_threads=1", "-q")
    assert result.exit_code == 0, result.stderr
    record = summary(Path(result.stdout.strip()))
    assert record["final_metrics"]["epoch"] == 20
    assert record["final_metrics"]["val_acc"] >= 0.95


def test_multirun_without_a_comma_is_one_run_and_without_overrides_is_bad_input(cli, project):
    one = cli("run", "-m", "-q", "trainer.epochs=1", "data=synthetic", "data.num_samples=256")
    assert one.exit_code == 0, one.stderr
    assert len(one.stdout.strip().splitlines()) == 1
    assert Path(one.stdout.strip()).is_dir()
    none = cli("run", "-m", "-q")
    assert none.exit_code == 2 and "nothing to sweep" in none.stderr


def test_a_bad_value_caught_by_our_own_target_is_reported_once(cli, project):
    result = cli("run", "-q", "data.batch_size=0")
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first == "error: data.batch_size: batch_size must be a positive integer, got 0"


def test_secrets_given_as_overrides_never_reach_the_record(cli, project):
    result = cli(
        "run",
        "-q",
        "data=synthetic",
        "data.num_samples=256",
        "trainer.epochs=1",
        "+db.password=hunter2",
        "+secrets={hf: s3cr3t-hf-value}",
    )
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    for name in ("overrides.yaml", "config.yaml", "summary.json"):
        text = (run_dir / name).read_text()
        assert "hunter2" not in text and "s3cr3t-hf-value" not in text, name
    assert "+db.password=********" in (run_dir / "overrides.yaml").read_text()


def test_a_bad_interpolation_given_on_resume_is_bad_input(cli, project):
    first = cli("run", "-q", "data=synthetic", "data.num_samples=256", "trainer.epochs=1")
    assert first.exit_code == 0, first.stderr
    run_dir = first.stdout.strip()
    again = cli("run", "-q", "--resume", run_dir, "optim.lr=${oc.env:EXPCTL_TEST_UNSET_VAR}")
    assert again.exit_code == 2, again.stderr
    assert "EXPCTL_TEST_UNSET_VAR is not set" in again.stderr


def test_init_from_a_run_directory_or_a_pulled_artifact_directory(cli, project):
    first = cli("run", "-q", *FAST, "trainer.epochs=3")
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    from_run = cli("run", "-q", *FAST, "trainer.epochs=1", "--init-from", str(run_dir))
    assert from_run.exit_code == 0, from_run.stderr
    pulled = cli("artifacts", "pull", "digits-mlp-model:v0", "--root", "pulled")  # the 1st run
    assert pulled.exit_code == 0, pulled.stderr
    several = cli("run", "-q", *FAST, "trainer.epochs=1", "--init-from", "pulled")
    assert len(list(Path("pulled").glob("*.pt"))) == 3  # the top-3 of a 3-epoch run
    assert several.exit_code == 2 and "3 checkpoints there" in several.stderr
    assert "NAME:best" in several.stderr
    one = sorted(Path("pulled").glob("*.pt"))[0]
    from_file = cli("run", "-q", *FAST, "trainer.epochs=1", "--init-from", str(one))
    assert from_file.exit_code == 0, from_file.stderr


def test_init_from_says_what_it_loaded_and_records_it(cli, project):
    import hashlib

    first = cli("run", "-q", *FAST, "trainer.epochs=2")
    assert first.exit_code == 0, first.stderr
    second = cli("run", *FAST, "trainer.epochs=1", "--init-from", "digits-mlp-model:best")
    assert second.exit_code == 0, second.stderr
    summary = json.loads((Path(second.stdout.strip()) / "summary.json").read_text())
    record = summary["init_from"]
    assert record["ref"] == "digits-mlp-model:best" and record["version"] == "digits-mlp-model:v0"
    best = (
        Path(first.stdout.strip())
        / json.loads((Path(first.stdout.strip()) / "summary.json").read_text())["best_checkpoint"]
    )
    assert record["file"] == best.name
    assert record["sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    said = [line for line in second.stderr.splitlines() if "initialised the model from" in line]
    assert said == [
        f"initialised the model from digits-mlp-model:v0 (file {best.name}), "
        f"sha256 {record['sha256'][:12]}"
    ]
    # a pulled artifact directory is traced back to its version too
    assert cli("artifacts", "pull", "digits-mlp-model:v0", "--root", "pulled").exit_code == 0
    from_pulled = cli("run", "-q", *FAST, "trainer.epochs=1", "--init-from", f"pulled/{best.name}")
    assert from_pulled.exit_code == 0, from_pulled.stderr
    pulled_summary = json.loads((Path(from_pulled.stdout.strip()) / "summary.json").read_text())
    assert pulled_summary["init_from"]["version"] == "digits-mlp-model:v0"


def test_resume_latest_never_silently_resumes_another_run(cli, project):
    """`latest` is the run `runs show latest` shows; when that one cannot be resumed the
    refusal names the newest one that can (latest~N), rather than training an older run."""
    first = cli("run", "-q", *FAST, "trainer.epochs=1")
    assert first.exit_code == 0, first.stderr
    stray = Path("runs") / "zz-newer" / "29991231-000000-ffffff"
    stray.mkdir(parents=True)  # newer, but nothing to resume in it
    refused = cli("run", "-q", "--resume", "latest", "trainer.epochs=2")
    assert refused.exit_code == 2 and "29991231-000000-ffffff" in refused.stderr
    assert "--resume latest~1" in refused.stderr
    again = cli("run", "-q", "--resume", "latest~1", "trainer.epochs=2")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == first.stdout.strip()


def test_sweep_trials_publish_with_latest_only_so_best_keeps_its_meaning(cli, project):
    single = cli("run", "-q", *FAST, "trainer.epochs=1")
    assert single.exit_code == 0, single.stderr
    multi = cli("run", "-m", "-q", *FAST, "trainer.epochs=1", "optim.lr=0.1,0.01")
    assert multi.exit_code == 0, multi.stderr
    listed = cli("artifacts", "list", "--format", "json")
    versions = {v["ref"]: v for v in json.loads(listed.stdout)}
    assert set(versions) == {"digits-mlp-model:v0", "digits-mlp-model:v1", "digits-mlp-model:v2"}
    assert "best" in versions["digits-mlp-model:v0"]["aliases"]  # the standalone run's
    assert "best" not in versions["digits-mlp-model:v2"]["aliases"]
    assert "latest" in versions["digits-mlp-model:v2"]["aliases"]


def wandb_history(wandb_dir: Path) -> list[tuple[int, dict]]:
    """The offline run's history rows: (step, values without W&B's own ``_`` keys)."""
    rows = []
    for record in wandb_records(wandb_dir):
        if record.WhichOneof("record_type") == "history":
            items = {
                (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                for i in record.history.item
            }
            assert "_timestamp" in items
            rows.append(
                (record.history.step.num, {k: v for k, v in items.items() if not k.startswith("_")})
            )
    return rows


def test_wandb_history_holds_every_logged_row_in_order(project: Path, cli):
    """W&B starts in the background: rows logged before it was up reach it too, in order."""
    result = cli("run", "trainer.epochs=3", "-q", *FAST)
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    rows = metrics(run_dir)
    expected = [(r["step"], {k: v for k, v in r.items() if k != "step"}) for r in rows]
    assert wandb_history(offline_run(summary(run_dir)["wandb"]["sync_command"])) == expected


@pytest.mark.slow
def test_a_signal_while_wandb_is_still_starting_leaves_a_clean_interrupted_run(
    project: Path, expctl_exe
):
    """SIGINT right after the first rows, while W&B (started in the background) is still coming
    up: exit 130, a resumable run, and a W&B run finished with 130 holding every row."""
    process = subprocess.Popen(
        [*expctl_exe, "run", "trainer.epochs=100000", "-q", *FAST],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(project.glob("runs/digits-mlp/*/metrics.jsonl")):  # created by the first row
        assert time.monotonic() < deadline and process.poll() is None, process.stderr
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    run_dir = Path(stdout.strip())
    record = summary(run_dir)
    assert record["status"] == "interrupted" and (run_dir / "checkpoints" / "last.pt").is_file()
    wandb_dir = offline_run(record["wandb"]["sync_command"])
    (exit_record,) = [
        r.exit for r in wandb_records(wandb_dir) if r.WhichOneof("record_type") == "exit"
    ]
    assert exit_record.exit_code == 130
    rows = metrics(run_dir)
    assert rows and wandb_history(wandb_dir) == [
        (r["step"], {k: v for k, v in r.items() if k != "step"}) for r in rows
    ]
