"""Error hierarchy shared by every layer.

Library code raises these; only the CLI renders them (one line saying what and where, one
``hint:`` line saying how to fix it) and turns ``exit_code`` into the process exit status.
Exit codes are a public contract that scripts branch on (see README, "Exit codes").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

EXIT_FAILURE = 1  # runtime failure: training crashed, trial failed, corrupted store
EXIT_USAGE = 2  # bad input: usage, config, sweep spec, unknown id
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_SIGPIPE = 141  # stdout's reader closed the pipe (`| head`): as if killed by SIGPIPE


class ExpctlError(Exception):
    """Base class: ``message`` says what and where, ``hint`` says how to fix it."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None, *, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class UsageError(ExpctlError):
    """Bad input of any kind: exit 2."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The composed config is invalid, or composing it failed."""


class MissingValuesError(ConfigError):
    """``???`` values left unset; ``keys`` lists every one of them."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        sets = " ".join(f"--set {k}=..." for k in keys)
        super().__init__(
            f"missing value{'s' if len(keys) > 1 else ''} for {', '.join(keys)}",
            hint=f"fill {'them' if len(keys) > 1 else 'it'} on the command line: {sets}",
        )


class SpecError(UsageError):
    """A sweep spec is invalid; ``problems`` holds every problem found (path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]], hint: str | None = None):
        self.source = source
        self.problems = problems
        lines = problem_lines(problems)
        n = len(problems)
        super().__init__(
            f"{source}: {n} problem{'s' if n != 1 else ''} in sweep spec\n{lines}",
            hint=hint
            or "fix the entries above; W&B's sweep keys: expctl's README, section `expctl sweep`",
        )


class NotFoundError(UsageError):
    """An id, name, alias or version that does not exist (the hint lists what does)."""


class RuntimeFailure(ExpctlError):
    """Something failed while running (training diverged, a trial crashed): exit 1."""


class Interrupted(ExpctlError):
    """Stopped by a signal after saving state; exit 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, signum: int, message: str = "interrupted", hint: str | None = None):
        import signal

        self.signum = signum
        self.exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        super().__init__(message, hint)


class ConfigWarning(UserWarning):
    """Something about a config worth saying (Hydra's warnings, re-worded): the CLI prints it
    as one ``warning:`` line."""


class Problems:
    """Every problem of one input, collected to be reported together (a sweep file, a config's
    trainer settings, a config's interpolations): "all problems at once, not one per run".

    ``locate(path)`` decorates a path with where it is written (a sweep file's ``file:line``).
    """

    def __init__(self, locate: Callable[[str], str] | None = None):
        self.items: list[tuple[str, str]] = []  # (where, message)
        self.hints: list[str] = []
        self.warnings: list[str] = []
        self._locate = locate or (lambda path: path)

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, path: str, message: str, hint: str | None = None, *, once: bool = False) -> None:
        """Collect a problem at ``path``; with ``once``, only the first one found there (an
        interpolation reached from several places is one problem, where it is written)."""
        where = self._locate(path)
        if once and any(w == where for w, _ in self.items):
            return
        self.items.append((where, message))
        if hint and hint not in self.hints:
            self.hints.append(hint)

    def unknown_key(
        self, path: str, key: str, allowed: Sequence[str], also: Sequence[str] = ()
    ) -> None:
        close = did_you_mean(key, list(allowed)) or did_you_mean(key, list(also))
        suffix = f"; {suggest(close).rstrip()}" if close else f"; allowed: {', '.join(allowed)}"
        self.add(f"{path}.{key}" if path else key, f"unknown key {key!r}{suffix}")

    def unknown_keys(self, path: str, keys: Iterable[Any], allowed: Sequence[str]) -> bool:
        """Report every key not in ``allowed``; True when there was none."""
        ok = True
        for key in keys:
            if key not in allowed:
                self.unknown_key(path, str(key), allowed)
                ok = False
        return ok

    def bad_choice(self, path: str, what: str, value: Any, allowed: Sequence[str]) -> None:
        guess = did_you_mean_hint(str(value), list(allowed)).rstrip()
        suffix = f"; {guess}" if guess else ""
        self.add(path, f"unknown {what} {value!r}{suffix} (one of: {', '.join(allowed)})")

    def raise_config_error(self, what: str, hint: str) -> None:
        """Raise one :class:`ConfigError` for everything collected (nothing when empty)."""
        if not self.items:
            return
        hints = "; ".join(self.hints) or hint
        if len(self.items) == 1:
            ((where, message),) = self.items
            raise ConfigError(message, hint=hints, where=where)
        raise ConfigError(f"{len(self.items)} {what}\n{problem_lines(self.items)}", hint=hints)


def problem_lines(items: Sequence[tuple[str, str]]) -> str:
    """The one way a list of problems is written under its headline: ``  where: message``."""
    return "\n".join(f"  {where}: {message}" for where, message in items)


def did_you_mean_hint(
    word: str,
    candidates: Iterable[str],
    *,
    every: bool = False,
    shown: Callable[[str], str] | None = None,
) -> str:
    """The start of a hint: "did you mean 'x'? " (with ``every``: "did you mean x or y? "), or
    "" when nothing is close. ``shown`` writes one candidate (``group=x``, ``${x}``)."""
    return suggest(did_you_mean(word, candidates), every=every, shown=shown)


def suggest(
    close: Sequence[str],
    *,
    every: bool = False,
    shown: Callable[[str], str] | None = None,
    joiner: str = " or ",
) -> str:
    """How every "did you mean" is worded, for candidates already found (several words' close
    matches, a fallback search): "did you mean X? ", or "" when there is none."""
    if not close:
        return ""
    show = shown or (str if every else repr)
    picked = close if every else close[:1]
    return f"did you mean {joiner.join(show(c) for c in picked)}? "


def did_you_mean(
    word: str, candidates: Iterable[str], n: int = 3, *, cutoff: float = 0.6
) -> list[str]:
    """Closest candidates to ``word`` (for 'did you mean' hints): the one matching rule."""
    import difflib

    return difflib.get_close_matches(word, sorted(candidates), n=n, cutoff=cutoff)
