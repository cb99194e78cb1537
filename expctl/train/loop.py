"""``train(cfg)``: build everything from the config, run the loop, leave a complete record.

The loop (:meth:`_Session.fit`) is deliberately plain: epochs of batches, an optimizer step
every ``accumulate_grad_batches`` batches, validation at each epoch end. Two rules keep it fast:

* no host sync per step — loss and accuracy are summed on the device and read every
  ``trainer.log_every_n_steps`` steps and at epoch end (``.item()``/``.tolist()`` are the only
  sync points, marked below);
* W&B is called at those same points only (wandb.log costs ~0.4 ms; per step it slowed a small
  model by ~30%).

Stopping is always at a step boundary: a signal (or ``request_stop``/``should_stop``) lets the
current step finish, then ``last.pt`` is saved so a resumed run continues exactly there.
Checkpoint files are written at epoch ends at most every ``checkpoint.write_every_s`` seconds
(default 30) and always when the run ends, stops or is interrupted; a hard kill (SIGKILL, node
crash) loses at most that much.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from expctl.device import (
    DeviceInfo,
    Precision,
    choose_num_threads,
    resolve_device,
    resolve_precision,
)
from expctl.errors import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    ConfigError,
    ExpctlError,
    Interrupted,
    RuntimeFailure,
    UsageError,
)
from expctl.rundir import create_run_dir
from expctl.train.batches import Batches, make_batches
from expctl.train.build import Components, build_components
from expctl.train.checkpoints import (
    LAST,
    TopK,
    load_checkpoint,
    model_weights,
    save_checkpoint,
    snapshot,
    validate_monitor,
)
from expctl.train.progress import NullProgress, ProgressSink, StartInfo, default_progress
from expctl.train.record import CHECKPOINT_DIR, RunRecord, read_metrics, read_summary
from expctl.train.settings import TrainSettings
from expctl.train.state import (
    StopRequests,
    capture_rng,
    clear_stop_request,
    restore_rng,
    seed_everything,
    torch_globals,
)

EpochCallback = Callable[[int, dict[str, float]], bool]
"""Called after each epoch's validation with (epoch number from 1, metrics); True = stop."""

LOGGED_METRICS = frozenset(
    {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch", "samples_per_s"}
)
CHECKPOINT_FORMAT = 1


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | stopped | interrupted | failed
    final_metrics: dict[str, float]
    best_metrics: dict[str, float]
    best_checkpoint: Path | None
    wandb_path: str | None
    sync_command: str | None
    history: list[dict[str, float]]
    device: str
    artifact: str | None = None  # "name:vN" in the local artifact store, when published
    notes: list[str] = field(default_factory=list)  # things the user should hear about


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

    Raises :class:`Interrupted` (exit 130/143) after saving ``last.pt`` when stopped by a signal,
    :class:`RuntimeFailure` when training fails (NaN loss, OOM), :class:`ConfigError` for bad
    config. The exception's ``result`` attribute holds the RunResult when a record was written.
    """
    call_time = time.time()
    settings = TrainSettings.from_config(cfg)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    num_threads = choose_num_threads(settings.num_threads)
    validate_monitor(settings.monitor, settings.mode, set(LOGGED_METRICS))
    checkpoint = None
    if resume is not None:
        run_dir = Path(resume)
        checkpoint = load_checkpoint(run_dir / CHECKPOINT_DIR / LAST)
    sink = progress or (NullProgress() if quiet else default_progress())
    session = _Session(
        cfg, settings, device, precision, num_threads, sink, list(callbacks), call_time
    )
    try:
        with (
            StopRequests(handle_signals, should_stop) as stops,
            torch_globals(num_threads, settings.deterministic),
        ):
            session.stops = stops
            return session.run(run_dir, list(overrides), checkpoint, init_from, wandb_group)
    finally:
        sink.close()
        clear_stop_request()


# -- the run --------------------------------------------------------------------------------------


@dataclass
class _Position:
    """Where the loop is: ``epoch`` (from 0) and the next batch of it; optimizer steps done."""

    epoch: int = 0
    next_batch: int = 0
    step: int = 0


class _StepBuffer:
    """Each step's loss and hits (``argmax == target``), kept on the device until reduced.

    Appending launches no device work; :meth:`reduce` sums a whole interval in a few ops. (Summing
    every step took five tiny ops, ~6% of a small model's step on CPU.)
    """

    MAX_STEPS = 256  # reduce at least this often, so the buffer stays small

    def __init__(self) -> None:
        self.losses: dict[int, list[torch.Tensor]] = {}  # batch size -> mean losses
        self.hits: list[torch.Tensor] = []
        self.count = 0
        self.steps = 0

    def add(self, loss: torch.Tensor, hits: torch.Tensor | None, n: int) -> None:
        self.losses.setdefault(n, []).append(loss.detach())
        if hits is not None:
            self.hits.append(hits)
        self.count += n
        self.steps += 1

    def reduce(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sum of per-sample losses, number of hits or None): device tensors, no sync."""
        total: torch.Tensor | None = None
        for n, losses in self.losses.items():  # one group per batch size (the last batch differs)
            part = torch.stack(losses).sum() * n
            total = part if total is None else total + part
        assert total is not None, "reduce() of an empty buffer"
        hits = torch.cat(self.hits).sum() if self.hits else None
        return total, hits

    def state(self) -> dict[str, Any]:
        """Saved unreduced: a resumed run must sum exactly the same groups in the same order
        (float sums depend on grouping), so its metrics equal an uninterrupted run's bit for bit."""
        return {
            "losses": [(n, torch.stack(ls).cpu()) for n, ls in self.losses.items()],
            "hits": torch.cat(self.hits).cpu() if self.hits else None,
            "count": self.count,
            "steps": self.steps,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> _StepBuffer:
        buffer = cls()
        buffer.losses = {int(n): list(t.to(device).unbind(0)) for n, t in state["losses"]}
        buffer.hits = [state["hits"].to(device)] if state["hits"] is not None else []
        buffer.count, buffer.steps = int(state["count"]), int(state["steps"])
        return buffer

    def read(self) -> dict[str, float]:
        """Mean loss (and accuracy) of what was added: one host sync."""
        total, hits = self.reduce()
        if hits is None:
            return {"loss": total.item() / self.count}
        dtype = torch.float32 if total.device.type == "mps" else torch.float64  # exact counts
        loss_sum, hit_count = torch.stack([total.to(dtype), hits.to(dtype)]).tolist()
        return {"loss": loss_sum / self.count, "acc": hit_count / self.count}


class _Meter:
    """Loss/accuracy sums kept on the device; :meth:`read` is the one host sync."""

    def __init__(self, device: torch.device):
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS: no float64
        self.loss = torch.zeros((), dtype=dtype, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0
        self.has_accuracy = False
        self.started = time.perf_counter()

    def add(self, loss_sum: torch.Tensor, hits: torch.Tensor | None, count: int) -> None:
        self.loss.add_(loss_sum)
        if hits is not None:
            self.correct.add_(hits)
            self.has_accuracy = True
        self.count += count

    def read(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        # note: host sync point (waits for the device to finish the queued steps)
        loss_sum, correct = torch.stack([self.loss, self.correct.to(self.loss.dtype)]).tolist()
        out = {"loss": loss_sum / self.count}
        if self.has_accuracy:
            out["acc"] = correct / self.count
        return out

    def samples_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    def state(self) -> dict[str, Any]:
        return {
            "loss": self.loss.detach().cpu(),
            "correct": self.correct.detach().cpu(),
            "count": self.count,
            "has_accuracy": self.has_accuracy,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.loss.copy_(state["loss"])
        self.correct.copy_(state["correct"])
        self.count = int(state["count"])
        self.has_accuracy = bool(state["has_accuracy"])


class _Session:
    def __init__(
        self,
        cfg: DictConfig,
        settings: TrainSettings,
        device: DeviceInfo,
        precision: Precision,
        num_threads: int,
        sink: ProgressSink,
        callbacks: list[EpochCallback],
        call_time: float,
    ):
        self.cfg = cfg
        self.s = settings
        self.device = device
        self.torch_device = device.torch_device()
        self.precision = precision
        self.num_threads = num_threads
        self.sink = sink
        self.callbacks = callbacks
        self.call_time = call_time
        self.stops: StopRequests = StopRequests(False, None)
        self.notes: list[str] = []
        self.history: list[dict[str, float]] = []
        self.pos = _Position()
        self.sync_dirs: list[str] = []  # offline W&B dirs of earlier attempts (resume)
        self.first_step_time: float | None = None
        self.loop_started: float | None = None
        self.loop_cpu_started: float | None = None
        self.loop_times: tuple[float, float] | None = None  # (wall, cpu) seconds of fit()
        self.last_write = time.monotonic()
        self.written_step: int | None = None  # step of the last.pt on disk
        self._plain: dict[str, Any] | None = None

    # -- setup ------------------------------------------------------------------------------------

    def run(
        self,
        run_dir: Path | None,
        overrides: list[str],
        checkpoint: dict[str, Any] | None,
        init_from: str | None,
        wandb_group: str | None,
    ) -> RunResult:
        s = self.s
        seed_everything(s.seed)
        self.parts: Components = build_components(self.cfg, self.torch_device)
        if init_from:
            self._init_weights(init_from)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.grad_scaler else None
        self.batches: Batches = make_batches(self.parts.data, self.torch_device, s.seed)
        # Per step only `pending` is touched; it is folded into the interval and epoch sums at
        # the sync points (fewer tiny device ops per step).
        self.pending = _StepBuffer()
        self.epoch_meter = _Meter(self.torch_device)
        self.interval_meter = _Meter(self.torch_device)
        self._autocast = self._autocast_factory()

        if run_dir is None:
            run_dir = create_run_dir(s.name)
        self.record = RunRecord(run_dir)
        self.topk = TopK(self.record.checkpoint_dir, s.monitor, s.mode, s.top_k)
        wandb_run_id = None
        if checkpoint is not None:
            self._restore(checkpoint)
            if self._done():
                raise UsageError(
                    f"run {run_dir} already finished its {self._budget()}",
                    hint="to train longer, resume with a larger budget: "
                    "trainer.epochs=N or trainer.max_steps=N",
                )
            previous = (read_summary(run_dir) or {}).get("wandb") or {}
            wandb_run_id = previous.get("run_id")
            self.sync_dirs = [str(d) for d in previous.get("sync_dirs") or []]
            self.record.drop_metrics_after(self.pos.step)
            self.resumed_from: int | None = self.pos.step
            if overrides:  # e.g. a larger trainer.epochs: keep the record's config truthful
                self.record.write_config(self._plain_config())
                self.record.write_overrides([*self.record.read_overrides(), *overrides])
        else:
            self.resumed_from = None
            self.record.write_config(self._plain_config())
            self.record.write_overrides(overrides)

        self.started_at = datetime.now(timezone.utc)
        self.status = "running"
        self.error: str | None = None
        self.tracker: Any = None
        self.sync_command: str | None = None
        self.artifact: str | None = None
        self._write_summary()
        try:
            from expctl.tracking import start_tracker

            self.tracker = start_tracker(
                s.wandb,
                run_name=s.name,
                config=self._plain_config(),
                run_id=wandb_run_id,
                group=wandb_group,
            )
            self.notes.extend(self.tracker.notes)
            for note in self.tracker.notes:
                self.sink.message(f"warning: {note}")
            self.sink.start(self._start_info())
            try:
                outcome = self.fit()
            finally:
                self._stop_loop_clock()
        except BaseException as e:
            error = self._as_failure(e)
            self._fail(error)
            if error is e:
                raise
            raise error from e
        return self._finish(outcome)

    def _as_failure(self, e: BaseException) -> BaseException:
        """Errors from the user's model/data/loss become a RuntimeFailure (exit 1) with a hint."""
        if isinstance(e, ExpctlError) or not isinstance(e, Exception):
            return e
        where = f"at step {self.pos.step} (epoch {self.pos.epoch + 1})"
        if _is_oom(e):
            return RuntimeFailure(
                f"out of memory on {self.device.description} {where}",
                hint="lower data.batch_size (trainer.accumulate_grad_batches=N keeps the "
                "effective batch), use trainer.precision=bf16, or pick a smaller model",
            )
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return RuntimeFailure(
            f"training failed {where}: {type(e).__name__}: {first}",
            hint="check that the model's input/output shapes match the data and the loss; "
            "rerun with --debug for the traceback",
        )

    def _init_weights(self, ref: str) -> None:
        path = Path(ref)
        if not (path.suffix == ".pt" or path.is_file()):
            try:
                from expctl.artifacts.store import checkpoint_for_init
            except ImportError:
                raise ConfigError(
                    f"--init-from {ref!r} is not a .pt file and the artifact store is not "
                    "available",
                    hint="pass a checkpoint file (e.g. runs/<name>/<run>/checkpoints/last.pt)",
                ) from None
            path = Path(checkpoint_for_init(ref))
        weights = model_weights(load_checkpoint(path))
        try:
            self.parts.model.load_state_dict(weights)
        except RuntimeError as e:
            raise ConfigError(
                f"{path} does not fit this model: {str(e).splitlines()[0]}",
                hint="initialise from a checkpoint of the same architecture (model config)",
                where="model",
            ) from e

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Everything needed to continue exactly where ``last.pt`` was saved."""
        try:
            self.parts.model.load_state_dict(ckpt["model"])
            self.parts.optimizer.load_state_dict(ckpt["optimizer"])
            if self.parts.scheduler is not None and ckpt.get("scheduler") is not None:
                self.parts.scheduler.load_state_dict(ckpt["scheduler"])
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
        self.epoch_meter.restore(ckpt["meters"]["epoch"])
        self.interval_meter.restore(ckpt["meters"]["interval"])
        self.pending = _StepBuffer.from_state(ckpt["meters"]["pending"], self.torch_device)
        # The per-epoch history is the record's own: metrics.jsonl rows up to this step.
        self.history = [
            row
            for row in read_metrics(self.record.run_dir)
            if "val_loss" in row and int(row["step"]) <= self.pos.step
        ]
        self.topk.restore(ckpt.get("topk", []))
        self.written_step = self.pos.step
        restore_rng(ckpt["rng"])

    # -- the loop -------------------------------------------------------------------------------

    def fit(self) -> tuple[str, int | None]:
        """Train until the budget is spent, a callback asks to stop, or a signal arrives.

        Returns ("completed" | "stopped" | "interrupted", signal number or None).
        """
        s, model = self.s, self.parts.model
        batches_per_epoch = self.batches.batches_per_epoch
        model.train()
        self.loop_started = time.perf_counter()
        self.loop_cpu_started = time.process_time()
        self.epoch_meter.started = self.interval_meter.started = time.perf_counter()
        while not self._done():
            epoch = self.pos.epoch
            for batch_index, (x, y) in enumerate(
                self.batches.train_epoch(epoch, self.pos.next_batch), start=self.pos.next_batch
            ):
                self._forward_backward(x, y)
                last_batch = batch_index + 1 == batches_per_epoch
                if (batch_index + 1 - self.pos.next_batch) % s.accumulate and not last_batch:
                    continue  # keep accumulating gradients
                self._optimizer_step()
                self.pos.step += 1
                self.pos.next_batch = batch_index + 1
                if self.first_step_time is None:
                    self.first_step_time = time.time()
                if self.pos.step % s.log_every == 0:
                    self._log_interval()
                signum = self.stops.requested()
                if signum is not None:
                    self._write_checkpoints(force=True)
                    return "interrupted", signum
                if s.max_steps is not None and self.pos.step >= s.max_steps:
                    break
            if self.pos.next_batch >= batches_per_epoch:
                if self._end_epoch():
                    self._write_checkpoints(force=True)
                    return "stopped", None
            elif s.max_steps is not None and self.pos.step >= s.max_steps:
                self._end_partial_epoch()
        self._write_checkpoints(force=True)
        return "completed", None

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with self._autocast():
            output = self.parts.model(x)
            loss = self.parts.loss_fn(output, y)
        scaled = loss / self.s.accumulate if self.s.accumulate > 1 else loss
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        scaled.backward()
        self.pending.add(loss, _hits(output, y), x.shape[0])
        if self.pending.steps >= _StepBuffer.MAX_STEPS:
            self._fold_pending()

    def _optimizer_step(self) -> None:
        optimizer = self.parts.optimizer
        if self.s.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.parts.model.parameters(), self.s.grad_clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _autocast_factory(self) -> Callable[[], Any]:
        if self.precision.autocast_dtype is None:
            return contextlib.nullcontext  # a disabled torch.autocast still costs ~3 µs a step
        dtype = getattr(torch, self.precision.autocast_dtype)
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _fold_pending(self) -> None:
        if self.pending.count:
            loss_sum, hits = self.pending.reduce()
            self.interval_meter.add(loss_sum, hits, self.pending.count)
            self.epoch_meter.add(loss_sum, hits, self.pending.count)
            self.pending = _StepBuffer()

    def _log_interval(self) -> None:
        self._fold_pending()
        values = self.interval_meter.read()  # host sync
        row = {
            "step": self.pos.step,
            "epoch": self.pos.epoch + 1,
            "train_loss": values.get("loss", math.nan),
            **({"train_acc": values["acc"]} if "acc" in values else {}),
            "lr": self._lr(),
            "samples_per_s": self.interval_meter.samples_per_s(),
        }
        self._check_finite(row["train_loss"])
        self._emit(row)
        self.sink.update(self.pos.step, self.pos.epoch + 1, row)
        self.interval_meter = _Meter(self.torch_device)

    def _end_epoch(self) -> bool:
        """Validate, log, checkpoint, step the scheduler; True if a callback asks to stop."""
        row = self._epoch_row()
        scheduler = self.parts.scheduler
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(row.get(self.s.monitor, row["val_loss"]))
            else:
                scheduler.step()
        self.pos = _Position(self.pos.epoch + 1, 0, self.pos.step)
        self.epoch_meter = _Meter(self.torch_device)
        self._offer_topk(row)
        self._write_checkpoints(force=False)
        self.sink.epoch_end(int(row["epoch"]), row)
        stop = False
        for callback in self.callbacks:
            stop = bool(callback(int(row["epoch"]), dict(row))) or stop
        return stop

    def _end_partial_epoch(self) -> None:
        """max_steps ended the run mid-epoch: validate once more so the final metrics exist."""
        row = self._epoch_row()
        self._offer_topk(row)
        self.sink.epoch_end(int(row["epoch"]), row)
        for callback in self.callbacks:
            callback(int(row["epoch"]), dict(row))

    def _epoch_row(self) -> dict[str, float]:
        self._fold_pending()
        train = self.epoch_meter.read()  # host sync
        self._check_finite(train.get("loss", 0.0))
        val = self._validate()
        row: dict[str, float] = {"step": self.pos.step, "epoch": self.pos.epoch + 1}
        if train:
            row["train_loss"] = train["loss"]
            if "acc" in train:
                row["train_acc"] = train["acc"]
        row["val_loss"] = val["loss"]
        if "acc" in val:
            row["val_acc"] = val["acc"]
        row["lr"] = self._lr()
        row["samples_per_s"] = self.epoch_meter.samples_per_s()
        self._check_finite(row["val_loss"], where="validation")
        self.history.append(row)
        self._emit(row)
        return row

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        model = self.parts.model
        model.eval()
        buffer = _StepBuffer()
        for x, y in self.batches.val_batches():
            with self._autocast():
                output = model(x)
                loss = self.parts.loss_fn(output, y)
            buffer.add(loss, _hits(output, y), x.shape[0])
        model.train()
        return buffer.read()  # host sync

    def _check_finite(self, value: float, where: str = "training") -> None:
        if not math.isfinite(value):
            raise RuntimeFailure(
                f"{where} loss became {value} at step {self.pos.step} (epoch {self.pos.epoch + 1})",
                hint="lower optim.lr, set trainer.grad_clip (e.g. 1.0), or check the data "
                "for NaN/inf values",
            )

    def _emit(self, row: dict[str, float]) -> None:
        self.record.append_metrics(row)
        metrics = {k: v for k, v in row.items() if k != "step"}
        self.tracker.log(metrics, step=int(row["step"]))

    def _lr(self) -> float:
        return float(self.parts.optimizer.param_groups[0]["lr"])

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

    def _write_checkpoints(self, *, force: bool) -> None:
        """Flush top-k files and save last.pt: when forced, else at most every write_every_s."""
        if not force and time.monotonic() - self.last_write < self.s.write_every_s:
            return
        if self.written_step == self.pos.step and not self.topk.dirty:
            return  # nothing new since the last write
        self.topk.flush()
        self._save_last()
        self.record.flush_metrics()  # rows up to this checkpoint are on disk
        self.written_step = self.pos.step
        self.last_write = time.monotonic()

    def _save_last(self) -> None:
        p = self.parts
        save_checkpoint(
            self.record.checkpoint_dir / LAST,
            {
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
                "meters": {
                    "epoch": self.epoch_meter.state(),
                    "interval": self.interval_meter.state(),
                    "pending": self.pending.state(),
                },
                "topk": self.topk.state(),
                "rng": capture_rng(),
                "seed": self.s.seed,
            },
        )

    # -- budget ---------------------------------------------------------------------------------

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

    def _finish(self, outcome: tuple[str, int | None]) -> RunResult:
        status, signum = outcome
        self.status = status
        if status == "completed":
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
            self._write_summary()
            self.record.close()
        if isinstance(e, ExpctlError):
            e.result = self._result()  # type: ignore[attr-defined]

    def _finish_tracker(self, exit_code: int) -> str | None:
        """Finish W&B; for offline runs, the sync command covering every attempt's dir."""
        if self.tracker is None:
            return None
        from expctl.tracking import sync_command

        self.tracker.finish(exit_code)
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
        try:
            from expctl.artifacts.publish import publish_checkpoints
        except ImportError:
            self._note("the local artifact store is not available; checkpoints not published")
            return
        assert self.topk.best is not None
        try:
            version = publish_checkpoints(self.s.artifact_name, files, self.topk.best, metadata)
        except Exception as e:  # training succeeded; the checkpoints stay in the run dir
            self._note(f"publishing checkpoints failed: {e} (they are in {files[0].parent})")
            return
        number = str(getattr(version, "version", "?"))
        number = number if number.startswith("v") else f"v{number}"
        self.artifact = f"{getattr(version, 'name', self.s.artifact_name)}:{number}"

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.sink.message(f"warning: {text}")

    # -- reporting --------------------------------------------------------------------------------

    def _final_metrics(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}

    def _best_metrics(self) -> dict[str, float]:
        rows = [r for r in self.history if _finite(r.get(self.s.monitor))]
        if not rows:
            return {}
        pick = min if self.s.mode == "min" else max
        return dict(pick(rows, key=lambda r: r[self.s.monitor]))

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
        )

    def _write_summary(self) -> None:
        run_dir = self.record.run_dir
        best = self.topk.best
        tracker = self.tracker
        self.record.write_summary(
            {
                "status": self.status,
                "name": self.s.name,
                "run_dir": str(run_dir),
                "started_at": self.started_at.isoformat(timespec="seconds"),
                "ended_at": None
                if self.status == "running"
                else datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "error": self.error,
                "seed": self.s.seed,
                "device": self.device.name,
                "device_description": self.device.description,
                "precision": self.precision.name,
                "num_threads": self.num_threads,
                "epochs_completed": self.pos.epoch,
                "step": self.pos.step,
                "resumed_from_step": self.resumed_from,
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
                "timings": self._timings(),
                "notes": self.notes,
            }
        )

    def _timings(self) -> dict[str, float | None]:
        now = time.time()
        start = process_start_time()
        first = self.first_step_time
        # loop_cpu_s far below loop_s means the process waited for CPUs (contention)
        loop, cpu = self.loop_times or (None, None)
        return {
            "process_start_to_first_step_s": _rounded(first - start if first and start else None),
            "train_call_to_first_step_s": _rounded(first - self.call_time if first else None),
            "loop_s": _rounded(loop),
            "loop_cpu_s": _rounded(cpu),
            "total_s": _rounded(now - self.call_time),
        }

    def _stop_loop_clock(self) -> None:
        if self.loop_started is not None and self.loop_cpu_started is not None:
            self.loop_times = (
                time.perf_counter() - self.loop_started,
                time.process_time() - self.loop_cpu_started,
            )

    def _start_info(self) -> StartInfo:
        tracker = self.tracker
        wandb = tracker.mode
        if tracker.path:
            wandb = f"{wandb} ({tracker.path})"
        return StartInfo(
            run_dir=str(self.record.run_dir),
            device=self.device.description,
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
            from expctl.config import redact

            plain = OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
            assert isinstance(plain, dict)
            if not self.s.seed_was_set:
                plain["seed"] = self.s.seed  # the seed this run actually used
            self._plain = redact(plain)
        return self._plain


# -- helpers --------------------------------------------------------------------------------------


def _hits(output: Any, target: torch.Tensor) -> torch.Tensor | None:
    """Which predictions are right, for classification (logits N×C, integer targets)."""
    if (
        isinstance(output, torch.Tensor)
        and output.dim() == 2
        and target.dim() == 1
        and not target.is_floating_point()
    ):
        return output.detach().argmax(dim=1).eq(target)
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return bool(oom is not None and isinstance(e, oom))


def process_start_time() -> float | None:
    """When this process started (epoch seconds), from /proc on Linux; None elsewhere."""
    try:
        stat = Path("/proc/self/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    start_ticks = float(fields[19])  # field 22 of /proc/<pid>/stat, counted after "(comm)"
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")
