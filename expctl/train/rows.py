"""The rows the training loop logs at its sync points, and where each row goes.

Two kinds, one per step at most (expctl.train.loop decides when): every
``trainer.log_every_n_steps`` steps an interval row (the train loss/accuracy since the last
row), and at each epoch's end the epoch row (the epoch's train means and the validation). Reading
the meters is the host sync (and, under DDP, the all-reduce); a loss that is not finite stops the
run there. Each row goes to ``metrics.jsonl``, to the trackers (queued: their thread calls W&B,
expctl.trackers.background), and an epoch row to the run's history as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from expctl.errors import RuntimeFailure
from expctl.record.write import RunRecord
from expctl.train.checkpoint_state import Position
from expctl.train.distributed import Group
from expctl.train.meters import Meters
from expctl.train.outcome import Outcome
from expctl.train.progress import ProgressSink


class Rows:
    """Builds and sends a run's rows: ``meters`` are the loop's, ``optimizer`` the one whose
    learning rate is logged; the run's ``outcome`` holds the rest (position, record, progress
    display, history, trackers)."""

    def __init__(self, meters: Meters, optimizer: Any, outcome: Outcome):
        self.meters, self.optimizer, self.outcome = meters, optimizer, outcome
        self.group: Group = outcome.group
        self.pos: Position = outcome.pos
        self.record: RunRecord = outcome.record
        self.sink: ProgressSink = outcome.sink

    def interval(self) -> None:
        """Log the interval that ends at this step and start the next one."""
        self.meters.fold()
        interval = self.meters.interval
        values = interval.read(self.group)  # host sync (+ all-reduce under DDP)
        row = {
            "step": self.pos.step,
            "epoch": self.pos.epoch + 1,
            "train_loss": values.get("loss", math.nan),
            **({"train_acc": values["acc"]} if "acc" in values else {}),
            "lr": self.lr(),
            "samples_per_s": interval.samples_per_s(self.group),
        }
        self.check_finite(row["train_loss"])
        self.emit(row)
        self.sink.update(self.pos.step, self.pos.epoch + 1, row)
        self.meters.interval.reset()

    def epoch(self, validate: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Log the epoch that ends at this step: its train means, then ``validate()``'s."""
        self.meters.fold()
        train = self.meters.epoch.read(self.group)  # host sync (+ all-reduce under DDP)
        self.check_finite(train.get("loss", 0.0))
        val = validate()
        row: dict[str, float] = {"step": self.pos.step, "epoch": self.pos.epoch + 1}
        if train:
            row["train_loss"] = train["loss"]
            if "acc" in train:
                row["train_acc"] = train["acc"]
        row["val_loss"] = val["loss"]
        if "acc" in val:
            row["val_acc"] = val["acc"]
        row["lr"] = self.lr()
        row["samples_per_s"] = self.meters.epoch.samples_per_s(self.group)
        self.check_finite(row["val_loss"], where="validation")
        self.outcome.history.append(row)
        self.emit(row)
        return row

    def check_finite(self, value: float, where: str = "training") -> None:
        if not math.isfinite(value):
            raise RuntimeFailure(
                f"{where} loss became {value} at step {self.pos.step} (epoch {self.pos.epoch + 1})",
                hint="lower optim.lr, set trainer.grad_clip (e.g. 1.0), or check the data "
                "for NaN/inf values",
            )

    def emit(self, row: dict[str, float]) -> None:
        self.record.append_metrics(row)
        tracker = self.outcome.trackers.tracker
        assert tracker is not None  # started before the loop
        # queued: the tracker's thread calls wandb (expctl.trackers.background)
        tracker.log({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
        self.outcome.poll_tracker()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
