"""Loss and accuracy sums kept on the device, read (and summed over ranks) at sync points only.

Per step the loop only appends to a :class:`StepBuffer` (no device work): the loss, and for a
classifier its logits and targets — the accuracy is computed for a whole interval at once. At a
log interval or epoch end the buffer is folded into :class:`Meter` sums in a few ops, and
:meth:`Meter.read` is the one host sync. Under DDP the sums, hit counts and sample counts of all
ranks are added in one all-reduce, so the logged metrics are those of the global batch on every
rank.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from expctl.train.distributed import Group


def classifies(output: Any, target: torch.Tensor) -> bool:
    """Classification (logits N×C, integer targets): the trainer reports an accuracy."""
    return (
        isinstance(output, torch.Tensor)
        and output.dim() == 2
        and target.dim() == 1
        and not target.is_floating_point()
    )


def sum_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS: no float64


def _reduced(
    group: Group, loss_sum: torch.Tensor, hit_count: torch.Tensor | None, count: int
) -> dict[str, float]:
    """Mean loss (and accuracy) over all ranks: one host sync, plus one all-reduce under DDP."""
    dtype = sum_dtype(loss_sum.device)
    if not group.distributed:
        if hit_count is None:
            return {"loss": loss_sum.item() / count}
        loss, correct = torch.stack([loss_sum.to(dtype), hit_count.to(dtype)]).tolist()
        return {"loss": loss / count, "acc": correct / count}
    has_acc = torch.ones((), dtype=dtype, device=loss_sum.device)
    if hit_count is None:
        hit_count, has_acc = torch.zeros_like(has_acc), torch.zeros_like(has_acc)
    n = torch.full((), float(count), dtype=dtype, device=loss_sum.device)
    totals = group.sum_(torch.stack([loss_sum.to(dtype), hit_count.to(dtype), n, has_acc]))
    loss, correct, total, with_acc = totals.tolist()  # note: host sync point
    if total == 0:
        return {}
    out = {"loss": loss / total}
    if with_acc:
        out["acc"] = correct / total
    return out


class StepBuffer:
    """Each step's loss, and for a classifier what its accuracy needs, kept on the device until
    reduced.

    Appending launches no device work: logits and targets are kept as they are (detached views)
    and :meth:`reduce` computes the argmax and hits of the whole interval in a few ops, as it sums
    the losses. (Summing every step took five tiny ops, ~6% of a small model's step on CPU; the
    per-step argmax and compare another two.) On CUDA the argmax is taken per step instead:
    there a model's outputs may live in buffers that the next step overwrites (CUDA graphs), its
    own predictions do not. Kept logits are turned into hits early once they pass
    :data:`MAX_KEPT_BYTES`, so a wide classifier holds no more than that.
    """

    MAX_STEPS = 256  # reduce at least this often, so the buffer stays small
    MAX_KEPT_BYTES = 64 << 20

    def __init__(self) -> None:
        self.losses: dict[int, list[torch.Tensor]] = {}  # batch size -> mean losses
        self.hits: list[torch.Tensor] = []  # hits already computed (bool per sample)
        self._scores: list[torch.Tensor] = []  # logits (N×C) or predictions (N), not yet compared
        self._targets: list[torch.Tensor] = []
        self._kept_bytes = 0
        self.count = 0
        self.steps = 0

    def add(self, loss: torch.Tensor, output: Any, target: torch.Tensor, n: int) -> None:
        """One step (or batch): its mean ``loss`` over ``n`` samples and, for a classifier, its
        ``output`` logits and integer ``target`` (anything else adds no accuracy)."""
        if n == 0:
            return  # an empty shard (DDP, an epoch's last batch): nothing to count
        group = self.losses.get(n)
        if group is None:
            group = self.losses[n] = []
        group.append(loss.detach())
        if classifies(output, target):
            scores = output.detach()
            if scores.is_cuda:
                scores = scores.argmax(dim=1)
            self._scores.append(scores)
            self._targets.append(target)
            self._kept_bytes += scores.nelement() * scores.element_size()
            if self._kept_bytes > self.MAX_KEPT_BYTES:
                self._compare()
        self.count += n
        self.steps += 1

    def _compare(self) -> None:
        """Turn the kept logits/predictions into hits (a few ops for all of them)."""
        if not self._scores:
            return
        scores = torch.cat(self._scores)  # all logits (CPU, MPS) or all predictions (CUDA)
        predictions = scores.argmax(dim=1) if scores.dim() == 2 else scores
        self.hits.append(predictions.eq(torch.cat(self._targets)))
        self._scores, self._targets, self._kept_bytes = [], [], 0

    def reduce(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sum of per-sample losses, number of hits or None): device tensors, no sync."""
        total: torch.Tensor | None = None
        for n, losses in self.losses.items():  # one group per batch size (the last batch differs)
            part = torch.stack(losses).sum() * n
            total = part if total is None else total + part
        assert total is not None, "reduce() of an empty buffer"
        self._compare()
        hit_count = torch.cat(self.hits).sum() if self.hits else None
        return total, hit_count

    def read(self, group: Group, device: torch.device) -> dict[str, float]:
        """Mean loss (and accuracy) of what was added on all ranks: one host sync."""
        if self.count == 0:  # this rank's shard was empty; the others may not be
            zero = torch.zeros((), dtype=sum_dtype(device), device=device)
            return _reduced(group, zero, None, 0) if group.distributed else {}
        total, hit_count = self.reduce()
        return _reduced(group, total, hit_count, self.count)

    def state(self) -> dict[str, Any]:
        """Saved unreduced: a resumed run must sum exactly the same groups in the same order
        (float sums depend on grouping), so its metrics equal an uninterrupted run's bit for bit.
        (Hits are counts: comparing the kept logits now changes nothing.)"""
        self._compare()
        return {
            "losses": [(n, torch.stack(ls).cpu()) for n, ls in self.losses.items()],
            "hits": torch.cat(self.hits).cpu() if self.hits else None,
            "count": self.count,
            "steps": self.steps,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> StepBuffer:
        buffer = cls()
        buffer.losses = {int(n): list(t.to(device).unbind(0)) for n, t in state["losses"]}
        buffer.hits = [state["hits"].to(device)] if state["hits"] is not None else []
        buffer.count, buffer.steps = int(state["count"]), int(state["steps"])
        return buffer


class Meter:
    """Loss/accuracy sums of an interval or epoch on the device; :meth:`read` syncs."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), dtype=sum_dtype(device), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0
        self.has_accuracy = False
        self.started = time.perf_counter()

    def reset(self) -> None:
        """Start new sums (an interval or epoch begins) in the same tensors."""
        self.loss.zero_()
        self.correct.zero_()
        self.count = 0
        self.has_accuracy = False
        self.started = time.perf_counter()

    def add(self, loss_sum: torch.Tensor, hit_count: torch.Tensor | None, count: int) -> None:
        self.loss.add_(loss_sum)
        if hit_count is not None:
            self.correct.add_(hit_count)
            self.has_accuracy = True
        self.count += count

    def read(self, group: Group) -> dict[str, float]:
        if not group.distributed and self.count == 0:
            return {}
        return _reduced(group, self.loss, self.correct if self.has_accuracy else None, self.count)

    def samples_per_s(self, group: Group) -> float:
        """This rank's rate × the number of ranks (they run in lockstep)."""
        elapsed = time.perf_counter() - self.started
        return self.count * group.world_size / elapsed if elapsed > 0 else 0.0

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


class Meters:
    """The step buffer and the interval/epoch sums it is folded into at sync points."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pending = StepBuffer()
        self.interval = Meter(device)
        self.epoch = Meter(device)

    def fold(self) -> None:
        if self.pending.count:
            loss_sum, hit_count = self.pending.reduce()
            self.interval.add(loss_sum, hit_count, self.pending.count)
            self.epoch.add(loss_sum, hit_count, self.pending.count)
            self.pending = StepBuffer()

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch.state(),
            "interval": self.interval.state(),
            "pending": self.pending.state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.epoch.restore(state["epoch"])
        self.interval.restore(state["interval"])
        self.pending = StepBuffer.from_state(state["pending"], self.device)
