"""How a run is going and how it ended: ``summary.json``, the :class:`RunResult`, the end.

The loop (expctl.train.loop) trains; an :class:`Outcome` keeps the account of it — the per-epoch
history, notes for the user, the run's trackers (expctl.trackers.session) — and writes it down:
``summary.json`` when the run starts (``running``) and again when it ends, however it ends. At
the end it also logs the top-k checkpoints to the trackers, publishes them to the local
artifact store when the config says so (expctl.train.publishing), and finishes the trackers
with the exit code the process will have (so an offline run's sync command covers every
attempt of a resumed run).

Under torchrun every rank keeps an Outcome (each returns a RunResult); only rank 0 writes the
record and talks to W&B.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from expctl.errors import EXIT_SIGINT, EXIT_SIGTERM, ExpctlError, Interrupted, RuntimeFailure
from expctl.record.files import CHECKPOINT_DIR, last_checkpoint_name
from expctl.record.jsonpolicy import is_finite_number
from expctl.record.read import read_metrics, read_summary
from expctl.record.timings import timings
from expctl.status import RunStatus
from expctl.trackers.session import RunTrackers
from expctl.train.progress import StartInfo

if TYPE_CHECKING:
    from expctl.device import DeviceInfo
    from expctl.record.write import RunRecord
    from expctl.trackers.base import Tracker
    from expctl.train.checkpoint_state import Position
    from expctl.train.checkpoints import TopK
    from expctl.train.placement import Placement
    from expctl.train.progress import ProgressSink
    from expctl.train.settings import TrainSettings


@dataclass
class RunResult:
    run_dir: Path
    status: RunStatus
    final_metrics: dict[str, float]
    best_metrics: dict[str, float]
    best_checkpoint: Path | None
    wandb_path: str | None
    sync_command: str | None
    history: list[dict[str, float]]
    device: str
    artifact: str | None = None  # "name:vN" in the local artifact store, when published
    artifact_aliases: tuple[str, ...] = ()  # the aliases publishing moved to it ("best", ...)
    notes: list[str] = field(default_factory=list)  # things the user should hear about
    shown_notes: tuple[str, ...] = ()  # those the progress display already printed
    rank: int = 0  # under torchrun: the process that returned this (rank 0 wrote the record)
    tracking: list[dict[str, Any]] = field(default_factory=list)  # summary.json's tracking


class Outcome:
    """One run's account: what :meth:`write_summary` records and :meth:`result` returns.

    ``pos``, ``record`` and ``topk`` are the loop's own objects (read, never replaced);
    ``config`` is the plain, redacted config the record keeps.
    """

    def __init__(
        self,
        *,
        settings: TrainSettings,
        place: Placement,
        call_time: float,
        pos: Position,
        record: RunRecord,
        topk: TopK,
        config: dict[str, Any],
        sink: ProgressSink,
        init_record: dict[str, Any] | None,
    ):
        self.s, self.call_time = settings, call_time
        self.group, self.device, self.precision = place.group, place.device, place.precision
        self.num_threads = place.num_threads
        self.pos, self.record, self.topk, self.config, self.sink = pos, record, topk, config, sink
        self.init_record = init_record  # summary.json's init_from
        self.overrides: list[str] = []  # as overrides.yaml keeps them (secrets redacted)
        self.sweep: SweepTrial | None = None  # the sweep trial this run is, if any
        self.config_name: str | None = None  # the primary config (expctl run --like)
        self.status: RunStatus = "running"
        self.error: str | None = None
        self.history: list[dict[str, float]] = []  # one row per validated epoch
        self.notes: list[str] = []
        self._shown_notes: list[str] = []  # printed by the sink as they happened
        self.trackers = RunTrackers(settings.loggers)
        self.artifact: str | None = None
        self.artifact_aliases: tuple[str, ...] = ()
        self.resumed_from: int | None = None
        self.started_at = datetime.now(timezone.utc)
        self.first_step_time: float | None = None
        self._loop_clock: tuple[float, float] | None = None  # (wall, cpu) when the loop started
        self.loop_times: tuple[float, float] | None = None  # (wall, cpu) seconds of the loop

    # -- start --------------------------------------------------------------------------------

    def resume_at(self, step: int) -> None:
        """A resumed run continues the account of the attempts before it, up to ``step``."""
        self.resumed_from = step
        # The per-epoch history is the record's own: metrics.jsonl rows up to this step.
        self.history = [
            row
            for row in read_metrics(self.record.run_dir)[0]
            if "val_loss" in row and int(row["step"]) <= step
        ]
        summary = read_summary(self.record.run_dir)[0] or {}
        self.trackers.resume_from(summary)
        self.init_record = summary.get("init_from")  # what the first attempt started from
        self.config_name = summary.get("config_name") or self.config_name
        sweep = summary.get("sweep")
        if isinstance(sweep, dict) and {"id", "trial"} <= sweep.keys():
            self.sweep = SweepTrial(str(sweep["id"]), int(sweep["trial"]))

    def record_start(self) -> None:
        """The summary says ``running`` from now on (a reader can tell a crashed run)."""
        self.started_at = datetime.now(timezone.utc)
        self.write_summary()

    def start_tracking(self, provenance: Any = None) -> Tracker:
        """Start the run's trackers (``logger``: W&B by default) in the background
        (expctl.trackers.background): training does not wait for them; their notes and W&B's
        run path are picked up by :meth:`poll_tracker`. ``provenance``: the run's capture,
        whose commit and remote W&B records as its git state (waited for on the helper thread,
        so training does not wait for git either)."""
        tracker = self.trackers.start(
            is_main=self.group.is_main,
            run_name=self.s.name,
            config=self.config,
            group=self.sweep.sweep_id if self.sweep else None,  # W&B groups a sweep's runs
            directory=self.record.run_dir,
            git=(lambda: provenance.wait().wandb_git()) if provenance is not None else None,
        )
        self.poll_tracker()
        return tracker

    def poll_tracker(self) -> None:
        """Say what the trackers have to say since the last look: their notes (a failed start,
        a fallback to offline) and, once, the W&B run they opened. Cheap: called at log points."""
        notes, opened = self.trackers.news()
        for note in notes:
            self.note(note)
        if opened is not None:
            self.sink.message(opened)

    def start_info(self, total_steps: int | None) -> StartInfo:
        """What the progress display says as the run starts."""
        device = self.device.description
        if self.group.distributed:
            device = f"{device} × {self.group.world_size} processes"
        return StartInfo(
            run_dir=str(self.record.run_dir),
            device=device,
            precision=self.precision.name,
            num_threads=self.num_threads,
            epochs=self.s.epochs,
            total_steps=total_steps,
            start_step=self.pos.step,
            resumed=self.resumed_from is not None,
            wandb=self.trackers.description(),
        )

    def loop_started(self) -> None:
        self._loop_clock = (time.perf_counter(), time.process_time())

    def loop_ended(self) -> None:
        if self._loop_clock is not None:
            wall, cpu = self._loop_clock
            self.loop_times = (time.perf_counter() - wall, time.process_time() - cpu)

    def note(self, text: str) -> None:
        """Something the user should hear about: in the summary, the result and the progress."""
        self.notes.append(text)
        self.sink.message(f"warning: {text}")
        self._shown_notes.append(text)

    # -- the end ------------------------------------------------------------------------------

    def finish(self, status: RunStatus, signum: int | None) -> RunResult:
        """Record a run that ended at a step boundary; raise :class:`Interrupted` (with the
        result attached) when a signal ended it."""
        self.status = status
        publish = None
        if status == "completed" and self.group.is_main:
            publish = self._log_artifacts()
        exit_code = 0
        if status == "interrupted":
            exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        self._finish_trackers(exit_code, meanwhile=publish)
        self.write_summary()
        self.record.close()
        result = self.result()
        if status == "interrupted":
            name = signal.Signals(signum).name if signum is not None else "signal"
            error = Interrupted(
                signum or signal.SIGTERM,
                f"interrupted by {name} at step {self.pos.step}; saved {last_checkpoint_name()}",
                hint=f"resume with: expctl run --resume {self.record.run_dir}",
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result

    def fail(self, e: BaseException) -> BaseException:
        """Record a run that ended by an exception; finish W&B with the matching exit code.

        Returns the error to raise: ``e`` itself, or a :class:`RuntimeFailure` saying what
        failed where (errors from the user's model, data or loss); an ExpctlError gets the
        RunResult as its ``result``.
        """
        e = as_failure(e, self.pos, self.device)
        if isinstance(e, Interrupted | KeyboardInterrupt):
            self.status = "interrupted"
            exit_code = getattr(e, "exit_code", 130)
        else:
            self.status = "failed"
            exit_code = getattr(e, "exit_code", 1) if isinstance(e, ExpctlError) else 1
        self.error = str(e) or type(e).__name__
        try:
            # Keep the good checkpoints a diverged run found; last.pt is not rewritten (the
            # weights may be NaN now), so a resume starts from the previous one.
            self.topk.flush()
        except Exception as flush_error:
            self.notes.append(f"could not write checkpoints: {flush_error}")
        try:
            if self.trackers.tracker is not None:
                self._finish_trackers(exit_code)
        finally:
            # The record says how the run ended where the disk still lets it (a full disk may
            # not): the original error is what the user hears either way.
            for write in (self.write_summary, self.record.close):
                try:
                    write()
                except ExpctlError as write_failure:
                    self.notes.append(str(write_failure))
        if isinstance(e, ExpctlError):
            e.result = self.result()  # type: ignore[attr-defined]
        return e

    def _finish_trackers(self, exit_code: int, meanwhile: Callable[[], None] | None = None) -> None:
        """Finish the trackers (W&B: its best/ values, the sync command of every attempt);
        ``meanwhile`` runs here while they finish on their own thread."""
        self.trackers.finish(exit_code, self.best_metrics(), meanwhile=meanwhile)
        self.poll_tracker()  # what they noted while finishing

    def _log_artifacts(self) -> Callable[[], None] | None:
        """Give the trackers the kept checkpoints (queued); return the publishing to the local
        artifact store still to do, if the config asks for it."""
        files = self.topk.files
        if not files:
            return None
        metadata = {
            "run_dir": str(self.record.run_dir),
            "best_metrics": self.best_metrics(),
            "final_metrics": self.final_metrics(),
            "monitor": self.s.monitor,
            "mode": self.s.mode,
        }
        assert self.trackers.tracker is not None
        self.trackers.tracker.log_checkpoints(self.s.artifact_name, files, self.topk.best, metadata)
        if not self.s.publish:
            return None
        return lambda: self._publish(files, {**metadata, "config": self.config})

    def _publish(self, files: list[Path], metadata: dict[str, Any]) -> None:
        from expctl.train.publishing import publish_run

        assert self.topk.best is not None
        published = publish_run(self.s, files, self.topk.best, metadata)
        if published.version is not None:
            self.artifact = published.version.ref
            self.artifact_aliases = tuple(published.version.moved)
        if published.note:
            self.note(published.note)

    # -- what is reported ---------------------------------------------------------------------

    def final_metrics(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}

    def best_metrics(self) -> dict[str, float]:
        monitor = self.s.monitor
        rows = [r for r in self.history if is_finite_number(r.get(monitor))]
        if not rows:
            return {}
        pick = min if self.s.mode == "min" else max
        return dict(pick(rows, key=lambda r: r[monitor]))

    def result(self) -> RunResult:
        tracker = self.trackers.tracker
        return RunResult(
            run_dir=self.record.run_dir,
            status=self.status,
            final_metrics=self.final_metrics(),
            best_metrics=self.best_metrics(),
            best_checkpoint=self.topk.best,
            wandb_path=tracker.path if tracker is not None else None,
            sync_command=self.trackers.sync_command,
            tracking=self.trackers.entries(),
            history=[dict(r) for r in self.history],
            device=self.device.name,
            artifact=self.artifact,
            artifact_aliases=self.artifact_aliases,
            notes=list(self.notes),
            shown_notes=tuple(self._shown_notes),
            rank=self.group.rank,
        )

    def write_summary(self) -> None:
        if not self.group.is_main:
            return
        from expctl.train.checkpoints import LAST

        run_dir, best = self.record.run_dir, self.topk.best
        ended = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.record.write_summary(
            {
                "status": self.status,
                "name": self.s.name,
                "run_dir": str(run_dir),
                "started_at": self.started_at.isoformat(timespec="milliseconds"),
                "ended_at": None if self.status == "running" else ended,
                "error": self.error,
                "seed": self.s.seed,
                "device": self.device.name,
                "device_description": self.device.description,
                "precision": self.precision.name,
                "num_threads": self.num_threads,
                "world_size": self.group.world_size,
                "epochs_completed": self.pos.epoch,
                "step": self.pos.step,
                "resumed_from_step": self.resumed_from,
                "init_from": self.init_record,
                "overrides": self.overrides,
                "config_name": self.config_name,
                "sweep": {"id": self.sweep.sweep_id, "trial": self.sweep.number}
                if self.sweep
                else None,
                "final_metrics": self.final_metrics(),
                "best_metrics": self.best_metrics(),
                "monitor": {"metric": self.s.monitor, "mode": self.s.mode},
                "best_checkpoint": str(best.relative_to(run_dir)) if best else None,
                "checkpoints": [str(f.relative_to(run_dir)) for f in self.topk.files],
                "last_checkpoint": f"{CHECKPOINT_DIR}/{LAST}"
                if (self.record.checkpoint_dir / LAST).exists()
                else None,
                "tracking": self.trackers.entries(),
                "wandb": self.trackers.wandb_block(),  # older expctl reads it (one version more)
                "artifact": self.artifact,
                "timings": timings(self.call_time, self.first_step_time, self.loop_times),
                "notes": self.notes,
            }
        )


def as_failure(e: BaseException, pos: Position, device: DeviceInfo) -> BaseException:
    """Errors from the user's model/data/loss become a RuntimeFailure (exit 1) with a hint."""
    if isinstance(e, ExpctlError) or not isinstance(e, Exception):
        return e
    if isinstance(e, OSError) and e.errno is not None:  # the disk, not the model
        from expctl.fsutil import write_error

        return write_error(e.filename or "the run's files", e)
    where = f"at step {pos.step} (epoch {pos.epoch + 1})"
    import torch  # the loop has imported it: this costs nothing

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return RuntimeFailure(
            f"out of memory on {device.description} {where}",
            hint="lower data.batch_size (trainer.accumulate_grad_batches=N keeps the "
            "effective batch), use trainer.precision=bf16, or pick a smaller model",
        )
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return RuntimeFailure(
        f"training failed {where}: {type(e).__name__}: {first}",
        hint="check that the model's input/output shapes match the data and the loss; "
        "rerun with --debug for the traceback",
    )


class SweepTrial(NamedTuple):
    """The sweep trial a run is: summary.json's ``sweep`` (``expctl runs list --sweep``), and
    its W&B group (the sweep id, as W&B groups a sweep's runs)."""

    sweep_id: str
    number: int
