"""The agent's rhythm besides its trials: the heartbeat thread, the polling backoff while others
finish the last trials, and W&B's flapping rule (stop after failures come too fast)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from expctl.sweeps.storage.journal_writes import batched_writes

if TYPE_CHECKING:
    from expctl.sweeps.engine import Sweep

CATCH_UP_EVERY = 0.25  # seconds between replays of a journal while a trial runs


class Heartbeat(threading.Thread):
    """Refreshes the running trial's heartbeat so other agents know this one is alive, and the
    agent's own (``sweep status`` shows which agents are alive, also those waiting).

    On a journal it also replays what other agents append while the trial runs: each agent
    replays every record, and what piled up during a trial was otherwise replayed between two
    trials, on the agent's time (with 64 agents, ~15 ms per trial on 2 cores)."""

    def __init__(self, sweep: Sweep, interval: float, agent: str, stale_after: float):
        super().__init__(name="expctl-heartbeat", daemon=True)
        self.sweep = sweep
        self.interval = interval
        self.agent, self.stale_after = agent, stale_after
        self.trial_id: int | None = None
        self.next_beat = 0.0  # time.monotonic() when both beats are due
        self._stop_event = threading.Event()

    def beaten(self) -> None:
        """The agent's beat went out with a hand-off, whose claim starts the new trial's clock
        (``datetime_start``): the next beats are due an interval from now. With trials shorter
        than the interval an agent then never appends a beat of its own."""
        self.next_beat = time.monotonic() + self.interval

    def beat_due(self) -> bool:
        """Whether the agent's next beat is less than half an interval away: a hand-off then
        carries it (:meth:`beaten`); with trials of milliseconds most carry none, one record
        fewer per trial for every agent to replay."""
        return time.monotonic() >= self.next_beat - self.interval / 2

    def run(self) -> None:
        storage = self.sweep.handle.storage
        catch_up = getattr(storage, "catch_up", None)  # a journal's
        while True:
            # a storage hiccup must not kill the trial; the next beat retries
            with contextlib.suppress(Exception):
                if time.monotonic() >= self.next_beat:
                    self.beaten()
                    with batched_writes(storage):  # both beats in one journal append
                        if self.trial_id is not None:
                            self.sweep.liveness.heartbeat(self.trial_id)
                        self.sweep.liveness.agent_beat(self.agent, self.stale_after)
                elif catch_up is not None:
                    catch_up()
            wait = min(self.interval, CATCH_UP_EVERY) if catch_up else self.interval
            if self._stop_event.wait(wait):
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
