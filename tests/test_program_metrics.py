"""Reading a real wandb-core run log (offline): history, summary semantics, partial writes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from expctl.sweeps.wandb.metrics import (
    BLOCK_SIZE,
    MetricTracker,
    TransactionLogError,
    TransactionLogReader,
    find_run_log,
    read_metric,
)

PROGRAM = """
    import wandb
    run = wandb.init(project="p")
    for i in range(40):
        # ~2 KiB per step: the log spans several 32 KiB blocks, records split across them
        run.log({"val_loss": 100.0 - i, "notes": "x" * 2000, "val": {"acc": i / 40}})
    run.log({"other": 1.0})
    run.summary["best_loss"] = 61.0
    run.summary["val_loss"] = 42.0
    run.finish()
"""


@pytest.fixture(scope="module")
def run_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real offline run, shared by the tests of this module (a child process: ~1 s)."""
    root = tmp_path_factory.mktemp("wandb_run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(root),
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        WANDB_DISABLE_GIT="true",
        WANDB_RUN_ID="logrun1",
    )
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM)], env=env, check=True, cwd=root, timeout=120
    )
    log = find_run_log(root, "logrun1")
    assert log is not None
    return log


@pytest.mark.slow
def test_history_and_summary_of_a_multi_block_log(run_log: Path):
    assert run_log.stat().st_size > 2 * BLOCK_SIZE
    tracker = read_metric(run_log, "val_loss")
    assert tracker.history == [100.0 - i for i in range(40)]
    assert tracker.final == 42.0  # the program set the summary itself: W&B reports that
    assert tracker.exit_code == 0
    assert tracker.logged_keys >= {"val_loss", "notes", "val.acc", "other"}


@pytest.mark.slow
def test_nested_logged_dict_is_a_dotted_metric(run_log: Path):
    tracker = read_metric(run_log, "val.acc")
    assert tracker.history == [i / 40 for i in range(40)]
    assert tracker.final == 39 / 40  # last logged value (auto-summary)


@pytest.mark.slow
def test_incremental_reads_of_a_growing_file_see_every_record_once(run_log: Path, tmp_path: Path):
    data = run_log.read_bytes()
    growing = tmp_path / "run-x.wandb"
    growing.write_bytes(b"")
    reader = TransactionLogReader(growing)
    tracker = MetricTracker("val_loss")
    rng = random.Random(0)
    written = 0
    while written < len(data):
        step = rng.choice([1, 5, 7, 100, 4096, BLOCK_SIZE + 3])  # cut anywhere, even headers
        with open(growing, "ab") as f:
            f.write(data[written : written + step])
        written += step
        for record in reader.read_new():
            tracker.feed(record)
    assert tracker.history == read_metric(run_log, "val_loss").history
    assert tracker.final == 42.0


def test_metric_never_logged_message_lists_what_was_logged():
    tracker = MetricTracker("val_loss")
    tracker.logged_keys.update({"loss", "acc"})
    assert tracker.final is None
    assert tracker.missing_message() == (
        "the program never logged metric 'val_loss' with wandb.log (it logged: acc, loss)"
    )
    assert "logged: nothing" in MetricTracker("val_loss").missing_message()


def test_not_a_wandb_log_is_an_error(tmp_path: Path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"hello world, not a log")
    with pytest.raises(TransactionLogError, match="not a W&B transaction log"):
        TransactionLogReader(path).read_new()


@pytest.mark.slow
def test_corrupt_record_is_an_error(run_log: Path, tmp_path: Path):
    data = bytearray(run_log.read_bytes())
    data[20] ^= 0xFF  # inside the first record's payload
    path = tmp_path / "run-x.wandb"
    path.write_bytes(bytes(data))
    with pytest.raises(TransactionLogError, match="bad checksum"):
        TransactionLogReader(path).read_new()


def test_find_run_log_takes_the_newest_dir_of_the_run_and_skips_ignored(tmp_path: Path):
    older = tmp_path / "wandb" / "offline-run-20260101_000000-abc" / "run-abc.wandb"
    newer = tmp_path / "wandb" / "offline-run-20260102_000000-abc" / "run-abc.wandb"
    other = tmp_path / "wandb" / "offline-run-20260103_000000-xyz" / "run-xyz.wandb"
    for path in (older, newer, other):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    assert find_run_log(tmp_path, "abc") == newer
    assert find_run_log(tmp_path, "abc", ignore={newer}) == older
    assert find_run_log(tmp_path, "nope") is None
