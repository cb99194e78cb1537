"""SIGINT and SIGTERM: the one place they are handled.

Outside a deferred block (``config show``, ``sweep status``, ...) a signal ends the command at
once: SIGINT raises KeyboardInterrupt, SIGTERM :class:`Interrupted`, and the CLI exits 130 / 143
without a traceback. Work that must not be cut anywhere — training, a sweep agent, the
imports of torch (a Ctrl-C inside ``import torch`` leaves half-initialised modules: seen as a
RecursionError, then "cannot load module more than once") — runs inside :func:`deferred`:

* the first signal is only **noted**; the code acts on it at its next safe point
  (:func:`pending` / :func:`check`): the trainer after its current step, saving ``last.pt``;
  an agent by stopping its trial and re-queueing the point;
* the same signal again within :data:`REPEAT_WINDOW_S` is the same request (torchrun forwards
  a terminal's Ctrl-C that the worker also got; a batch shell forwards SLURM's SIGTERM);
* a later one means "now": with ``escalate`` it raises :class:`Interrupted` where the code is;
  without (code that must finish a storage write first), :func:`repeated` tells it to hurry.

``request_stop`` asks the same of a ``train()`` running in this process from code (notebooks,
the W&B agent's thread). Handlers are installed from the main thread only; elsewhere the block
is a no-op and the main thread's handlers (the CLI's) still note signals for :func:`pending`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from expctl.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_WINDOW_S = 1.0


class _State:
    def __init__(self) -> None:
        self.depth = 0  # nesting of deferred blocks
        self.escalate: list[bool] = []
        self.received: int | None = None
        self.first_at = 0.0
        self.count = 0  # distinct requests (repeats within the window count once)
        self.requested: int | None = None  # request_stop()
        self.listeners: list[Callable[[int], None]] = []
        self.installed = False
        self.raised: int | None = None  # a signal raised at once (outside deferred blocks)


_state = _State()


def exit_code(signum: int | None) -> int:
    return EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a signal"


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, frame: Any) -> None:
    state = _state
    for listener in list(state.listeners):
        listener(signum)
    if state.depth == 0:
        state.raised = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(signum, f"interrupted by {signal_name(signum)}")
    now = time.monotonic()
    if state.received is None:
        state.received, state.first_at, state.count = signum, now, 1
        return
    if now - state.first_at < REPEAT_WINDOW_S:
        return
    state.count += 1
    if state.escalate and state.escalate[-1]:
        raise Interrupted(state.received, "interrupted again: stopping now")


def install() -> None:
    """Handle SIGINT/SIGTERM as described above, for the rest of the process (the CLI calls
    this before anything else)."""
    if _on_main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _handler)
        _state.installed = True
        sys.unraisablehook = _unraisable


def _unraisable(hook_args: Any) -> None:
    """A signal raised where Python cannot raise (a weakref callback, ``__del__``) is reported
    by Python as "Exception ignored …" with a traceback, and lost. Ours are not reported: the
    CLI still ends with the signal's code (:func:`raised`)."""
    if isinstance(hook_args.exc_value, KeyboardInterrupt | Interrupted):
        return
    sys.__unraisablehook__(hook_args)


@contextlib.contextmanager
def deferred(*, escalate: bool = True) -> Iterator[None]:
    """Only note signals while the block runs (see the module docstring)."""
    previous: dict[int, Any] = {}
    if _on_main_thread() and not _state.installed:  # a library caller: ours only for the block
        previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    _state.depth += 1
    _state.escalate.append(escalate)
    try:
        yield
    finally:
        _state.depth -= 1
        _state.escalate.pop()
        if _state.depth == 0:
            clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def hold_until_exit() -> None:
    """From now on signals are only noted, never acted on: the work is done (a completed run
    exits 0 even if a signal arrives while the process is exiting). Only for the process the
    CLI entry point runs (:func:`install`): an in-process caller keeps its own handling."""
    if not _state.installed:
        return
    _state.depth += 1
    _state.escalate.append(False)


def ignore_from_now() -> None:
    """The process is exiting with its outcome decided: ignore SIGINT/SIGTERM (Python restores
    the default handlers while it shuts down, and a signal then would kill the process with
    another outcome than the one it reported)."""
    if _on_main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def pending() -> int | None:
    """The signal (or :func:`request_stop`) noted so far, if any."""
    return _state.received if _state.received is not None else _state.requested


def raised() -> int | None:
    """The signal that was raised at once outside a deferred block, if one was. A library
    that swallows the KeyboardInterrupt (or a module half-imported when it hit) can make it
    surface as another error: the CLI reports that as the interruption it is."""
    return _state.raised


def repeated() -> bool:
    """A second, distinct request arrived: stop without waiting for anything."""
    return _state.count >= 2


def check(message: str = "interrupted", hint: str | None = None) -> None:
    """A safe point: raise :class:`Interrupted` (exit 130/143) if a stop was requested."""
    signum = pending()
    if signum is not None:
        raise Interrupted(signum, f"{message} ({signal_name(signum)})", hint=hint)


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running ``train()`` (or agent) to stop at its next safe point, from code."""
    _state.requested = int(signum)


def clear() -> None:
    _state.received, _state.requested, _state.count = None, None, 0


def clear_request() -> None:
    """Forget a :func:`request_stop` (it was meant for the run that just ended)."""
    _state.requested = None


@contextlib.contextmanager
def forwarded_to(send: Callable[[int], None]) -> Iterator[None]:
    """Also pass every SIGINT/SIGTERM to ``send`` (a child that must hear them: torchrun)."""
    _state.listeners.append(send)
    try:
        yield
    finally:
        _state.listeners.remove(send)
