"""``train(cfg)``: build everything from the config, run the loop, leave a complete record.

Read it like a recipe: :meth:`_Run.setup` builds the parts, :meth:`_Run.fit` is the whole training
loop (forward, backward, optimizer step, logging, validation at epoch ends), and
:meth:`_Run.save_checkpoints` / :meth:`_Run.finish` leave the record. Two rules keep it fast:

* no host sync per step — loss and accuracy stay on the device (expctl.train.meters) and are
  read every ``trainer.log_every_n_steps`` steps and at epoch ends (the marked sync points);
* W&B is called at those same points only (``wandb.log`` blocks ~0.4 ms; a helper thread
  for it measured slower here: its Python work contends for the GIL with the loop).

Stopping is always at a step boundary: a signal (or ``request_stop``/``should_stop``) lets the
current step finish, then ``last.pt`` is saved so a resumed run continues exactly there.
Checkpoint files are written at epoch ends at most every ``checkpoint.write_every_s`` seconds
(default 30) and always when the run ends, stops or is interrupted; a hard kill (SIGKILL, node
crash) loses at most that much.

Under torchrun the same code runs in every process (expctl.train.distributed): the model is
wrapped in DistributedDataParallel, each rank trains its shard of the global batch, metrics are
summed over ranks, decisions are agreed, and only rank 0 writes the record and talks to W&B.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from expctl import signals
from expctl.device import (
    DeviceInfo,
    Precision,
    choose_num_threads,
    cpu_set,
    resolve_device,
    resolve_precision,
)
from expctl.errors import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    ExpctlError,
    Interrupted,
    RuntimeFailure,
    UsageError,
)
from expctl.rundir import create_run_dir, holding_run_dir
from expctl.status import RunStatus
from expctl.train import host_share
from expctl.train.batches import make_batches
from expctl.train.build import build_components
from expctl.train.checkpoints import (
    LAST,
    TopK,
    load_checkpoint,
    load_init_weights,
    snapshot,
    validate_monitor,
)
from expctl.train.distributed import Group, StopAgreement, process_group
from expctl.train.meters import Meter, Meters, StepBuffer, hits
from expctl.train.progress import NullProgress, ProgressSink, StartInfo, default_progress
from expctl.train.record import CHECKPOINT_DIR, RunRecord, read_metrics, read_summary, timings
from expctl.train.settings import TrainSettings
from expctl.train.state import (
    StopRequests,
    capture_rng,
    restore_rng,
    seed_everything,
    torch_globals,
)

EpochCallback = Callable[[int, dict[str, float]], bool]
"""Called after each epoch's validation with (epoch number from 1, metrics); True = stop.
Under DDP only rank 0 calls it; its answer is applied on every rank."""

LOGGED_METRICS = frozenset(
    {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch", "samples_per_s"}
)
CHECKPOINT_FORMAT = 1


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
    notes: list[str] = field(default_factory=list)  # things the user should hear about
    rank: int = 0  # under torchrun: the process that returned this (rank 0 wrote the record)


def train(
    cfg: DictConfig,
    *,
    run_dir: Path | None = None,
    overrides: Sequence[str] = (),
    resume: Path | None = None,
    init_from: str | None = None,
    callbacks: Sequence[EpochCallback] = (),
    quiet: bool = True,
    progress: ProgressSink | None = None,
    handle_signals: bool = True,
    wandb_group: str | None = None,
    should_stop: Callable[[], int | None] | None = None,
) -> RunResult:
    """Train from a composed config and return what happened.

    ``resume``: a run directory; training continues from its ``checkpoints/last.pt`` in that
    directory (``run_dir`` is ignored). ``init_from``: a ``.pt`` file or an artifact reference
    whose model weights initialise the model. ``handle_signals``: install SIGINT/SIGTERM handlers
    for the duration (stop after the current step); callers that handle signals themselves pass
    False and call :func:`expctl.train.request_stop` or pass ``should_stop`` (returns a signal
    number to stop). ``quiet=False`` without ``progress`` reports progress on stderr.

    Under torchrun every rank calls this with the same arguments (and the same ``run_dir``, or
    None: rank 0 then creates it and tells the others).

    Raises :class:`Interrupted` (exit 130/143) after saving ``last.pt`` when stopped by a signal,
    :class:`RuntimeFailure` when training fails (NaN loss, OOM), :class:`ConfigError` for bad
    config. The exception's ``result`` attribute holds the RunResult when a record was written.
    """
    call_time = time.time()
    settings = TrainSettings.from_config(cfg)
    validate_monitor(settings.monitor, settings.mode, set(LOGGED_METRICS))
    cpus = cpu_set()
    with process_group() as group, host_share.registered(cpus):
        env = group.env
        device = resolve_device(settings.device, env.local_rank if group.distributed else None)
        precision = resolve_precision(settings.precision, device)
        # other trainers on these CPUs (sweep agents, another run) get their part of them too
        trainers = max(env.local_world_size, host_share.sharing(cpus))
        num_threads = choose_num_threads(settings.num_threads, processes=trainers)
        if resume is not None:
            run_dir = Path(resume)
        elif run_dir is None:  # rank 0 names it, every rank uses it
            run_dir = Path(
                group.broadcast(str(create_run_dir(settings.name)) if group.is_main else "")
            )
        sink = progress or (NullProgress() if quiet else default_progress())
        try:
            with _held_by_rank0(run_dir, group):
                checkpoint = None
                if resume is not None:
                    checkpoint = load_checkpoint(run_dir / CHECKPOINT_DIR / LAST)  # every rank
                run = _Run(cfg, settings, group, device, precision, num_threads, call_time)
                run.sink = sink if group.is_main else NullProgress()
                run.callbacks = list(callbacks)
                with (
                    StopRequests(handle_signals, should_stop) as run.stops,
                    torch_globals(num_threads, settings.deterministic),
                ):
                    run.setup(run_dir, list(overrides), checkpoint, init_from)
                    return run.run(wandb_group)
        finally:
            sink.close()
            if not handle_signals:
                signals.clear_request()  # a request_stop() was for this run only


@contextlib.contextmanager
def _held_by_rank0(run_dir: Path, group: Group) -> Iterator[None]:
    """Rank 0 holds the run directory's lock while the run is written; a refusal (another
    process writes it) reaches every rank, so none waits in a collective for the others."""
    with contextlib.ExitStack() as held:
        refusal = ""
        if group.is_main:
            try:
                held.enter_context(holding_run_dir(run_dir))
            except UsageError as e:
                if not group.distributed:
                    raise
                refusal = f"{e.message}\n{e.hint or ''}"
        refusal = group.broadcast(refusal)
        if refusal:
            message, _, hint = refusal.partition("\n")
            raise UsageError(message, hint=hint or None)
        yield


@dataclass
class _Position:
    """Where the loop is: ``epoch`` (from 0) and the next batch of it; optimizer steps done."""

    epoch: int = 0
    next_batch: int = 0
    step: int = 0


class _Run:
    """One training run's state: built by :meth:`setup`, advanced by :meth:`fit`."""

    def __init__(
        self,
        cfg: DictConfig,
        settings: TrainSettings,
        group: Group,
        device: DeviceInfo,
        precision: Precision,
        num_threads: int,
        call_time: float,
    ):
        self.cfg, self.s, self.group = cfg, settings, group
        self.device, self.torch_device = device, device.torch_device()
        self.precision, self.num_threads, self.call_time = precision, num_threads, call_time
        self.sink: ProgressSink = NullProgress()
        self.callbacks: list[EpochCallback] = []
        self.stops = StopRequests(False, None)
        self.pos = _Position()
        self.history: list[dict[str, float]] = []
        self.notes: list[str] = []
        self.status: RunStatus = "running"
        self.error: str | None = None
        self.tracker: Any = None
        self.sync_dirs: list[str] = []  # offline W&B dirs of earlier attempts (resume)
        self.sync_command: str | None = None
        self.artifact: str | None = None
        self.resumed_from: int | None = None
        self.init_record: dict[str, Any] | None = None  # summary.json's init_from
        self._tracker_notes_seen = 0
        self.wandb_run_id: str | None = None
        self.first_step_time: float | None = None
        self.loop_clock: tuple[float, float] | None = None  # (wall, cpu) when fit() started
        self.loop_times: tuple[float, float] | None = None  # (wall, cpu) seconds of fit()
        self.last_write = time.monotonic()
        self.written_step: int | None = None  # step of the last.pt on disk
        self._plain: dict[str, Any] | None = None

    # -- setup ------------------------------------------------------------------------------------

    def setup(
        self,
        run_dir: Path,
        overrides: list[str],
        checkpoint: dict[str, Any] | None,
        init_from: str | None,
    ) -> None:
        s, group = self.s, self.group
        seed_everything(s.seed)  # same seed on every rank: same split, same initial weights
        self.parts = build_components(self.cfg, self.torch_device)
        if init_from:
            source = load_init_weights(self.parts.model, init_from)
            self.init_record = dataclasses.asdict(source)
            if group.is_main:
                self.sink.message(source.describe())
        # DDP broadcasts rank 0's weights; dropout etc. then draw per-rank random numbers.
        self.model = group.wrap(self.parts.model, self.torch_device)
        if group.distributed:
            seed_everything(s.seed + group.rank)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.grad_scaler else None
        self.autocast = self._autocast_factory()
        self.batches = make_batches(
            self.parts.data, self.torch_device, s.seed, rank=group.rank, world_size=group.world_size
        )
        self.meters = Meters(self.torch_device)

        self.record = RunRecord(run_dir, write=group.is_main)
        # Other ranks keep no top-k (k=0): rank 0 alone snapshots and writes them.
        self.topk = TopK(
            self.record.checkpoint_dir, s.monitor, s.mode, s.top_k if group.is_main else 0
        )
        if checkpoint is not None:
            self._restore(checkpoint, overrides)
        else:
            self.record.write_config(self._plain_config())
            self.record.write_overrides(overrides)
        self.started_at = datetime.now(timezone.utc)
        self._write_summary()

    def _restore(self, ckpt: dict[str, Any], overrides: list[str]) -> None:
        """Everything needed to continue exactly where ``last.pt`` was saved."""
        from expctl.errors import ConfigError

        parts = self.parts
        try:
            parts.model.load_state_dict(ckpt["model"])
            parts.optimizer.load_state_dict(ckpt["optimizer"])
            if parts.scheduler is not None and ckpt.get("scheduler") is not None:
                parts.scheduler.load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ConfigError(
                f"last.pt does not match this config: {str(e).splitlines()[0]}",
                hint="resume with the run's own config (expctl run --resume RUN_DIR); "
                "overrides may only change the budget or logging",
            ) from e
        p = ckpt["position"]
        self.pos = _Position(int(p["epoch"]), int(p["next_batch"]), int(p["step"]))
        if self._done():
            raise UsageError(
                f"run {self.record.run_dir} already finished its {self._budget()}",
                hint="to train longer, resume with a larger budget: "
                "trainer.epochs=N or trainer.max_steps=N",
            )
        self.meters.restore(ckpt["meters"])
        # The per-epoch history is the record's own: metrics.jsonl rows up to this step.
        run_dir = self.record.run_dir
        self.history = [
            row
            for row in read_metrics(run_dir)
            if "val_loss" in row and int(row["step"]) <= self.pos.step
        ]
        if self.group.is_main:
            self.topk.restore(ckpt.get("topk", []))
        self.written_step = self.resumed_from = self.pos.step
        per_rank = ckpt.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == self.group.world_size:
            restore_rng(per_rank[self.group.rank])
        elif self.group.rank == 0:
            restore_rng(ckpt["rng"])
        else:  # saved with another number of processes: a fresh, reproducible stream
            seed_everything(self.s.seed + self.group.rank + 7919 * self.pos.step)
        summary = read_summary(run_dir) or {}
        previous = summary.get("wandb") or {}
        self.wandb_run_id = previous.get("run_id")
        self.sync_dirs = [str(d) for d in previous.get("sync_dirs") or []]
        self.init_record = summary.get("init_from")  # what the first attempt started from
        self.record.drop_metrics_after(self.pos.step)
        if overrides:  # e.g. a larger trainer.epochs: keep the record's config truthful
            self.record.write_config(self._plain_config())
            self.record.write_overrides([*self.record.read_overrides(), *overrides])

    def _autocast_factory(self) -> Callable[[], Any]:
        if self.precision.autocast_dtype is None:
            return contextlib.nullcontext  # a disabled torch.autocast still costs ~3 µs a step
        dtype = getattr(torch, self.precision.autocast_dtype)
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _start_tracking(self, wandb_group: str | None) -> None:
        from expctl.tracking import NullTracker, start_tracker

        if not self.group.is_main:
            self.tracker = NullTracker()  # only rank 0 talks to W&B
            return
        tracker = start_tracker(
            self.s.wandb,
            run_name=self.s.name,
            config=self._plain_config(),
            run_id=self.wandb_run_id,
            group=wandb_group,
            directory=self.record.run_dir,
        )
        for note in tracker.notes:
            self._note(note)
        self._tracker_notes_seen = len(tracker.notes)
        self.tracker = tracker

    def run(self, wandb_group: str | None) -> RunResult:
        """Track, fit, and record how it ended (also when it failed)."""
        try:
            self._start_tracking(wandb_group)
            self.sink.start(self._start_info())
            try:
                outcome = self.fit()
            finally:
                if self.loop_clock is not None:
                    wall, cpu = self.loop_clock
                    self.loop_times = (time.perf_counter() - wall, time.process_time() - cpu)
        except BaseException as e:
            error = _as_failure(e, self.pos, self.device)
            self._fail(error)
            if error is e:
                raise
            raise error from e
        with signals.deferred(escalate=False):  # a finished run is recorded as finished
            return self._finish(*outcome)

    # -- the loop ---------------------------------------------------------------------------------

    def fit(self) -> tuple[RunStatus, int | None]:
        """Train until the budget is spent, a callback asks to stop, or a signal arrives.

        Returns ("completed" | "stopped" | "interrupted", signal number or None).
        """
        s, pos, meters = self.s, self.pos, self.meters
        model, optimizer, loss_fn = self.model, self.parts.optimizer, self.parts.loss_fn
        scaler, autocast = self.scaler, self.autocast
        batches_per_epoch = self.batches.batches_per_epoch
        last_batch_scale = self.batches.last_batch_scale  # DDP: this rank's share of the last
        no_sync = getattr(model, "no_sync", contextlib.nullcontext)  # DDP: skip grad all-reduce
        stop = StopAgreement(self.group, s.log_every)
        model.train()
        self.loop_clock = (time.perf_counter(), time.process_time())
        meters.epoch.started = meters.interval.started = time.perf_counter()
        while not self._done():
            first = pos.next_batch
            for index, (x, y) in enumerate(self.batches.train_epoch(pos.epoch, first), first):
                last_batch = index + 1 == batches_per_epoch
                steps_now = last_batch or (index + 1 - first) % s.accumulate == 0
                # Gradient accumulation: DDP all-reduces gradients only on the step's last batch.
                with contextlib.nullcontext() if steps_now else no_sync():
                    with autocast():
                        output = model(x)
                        loss = loss_fn(output, y)
                    scaled = loss / s.accumulate if s.accumulate > 1 else loss
                    if last_batch and last_batch_scale is not None:
                        # the epoch's last shards are uneven; an empty one still joins all-reduce
                        scaled = scaled * last_batch_scale if len(x) else output.sum() * 0.0
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                meters.pending.add(loss, hits(output, y), len(x))
                if not steps_now:
                    continue  # keep accumulating gradients

                if s.grad_clip is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pos.step += 1
                pos.next_batch = index + 1
                if self.first_step_time is None:
                    self.first_step_time = time.time()
                if meters.pending.steps >= StepBuffer.MAX_STEPS:
                    meters.fold()

                if pos.step % s.log_every == 0:
                    self.log_interval()
                signum = stop.poll(pos.step, self.stops.requested())  # DDP: a collective, rarely
                if signum is not None:
                    self.save_checkpoints(force=True)
                    return "interrupted", signum
                if s.max_steps is not None and pos.step >= s.max_steps:
                    break

            if pos.next_batch >= batches_per_epoch:
                if self.end_epoch():
                    self.save_checkpoints(force=True)
                    return "stopped", None
            elif s.max_steps is not None and pos.step >= s.max_steps:
                self.end_partial_epoch()
        self.save_checkpoints(force=True)
        return "completed", None

    def log_interval(self) -> None:
        self.meters.fold()
        interval = self.meters.interval
        values = interval.read(self.group)  # host sync (+ all-reduce under DDP)
        row = {
            "step": self.pos.step,
            "epoch": self.pos.epoch + 1,
            "train_loss": values.get("loss", math.nan),
            **({"train_acc": values["acc"]} if "acc" in values else {}),
            "lr": self._lr(),
            "samples_per_s": interval.samples_per_s(self.group),
        }
        self._check_finite(row["train_loss"])
        self._emit(row)
        self.sink.update(self.pos.step, self.pos.epoch + 1, row)
        self.meters.interval = Meter(self.torch_device)

    def end_epoch(self) -> bool:
        """Validate, log, checkpoint, step the scheduler; True if a callback asks to stop."""
        row = self._epoch_row()
        scheduler = self.parts.scheduler
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(row.get(self.s.monitor, row["val_loss"]))
            else:
                scheduler.step()
        self.pos.epoch, self.pos.next_batch = self.pos.epoch + 1, 0
        # a new epoch starts new means: the next row must not average across the boundary
        self.meters.epoch = Meter(self.torch_device)
        self.meters.interval = Meter(self.torch_device)
        self._offer_topk(row)
        self.save_checkpoints(force=False)
        self.sink.epoch_end(int(row["epoch"]), row)
        return self.group.decide(self._call_callbacks(row))

    def end_partial_epoch(self) -> None:
        """max_steps ended the run mid-epoch: validate once more so the final metrics exist."""
        row = self._epoch_row()
        self._offer_topk(row)
        self.sink.epoch_end(int(row["epoch"]), row)
        self._call_callbacks(row)

    def _call_callbacks(self, row: dict[str, float]) -> bool:
        stop = False
        if self.group.is_main:
            for callback in self.callbacks:
                stop = bool(callback(int(row["epoch"]), dict(row))) or stop
        return stop

    def _epoch_row(self) -> dict[str, float]:
        self.meters.fold()
        train = self.meters.epoch.read(self.group)  # host sync (+ all-reduce under DDP)
        self._check_finite(train.get("loss", 0.0))
        val = self.validate()
        row: dict[str, float] = {"step": self.pos.step, "epoch": self.pos.epoch + 1}
        if train:
            row["train_loss"] = train["loss"]
            if "acc" in train:
                row["train_acc"] = train["acc"]
        row["val_loss"] = val["loss"]
        if "acc" in val:
            row["val_acc"] = val["acc"]
        row["lr"] = self._lr()
        row["samples_per_s"] = self.meters.epoch.samples_per_s(self.group)
        self._check_finite(row["val_loss"], where="validation")
        self.history.append(row)
        self._emit(row)
        return row

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Each rank validates its shard with the bare model (no DDP collectives: shards may
        differ in batch count); the sums are then added over ranks."""
        model = self.parts.model
        model.eval()
        buffer = StepBuffer()
        for x, y in self.batches.val_batches():
            with self.autocast():
                output = model(x)
                loss = self.parts.loss_fn(output, y)
            buffer.add(loss, hits(output, y), len(x))
        model.train()
        return buffer.read(self.group, self.torch_device)  # host sync

    def _check_finite(self, value: float, where: str = "training") -> None:
        if not math.isfinite(value):
            raise RuntimeFailure(
                f"{where} loss became {value} at step {self.pos.step} (epoch {self.pos.epoch + 1})",
                hint="lower optim.lr, set trainer.grad_clip (e.g. 1.0), or check the data "
                "for NaN/inf values",
            )

    def _emit(self, row: dict[str, float]) -> None:
        self.record.append_metrics(row)
        self.tracker.log({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def _lr(self) -> float:
        return float(self.parts.optimizer.param_groups[0]["lr"])

    # -- checkpoints ------------------------------------------------------------------------------

    def _offer_topk(self, row: dict[str, float]) -> None:
        value = row.get(self.s.monitor)
        if value is None:
            return
        step = self.pos.step

        def payload() -> dict[str, Any]:
            return {
                "format": CHECKPOINT_FORMAT,
                "model": snapshot(self.parts.model.state_dict()),
                "epoch": int(row["epoch"]),
                "step": step,
                "metrics": dict(row),
                "config": self._plain_config(),
            }

        self.topk.offer(int(row["epoch"]), float(value), payload)

    def save_checkpoints(self, *, force: bool) -> None:
        """Flush top-k files and save last.pt: when forced, else at most every write_every_s.

        Rank 0's clock decides for every rank (one collective under DDP), since all ranks
        contribute their RNG state to last.pt.
        """
        due = force or time.monotonic() - self.last_write >= self.s.write_every_s
        fresh = self.written_step != self.pos.step or self.topk.dirty
        if not self.group.decide(due and fresh):
            return
        rng = self.group.gather(capture_rng())
        if self.group.is_main:
            self.topk.flush(also={LAST: self._training_state(rng)})  # written concurrently
            self.record.flush_metrics()  # rows up to this checkpoint are on disk
        self.written_step = self.pos.step
        self.last_write = time.monotonic()

    def _training_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.parts
        return {
            "format": CHECKPOINT_FORMAT,
            "model": p.model.state_dict(),
            "optimizer": p.optimizer.state_dict(),
            "scheduler": p.scheduler.state_dict() if p.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "position": {
                "epoch": self.pos.epoch,
                "next_batch": self.pos.next_batch,
                "step": self.pos.step,
            },
            "meters": self.meters.state(),  # rank 0's unreduced sums
            "topk": self.topk.state(),
            "rng": rng[0],
            "rng_per_rank": rng if len(rng) > 1 else None,
            "world_size": self.group.world_size,
            "seed": self.s.seed,
        }

    # -- budget -----------------------------------------------------------------------------------

    def _done(self) -> bool:
        s = self.s
        if s.max_steps is not None and self.pos.step >= s.max_steps:
            return True
        return s.epochs is not None and self.pos.epoch >= s.epochs

    def _budget(self) -> str:
        parts = []
        if self.s.epochs is not None:
            parts.append(f"{self.s.epochs} epochs")
        if self.s.max_steps is not None:
            parts.append(f"{self.s.max_steps} steps")
        return " / ".join(parts)

    def _total_steps(self) -> int | None:
        per_epoch = -(-self.batches.batches_per_epoch // self.s.accumulate)
        by_epochs = per_epoch * self.s.epochs if self.s.epochs is not None else None
        candidates = [n for n in (by_epochs, self.s.max_steps) if n is not None]
        return min(candidates) if candidates else None

    # -- the end ----------------------------------------------------------------------------------

    def _finish(self, status: RunStatus, signum: int | None) -> RunResult:
        self.status = status
        if status == "completed" and self.group.is_main:
            self._log_artifacts()
        exit_code = 0
        if status == "interrupted":
            exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        self.sync_command = self._finish_tracker(exit_code)
        self._write_summary()
        self.record.close()
        result = self._result()
        if status == "interrupted":
            name = signal.Signals(signum).name if signum is not None else "signal"
            error = Interrupted(
                signum or signal.SIGTERM,
                f"interrupted by {name} at step {self.pos.step}; saved checkpoints/last.pt",
                hint=f"resume with: expctl run --resume {self.record.run_dir}",
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result

    def _fail(self, e: BaseException) -> None:
        """Record a run that ended by an exception, finish W&B with the matching exit code."""
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
            if self.tracker is not None:
                self.sync_command = self._finish_tracker(exit_code)
        finally:
            # The record says how the run ended where the disk still lets it (a full disk may
            # not): the original error is what the user hears either way.
            for write in (self._write_summary, self.record.close):
                try:
                    write()
                except ExpctlError as write_failure:
                    self.notes.append(str(write_failure))
        if isinstance(e, ExpctlError):
            e.result = self._result()  # type: ignore[attr-defined]

    def _finish_tracker(self, exit_code: int) -> str | None:
        """Finish W&B; for offline runs, the sync command covering every attempt's dir."""
        from expctl.tracking import sync_command

        self.tracker.finish(exit_code)
        for note in self.tracker.notes[self._tracker_notes_seen :]:
            self._note(note)
        self._tracker_notes_seen = len(self.tracker.notes)
        if self.tracker.sync_dir is None:
            return None
        self.sync_dirs = [*self.sync_dirs, str(self.tracker.sync_dir)]
        return sync_command(list(dict.fromkeys(self.sync_dirs)))

    def _log_artifacts(self) -> None:
        files = self.topk.files
        if not files:
            return
        metadata = {
            "run_dir": str(self.record.run_dir),
            "best_metrics": self._best_metrics(),
            "final_metrics": self._final_metrics(),
            "monitor": self.s.monitor,
            "mode": self.s.mode,
        }
        self.tracker.log_checkpoints(self.s.artifact_name, files, self.topk.best, metadata)
        if self.s.publish:
            self._publish(files, {**metadata, "config": self._plain_config()})

    def _publish(self, files: list[Path], metadata: dict[str, Any]) -> None:
        from expctl.artifacts.publish import publish_checkpoints

        assert self.topk.best is not None
        try:
            version = publish_checkpoints(
                self.s.artifact_name,
                files,
                self.topk.best,
                metadata,
                aliases=self.s.artifact_aliases,
            )
        except Exception as e:  # training succeeded; the checkpoints stay in the run dir
            self._note(f"publishing checkpoints failed: {e} (they are in {files[0].parent})")
            return
        self.artifact = version.ref
        if "best" in self.s.artifact_aliases and "best" not in version.moved:
            holder = version.name + ":" + _alias_holder(version.name, "best")
            self._note(
                f"published {version.ref} as latest; best stays on {holder}: this run's "
                f"{self.s.monitor} does not beat it (to move it anyway: expctl artifacts "
                f"alias {version.ref} best)"
            )

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.sink.message(f"warning: {text}")

    # -- reporting --------------------------------------------------------------------------------

    def _final_metrics(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}

    def _best_metrics(self) -> dict[str, float]:
        monitor = self.s.monitor
        rows = [r for r in self.history if _finite(r.get(monitor))]
        if not rows:
            return {}
        pick = min if self.s.mode == "min" else max
        return dict(pick(rows, key=lambda r: r[monitor]))

    def _result(self) -> RunResult:
        tracker = self.tracker
        return RunResult(
            run_dir=self.record.run_dir,
            status=self.status,
            final_metrics=self._final_metrics(),
            best_metrics=self._best_metrics(),
            best_checkpoint=self.topk.best,
            wandb_path=tracker.path if tracker is not None else None,
            sync_command=self.sync_command,
            history=[dict(r) for r in self.history],
            device=self.device.name,
            artifact=self.artifact,
            notes=list(self.notes),
            rank=self.group.rank,
        )

    def _write_summary(self) -> None:
        if not self.group.is_main:
            return
        run_dir, best, tracker = self.record.run_dir, self.topk.best, self.tracker
        ended = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.record.write_summary(
            {
                "status": self.status,
                "name": self.s.name,
                "run_dir": str(run_dir),
                "started_at": self.started_at.isoformat(timespec="seconds"),
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
                "final_metrics": self._final_metrics(),
                "best_metrics": self._best_metrics(),
                "monitor": {"metric": self.s.monitor, "mode": self.s.mode},
                "best_checkpoint": str(best.relative_to(run_dir)) if best else None,
                "checkpoints": [str(f.relative_to(run_dir)) for f in self.topk.files],
                "last_checkpoint": f"{CHECKPOINT_DIR}/{LAST}"
                if (self.record.checkpoint_dir / LAST).exists()
                else None,
                "wandb": {
                    "mode": tracker.mode if tracker is not None else None,
                    "path": tracker.path if tracker is not None else None,
                    "run_id": tracker.run_id if tracker is not None else None,
                    "sync_command": self.sync_command,
                    "sync_dirs": self.sync_dirs,
                },
                "artifact": self.artifact,
                "timings": timings(self.call_time, self.first_step_time, self.loop_times),
                "notes": self.notes,
            }
        )

    def _start_info(self) -> StartInfo:
        tracker = self.tracker
        wandb = f"{tracker.mode} ({tracker.path})" if tracker.path else tracker.mode
        device = self.device.description
        if self.group.distributed:
            device = f"{device} × {self.group.world_size} processes"
        return StartInfo(
            run_dir=str(self.record.run_dir),
            device=device,
            precision=self.precision.name,
            num_threads=self.num_threads,
            epochs=self.s.epochs,
            total_steps=self._total_steps(),
            start_step=self.pos.step,
            resumed=self.resumed_from is not None,
            wandb=wandb,
        )

    def _plain_config(self) -> dict[str, Any]:
        """The resolved config as plain values, secrets redacted (computed once)."""
        if self._plain is None:
            from expctl.secrets import redact

            plain = OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
            assert isinstance(plain, dict)
            if not self.s.seed_was_set:
                plain["seed"] = self.s.seed  # the seed this run actually used
            self._plain = redact(plain)
        return self._plain


# -- helpers --------------------------------------------------------------------------------------


def _as_failure(e: BaseException, pos: _Position, device: DeviceInfo) -> BaseException:
    """Errors from the user's model/data/loss become a RuntimeFailure (exit 1) with a hint."""
    if isinstance(e, ExpctlError) or not isinstance(e, Exception):
        return e
    if isinstance(e, OSError) and e.errno is not None:  # the disk, not the model
        from expctl.fsutil import write_error

        return write_error(e.filename or "the run's files", e)
    where = f"at step {pos.step} (epoch {pos.epoch + 1})"
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


def _alias_holder(name: str, alias: str) -> str:
    from expctl.artifacts.store import ArtifactStore

    number = ArtifactStore().aliases(name).get(alias)
    return f"v{number}" if number is not None else "?"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
