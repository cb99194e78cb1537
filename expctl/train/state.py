"""Process-level state a run must control: RNGs, stop requests, torch globals.

RNG states are stored as tensors and plain tuples so ``last.pt`` loads with
``torch.load(weights_only=True)``. The data order needs no saved state at all: each epoch's
permutation is a pure function of (seed, epoch) (expctl.train.batches.epoch_permutation).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from expctl import signals

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


# -- stop requests ------------------------------------------------------------------------------


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


# -- torch globals --------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_globals(num_threads: int, deterministic: bool) -> Iterator[None]:
    """Set threads and determinism for the run; restore the caller's values afterwards."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    cudnn_benchmark_before = torch.backends.cudnn.benchmark
    torch.set_num_threads(num_threads)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic results (PyTorch docs).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)
        torch.backends.cudnn.benchmark = cudnn_benchmark_before
