"""``train(cfg)``: build everything from the config, run the loop, leave a complete record.

Read it like a recipe: :func:`train` places the run (process group, device, threads, run
directory), :meth:`_Run.setup` builds the parts, :meth:`_Run.fit` is the whole training loop
(forward, backward, optimizer step, logging, validation at epoch ends), and the run's
:class:`~expctl.train.outcome.Outcome` writes down how it ended. Two rules keep it fast:

* no host sync per step — loss and accuracy stay on the device (expctl.train.meters) and are
  read every ``trainer.log_every_n_steps`` steps and at epoch ends (the marked sync points);
* W&B is given rows at those same points only, and never waited for: its start-up and its
  calls run in a helper thread (expctl.trackers.background), fed through a queue.

Stopping is always at a step boundary: a signal (or ``request_stop``/``should_stop``) lets the
current step finish, then ``last.pt`` is saved so a resumed run continues exactly there. What
checkpoints hold, and when they are written: expctl.train.checkpoint_state.

Under torchrun the same code runs in every process (expctl.train.distributed): the model is
wrapped in DistributedDataParallel, each rank trains its shard of the global batch, metrics are
summed over ranks, decisions are agreed, and only rank 0 writes the record and talks to W&B.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from expctl import signals
from expctl.config import dump_yaml
from expctl.provenance.capture import start_run_provenance
from expctl.record.files import CHECKPOINT_DIR
from expctl.record.write import RunRecord
from expctl.rundir import create_run_dir
from expctl.status import RunStatus
from expctl.trackers import warm_up
from expctl.train.batches import make_batches
from expctl.train.build import build_components
from expctl.train.checkpoint_state import (
    Checkpointer,
    Position,
    load_training_state,
    seed_everything,
)
from expctl.train.checkpoints import LAST, load_checkpoint, load_init_weights, validate_monitor
from expctl.train.distributed import StopAgreement, StopRequests, held_by_rank0, process_group
from expctl.train.meters import Meters, StepBuffer
from expctl.train.outcome import Outcome, RunResult, SweepTrial
from expctl.train.placement import Placement, placed, torch_globals
from expctl.train.progress import NullProgress, ProgressSink, default_progress
from expctl.train.resume import budget_spent
from expctl.train.rows import Rows
from expctl.train.settings import LOGGED_METRICS, TrainSettings, with_labels

EpochCallback = Callable[[int, dict[str, float]], bool]
"""Called after each epoch's validation with (epoch number from 1, metrics); True = stop.
Under DDP only rank 0 calls it; its answer is applied on every rank."""


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
    sweep: SweepTrial | None = None,
    should_stop: Callable[[], int | None] | None = None,
    key_names: Mapping[str, str] | None = None,
    labels: tuple[Sequence[str], str | None] | None = None,
    config_dir: Path | None = None,
    config_name: str | None = None,
) -> RunResult:
    """Train from a composed config and return what happened.

    ``resume``: a run directory; training continues from its ``checkpoints/last.pt`` in that
    directory (``run_dir`` is ignored). ``init_from``: a ``.pt`` file or an artifact reference
    whose model weights initialise the model. ``handle_signals``: install SIGINT/SIGTERM handlers
    for the duration (stop after the current step); callers that handle signals themselves pass
    False and call :func:`expctl.train.request_stop` or pass ``should_stop`` (returns a signal
    number to stop). ``quiet=False`` without ``progress`` reports progress on stderr.
    ``key_names``: for keys a resume's overrides changed, the key the user wrote
    (``trainer.epochs`` → ``epochs``), so a refusal names what the user can change.
    ``labels``: the run's (tags, notes) (``expctl run --tag``), given to W&B at init beside
    ``wandb.tags``/``wandb.notes`` of the config. ``config_dir``: where the config came from,
    for the run's provenance record (written on a helper thread while training starts);
    ``config_name``: the primary config's name, recorded for ``expctl run --like``.

    Under torchrun every rank calls this with the same arguments (and the same ``run_dir``, or
    None: rank 0 then creates it and tells the others).

    Raises :class:`Interrupted` (exit 130/143) after saving ``last.pt`` when stopped by a signal,
    :class:`RuntimeFailure` when training fails (NaN loss, OOM), :class:`ConfigError` for bad
    config. The exception's ``result`` attribute holds the RunResult when a record was written.
    """
    call_time = time.time()
    settings = with_labels(TrainSettings.from_config(cfg), labels)
    validate_monitor(settings.monitor, settings.mode, set(LOGGED_METRICS))
    with process_group() as group, placed(settings, group) as place:
        if resume is not None:
            run_dir = Path(resume)
        elif run_dir is None:  # rank 0 names it, every rank uses it
            run_dir = Path(
                group.broadcast(str(create_run_dir(settings.name)) if group.is_main else "")
            )
        sink = progress or (NullProgress() if quiet else default_progress())
        stops = StopRequests(handle_signals, should_stop)
        shown = sink if group.is_main else NullProgress()
        try:
            run = _Run(
                cfg, settings, place, call_time, sink=shown, callbacks=callbacks, stops=stops
            )
            run.key_names = dict(key_names or {})
            with held_by_rank0(run_dir, group):
                # inside the lock: a refused second resume must not write into this run
                capture = start_run_provenance(
                    cfg, run_dir, place, config_dir=config_dir, resumed=resume is not None
                )
                run.provenance = capture  # its commit reaches W&B, off the critical path
                run.config_name = config_name
                try:
                    last = run_dir / CHECKPOINT_DIR / LAST
                    checkpoint = load_checkpoint(last) if resume is not None else None
                    with stops, torch_globals(place.num_threads, settings.deterministic):
                        run.setup(run_dir, list(overrides), checkpoint, init_from, sweep)
                        return run.run()
                finally:
                    if capture is not None:
                        capture.wait()  # never raises; a crashed run keeps its provenance
        finally:
            sink.close()
            if not handle_signals:
                signals.clear_request()  # a request_stop() was for this run only


class _Run:
    """One training run: built by :meth:`setup`, trained by :meth:`fit`; ``self.outcome`` keeps
    its account (history, summary, W&B run, result), ``self.checkpoints`` writes its files.
    ``sink`` shows progress (a NullProgress on ranks other than 0), ``callbacks`` are called
    after each epoch's validation, ``stops`` says whether to stop after a step."""

    def __init__(
        self,
        cfg: DictConfig,
        settings: TrainSettings,
        place: Placement,
        call_time: float,
        *,
        sink: ProgressSink,
        callbacks: Sequence[EpochCallback],
        stops: StopRequests,
    ):
        self.cfg, self.s, self.place, self.call_time = cfg, settings, place, call_time
        self.group, self.torch_device = place.group, place.device.torch_device()
        self.sink, self.callbacks, self.stops = sink, list(callbacks), stops
        self.provenance: Any = None  # the run's provenance capture (rank 0), for W&B's git
        self.config_name: str | None = None  # summary.json's config_name (run --like)
        self.pos = Position()
        self.key_names: dict[str, str] = {}  # resolved key -> the key the user wrote
        if self.group.is_main:
            warm_up(settings.loggers)  # W&B's import overlaps the setup

    # -- setup ------------------------------------------------------------------------------------

    def setup(
        self,
        run_dir: Path,
        overrides: list[str],
        checkpoint: dict[str, Any] | None,
        init_from: str | None,
        sweep: SweepTrial | None = None,
    ) -> None:
        s, group = self.s, self.group
        seed_everything(s.seed)  # same seed on every rank: same split, same initial weights
        self.parts = build_components(self.cfg, self.torch_device)
        init_record = None
        if init_from:
            source = load_init_weights(self.parts.model, init_from)
            init_record = dataclasses.asdict(source)
            if group.is_main:
                self.sink.message(source.describe())
        # DDP broadcasts rank 0's weights; dropout etc. then draw per-rank random numbers.
        self.model = group.wrap(self.parts.model, self.torch_device)
        self._no_sync = getattr(self.model, "no_sync", contextlib.nullcontext)  # DDP: no reduce
        self._joined = contextlib.nullcontext()  # (reusable) the batches whose gradients reduce
        if group.distributed:
            seed_everything(s.seed + group.rank)
        self.scaler, self.autocast = self.place.grad_scaler(), self.place.autocast()
        self.batches = make_batches(
            self.parts.data, self.torch_device, s.seed, rank=group.rank, world_size=group.world_size
        )
        self.meters = Meters(self.torch_device)

        self.record = RunRecord(run_dir, write=group.is_main, dump_config=dump_yaml)
        self.checkpoints = Checkpointer(
            parts=self.parts,
            scaler=self.scaler,
            pos=self.pos,
            meters=self.meters,
            record=self.record,
            group=group,
            settings=s,
        )
        self.config = s.plain_config(self.cfg)  # resolved, redacted: what the record keeps
        self.outcome = Outcome(
            settings=s,
            place=self.place,
            call_time=self.call_time,
            pos=self.pos,
            record=self.record,
            topk=self.checkpoints.topk,
            config=self.config,
            sink=self.sink,
            init_record=init_record,
        )
        if checkpoint is not None:
            self._restore(checkpoint, overrides)
        else:
            self.record.write_config(self.config)
            self.outcome.overrides = self.record.write_overrides(overrides)
        self.rows = Rows(self.meters, self.parts.optimizer, self.outcome)
        self.outcome.sweep = sweep or self.outcome.sweep  # a resumed trial stays its sweep's
        self.outcome.config_name = self.config_name or self.outcome.config_name
        self.outcome.record_start()

    def _restore(self, checkpoint: dict[str, Any], overrides: list[str]) -> None:
        """Everything needed to continue exactly where ``last.pt`` was saved."""
        load_training_state(checkpoint, self.parts, self.scaler, self.pos, self.meters)
        if self.s.spent(self.pos.step, self.pos.epoch):
            raise budget_spent(self.record.run_dir, self.pos, self.s.budget(), self.key_names)
        self.outcome.resume_at(self.pos.step)  # history, W&B run and earlier attempts
        self.checkpoints.resume(checkpoint)  # the top-k files it knew, this rank's RNG
        self.record.drop_metrics_after(self.pos.step)
        recorded = self.record.read_overrides()
        if overrides:  # e.g. a larger trainer.epochs: keep the record's config truthful
            self.record.write_config(self.config)
            recorded = self.record.write_overrides([*recorded, *overrides])
        self.outcome.overrides = recorded

    def run(self) -> RunResult:
        """Track, fit, and record how it ended (also when it failed)."""
        try:
            self.outcome.start_tracking(self.provenance)
            total_steps = self.s.total_steps(self.batches.batches_per_epoch)
            self.sink.start(self.outcome.start_info(total_steps))
            try:
                ended = self.fit()
            finally:
                self.outcome.loop_ended()
        except BaseException as e:
            error = self.outcome.fail(e)  # the record says how it ended
            if error is e:
                raise
            raise error from e
        with signals.deferred(escalate=False):  # a finished run is recorded as finished
            return self.outcome.finish(*ended)

    # -- the loop ---------------------------------------------------------------------------------

    def fit(self) -> tuple[RunStatus, int | None]:
        """Train until the budget is spent, a callback asks to stop, or a signal arrives.

        Returns ("completed" | "stopped" | "interrupted", signal number or None).
        """
        # Like nanoGPT's loop, the whole step reads top to bottom, its sync points in sight:
        # forward/backward per batch, an optimizer step every `accumulate` batches, logging and
        # stop checks; an epoch's end validates, logs and checkpoints (end_epoch).
        s, pos, meters, outcome = self.s, self.pos, self.meters, self.outcome
        batches_per_epoch = self.batches.batches_per_epoch
        accumulate, log_every, max_steps = s.accumulate, s.log_every, s.max_steps
        stop = StopAgreement(self.group, log_every)
        self.model.train()
        outcome.loop_started()  # the summary's loop wall and CPU seconds
        meters.epoch.started = meters.interval.started = time.perf_counter()
        while not s.spent(pos.step, pos.epoch):
            first = pos.next_batch
            for index, (x, y) in enumerate(self.batches.train_epoch(pos.epoch, first), first):
                last_batch = index + 1 == batches_per_epoch
                steps_now = last_batch or (index + 1 - first) % accumulate == 0
                self._forward_backward(x, y, steps_now, last_batch)
                if not steps_now:
                    continue  # keep accumulating gradients
                self._optimizer_step()
                pos.step += 1
                pos.next_batch = index + 1
                if outcome.first_step_time is None:
                    outcome.first_step_time = time.time()
                if meters.pending.steps >= StepBuffer.MAX_STEPS:
                    meters.fold()

                epoch_row_next = last_batch or (max_steps is not None and pos.step >= max_steps)
                if pos.step % log_every == 0 and not epoch_row_next:
                    # (where the epoch's row follows at this very step, it is the one row: one
                    # row per step, as W&B keeps them; its train_* cover this interval too)
                    self.rows.interval()
                signum = stop.poll(pos.step, self.stops.requested())  # DDP: a collective, rarely
                if signum is not None:
                    self.checkpoints.save(force=True)
                    return "interrupted", signum
                if max_steps is not None and pos.step >= max_steps:
                    break

            if pos.next_batch >= batches_per_epoch:
                if self.end_epoch():
                    self.checkpoints.save(force=True)
                    return "stopped", None
            elif max_steps is not None and pos.step >= max_steps:
                self.end_partial_epoch()
        self.checkpoints.save(force=True)
        return "completed", None

    def _forward_backward(self, x: Any, y: Any, steps_now: bool, last_batch: bool) -> None:
        """One batch's forward and backward pass; its loss and outputs go to the step buffer
        (on the device: no host sync)."""
        model, accumulate = self.model, self.s.accumulate
        # Gradient accumulation: DDP all-reduces gradients only on the step's last batch.
        with self._joined if steps_now else self._no_sync():
            with self.autocast():
                output = model(x)
                loss = self.parts.loss_fn(output, y)
            scaled = loss / accumulate if accumulate > 1 else loss
            if last_batch and self.batches.last_batch_scale is not None:
                # DDP: the epoch's last shards are uneven (this rank's share of the last batch);
                # an empty one still joins the all-reduce
                scale = self.batches.last_batch_scale
                scaled = scaled * scale if len(x) else output.sum() * 0.0
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        self.meters.pending.add(loss, output, y, len(x))

    def _optimizer_step(self) -> None:
        """Clip (unscaled) gradients if asked, step the optimizer (through the fp16 scaler)."""
        optimizer, scaler = self.parts.optimizer, self.scaler
        if self.s.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def end_epoch(self) -> bool:
        """Validate, log, checkpoint, step the scheduler; True if a callback asks to stop."""
        row = self.rows.epoch(self.validate)
        scheduler = self.parts.scheduler
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(row.get(self.s.monitor, row["val_loss"]))
            else:
                scheduler.step()
        self.pos.epoch, self.pos.next_batch = self.pos.epoch + 1, 0
        # a new epoch starts new means: the next row must not average across the boundary
        self.meters.epoch.reset()
        self.meters.interval.reset()
        self.checkpoints.offer(row, self.config)
        self.checkpoints.save(force=False)
        self.sink.epoch_end(int(row["epoch"]), row)
        return self.group.decide(self._call_callbacks(row))

    def end_partial_epoch(self) -> None:
        """max_steps ended the run mid-epoch: validate once more so the final metrics exist."""
        row = self.rows.epoch(self.validate)
        self.checkpoints.offer(row, self.config)
        self.sink.epoch_end(int(row["epoch"]), row)
        self._call_callbacks(row)

    def _call_callbacks(self, row: dict[str, float]) -> bool:
        stop = False
        if self.group.is_main:
            for callback in self.callbacks:
                stop = bool(callback(int(row["epoch"]), dict(row))) or stop
        return stop

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
            buffer.add(loss, output, y, len(x))
        model.train()
        return buffer.read(self.group, self.torch_device)  # host sync
