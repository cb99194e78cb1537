"""What every command shares: error rendering, exit codes, output streams, shared options.

Conventions (README "Conventions"): stdout is data, stderr is people; an ExpctlError becomes one
red line + a ``hint:`` line + its exit code; tracebacks only with ``--debug``/``EXPCTL_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from expctl.errors import EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGPIPE, ExpctlError

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    return os.environ.get("EXPCTL_DEBUG", "").lower() in {"1", "true", "yes", "on"}


def set_debug(on: bool) -> None:
    if on:
        os.environ["EXPCTL_DEBUG"] = "1"


def no_color() -> bool:
    """https://no-color.org: any non-empty NO_COLOR turns colour off."""
    return bool(os.environ.get("NO_COLOR"))


def console(*, stderr: bool = False) -> Any:
    """A rich Console that writes no escape codes at all under NO_COLOR (rich alone still
    writes bold and dim)."""
    from rich.console import Console

    return Console(stderr=stderr, color_system=None if no_color() else "auto")


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty() and not no_color()


def err(message: str = "", *, style: str | None = None) -> None:
    """Write a line for people (stderr), coloured on a terminal; control characters in it
    (a run name, a path, an error from a file) are shown escaped, never sent raw."""
    from expctl.cli.output import printable

    message = printable(message, lines=True)
    if style and _stderr_is_tty():
        message = typer.style(message, fg=style)
    typer.echo(message, err=True)


def out(text: str) -> None:
    """Write data (stdout): ids, paths, configs. Never decorated when piped.

    Written with os.write until every byte is out: under PYTHONUNBUFFERED=1 Python's text
    stdout drops the rest of a partial write to a pipe whose reader left (``| head``) without
    an error, so the command exited 0 instead of 141.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # captured (tests, CliRunner)
        typer.echo(text)
        return
    sys.stdout.flush()
    data = (text + "\n").encode("utf-8", errors="replace")
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        raise
    except OSError as e:  # e.g. > /dev/full
        from expctl.errors import RuntimeFailure

        raise RuntimeFailure(
            f"cannot write the output: {e.strerror or e}",
            hint="check where stdout goes (a full disk?)",
        ) from None


def show_warnings_as_lines() -> None:
    """Python warnings (ours, Hydra's, a library's) as one ``warning:`` line on stderr, without
    the source file and line a user cannot act on."""
    import warnings

    def show(message: Warning | str, category: type, *args: Any, **kwargs: Any) -> None:
        from expctl.secrets import scrub

        text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        err(f"warning: {scrub(text)}", style="yellow")

    warnings.showwarning = show


def render_error(error: ExpctlError) -> None:
    """One red ``error:`` line (plus any detail lines) and a ``hint:``; secrets scrubbed."""
    from expctl.secrets import scrub

    first, *rest = scrub(str(error)).splitlines() or [error.__class__.__name__]
    err(f"error: {first}", style="red")
    for line in rest:
        err(line)
    if error.hint:
        err(f"hint: {scrub(error.hint)}", style="yellow")


def print_traceback() -> None:
    """The current exception's traceback (``--debug``), with secret values scrubbed."""
    from expctl.secrets import scrub

    sys.stderr.write(scrub(traceback.format_exc()))


def _interrupted_first() -> None:
    """A signal was raised at once (outside a deferred block) and something broke on its way
    out — a library that wrapped or swallowed the KeyboardInterrupt, a module half-imported:
    it is the interruption, 130/143, not an error of the user's input or a bug."""
    from expctl import signals

    signum = signals.raised()
    if signum is not None and not debug_enabled():
        err("interrupted", style="red")
        raise typer.Exit(signals.exit_code(signum)) from None


def handle_errors(fn: F) -> F:
    """Turn library exceptions into the documented exit codes, for CliRunner and real runs alike."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except ExpctlError as e:
            _interrupted_first()  # e.g. Hydra wraps a KeyboardInterrupt in its own error
            if debug_enabled():
                print_traceback()
            render_error(e)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted", style="red")
            raise typer.Exit(EXIT_SIGINT) from None
        except BrokenPipeError:
            # The reader went away (`expctl sweep status | head`): stop quietly, as a Unix tool
            # killed by SIGPIPE would, and keep Python from complaining when it flushes stdout.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(EXIT_SIGPIPE) from None
        except Exception as e:  # an unexpected bug: say so plainly; traceback only with --debug
            from expctl.secrets import scrub

            _interrupted_first()  # a module half-imported by the interruption, say
            if debug_enabled():
                print_traceback()
            err(f"error: unexpected {type(e).__name__}: {scrub(str(e))}", style="red")
            err("hint: rerun with --debug for the traceback, and please report it", style="yellow")
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


# -- options shared by run, config show, sweep create and sweep agent ------------------------------

ConfigDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--config-dir",
        "-cd",
        envvar="EXPCTL_CONFIG_DIR",
        help="Config directory (default: ./configs, else the example configs shipped with expctl).",
        show_default=False,
    ),
]
ConfigNameOpt = Annotated[
    str, typer.Option("--config-name", "-cn", help="Primary config file name, without .yaml.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override KEY=VALUE in Hydra grammar (repeatable); same as a positional override.",
        show_default=False,
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra overrides: a.b=1, +new=1, ++force=1, ~drop, group=option.",
        show_default=False,
    ),
]


def examples(*lines: str) -> str:
    """An epilog of real example invocations for a command's --help."""
    body = "\n".join(f"  $ {line}" for line in lines)
    return f"\b\nExamples:\n{body}"  # \b: keep these lines exactly as written
