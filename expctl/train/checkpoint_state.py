"""What a run's checkpoints hold, and when the trainer writes them.

``last.pt`` is built by :func:`training_state` and read back by :func:`load_training_state` and
:meth:`Checkpointer.resume`, side by side so the format is in one place. It holds the model,
optimizer, scheduler and grad scaler, the loop's :class:`Position`, the unreduced metric sums
(expctl.train.meters), the top-k table and every rank's RNG states (:func:`capture_rng`) —
plain tensors and values only, so ``torch.load(weights_only=True)`` loads it and a resumed CPU
run ends bit-identical to an uninterrupted one. The data order needs no saved state at all:
each epoch's permutation is a pure function of (seed, epoch)
(expctl.train.batches.epoch_permutation). A top-k file (:func:`topk_payload`) holds the
weights, the epoch's metrics and the config. The files themselves (atomic saves, the top-k
table) are expctl.train.checkpoints'.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from expctl.errors import ConfigError
from expctl.record.write import RunRecord
from expctl.train.build import Components
from expctl.train.checkpoints import LAST, TopK, snapshot
from expctl.train.distributed import Group
from expctl.train.meters import Meters
from expctl.train.settings import TrainSettings

CHECKPOINT_FORMAT = 1


@dataclass
class Position:
    """Where the loop is: ``epoch`` (from 0) and the next batch of it; optimizer steps done."""

    epoch: int = 0
    next_batch: int = 0
    step: int = 0

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "next_batch": self.next_batch, "step": self.step}

    def restore(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.next_batch = int(state["next_batch"])
        self.step = int(state["step"])


def training_state(
    parts: Components,
    scaler: torch.amp.GradScaler | None,
    pos: Position,
    meters: Meters,
    topk: TopK,
    rng: list[dict[str, Any]],
    *,
    world_size: int,
    seed: int,
) -> dict[str, Any]:
    """``last.pt``: everything a resumed run needs to continue exactly at ``pos``. ``rng`` holds
    every rank's RNG states in rank order; ``topk`` must be flushed (it describes the files)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "position": pos.state(),
        "meters": meters.state(),  # rank 0's unreduced sums
        "topk": topk.state(),
        "rng": rng[0],
        "rng_per_rank": rng if len(rng) > 1 else None,
        "world_size": world_size,
        "seed": seed,
    }


def topk_payload(
    model: torch.nn.Module, row: dict[str, float], step: int, config: dict[str, Any]
) -> dict[str, Any]:
    """A top-k file: the weights (a CPU copy, as training goes on), the epoch's metrics and the
    plain config — enough to rebuild and use the model."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": snapshot(model.state_dict()),
        "epoch": int(row["epoch"]),
        "step": step,
        "metrics": dict(row),
        "config": config,
    }


def load_training_state(
    checkpoint: dict[str, Any],
    parts: Components,
    scaler: torch.amp.GradScaler | None,
    pos: Position,
    meters: Meters,
) -> None:
    """Load ``last.pt``'s model/optimizer/scheduler/scaler states, position and metric sums.

    A checkpoint that does not fit the built components is a config error: the run is being
    resumed with another model or optimizer than it was started with.
    """
    try:
        parts.model.load_state_dict(checkpoint["model"])
        parts.optimizer.load_state_dict(checkpoint["optimizer"])
        if parts.scheduler is not None and checkpoint.get("scheduler") is not None:
            parts.scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(
            f"last.pt does not match this config: {str(e).splitlines()[0]}",
            hint="resume with the run's own config (expctl run --resume RUN_DIR); "
            "overrides may only change the budget or logging",
        ) from e
    pos.restore(checkpoint["position"])
    meters.restore(checkpoint["meters"])


class Checkpointer:
    """Writes a run's checkpoints: top-k files offered at epoch ends, and ``last.pt`` with every
    write — when forced (the run ends, stops or is interrupted), else at epoch ends at most
    every ``checkpoint.write_every_s`` seconds (with epochs of a few milliseconds, saving every
    epoch cost more than the training). Rank 0 alone keeps the top k and writes; ``pos``,
    ``meters`` and ``record`` are the loop's own objects.
    """

    def __init__(
        self,
        *,
        parts: Components,
        scaler: torch.amp.GradScaler | None,
        pos: Position,
        meters: Meters,
        record: RunRecord,
        group: Group,
        settings: TrainSettings,
    ):
        self.parts, self.scaler, self.pos, self.meters = parts, scaler, pos, meters
        self.record, self.group, self.s = record, group, settings
        # Other ranks keep no top-k (k=0): rank 0 alone snapshots and writes them.
        top_k = settings.top_k if group.is_main else 0
        self.topk = TopK(record.checkpoint_dir, settings.monitor, settings.mode, top_k)
        self.last_write = time.monotonic()
        self.written_step: int | None = None  # step of the last.pt on disk

    def offer(self, row: dict[str, float], config: dict[str, Any]) -> None:
        """Keep this epoch's weights if its monitored metric makes the top k (written later)."""
        value = row.get(self.s.monitor)
        if value is None:
            return
        model, step = self.parts.model, self.pos.step
        self.topk.offer(
            int(row["epoch"]), float(value), lambda: topk_payload(model, row, step, config)
        )

    def save(self, *, force: bool) -> None:
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
            last = training_state(
                self.parts,
                self.scaler,
                self.pos,
                self.meters,
                self.topk,
                rng,
                world_size=self.group.world_size,
                seed=self.s.seed,
            )
            self.topk.flush(also={LAST: last})  # written concurrently
            self.record.flush_metrics()  # rows up to this checkpoint are on disk
        self.written_step = self.pos.step
        self.last_write = time.monotonic()

    def resume(self, checkpoint: dict[str, Any]) -> None:
        """After :func:`load_training_state`: the top-k files last.pt knew, and this rank's RNG
        states as saved (saved with another number of processes, rank 0 gets the saved states
        and the others a fresh, reproducible stream)."""
        group, step = self.group, self.pos.step
        if group.is_main:
            self.topk.restore(checkpoint.get("topk", []))
        self.written_step = step
        per_rank = checkpoint.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == group.world_size:
            restore_rng(per_rank[group.rank])
        elif group.rank == 0:
            restore_rng(checkpoint["rng"])
        else:
            seed_everything(self.s.seed + group.rank + 7919 * step)


# -- seeding and RNG state ----------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng() -> dict[str, Any]:
    np_state: Any = np.random.get_state()  # (kind, keys, pos, has_gauss, cached_gaussian)
    version, words, gauss = random.getstate()
    state: dict[str, Any] = {
        # 625 ints as one tensor: pickling them one by one made every save ~2 ms slower
        "python": {"version": version, "words": torch.tensor(words), "gauss": gauss},
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["words"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):  # fewer GPUs than when saved
            torch.cuda.set_rng_state_all(state["cuda"])
