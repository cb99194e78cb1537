"""One run's trackers, across every attempt of a resumed run.

The trainer (expctl.train.outcome) keeps one :class:`RunTrackers` per run: it starts the chosen
backends with the run ids earlier attempts recorded (W&B and MLflow continue those runs), says
what they have to say since the last look (a failed start, a fallback to offline, the W&B run
once it is open), finishes them with the best epoch's values, and describes them for
``summary.json`` — the backend-neutral ``tracking`` list and the older ``wandb`` block.
Under torchrun only rank 0 starts real ones; the others keep the :class:`NullTracker`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from expctl.trackers.base import NullTracker, Tracker, describe, tracking_entries


class RunTrackers:
    """The run's trackers (``loggers``: ``{backend: settings}`` in order) and what earlier
    attempts left of them (run ids, W&B's offline directories)."""

    def __init__(self, loggers: Mapping[str, Mapping[str, Any] | None]):
        self.loggers = loggers
        self.tracker: Tracker | None = None
        self.run_ids: dict[str, str] = {}  # each backend's run an earlier attempt started
        self.sync_dirs: list[str] = []  # offline W&B dirs of earlier attempts (resume)
        self.sync_command: str | None = None
        self._notes_seen = 0
        self._announced = False  # the W&B run's path was said

    def resume_from(self, summary: Mapping[str, Any]) -> None:
        """Continue the trackers of the attempts an earlier ``summary.json`` describes."""
        self.run_ids = tracking_run_ids(summary)
        previous = summary.get("wandb") or {}
        self.sync_dirs = [str(d) for d in previous.get("sync_dirs") or []]

    def start(
        self,
        *,
        is_main: bool,
        run_name: str,
        config: Mapping[str, Any],
        group: str | None,
        directory: Path,
        git: Callable[[], Mapping[str, str]] | None,
    ) -> Tracker:
        """Start every backend on a helper thread (:func:`expctl.trackers.start_trackers`);
        ``git`` is called there. Other ranks than 0 get the NullTracker."""
        from expctl.trackers import start_trackers

        if not is_main:
            self.tracker = NullTracker()  # only rank 0 talks to the trackers
            return self.tracker
        run_ids: dict[str, str | None] = {**self.run_ids, "wandb": self.run_ids.get("wandb")}
        self.tracker = start_trackers(
            self.loggers,
            run_name=run_name,
            config=config,
            run_ids=run_ids,
            group=group,
            directory=directory,
            git=git,
        )
        self._announced = self.tracker.path is not None
        return self.tracker

    def news(self) -> tuple[list[str], str | None]:
        """What the trackers have to say since the last look: their new notes and, once, the
        W&B run they opened. Cheap: the trainer asks at each log point."""
        tracker = self.tracker
        if tracker is None:
            return [], None
        notes = tracker.notes
        fresh: list[str] = []
        if len(notes) > self._notes_seen:
            fresh = list(notes[self._notes_seen :])
            self._notes_seen = len(notes)
        opened = None
        if not self._announced and tracker.path is not None:
            self._announced = True
            opened = f"W&B {tracker.mode} run {tracker.path}"
        return fresh, opened

    def description(self) -> str:
        """How the progress display names the trackers as the run starts."""
        assert self.tracker is not None
        tracker = self.tracker
        text = f"{tracker.mode} ({tracker.path})" if tracker.path else tracker.mode
        if "wandb" not in self.loggers:
            text = "not used"
        elif tracker.path is None and not getattr(tracker, "ready", True):
            text += ", starting"  # its run is announced when it is up
        others = [name for name in self.loggers if name != "wandb"]
        if others:
            text += f"; logging to {', '.join(others)}"
        return text

    def finish(
        self,
        exit_code: int,
        best: Mapping[str, Any],
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        """Give the trackers the best epoch's values (``best/<metric>``), finish them (waiting
        for what was queued); an offline W&B run's sync command covers every attempt's dir.

        ``meanwhile`` (the publishing of the checkpoints) runs while a tracker started in the
        background finishes on its thread: the end of a run waits for the longer of the two,
        not for both one after the other."""
        from expctl.trackers.wandb import BEST_PREFIX, sync_command

        assert self.tracker is not None
        # the best epoch's values, across every attempt of a resumed run (W&B's own aggregates
        # would restart with each attempt's W&B run)
        values = {f"{BEST_PREFIX}{k}": v for k, v in best.items() if _finite(v)}
        if values:
            self.tracker.summarize(values)
        finish_soon = getattr(self.tracker, "finish_soon", None)
        if finish_soon is not None:
            finish_soon(exit_code)  # queued behind everything logged; returns at once
        try:
            if meanwhile is not None:
                meanwhile()
        finally:
            self.tracker.finish(exit_code)  # waits for what was queued
        self._announced = True  # the result reports the run
        if self.tracker.sync_dir is not None:
            self.sync_dirs = [*self.sync_dirs, str(self.tracker.sync_dir)]
            self.sync_command = sync_command(list(dict.fromkeys(self.sync_dirs)))

    def entries(self) -> list[dict[str, Any]]:
        """summary.json's backend-neutral ``tracking`` list: one entry per logger of the run
        (``backend``, ``mode``, ``path``, ``run_id``, ``sync_command``, ...)."""
        if self.tracker is None:
            return [
                {"backend": name, "mode": None, "path": None, "run_id": None, "sync_command": None}
                for name in self.loggers
            ]
        entries = describe(self.tracker)
        if not entries:  # not started yet (in the background)
            entries = [
                {"backend": name, "mode": "starting", "path": None, "run_id": None}
                for name in self.loggers
            ]
        if "wandb" in self.loggers and not any(e["backend"] == "wandb" for e in entries):
            entries.insert(
                0,
                {
                    "backend": "wandb",
                    "mode": self.tracker.mode,
                    "path": self.tracker.path,
                    "run_id": self.tracker.run_id,
                },
            )
        for entry in entries:
            entry.setdefault(
                "sync_command", self.sync_command if entry["backend"] == "wandb" else None
            )
            if entry["backend"] == "wandb":
                entry["sync_dirs"] = self.sync_dirs
        return entries

    def wandb_block(self) -> dict[str, Any]:
        """summary.json's ``wandb`` block as before the ``tracking`` list (read by older
        expctl); kept one version more, then dropped — readers use tracking_entries(), which
        takes both."""
        tracker = self.tracker
        return {
            "mode": tracker.mode if tracker is not None else None,
            "path": tracker.path if tracker is not None else None,
            "run_id": tracker.run_id if tracker is not None else None,
            "sync_command": self.sync_command,
            "sync_dirs": self.sync_dirs,
        }


def tracking_run_ids(summary: Mapping[str, Any]) -> dict[str, str]:
    """Each backend's run id in a summary.json, new (``tracking``) or old (``wandb``) style."""
    return {
        str(e["backend"]): str(e["run_id"])
        for e in tracking_entries(summary)
        if e.get("run_id") and e.get("backend")
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
