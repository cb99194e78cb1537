"""Top-k bookkeeping, weights_only checkpoints, RNG state and atomic writes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from expctl.errors import ConfigError, NotFoundError, RuntimeFailure
from expctl.fsutil import atomic_path, atomic_write_json, atomic_write_text
from expctl.train.checkpoint_state import capture_rng, restore_rng
from expctl.train.checkpoints import (
    TopK,
    load_checkpoint,
    model_weights,
    save_checkpoint,
    validate_monitor,
)


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.pt")}


def test_topk_min_keeps_the_k_lowest_and_deletes_the_displaced(tmp_path: Path):
    topk = TopK(tmp_path, "val_loss", "min", 2)
    for epoch, value in enumerate([0.9, 0.5, 0.7, 0.6, 0.95], start=1):
        topk.offer(epoch, value, lambda epoch=epoch: {"epoch": epoch})
        topk.flush()
    assert _names(tmp_path) == {"epoch=002-val_loss=0.5000.pt", "epoch=004-val_loss=0.6000.pt"}
    assert topk.best == tmp_path / "epoch=002-val_loss=0.5000.pt"
    assert [p.name for p in topk.files] == sorted(_names(tmp_path))


def test_topk_max_zero_all_and_nan(tmp_path: Path):
    best = TopK(tmp_path / "max", "val_acc", "max", 1)
    (tmp_path / "max").mkdir()
    for epoch, value in enumerate([0.5, 0.8, 0.7], start=1):
        best.offer(epoch, value, dict)
    best.flush()
    assert _names(tmp_path / "max") == {"epoch=002-val_acc=0.8000.pt"}

    none = TopK(tmp_path, "val_loss", "min", 0)
    assert none.offer(1, 0.1, dict) is None and none.best is None

    (tmp_path / "all").mkdir()
    every = TopK(tmp_path / "all", "val_loss", "min", -1)
    for epoch in range(1, 5):
        every.offer(epoch, 1.0 / epoch, dict)
    every.offer(5, float("nan"), dict)
    every.flush()
    assert len(_names(tmp_path / "all")) == 4


def test_topk_writes_nothing_until_flushed_and_never_writes_what_was_displaced(tmp_path: Path):
    topk = TopK(tmp_path, "val_loss", "min", 1)
    topk.offer(1, 0.5, dict)
    topk.flush()
    built: list[int] = []
    for epoch, value in ((2, 0.4), (3, 0.3)):
        topk.offer(epoch, value, lambda epoch=epoch: built.append(epoch) or {"epoch": epoch})
    assert built == [2, 3]  # payloads are snapshots taken at offer time
    assert _names(tmp_path) == {"epoch=001-val_loss=0.5000.pt"}  # old top-k intact until flush
    assert topk.dirty
    topk.flush()
    assert _names(tmp_path) == {"epoch=003-val_loss=0.3000.pt"}  # epoch 2 was never written
    assert torch.load(topk.best, weights_only=True) == {"epoch": 3}
    assert not topk.dirty


def test_topk_restore_forgets_missing_files_and_removes_strays(tmp_path: Path):
    topk = TopK(tmp_path, "val_loss", "min", 3)
    topk.offer(1, 0.5, dict)
    topk.offer(2, 0.4, dict)
    topk.flush()
    state = topk.state()
    stray = tmp_path / "epoch=003-val_loss=0.3000.pt"  # saved, then killed before last.pt
    stray.write_bytes(b"x")
    (tmp_path / "epoch=001-val_loss=0.5000.pt").unlink()
    (tmp_path / "notes.pt").write_bytes(b"user file")  # not ours: left alone

    again = TopK(tmp_path, "val_loss", "min", 3)
    again.restore(state)
    assert [p.name for p in again.files] == ["epoch=002-val_loss=0.4000.pt"]
    assert not stray.exists()
    assert (tmp_path / "notes.pt").exists()


def test_checkpoints_round_trip_with_weights_only(tmp_path: Path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 3, "metrics": {"a": 1.0}})
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3
    assert torch.equal(model_weights(load_checkpoint(path))["weight"], model.weight)
    torch.save(model.state_dict(), tmp_path / "bare.pt")  # a plain state_dict also works
    assert set(model_weights(load_checkpoint(tmp_path / "bare.pt"))) == {"weight", "bias"}


def test_loading_bad_checkpoints_fails_clearly(tmp_path: Path):
    with pytest.raises(NotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeFailure):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(RuntimeFailure):
        load_checkpoint(tmp_path / "list.pt")


def test_validate_monitor_suggests_logged_metrics():
    validate_monitor("val_acc", "max", {"val_acc", "val_loss"})
    with pytest.raises(ConfigError) as info:
        validate_monitor("val_los", "min", {"val_acc", "val_loss"})
    assert info.value.where == "checkpoint.monitor"
    assert "did you mean val_loss" in info.value.hint
    with pytest.raises(ConfigError):
        validate_monitor("val_loss", "lowest", {"val_loss"})


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng()})
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert expected[:2] == again[:2]
    assert torch.equal(expected[2], again[2])


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path: Path):
    target = tmp_path / "sub" / "summary.json"
    atomic_write_json(target, {"status": "running"})
    atomic_write_text(target, '{"status": "completed"}\n')
    assert target.read_text() == '{"status": "completed"}\n'
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"status": "completed"}\n'
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]
