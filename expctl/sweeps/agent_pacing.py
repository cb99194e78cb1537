"""The agent's rhythm besides its trials: the heartbeat thread, the polling backoff while others
finish the last trials, and W&B's flapping rule (stop after failures come too fast)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expctl.sweeps.engine import Sweep


class Heartbeat(threading.Thread):
    """Refreshes the running trial's heartbeat so other agents know this one is alive, and the
    agent's own (``sweep status`` shows which agents are alive, also those waiting)."""

    def __init__(self, sweep: Sweep, interval: float, agent: str, stale_after: float):
        super().__init__(name="expctl-heartbeat", daemon=True)
        self.sweep = sweep
        self.interval = interval
        self.agent, self.stale_after = agent, stale_after
        self.trial_id: int | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            trial_id = self.trial_id
            # a storage hiccup must not kill the trial; the next beat retries
            with contextlib.suppress(Exception):
                if trial_id is not None:
                    self.sweep.liveness.heartbeat(trial_id)
                self.sweep.liveness.agent_beat(self.agent, self.stale_after)
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        with contextlib.suppress(Exception):
            self.sweep.liveness.agent_beat(self.agent, self.stale_after, exited=True)


class Backoff:
    """Polling while other agents finish the last trials: every 20 ms at first (short trials,
    the sweep ends at once), slowing to ``longest`` (long trials, no needless reads)."""

    def __init__(self, longest: float, first: float = 0.02):
        self.longest, self.first = longest, first
        self.delay = first

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.longest)

    def reset(self) -> None:
        self.delay = self.first


class FlapGuard:
    """W&B's rule: stop after ``burst`` failures within ``window`` s, or when failures reach
    ``initial`` without outnumbering successes."""

    def __init__(self, burst: int = 3, window: float = 60.0, initial: int = 5):
        self.burst, self.window, self.initial = burst, window, initial
        self.failures: list[float] = []
        self.successes = 0

    def record(self, ok: bool) -> str | None:
        if ok:
            self.successes += 1
            return None
        self.failures.append(time.monotonic())
        return self._trip(self.failures)

    def would_trip(self, ok: bool) -> bool:
        """Whether recording this outcome would trip the guard (recording nothing)."""
        return not ok and self._trip([*self.failures, time.monotonic()]) is not None

    def _trip(self, failures: list[float]) -> str | None:
        now = failures[-1]
        recent = [t for t in failures if now - t <= self.window]
        if len(recent) >= self.burst:
            return f"{len(recent)} trials failed within {self.window:g} s"
        if len(failures) >= self.initial and len(failures) >= self.successes:
            return f"{len(failures)} trials failed and only {self.successes} succeeded"
        return None
