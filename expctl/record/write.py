"""The writer of a run's record (:class:`RunRecord`): the trainer and program trials write
through it, so every run of any kind reads the same way (:mod:`expctl.record.read`).

Whole files are written atomically (expctl.fsutil). metrics.jsonl is appended a line at a time
(rewriting it per row would be quadratic) and flushed at most every second and whenever a
checkpoint is written; a resumed run first drops rows logged after the checkpoint it resumes
from, so no step appears twice. Non-finite numbers are written as
:mod:`expctl.record.jsonpolicy` says (``null``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from expctl.fsutil import atomic_write_json, atomic_write_text, write_error
from expctl.record.files import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    SUMMARY_FILE,
)
from expctl.record.jsonpolicy import metrics_line, record_value
from expctl.record.read import read_metrics, read_overrides

FLUSH_EVERY_S = 1.0


class RunRecord:
    """One run directory's record, written by one process (rank 0; ``write=False`` elsewhere).

    ``dump_config`` turns the plain config into YAML (``expctl.config.dump_yaml``, OmegaConf's
    own dumper): passed in by the trainer because the record layer sits below ``config``;
    program trials write no config and pass none."""

    def __init__(
        self,
        run_dir: Path,
        write: bool = True,
        *,
        dump_config: Callable[[Any], str] | None = None,
    ):
        self.run_dir = Path(run_dir).resolve()  # absolute: callers may chdir
        self.write = write
        self._dump_config = dump_config
        if write:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoint_dir.mkdir(exist_ok=True)
        self._metrics: IO[str] | None = None
        self._flushed = time.monotonic()

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    @property
    def summary_path(self) -> Path:
        return self.run_dir / SUMMARY_FILE

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def write_config(self, plain_config: Mapping[str, Any]) -> None:
        if not self.write:
            return
        from expctl.secrets import redact

        if self._dump_config is None:
            raise TypeError("RunRecord(dump_config=...) is needed to write a config")
        text = self._dump_config(redact(dict(plain_config)))
        atomic_write_text(self.run_dir / CONFIG_FILE, text)

    def write_overrides(self, overrides: Sequence[str]) -> list[str]:
        """Record ``overrides``; returns them as recorded."""
        import yaml

        from expctl.secrets import redact_overrides

        # Secrets never reach the disk: the record keeps `key=********` (pass them on resume).
        safe = list(redact_overrides(overrides))
        if self.write:
            atomic_write_text(self.run_dir / OVERRIDES_FILE, yaml.safe_dump(safe))
        return safe

    def read_overrides(self) -> list[str]:
        """The overrides recorded so far (the tolerant reader's: [] when damaged)."""
        return read_overrides(self.run_dir)[0]

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        if not self.write:
            return
        try:
            if self._metrics is None:
                self._metrics = self.metrics_path.open("a", encoding="utf-8")
            self._metrics.write(metrics_line(row))
        except OSError as e:
            raise write_error(self.metrics_path, e) from None
        # A flush is a syscall (~0.1 ms here): once a second is enough for `tail -f`.
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        self._flushed = time.monotonic()
        if self._metrics is None:
            return
        try:
            self._metrics.flush()
        except OSError as e:
            metrics, self._metrics = self._metrics, None  # its buffer cannot be written
            with contextlib.suppress(OSError):
                metrics.close()
            raise write_error(self.metrics_path, e) from None

    def drop_metrics_after(self, step: int) -> None:
        """Keep only rows up to ``step`` (resume from a checkpoint taken at ``step``)."""
        if not self.write:
            return
        if not self.metrics_path.exists():
            return
        rows, _ = read_metrics(self.run_dir)  # damaged lines are dropped with the rest
        kept = [r for r in rows if int(r.get("step", 0)) <= step]
        atomic_write_text(self.metrics_path, "".join(metrics_line(r) for r in kept))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if not self.write:
            return
        atomic_write_json(self.summary_path, record_value(summary))

    def close(self) -> None:
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            try:
                metrics.close()
            except OSError as e:
                raise write_error(self.metrics_path, e) from None
