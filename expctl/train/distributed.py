"""Training in several processes with ``torch.distributed`` (torchrun), and the launcher for it.

``expctl run`` works under ``torchrun --nproc-per-node N -m expctl run ...``: torchrun sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and each process trains one shard of every batch in a
DistributedDataParallel model (nccl on CUDA, gloo on CPU). ``trainer.devices=N`` re-launches
the same command under ``python -m torch.distributed.run --standalone`` (expctl.train.relaunch);
the children see ``WORLD_SIZE`` and do not launch again.

Conventions every rank relies on:

* ``data.batch_size`` is the **global** batch: each of the W ranks trains on ``batch_size / W``
  samples, every W-th index of the same seeded epoch permutation, so the union of the shards is
  exactly the single-process batch and the same config trains the same model on any W.
* Rank 0 alone writes the run directory, talks to W&B and reports progress; metrics are summed
  over all ranks before they are logged, so every rank sees the same numbers.
* Decisions that change control flow (stop on a signal, write a checkpoint, a callback's stop)
  are agreed with one small collective, so every rank takes the same branch at the same step.

Single-process runs get a :class:`Group` whose operations return their input: the loop has no
``if distributed`` branches.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from expctl import signals
from expctl.errors import ConfigError, RuntimeFailure, UsageError
from expctl.rundir import holding_run_dir

T = TypeVar("T")

# Stop checks under DDP cost a collective (~50–100 µs on gloo): agree about every this many
# seconds of training, and never less often than each log interval.
STOP_CHECK_TARGET_S = 0.5


@dataclass(frozen=True)
class DistEnv:
    """This process's place as torchrun describes it (all zeros/ones outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistEnv:
        env = os.environ if env is None else env

        def number(key: str, default: int) -> int:
            text = env.get(key, "").strip()
            return int(text) if text.isdigit() else default

        world_size = number("WORLD_SIZE", 1)
        return cls(
            rank=number("RANK", 0),
            world_size=world_size,
            local_rank=number("LOCAL_RANK", 0),
            local_world_size=number("LOCAL_WORLD_SIZE", world_size),
        )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class Group:
    """The training processes as one group; in a single process every operation is identity."""

    def __init__(self, env: DistEnv):
        self.env = env
        self.rank = env.rank
        self.world_size = env.world_size
        self.distributed = env.distributed
        self.is_main = env.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all ranks, in place (on its device's backend)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max_ints(self, values: Sequence[int]) -> list[int]:
        """Element-wise maximum of small integers over all ranks (CPU, gloo: no device sync)."""
        if not self.distributed:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [int(v) for v in tensor.tolist()]

    def decide(self, main_says: bool) -> bool:
        """Rank 0's decision, on every rank (e.g. a time-based checkpoint write)."""
        return bool(self.max_ints([int(main_says) if self.is_main else 0])[0])

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (a run directory, a resolved path)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (used at checkpoint writes: RNG states)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """DistributedDataParallel under torchrun (it broadcasts rank 0's weights at once)."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)


@contextlib.contextmanager
def process_group(env: DistEnv | None = None) -> Iterator[Group]:
    """Join the torchrun process group for the duration; a no-op for a single process.

    Reuses a group that is already initialised (the CLI opens it before ``train()`` to agree on
    the run directory; a user's script may open its own) and then leaves it to its owner.
    Otherwise it initialises one — ``cpu:gloo,cuda:nccl`` when CUDA is present, so control
    values stay on the CPU while gradients use NCCL — and always destroys it, also on errors
    and signals (SIGTERM raises SystemExit outside the loop, which still runs ``finally``).
    """
    env = env or DistEnv.from_env()
    if not env.distributed:
        yield Group(env)
        return
    import torch.distributed as dist

    if dist.is_initialized():
        yield Group(env)
        return
    backend = "gloo"
    if torch.cuda.is_available() and env.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(env.local_rank)  # before NCCL picks a device for this rank
        backend = "cpu:gloo,cuda:nccl"
    try:
        dist.init_process_group(backend=backend)
    except Exception as e:
        raise RuntimeFailure(
            f"cannot join the torch.distributed process group (rank {env.rank} of "
            f"{env.world_size}): {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            hint="start multi-process runs with torchrun (or trainer.devices=N), which sets "
            "MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE",
        ) from e
    try:
        yield Group(env)
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def held_by_rank0(run_dir: Path, group: Group) -> Iterator[None]:
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


class StopRequests:
    """What stops ``train()`` after its current step: a signal (noted by :mod:`expctl.signals`;
    with ``handle_signals`` the run holds signals for its whole duration), ``request_stop()``
    from code, or the caller's ``should_stop()`` (the sweep agent's)."""

    def __init__(self, handle_signals: bool, should_stop: Callable[[], int | None] | None):
        self.handle_signals = handle_signals
        self.should_stop = should_stop
        self._held = contextlib.ExitStack()

    def __enter__(self) -> StopRequests:
        if self.handle_signals:
            self._held.enter_context(signals.deferred())
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.close()

    def requested(self) -> int | None:
        noted = signals.pending()
        if noted is not None:
            return noted
        return self.should_stop() if self.should_stop is not None else None


class StopAgreement:
    """Every rank stops at the same step.

    A signal reaches each rank at a different moment (torchrun forwards SIGTERM to every
    worker), so the loop may only act on the maximum of all ranks' stop requests. In a single
    process that is just the local request, checked every step (so a signal loses at most one
    step). Under DDP it costs a collective, so ranks agree only every ``every`` steps: about
    every :data:`STOP_CHECK_TARGET_S` seconds of training (each rank proposes from its own
    step time, the smallest proposal wins), and at least every ``max_every`` steps (the log
    interval). A small model stops within half a second; a large one (1 s steps) every step.
    """

    def __init__(self, group: Group, max_every: int):
        self.group = group
        self.max_every = max(1, int(max_every))
        self.next_check = 0  # first check at the first step: it also starts the clock
        self._since: tuple[int, float] | None = None

    def poll(self, step: int, local: int | None) -> int | None:
        """The agreed stop signal after ``step`` (``local``: this rank's request), or None."""
        if not self.group.distributed:
            return local
        if step < self.next_check:
            return None
        now = time.perf_counter()
        every = 1
        if self._since is not None and step > self._since[0]:
            step_s = (now - self._since[1]) / (step - self._since[0])
            every = max(1, min(self.max_every, int(STOP_CHECK_TARGET_S / max(step_s, 1e-9))))
        signum, negative_every = self.group.max_ints([local or 0, -every])
        self.next_check = step - negative_every
        self._since = (step, now)
        return signum or None


def local_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank share of the global ``data.batch_size`` (which must divide evenly)."""
    if world_size > 1 and batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} does not split evenly over {world_size} processes",
            hint=f"data.batch_size is the global batch; use a multiple of {world_size}, e.g. "
            f"data.batch_size={max(world_size, batch_size // world_size * world_size)}",
            where="data.batch_size",
        )
    return batch_size // world_size


def shard_scale(global_count: int, world_size: int, rank: int) -> float:
    """Loss factor for a rank's shard of a global batch of ``global_count`` samples.

    DDP averages gradients over ranks; with uneven shards (an epoch's last batch) the plain
    average would weight samples unequally. Scaling each rank's mean loss by
    ``shard size × world size / global count`` makes the average the global batch's mean.
    """
    shard = max(0, -(-(global_count - rank) // world_size))
    return shard * world_size / global_count
