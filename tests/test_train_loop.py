"""``expctl.train.train``: real (tiny) training on CPU through the Python API.

W&B is disabled here for speed except where a test says otherwise; the CLI tests cover the
offline W&B run end to end.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from expctl.artifacts.store import checkpoint_for_init
from expctl.config import ConfigSource, compose_config
from expctl.errors import EXIT_SIGINT, EXIT_SIGTERM, ConfigError, Interrupted, RuntimeFailure
from expctl.errors import UsageError as ExpctlUsageError
from expctl.train import request_stop, train

FAST = ("trainer.num_threads=1", "trainer.log_every_n_steps=10")
# Compared for resume equivalence: everything but wall-clock throughput.
EXACT = ("step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


def compose(project: Path, *overrides: str, name: str = "config"):
    source = ConfigSource(project / "configs", name, (*FAST, *overrides))
    return compose_config(source)


def exact(metrics: dict) -> dict:
    return {k: metrics[k] for k in EXACT if k in metrics}


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


# Dropout (model=large) and a cosine schedule make the resume test meaningful: the RNG and the
# scheduler state must both be restored for the numbers to agree exactly.
RESUMABLE = ("model=large", "scheduler=cosine", "trainer.epochs=3", "artifact.publish=false")


def test_resume_after_max_steps_or_a_stop_request_equals_an_uninterrupted_run(project: Path):
    reference = train(compose(project, *RESUMABLE), run_dir=project / "ref")
    assert reference.status == "completed" and len(reference.history) == 3

    # 1) the budget ends mid-epoch 2 (23 steps per epoch), then a resume with the full budget
    cut = train(compose(project, *RESUMABLE, "trainer.max_steps=30"), run_dir=project / "cut")
    assert cut.status == "completed" and summary(cut.run_dir)["step"] == 30
    resumed = train(compose(project, *RESUMABLE), resume=cut.run_dir)
    assert resumed.run_dir == cut.run_dir
    assert exact(resumed.final_metrics) == exact(reference.final_metrics)

    # 2) a stop request (as the sweep agent sends on SIGTERM) after step 41
    steps = iter(range(10_000))

    def stop_after_41() -> int | None:
        return signal.SIGTERM if next(steps) >= 40 else None

    with pytest.raises(Interrupted) as info:
        train(
            compose(project, *RESUMABLE),
            run_dir=project / "stopped",
            handle_signals=False,
            should_stop=stop_after_41,
        )
    assert info.value.exit_code == EXIT_SIGTERM
    assert info.value.result.status == "interrupted"
    record = summary(project / "stopped")
    assert (record["status"], record["step"]) == ("interrupted", 41)
    assert record["last_checkpoint"] == "checkpoints/last.pt"
    again = train(compose(project, *RESUMABLE), resume=project / "stopped")
    assert exact(again.final_metrics) == exact(reference.final_metrics)
    assert [exact(r) for r in again.history] == [exact(r) for r in reference.history]
    for key, tensor in last_weights(reference.run_dir).items():
        assert torch.equal(tensor, last_weights(project / "stopped")[key]), key

    rows = [
        json.loads(line) for line in (project / "stopped/metrics.jsonl").read_text().splitlines()
    ]
    keys = [(r["step"], "val_loss" in r) for r in rows]
    assert keys == sorted(set(keys)), "a resumed run must not log a step twice"
    assert summary(project / "stopped")["resumed_from_step"] == 41


def test_a_completed_run_resumes_only_with_a_larger_budget(project: Path):
    done = train(compose(project, "trainer.epochs=1"), run_dir=project / "r")
    with pytest.raises(ExpctlUsageError) as info:
        train(compose(project, "trainer.epochs=1"), resume=done.run_dir)
    assert "trainer.epochs" in info.value.hint
    longer = train(compose(project, "trainer.epochs=2"), resume=done.run_dir)
    assert longer.final_metrics["epoch"] == 2


def test_callback_gets_every_epoch_and_can_stop_the_run(project: Path):
    seen: list[tuple[int, float]] = []

    def callback(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append((epoch, metrics["val_loss"]))
        return epoch == 2

    result = train(compose(project, "trainer.epochs=5"), callbacks=[callback])
    assert result.status == "stopped"
    assert [e for e, _ in seen] == [1, 2]
    assert summary(result.run_dir)["status"] == "stopped"
    assert (result.run_dir / "checkpoints" / "last.pt").exists()


def test_request_stop_interrupts_after_the_current_step_with_sigint_code(project: Path):
    def stop_now(epoch: int, metrics: dict[str, float]) -> bool:
        request_stop(signal.SIGINT)
        return False

    with pytest.raises(Interrupted) as info:
        train(compose(project, "trainer.epochs=3"), callbacks=[stop_now], handle_signals=False)
    assert info.value.exit_code == EXIT_SIGINT
    run = info.value.result
    assert summary(run.run_dir)["step"] == 24  # one step after the first epoch's 23
    assert "--resume" in info.value.hint
    # the request was consumed: the next run is not stopped by it
    assert train(compose(project, "trainer.epochs=1")).status == "completed"


def test_progress_goes_to_stderr_only_when_asked(project: Path, capsys: pytest.CaptureFixture):
    train(compose(project, "trainer.epochs=2"))
    assert capsys.readouterr() == ("", "")  # quiet by default (notebooks, the sweep agent)
    train(compose(project, "trainer.epochs=2"), quiet=False)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("device cpu") == 1  # the resolved device, printed once
    assert "epoch 1/2" in err and "epoch 2/2" in err and "val_acc" in err


def test_checkpoints_are_written_at_most_every_write_every_s(project: Path):
    seen: dict[int, bool] = {}

    def last_exists(epoch: int, metrics: dict[str, float]) -> bool:
        seen[epoch] = (project / "r" / "checkpoints" / "last.pt").exists()
        return False

    train(compose(project, "trainer.epochs=2"), run_dir=project / "r", callbacks=[last_exists])
    assert seen == {1: False, 2: False}  # deferred (default 30 s) ...
    assert (project / "r" / "checkpoints" / "last.pt").exists()  # ... and written at the end
    seen.clear()

    def written(epoch: int, metrics: dict[str, float]) -> bool:
        seen[epoch] = (project / "e" / "checkpoints" / "last.pt").exists()
        return False

    every_epoch = compose(project, "trainer.epochs=2", "checkpoint.write_every_s=0")
    train(every_epoch, run_dir=project / "e", callbacks=[written])
    assert seen == {1: True, 2: True}


def test_rich_progress_renders_without_a_terminal(project: Path):
    import io

    from expctl.train.progress import RichProgress

    stream = io.StringIO()
    result = train(compose(project, "trainer.epochs=2"), progress=RichProgress(stream))
    assert result.status == "completed"
    text = stream.getvalue()
    assert "device cpu" in text and "epoch" in text


def test_signal_handlers_are_restored_after_training(project: Path):
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    train(compose(project, "trainer.epochs=1"))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_nan_loss_fails_the_run_with_a_hint_and_a_failed_record(project: Path):
    with pytest.raises(RuntimeFailure) as info:
        train(compose(project, "optim.lr=1e30", "trainer.epochs=3"), run_dir=project / "nan")
    error = info.value
    assert error.exit_code == 1
    assert "nan" in error.message.lower() and "optim.lr" in error.hint
    record = summary(project / "nan")
    assert record["status"] == "failed" and "nan" in record["error"]
    assert error.result.status == "failed"


def test_gradient_accumulation_clipping_and_step_budget(project: Path):
    result = train(
        compose(
            project,
            "trainer.epochs=2",
            "trainer.accumulate_grad_batches=4",
            "trainer.grad_clip=0.5",
        )
    )
    # 23 batches per epoch -> 6 optimizer steps (the last one takes the 3 leftover batches)
    assert summary(result.run_dir)["step"] == 12
    capped = train(compose(project, "trainer.epochs=5", "trainer.max_steps=7"))
    assert summary(capped.run_dir)["step"] == 7
    assert capped.final_metrics["epoch"] == 1  # validated once more where the budget ended


def test_reduce_on_plateau_scheduler_and_max_monitor(project: Path):
    result = train(
        compose(
            project,
            "trainer.epochs=2",
            "+scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
            "+scheduler.patience=0",
            "checkpoint.monitor=val_acc",
            "checkpoint.mode=max",
            "checkpoint.top_k=1",
        )
    )
    assert result.best_metrics["val_acc"] == max(r["val_acc"] for r in result.history)
    assert result.best_checkpoint is not None and "val_acc=" in result.best_checkpoint.name
    assert len(list((result.run_dir / "checkpoints").glob("epoch=*.pt"))) == 1


def test_dataloader_path_trains_exactly_like_the_resident_path(
    project: Path, monkeypatch: pytest.MonkeyPatch
):
    resident = train(compose(project, "trainer.epochs=2"))
    monkeypatch.setattr("expctl.train.batches.MAX_RESIDENT_BYTES", 0)
    loader = train(compose(project, "trainer.epochs=2"))
    assert exact(loader.final_metrics) == exact(resident.final_metrics)


def test_user_code_in_the_project_directory_is_importable(project: Path):
    (project / "mymodels.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch.utils.data import TensorDataset

            class Net(torch.nn.Module):
                def __init__(self, width: int):
                    super().__init__()
                    self.body = torch.nn.Sequential(
                        torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 3)
                    )

                def forward(self, x):
                    return self.body(x)

            def blobs(batch_size: int, n: int = 300):
                g = torch.Generator().manual_seed(0)
                y = torch.randint(0, 3, (n,), generator=g)
                x = torch.randn(n, 4, generator=g) * 0.3 + torch.eye(3, 4)[y] * 3
                return TensorDataset(x[:240], y[:240]), TensorDataset(x[240:], y[240:])
            """
        )
    )
    cfg = compose(
        project,
        "trainer.epochs=3",
        "optim.lr=0.03",
        "~model._args_",
        "model._target_=mymodels.Net",
        "+model.width=16",
        "~data",
        "+data._target_=mymodels.blobs",
        "+data.batch_size=32",
    )
    try:
        result = train(cfg)
    finally:
        # this project's module only: a later test's project may hold another mymodels.py,
        # which the target policy must find in that project's directory, not here
        sys.modules.pop("mymodels", None)
    assert result.status == "completed"
    assert result.final_metrics["val_acc"] > 0.9


def test_bad_target_and_bad_kwargs_name_the_config_path(project: Path):
    with pytest.raises(ConfigError) as info:
        train(compose(project, "model._args_.0._target_=torch.nn.Lineer"))
    assert info.value.where == "model._args_.0"
    assert "torch.nn.Linear" in info.value.hint
    with pytest.raises(ConfigError) as info:
        train(compose(project, "+optim.momentum=0.9"))
    assert info.value.where == "optim"
    assert "betas" in info.value.hint and "params" not in info.value.hint
    with pytest.raises(ConfigError) as info:
        train(compose(project, "model._target_=nosuchpackage.Net"))
    assert info.value.where == "model"
    assert "nosuchpackage.py" in info.value.hint


def test_tutorial_config_without_optional_sections(project: Path):
    result = train(compose(project, "name=exp1", "trainer.epochs=1", name="tutorial"))
    assert result.status == "completed"
    assert result.artifact is None  # no `artifact` section: nothing published
    saved = (result.run_dir / "config.yaml").read_text()
    assert "seed:" in saved  # the seed picked for this run is recorded
    assert len(list((result.run_dir / "checkpoints").glob("epoch=*.pt"))) == 1


def test_init_from_a_checkpoint_file_loads_the_weights(project: Path):
    first = train(compose(project, "trainer.epochs=2", "artifact.publish=false"))
    assert first.best_checkpoint is not None
    # lr=0: the model cannot move, so its validation loss is the checkpoint's
    again = train(
        compose(project, "trainer.epochs=1", "optim.lr=0.0"), init_from=str(first.best_checkpoint)
    )
    assert again.final_metrics["val_loss"] == pytest.approx(first.best_metrics["val_loss"])
    mismatch = compose(project, "trainer.epochs=1", "model=large")
    with pytest.raises(ConfigError) as info:
        train(mismatch, init_from=str(first.best_checkpoint))
    assert "does not fit this model" in info.value.message


def test_published_artifact_can_initialise_a_new_run(project: Path):
    first = train(compose(project, "trainer.epochs=2"))
    assert first.artifact is not None and first.artifact.startswith("digits-mlp-model:v")
    assert summary(first.run_dir)["artifact"] == first.artifact
    # `best` names this run's best checkpoint: the store's blob holds exactly its bytes
    path = checkpoint_for_init("digits-mlp-model:best")
    assert first.best_checkpoint is not None
    assert path.read_bytes() == first.best_checkpoint.read_bytes()
    again = train(
        compose(project, "trainer.epochs=1", "optim.lr=0.0", "artifact.publish=false"),
        init_from="digits-mlp-model:best",
    )
    assert again.final_metrics["val_loss"] == pytest.approx(first.best_metrics["val_loss"])


def test_invalid_trainer_settings_are_reported_together(project: Path):
    with pytest.raises(ConfigError) as info:
        train(compose(project, "trainer.epochs=0", "trainer.accumulate_grad_batches=x"))
    assert "trainer.epochs" in info.value.message
    assert "trainer.accumulate_grad_batches" in info.value.message


def test_mid_epoch_rows_average_exactly_the_steps_since_the_previous_row_of_that_epoch(
    project: Path,
):
    """Per-step losses (log every step) against rows logged every 7 steps of the same run:
    each mid-epoch row is the mean of its own steps, never reaching into the previous epoch."""
    import json

    common = (
        "trainer.epochs=3",
        "data=synthetic",
        "data.num_samples=800",
        "artifact.publish=false",
    )
    every = train(compose(project, *common, "trainer.log_every_n_steps=1"), run_dir=project / "a")
    sparse = train(compose(project, *common, "trainer.log_every_n_steps=7"), run_dir=project / "b")

    def rows(run) -> list[dict]:
        lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    per_step = {
        (r["epoch"], r["step"]): r["train_loss"] for r in rows(every) if "val_loss" not in r
    }
    steps_per_epoch = next(r["step"] for r in rows(every) if "val_loss" in r)
    steps = [r["step"] for r in rows(every)]
    assert len(steps) == len(set(steps))  # one row per step: at an epoch's end, the epoch's
    checked = 0
    previous: dict[int, int] = {}  # epoch -> step of its previous mid-epoch row
    for row in rows(sparse):
        if "val_loss" in row:
            continue
        epoch, step = row["epoch"], row["step"]
        start = previous.get(epoch, (epoch - 1) * steps_per_epoch)
        losses = [per_step[(epoch, s)] for s in range(start + 1, step + 1)]
        assert row["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5), row
        previous[epoch] = step
        checked += 1
    assert checked >= 4 and any(s % steps_per_epoch < 7 for s in (r["step"] for r in rows(sparse)))
