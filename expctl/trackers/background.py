"""Trackers off the training loop's path: their start-up and every call run in one helper thread.

Written for W&B (the slow one; TensorBoard, MLflow and CSV start fast but take the same path).

``wandb.init`` costs ~0.5 s of the process's time in a new process (importing wandb, starting
its service process, opening the run), and each ``run.log`` blocks ~0.1–1 ms (it hands the record
to wandb's asyncio thread and waits; on a busy machine that wait is a scheduler slice or
more). A :class:`BackgroundTracker` makes both asynchronous:

* :func:`start_in_background` decides the mode at once (a bad ``WANDB_MODE`` is still an error
  before anything runs; ``disabled`` never starts a thread or imports wandb) and starts
  :func:`expctl.trackers.wandb.start_tracker` in a thread, so training starts while W&B does;
* :meth:`~BackgroundTracker.log` and :meth:`~BackgroundTracker.log_checkpoints` only put the call
  on a FIFO queue; the thread makes the calls in that order once W&B is up, so rows logged before
  W&B was ready reach it too, in order, with the time they were logged (``_timestamp``; W&B's
  own ``_runtime`` counts from when it got them). The queue is bounded: if W&B falls far behind,
  logging waits for it rather than holding unbounded memory;
* :meth:`~BackgroundTracker.finish` queues the finish behind everything else and waits for the
  thread: whatever was logged is in the W&B run when it returns.
  :meth:`~BackgroundTracker.finish_soon` only queues it: the trainer publishes the checkpoints
  while W&B finishes.

Nothing is lost when W&B fails: a failed start leaves the
:class:`~expctl.trackers.base.NullTracker` with its note (said once, as for a synchronous start),
a failure mid-run is noted once by the :class:`~expctl.trackers.wandb.WandbTracker`, and the
local record never depended on either. Notes and the run's identity (``run_id``, ``path``,
``sync_dir``) appear when the thread has them: read :attr:`~BackgroundTracker.notes` again
later (the trainer does at each log interval).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from expctl.trackers.base import Tracker, describe
from expctl.trackers.wandb import without_wandb

# Rows waiting for W&B before logging waits for it (a row is a few hundred bytes).
MAX_QUEUED = 10_000

_Call = tuple[str, tuple[Any, ...]]


class BackgroundTracker:
    """A :class:`~expctl.trackers.base.Tracker` whose start and calls run in a helper thread.

    ``start`` opens the real tracker (in the thread); ``mode`` is what it is expected to be
    (resolved already), reported until the thread says what it became (an online run that fell
    back to offline, or ``disabled`` when W&B could not start).
    """

    def __init__(self, start: Callable[[], Tracker], mode: str):
        self._start = start
        self._expected_mode = mode
        self._tracker: Tracker | None = None
        self._calls: queue.Queue[_Call] = queue.Queue(maxsize=MAX_QUEUED)
        self._ready = threading.Event()
        self._sync_command: str | None = None
        self._finish_queued = False
        self._finished = False
        # A daemon: a process that dies of an error never waits for W&B on its way out
        # (wandb's own exit hook still finishes what it opened).
        self._thread = threading.Thread(target=self._work, name="expctl-tracking", daemon=True)
        self._thread.start()

    # -- what the thread found out ----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """W&B has started (or failed to): ``mode``, ``path`` and the start notes are final."""
        return self._ready.is_set()

    @property
    def mode(self) -> str:
        return self._tracker.mode if self._tracker is not None else self._expected_mode

    @property
    def run_id(self) -> str | None:
        return self._tracker.run_id if self._tracker is not None else None

    @property
    def path(self) -> str | None:
        return self._tracker.path if self._tracker is not None else None

    @property
    def sync_dir(self) -> Path | None:
        return self._tracker.sync_dir if self._tracker is not None else None

    @property
    def notes(self) -> list[str]:
        return self._tracker.notes if self._tracker is not None else []

    def describe(self) -> list[dict[str, Any]]:
        """summary.json's ``tracking`` entries: the started backends' (empty until started)."""
        return describe(self._tracker) if self._tracker is not None else []

    # -- calls ----------------------------------------------------------------------------------

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        row = dict(metrics)
        # W&B stamps a row when it gets it: keep the time it was logged (its _runtime is its own)
        row.setdefault("_timestamp", time.time())
        self._calls.put(("log", (row, step)))

    def log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        self._calls.put(("log_checkpoints", (name, list(files), best, dict(metadata))))

    def summarize(self, values: Mapping[str, float]) -> None:
        self._calls.put(("summarize", (dict(values),)))

    def finish_soon(self, exit_code: int) -> None:
        """Queue the finish behind every call before it and return at once (the caller does
        other work meanwhile); :meth:`finish` then waits for it."""
        if not self._finish_queued:
            self._finish_queued = True
            self._calls.put(("finish", (exit_code,)))

    def finish(self, exit_code: int) -> str | None:
        """Finish once, after every call queued before; an offline run returns its sync command."""
        if self._finished:
            return None
        self._finished = True
        self.finish_soon(exit_code)
        self._thread.join()
        return self._sync_command

    # -- the thread -----------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            tracker = self._start()
        except Exception as e:  # start_tracker notes W&B's own failures; this is anything else
            tracker = without_wandb([], self._expected_mode, e)
        self._tracker = tracker
        self._ready.set()
        working = True
        while True:
            kind, args = self._calls.get()
            try:
                if kind == "finish":
                    self._sync_command = tracker.finish(*args)
                    return
                if working:
                    getattr(tracker, kind)(*args)
            except Exception as e:  # trackers guard their own calls; this is a last resort
                working = False
                label = "W&B" if getattr(tracker, "backend", "wandb") == "wandb" else "tracking"
                tracker.notes.append(f"{label} logging stopped ({type(e).__name__}: {e})")
                if kind == "finish":
                    return


def start_in_background(
    wandb_cfg: Mapping[str, Any] | None,
    *,
    run_name: str,
    config: Mapping[str, Any],
    run_id: str | None = None,
    group: str | None = None,
    directory: Path | None = None,
    git: Callable[[], Mapping[str, str]] | None = None,
) -> Tracker:
    """W&B alone (:func:`expctl.trackers.start_trackers` with ``{"wandb": wandb_cfg}``) in a
    helper thread (see the module docstring). ``git`` is called on that thread (it may wait for
    the run's provenance capture).

    The mode is resolved here, so a bad ``WANDB_MODE`` or ``wandb.mode`` raises
    :class:`~expctl.errors.ConfigError` at once; ``disabled`` returns the NullTracker directly.
    """
    from expctl.trackers import start_trackers

    return start_trackers(
        {"wandb": dict(wandb_cfg or {})},
        run_name=run_name,
        config=config,
        run_ids={"wandb": run_id},
        group=group,
        directory=directory,
        git=git,
    )
