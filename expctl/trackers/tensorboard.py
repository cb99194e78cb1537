"""TensorBoard: event files in the run directory (``RUN_DIR/tensorboard`` unless ``logger.
tensorboard.dir`` says otherwise) — one scalar per metric per logged step, and at the end the
run's hyperparameters (the flattened, redacted config) with its best epoch's values as the
hparams plugin's metrics. ``tensorboard --logdir runs/`` shows every run side by side.

Written with torch's ``SummaryWriter`` (it needs the ``tensorboard`` package: ``pip install
expctl[tensorboard]``), imported only when this backend starts.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expctl.trackers.base import LocalTracker, flatten

DEFAULT_DIR = "tensorboard"


class TensorBoardTracker(LocalTracker):
    """``writer(purge_step)`` opens the SummaryWriter at the first row: a resumed run's writer
    purges what the attempt before logged from that step on (TensorBoard's ``purge_step``), as
    metrics.jsonl drops those rows."""

    backend = "tensorboard"
    label = "TensorBoard"

    def __init__(self, open_writer: Any, log_dir: Path, config: Mapping[str, Any], resumed: bool):
        super().__init__()
        self._open_writer = open_writer
        self._writer: Any = None
        self._resumed = resumed
        self.location = str(log_dir)
        self.config = config
        self.best: dict[str, float] = {}
        self.last_step = 0

    def describe(self) -> list[dict[str, Any]]:
        entry = super().describe()[0]
        entry["command"] = f"tensorboard --logdir {shlex.quote(str(self.location))}"
        return [entry]

    def writer(self, step: int | None = None) -> Any:
        if self._writer is None:
            self._writer = self._open_writer(step if self._resumed else None)
        return self._writer

    def _log(self, row: dict[str, float], step: int, wall: float | None) -> None:
        writer = self.writer(step)
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(key, value, global_step=step, walltime=wall)
        self.last_step = max(self.last_step, step)

    def _summarize(self, values: dict[str, float]) -> None:
        self.best.update(values)

    def _finish(self, exit_code: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self.writer()
        for key, value in self.best.items():  # the hparams view's metrics are scalars
            writer.add_scalar(key, value, global_step=self.last_step)
        params = {k: _hparam(v) for k, v in flatten(self.config).items()}
        file_writer = writer._get_file_writer()
        for summary in hparams(params, dict(self.best)):
            file_writer.add_summary(summary)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _hparam(value: Any) -> Any:
    """hparams take bool, int, float or str; anything else is shown as text."""
    if isinstance(value, bool | int | float | str):
        return value
    return "null" if value is None else str(value)


def start_tensorboard(
    settings: Mapping[str, Any], *, run_dir: Path | None, config: Mapping[str, Any]
) -> TensorBoardTracker:
    from torch.utils.tensorboard import SummaryWriter

    configured = settings.get("dir")
    base = Path(run_dir) if run_dir is not None else Path.cwd()
    log_dir = Path(configured) if configured else base / DEFAULT_DIR
    if not log_dir.is_absolute():
        log_dir = base / log_dir
    resumed = any(log_dir.glob("events.out.tfevents.*"))
    flush = int(settings.get("flush_secs") or 30)

    def open_writer(purge_step: int | None) -> Any:
        return SummaryWriter(log_dir=str(log_dir), flush_secs=flush, purge_step=purge_step)

    return TensorBoardTracker(open_writer, log_dir.resolve(), config, resumed)
