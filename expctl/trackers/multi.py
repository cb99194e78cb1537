"""Several trackers at once (``logger=[tensorboard,mlflow]``): every call goes to each, in the
order the config lists them; each guards its own calls, so one failing never stops the others.
The W&B attributes (``mode``, ``path``, ...) are the W&B member's, when there is one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expctl.trackers.base import Tracker, describe


class MultiTracker:
    def __init__(self, members: Sequence[Tracker]):
        self.members = list(members)
        self._wandb = next((m for m in self.members if _backend(m) == "wandb"), None)
        self._notes: list[str] = []
        self._seen = [0] * len(self.members)

    @property
    def mode(self) -> str:
        return self._wandb.mode if self._wandb is not None else "disabled"

    @property
    def run_id(self) -> str | None:
        return self._wandb.run_id if self._wandb is not None else None

    @property
    def path(self) -> str | None:
        return self._wandb.path if self._wandb is not None else None

    @property
    def sync_dir(self) -> Path | None:
        return self._wandb.sync_dir if self._wandb is not None else None

    @property
    def notes(self) -> list[str]:
        """Every member's notes, each said once, in the order they came (an append-only list)."""
        for i, member in enumerate(self.members):
            notes = member.notes
            if len(notes) > self._seen[i]:
                self._notes.extend(notes[self._seen[i] :])
                self._seen[i] = len(notes)
        return self._notes

    def describe(self) -> list[dict[str, Any]]:
        return [entry for m in self.members for entry in describe(m)]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for member in self.members:
            member.log(metrics, step)

    def log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        for member in self.members:
            member.log_checkpoints(name, files, best, metadata)

    def summarize(self, values: Mapping[str, float]) -> None:
        for member in self.members:
            member.summarize(values)

    def finish(self, exit_code: int) -> str | None:
        """Finish every member (also when one raises); the W&B member's sync command."""
        command = None
        for member in self.members:
            try:
                result = member.finish(exit_code)
            except Exception as e:  # members guard themselves; this is a last resort
                member.notes.append(f"{_backend(member)} did not finish ({type(e).__name__}: {e})")
                continue
            if member is self._wandb:
                command = result
        return command


def _backend(tracker: Any) -> str:
    return str(getattr(tracker, "backend", "wandb"))
