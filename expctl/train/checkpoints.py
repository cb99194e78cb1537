"""Checkpoint files: top-k by a monitored metric, plus ``last.pt`` for resuming.

Top-k files (``epoch=007-val_loss=0.0912.pt``) hold the model weights, the epoch's metrics and the
plain config, enough to rebuild and use the model. ``last.pt`` holds the whole training state
(expctl.train.checkpoint_state builds both). Every file is saved atomically and contains only
tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.

Writing is decoupled from deciding: :meth:`TopK.offer` keeps a CPU snapshot of a new top-k
model, :meth:`TopK.flush` writes pending files and only then deletes the ones they displaced, so
the directory always holds a consistent (possibly older) top-k. The trainer flushes at most every
``checkpoint.write_every_s`` seconds and always at the end, on stop and on a signal — with
epochs of a few milliseconds, saving every epoch cost more than the training.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from expctl.errors import ConfigError, NotFoundError, RuntimeFailure, did_you_mean_hint
from expctl.fsutil import atomic_path
from expctl.record.files import CHECKPOINT_DIR, SUMMARY_FILE, last_checkpoint_name
from expctl.record.files import LAST_CHECKPOINT_FILE as LAST

_TOPK_FILE = re.compile(r"^epoch=\d+-.+\.pt$")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    # Through a Python file object, so a full disk is an OSError (ENOSPC) naming the problem;
    # torch wraps some of those in "RuntimeError: ... unexpected pos 576 vs 534": unwrap them.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(payload, f)
        except RuntimeError as e:
            os_error = _os_error_behind(e)
            if os_error is None:
                raise
            raise os_error from None


def _os_error_behind(e: BaseException) -> OSError | None:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def save_checkpoints(files: dict[Path, dict[str, Any]]) -> None:
    """Save several checkpoints at once, each atomically: their fsyncs (~10 ms each here,
    most of a small run's checkpoint time) overlap in threads, as fsync releases the GIL."""
    if len(files) <= 1:
        for path, payload in files.items():
            save_checkpoint(path, payload)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        for future in [pool.submit(save_checkpoint, p, payload) for p, payload in files.items()]:
            future.result()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (no arbitrary code from a checkpoint file)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"no checkpoint at {path}",
            hint=f"pass a .pt file, or a run directory that has {last_checkpoint_name()}",
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e)
        if "weights_only" in text or "Weights only" in text:
            # torch's own advice (weights_only=False) would run code stored in the file
            reason = "it holds objects other than tensors and plain values"
        else:
            reason = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise RuntimeFailure(
            f"cannot load checkpoint {path}: {reason}",
            hint="the file is damaged or is not a checkpoint of plain tensors and values; "
            "expctl loads checkpoints only with torch.load(weights_only=True), which runs no "
            "code from the file",
        ) from e
    if not isinstance(obj, dict):
        raise RuntimeFailure(
            f"{path} holds a {type(obj).__name__}, not a checkpoint dictionary",
            hint="save checkpoints as dicts (expctl does); a bare state_dict also works",
        )
    return obj


def model_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model state_dict inside an expctl checkpoint, or the checkpoint if it is one."""
    state = checkpoint.get("model", checkpoint)
    return state if isinstance(state, dict) else checkpoint


def validate_monitor(monitor: str, mode: str, known: set[str]) -> None:
    if mode not in ("min", "max"):
        raise ConfigError(
            f"checkpoint.mode must be min or max, got {mode!r}",
            hint="min for losses, max for accuracies",
            where="checkpoint.mode",
        )
    if monitor not in known:
        hint = f"logged metrics: {', '.join(sorted(known))}"
        hint = did_you_mean_hint(monitor, known, shown=str) + hint
        raise ConfigError(
            f"checkpoint.monitor {monitor!r} is not a logged metric",
            hint=hint,
            where="checkpoint.monitor",
        )


def snapshot(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A CPU copy of a state_dict (training goes on mutating the live tensors)."""
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v
        for k, v in state_dict.items()
    }


@dataclass
class Kept:
    file: str  # name inside the checkpoint directory
    epoch: int
    value: float


class TopK:
    """Keep the ``k`` best checkpoints by ``monitor`` (``k < 0``: keep all, ``0``: none)."""

    def __init__(self, directory: Path, monitor: str, mode: str, k: int):
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = mode
        self.k = int(k)
        self.kept: list[Kept] = []
        self._pending: dict[str, dict[str, Any]] = {}  # file name -> payload not yet written
        self._displaced: set[str] = set()  # written files to delete once the pending exist

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _sort(self) -> None:
        sign = 1.0 if self.mode == "min" else -1.0
        self.kept.sort(key=lambda c: (sign * c.value, c.epoch))

    def qualifies(self, value: float) -> bool:
        if self.k == 0 or not math.isfinite(value):
            return False
        if self.k < 0 or len(self.kept) < self.k:
            return True
        return self._better(value, self.kept[-1].value)

    def offer(self, epoch: int, value: float, payload: Callable[[], dict[str, Any]]) -> Path | None:
        """Keep ``payload()`` (built only if needed) if ``value`` makes the top k.

        Nothing is written until :meth:`flush`.
        """
        if not self.qualifies(value):
            return None
        name = f"epoch={epoch:03d}-{self.monitor}={value:.4f}.pt"
        self.kept = [c for c in self.kept if c.file != name]
        self.kept.append(Kept(name, epoch, float(value)))
        self._sort()
        self._pending[name] = payload()
        self._displaced.discard(name)
        if self.k > 0:
            for dropped in self.kept[self.k :]:
                if self._pending.pop(dropped.file, None) is None:
                    self._displaced.add(dropped.file)
            self.kept = self.kept[: self.k]
        return self.directory / name

    @property
    def dirty(self) -> bool:
        return bool(self._pending or self._displaced)

    def flush(self, also: dict[str, dict[str, Any]] | None = None) -> None:
        """Write pending checkpoints (and ``also``: name -> payload, e.g. last.pt), then delete
        the ones they displaced."""
        save_checkpoints(
            {self.directory / n: p for n, p in {**self._pending, **(also or {})}.items()}
        )
        self._pending.clear()
        for name in sorted(self._displaced):
            (self.directory / name).unlink(missing_ok=True)
        self._displaced.clear()

    @property
    def best(self) -> Path | None:
        return self.directory / self.kept[0].file if self.kept else None

    @property
    def files(self) -> list[Path]:
        return [self.directory / c.file for c in self.kept]

    def state(self) -> list[tuple[str, int, float]]:
        """For last.pt; call after :meth:`flush` so it describes the files on disk."""
        return [(c.file, c.epoch, c.value) for c in self.kept]

    def restore(self, state: list[Any]) -> None:
        """Resume: keep entries whose files exist; remove top-k files the state does not know.

        A run killed between saving a top-k file and saving last.pt leaves such a stray file;
        the replayed epoch writes it again.
        """
        self.kept = [Kept(str(f), int(e), float(v)) for f, e, v in state]
        self.kept = [c for c in self.kept if (self.directory / c.file).exists()]
        self._sort()
        known = {c.file for c in self.kept}
        for path in self.directory.glob("epoch=*.pt"):
            if _TOPK_FILE.match(path.name) and path.name not in known:
                path.unlink(missing_ok=True)


def checkpoint_in_directory(directory: Path) -> Path:
    """The checkpoint a directory stands for: a run's best (its summary.json says which), else
    the only ``.pt`` file in it (e.g. a pulled artifact); several → ask which one."""
    from expctl.record.read import read_summary

    if (directory / SUMMARY_FILE).is_file():
        best = (read_summary(directory)[0] or {}).get("best_checkpoint")
        if isinstance(best, str) and best and (directory / best).is_file():
            return directory / best
    if (directory / CHECKPOINT_DIR).is_dir():
        directory = directory / CHECKPOINT_DIR
    files = sorted(p for p in directory.glob("*.pt") if p.name != LAST) or sorted(
        directory.glob("*.pt")
    )
    if len(files) == 1:
        return files[0]
    names = ", ".join(p.name for p in files) or "none"
    raise ConfigError(
        f"--init-from {str(directory)!r}: {len(files)} checkpoints there ({names})",
        hint="pass one .pt file, or the artifact reference (NAME:best) to take its best",
    )


@dataclass(frozen=True)
class InitSource:
    """What ``--init-from`` loaded: recorded in summary.json as ``init_from``."""

    ref: str  # as given on the command line
    version: str | None  # NAME:vN of the artifact (also of a pulled artifact directory)
    file: str  # the checkpoint file: the artifact's file name, or the path loaded
    sha256: str

    def describe(self) -> str:
        what = f"{self.version} (file {self.file})" if self.version else self.file
        return f"initialised the model from {what}, sha256 {self.sha256[:12]}"


def find_init_source(ref: str) -> tuple[Path, InitSource]:
    """The checkpoint file ``--init-from REF`` means: a .pt file, a run or pulled directory, or
    an artifact of the local store (verified)."""
    path = Path(ref)
    if path.is_dir() or path.suffix == ".pt" or path.is_file():
        file = checkpoint_in_directory(path) if path.is_dir() else path
        version = _pulled_version(file.parent) or _pulled_version(path)
        return file, InitSource(ref, version, str(file), _sha256(file))
    from expctl.artifacts.store import find_init_checkpoint

    found, entry, blob = find_init_checkpoint(ref)
    return blob, InitSource(ref, found.ref, entry.path, entry.sha256)


def _pulled_version(directory: Path) -> str | None:
    """The NAME:vN an `expctl artifacts pull` directory holds (its marker says)."""
    import json

    from expctl.artifacts.staging import PULL_MARKER

    with contextlib.suppress(OSError, ValueError, AttributeError):
        ref = json.loads((directory / PULL_MARKER).read_text()).get("ref")
        return str(ref) if ref else None
    return None


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise NotFoundError(
            f"--init-from {str(path)!r}: no such file",
            hint="pass a .pt file, a run directory, or an artifact reference (NAME:best)",
        ) from None
    return digest.hexdigest()


def load_init_weights(model: torch.nn.Module, ref: str) -> InitSource:
    """``--init-from``: load model weights from a ``.pt`` file or an artifact (``name:vN``)."""
    path, source = find_init_source(ref)
    weights = model_weights(load_checkpoint(path))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ConfigError(
            f"{path} does not fit this model: {str(e).splitlines()[0]}",
            hint="initialise from a checkpoint of the same architecture (model config)",
            where="model",
        ) from e
    return source
