"""The seam every tracker plugs into: the :class:`Tracker` protocol the trainer logs through.

A tracker is started once per run (rank 0 only), fed rows at the trainer's log points, given the
kept checkpoints and the best epoch's values at the end, and finished with the process's exit
code. It may fail at any point: it notes the failure once (:attr:`Tracker.notes`) and the run
goes on — the run directory's own record (``metrics.jsonl``, ``summary.json``) is the truth.

``describe()`` is what ``summary.json``'s backend-neutral ``tracking`` list keeps of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What the trainer logs through. The attributes are read-only for it; a tracker started in
    the background (expctl.trackers.background) fills them in when its backend is up.

    ``mode``/``run_id``/``path``/``sync_dir`` describe the W&B run (``disabled``/None when W&B
    is not one of the run's loggers): the ``wandb`` block of summary.json and RunResult's
    ``wandb_path`` read them. :meth:`describe` covers every backend."""

    @property
    def mode(self) -> str: ...  # online | offline | disabled

    @property
    def run_id(self) -> str | None: ...

    @property
    def path(self) -> str | None: ...  # entity/project/run_id (None when disabled)

    # the offline run's directory (what `wandb sync` uploads)
    @property
    def sync_dir(self) -> Path | None: ...

    @property
    def notes(self) -> list[str]: ...  # for the user: a fallback to offline, a failure

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None: ...

    def summarize(self, values: Mapping[str, float]) -> None: ...  # into the run's summary

    def finish(self, exit_code: int) -> str | None: ...


def tracking_entries(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A summary.json's trackers: its ``tracking`` list, or — a run directory written before
    that list existed — its ``wandb`` block as the one entry (``backend: wandb``)."""
    entries = summary.get("tracking")
    if isinstance(entries, list):
        return [dict(e) for e in entries if isinstance(e, Mapping) and e.get("backend")]
    wandb = summary.get("wandb")
    if isinstance(wandb, Mapping):
        return [{"backend": "wandb", **wandb}]
    return []


def describe(tracker: Any) -> list[dict[str, Any]]:
    """summary.json's ``tracking`` entries for ``tracker`` (one per backend)."""
    own = getattr(tracker, "describe", None)
    if own is not None:
        return list(own())
    return [
        {
            "backend": getattr(tracker, "backend", "wandb"),
            "mode": tracker.mode,
            "path": tracker.path,
            "run_id": tracker.run_id,
        }
    ]


class NullTracker:
    """Tracking disabled: every call is a no-op (and wandb is never imported)."""

    backend = "wandb"
    mode = "disabled"
    run_id: str | None = None
    path: str | None = None
    sync_dir: Path | None = None

    def __init__(self) -> None:
        self.notes: list[str] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        pass

    def summarize(self, values: Mapping[str, float]) -> None:
        pass

    def finish(self, exit_code: int) -> str | None:
        return None


class Guarded:
    """A tracker whose calls can never stop the training: the first failure is noted once
    (naming ``label``), then the backend is left alone — the local record is complete."""

    label = "?"  # how notes name it
    broken = False
    notes: list[str]

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        if self.broken:
            return None
        try:
            return call()
        except Exception as e:
            self.broken = True
            self.notes.append(
                f"{self.label} stopped working ({what}: {first_line(e)}); training went on, the "
                "local record is complete"
            )
            return None


class LocalTracker(Guarded):
    """Base for trackers that are not W&B (TensorBoard, MLflow, CSV): the W&B attributes say
    ``disabled``, every call is guarded (a failure is noted once, then the backend is left
    alone), and :meth:`describe` reports this backend. Subclasses implement ``_log``,
    ``_log_checkpoints``, ``_summarize`` and ``_finish`` and set ``location``/``ident``."""

    backend = "?"
    mode = "disabled"  # (of W&B)
    run_id: str | None = None
    path: str | None = None
    sync_dir: Path | None = None

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.broken = False
        self._finished = False
        self.location: str | None = None  # where its data is (a directory, a URI)
        self.ident: str | None = None  # its own run id, if it has one

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"backend": self.backend, "mode": "local", "path": self.location, "run_id": self.ident}
        ]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        row = dict(metrics)
        wall = row.pop("_timestamp", None)
        row = {k: v for k, v in row.items() if not str(k).startswith("_")}
        self._guarded("log", lambda: self._log(row, step, wall))

    def log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        if files:
            self._guarded("checkpoints", lambda: self._log_checkpoints(name, files, best, metadata))

    def summarize(self, values: Mapping[str, float]) -> None:
        self._guarded("summary", lambda: self._summarize(dict(values)))

    def finish(self, exit_code: int) -> str | None:
        if self._finished:
            return None
        self._finished = True
        try:
            self._guarded("finish", lambda: self._finish(exit_code))
        finally:
            with contextlib.suppress(Exception):
                self._close()  # also when the backend broke earlier: no file or thread left open
        return None

    def _log(self, row: dict[str, float], step: int, wall: float | None) -> None:
        raise NotImplementedError

    def _log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        pass

    def _summarize(self, values: dict[str, float]) -> None:
        pass

    def _finish(self, exit_code: int) -> None:
        pass

    def _close(self) -> None:
        pass


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` → ``{"optim.lr": 0.1}``; list items by index (``a.0``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            flat[name] = value
    return flat


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
