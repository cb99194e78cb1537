"""Progress reporting for a training run, behind one small protocol.

The trainer calls a :class:`ProgressSink` at log intervals and epoch ends only (never per step:
drawing costs time). The caller chooses the sink: the CLI passes :func:`default_progress` for
stderr (a rich bar on a terminal, plain throttled lines in a cluster log file), the sweep agent
its own, notebooks nothing. Library code never writes to the terminal unless handed a sink.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol


@dataclass
class StartInfo:
    run_dir: str
    device: str  # e.g. "cuda:0 (NVIDIA H200)" or "cpu"
    precision: str
    num_threads: int
    epochs: int | None
    total_steps: int | None
    start_step: int
    resumed: bool
    wandb: str  # "offline", "online (entity/project/id)", "disabled"


class ProgressSink(Protocol):
    def start(self, info: StartInfo) -> None: ...

    def update(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    def start(self, info: StartInfo) -> None:
        pass

    def update(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def default_progress(stream: IO[str] | None = None) -> ProgressSink:
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return RichProgress(stream)
    return PlainProgress(stream)


def format_metrics(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    parts = []
    for key in keys:
        value = metrics.get(key)
        if value is None:
            continue
        if key == "samples_per_s":
            parts.append(f"samples/s {value:,.0f}")
        elif key == "lr":
            parts.append(f"lr {value:.3g}")
        else:
            parts.append(f"{key} {value:.4f}")
    return "  ".join(parts)


def describe_start(info: StartInfo) -> str:
    steps = f"{info.total_steps} steps" if info.total_steps else "?"
    how = f"resuming at step {info.start_step}" if info.resumed else "training"
    return (
        f"{how}: device {info.device}, precision {info.precision}, "
        f"{info.num_threads} CPU thread{'s' if info.num_threads != 1 else ''}, {steps}; "
        f"W&B {info.wandb}"
    )


EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "samples_per_s")


class PlainProgress:
    """Plain lines for log files: epoch results at most every ``epoch_interval_s`` (the last
    epoch always), step updates at most every ``interval_s`` within long epochs."""

    def __init__(self, stream: IO[str], interval_s: float = 10.0, epoch_interval_s: float = 2.0):
        self.stream = stream
        self.interval_s = interval_s
        self.epoch_interval_s = epoch_interval_s
        self.info: StartInfo | None = None
        self._last = time.monotonic()
        self._last_epoch_line = -float("inf")
        self._held: str | None = None  # a skipped epoch line, printed if it turns out last

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, info: StartInfo) -> None:
        self.info = info
        self._write(describe_start(info))

    def update(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        total = f"/{self.info.total_steps}" if self.info and self.info.total_steps else ""
        keys = ("train_loss", "train_acc", "samples_per_s")
        self._write(f"step {step}{total}  epoch {epoch}  {format_metrics(metrics, keys)}")

    def epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        now = time.monotonic()
        self._last = now
        epochs = f"/{self.info.epochs}" if self.info and self.info.epochs else ""
        line = f"epoch {epoch}{epochs}  {format_metrics(metrics, EPOCH_KEYS)}"
        if now - self._last_epoch_line < self.epoch_interval_s:
            self._held = line  # thousands of tiny epochs must not flood a log file
            return
        self._held = None
        self._last_epoch_line = now
        self._write(line)

    def message(self, text: str) -> None:
        self._write(text)

    def close(self) -> None:
        if self._held is not None:
            self._write(self._held)
            self._held = None


class RichProgress:
    """A rich progress bar on stderr: epoch, step, loss, samples/s, ETA."""

    def __init__(self, stream: IO[str]):
        from rich.console import Console

        plain = bool(os.environ.get("NO_COLOR"))  # no escape codes at all (no-color.org)
        self.console = Console(
            file=stream, stderr=stream is sys.stderr, color_system=None if plain else "auto"
        )
        self.progress: Any = None
        self.task: Any = None
        self.info: StartInfo | None = None

    def start(self, info: StartInfo) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.info = info
        self.console.print(describe_start(info), highlight=False)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=4,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=info.total_steps, completed=info.start_step, epoch="-", stats=""
        )

    def _epoch_label(self, epoch: int) -> str:
        return f"{epoch}/{self.info.epochs}" if self.info and self.info.epochs else str(epoch)

    def update(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.progress is None:
            return
        stats = format_metrics(metrics, ("train_loss", "samples_per_s"))
        self.progress.update(self.task, completed=step, epoch=self._epoch_label(epoch), stats=stats)

    def epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.progress is None:
            return
        stats = format_metrics(metrics, ("val_loss", "val_acc"))
        step = metrics.get("step")
        extra = {"completed": int(step)} if step is not None else {}
        self.progress.update(self.task, epoch=self._epoch_label(epoch), stats=stats, **extra)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
