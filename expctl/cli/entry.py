"""The ``expctl`` console script: signal handling first, then everything else.

Signals are installed before Typer (or anything else of ours) is imported, so a Ctrl-C or a
SIGTERM at any moment of start-up ends the process with 130/143 and no traceback. Usage errors
(an unknown option, a missing argument) get the same shape as every other error: an ``error:``
line, a ``hint:`` line, exit 2.

Start-up makes only long-lived objects (modules, classes, the root command) and no garbage, so
the cyclic garbage collector is off while it runs and what it made is then frozen
(:func:`gc.freeze`): no collection during start-up, and none of those objects is scanned again —
not by the collections of the command, and not by the interpreter's collections at exit, which
otherwise cost ~8 ms of ``expctl --help`` (the same as ``python -c "import typer"`` pays). What
the command itself creates is collected as usual.
"""

from __future__ import annotations

# First of all (this module is the console script's): until expctl.signals is installed, a
# Ctrl-C would be Python's KeyboardInterrupt with a traceback from whatever module was being
# imported; end quietly with the documented code instead. `_signal` is the interpreter's own,
# already loaded: importing `signal` (and its enum) would itself take a few ms.
import _signal


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(130 if signum == _signal.SIGINT else 143)  # SystemExit prints nothing


for _signum in (_signal.SIGINT, _signal.SIGTERM):
    _signal.signal(_signum, _exit_quietly)

import gc  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

_OWN_PROCESS = False  # main() runs: this process is expctl's, not a host that imported the app


def freeze_what_lives_on() -> None:
    """:func:`gc.freeze` what exists now, as start-up's objects are: for a command whose long
    setup (an agent's modules and sweep replay) lives as long as the process. Only in
    expctl's own process: a test or a program running the app in-process keeps its collector."""
    if _OWN_PROCESS:
        gc.freeze()


def main() -> None:
    global _OWN_PROCESS
    _OWN_PROCESS = True
    collecting = gc.isenabled()
    gc.disable()  # see the module docstring
    from expctl import signals
    from expctl.errors import EXIT_SIGINT, Interrupted

    code: Any = 0
    try:
        signals.install()  # from here a signal raises: inside this try
        _remember_secrets_given()
        from typer.main import get_command

        from expctl.cli.main import app

        command = get_command(app)
        gc.freeze()
        if collecting:
            gc.enable()
        code = command.main(standalone_mode=False, prog_name="expctl")
    except KeyboardInterrupt:  # Ctrl-C outside any command's own handling
        sys.stderr.write("interrupted\n")
        code = EXIT_SIGINT
    except Interrupted as e:
        sys.stderr.write(f"{e}\n")
        code = e.exit_code
    except Exception as e:  # Typer's usage errors and aborts (imported inside the try)
        code = _click_exit(e)
    finally:
        signals.ignore_from_now()  # the outcome is decided; nothing may change it now
    code = code if isinstance(code, int) else 0
    if code == 0 and signals.raised() is not None:  # raised where Python could only ignore it
        sys.stderr.write("interrupted\n")
        code = signals.exit_code(signals.raised())
    sys.exit(code)


def _remember_secrets_given() -> None:
    """Secrets on the command line or in EXPCTL_* variables (a storage URL's password, a
    ``+db={password: ...}`` override) are scrubbed from every message from the start — a
    libpq or Typer error quotes parts of them, not the whole URL or override."""
    import os

    from expctl.secrets import remember_argv, remember_environment

    remember_argv(sys.argv[1:])
    remember_environment({k: v for k, v in os.environ.items() if k.startswith("EXPCTL_")})


def _click_exit(e: Exception) -> int:
    from typer import Abort

    from expctl.cli.typer_compat import ClickException  # Typer's vendored click's

    if isinstance(e, ClickException):
        _usage_error(e)
        return e.exit_code
    if isinstance(e, Abort):
        return 1
    raise e


def _usage_error(e: Any) -> None:
    from expctl.cli.common import err
    from expctl.cli.typer_compat import NoSuchOption
    from expctl.secrets import scrub

    if isinstance(e, NoSuchOption) and e.option_name.startswith("--") and e.possibilities:
        # Click's close matches put `-cn` beside `--notes` for `--cont`: a long option's typo
        # is answered with long options only
        e.possibilities = [p for p in e.possibilities if p.startswith("--")]
    err(f"error: {scrub(e.format_message())}", style="red")
    ctx = getattr(e, "ctx", None)
    override_hint = _override_hint(e, ctx)
    if override_hint:
        err(f"hint: {override_hint}", style="yellow")
    elif ctx is not None:
        usage = ctx.get_usage().replace("Usage: ", "", 1).strip()
        err(f"hint: usage: {usage}; see `{ctx.command_path} --help`", style="yellow")
    else:
        err("hint: see `expctl --help`", style="yellow")


def _override_hint(e: Any, ctx: Any) -> str | None:
    """``expctl run --learning_rate 0.01`` (argparse's habit) on a command that takes
    overrides: say they are ``key=value``, with the one the user meant."""
    from expctl.cli.typer_compat import NoSuchOption

    if not isinstance(e, NoSuchOption) or ctx is None:
        return None
    if not any(p.name == "overrides" for p in ctx.command.params):
        return None
    key = e.option_name.lstrip("-")
    return (
        f"overrides are key=value, not options: {ctx.command_path} {key}=VALUE "
        f"(`+{key}=VALUE` adds a key the config does not have); see `{ctx.command_path} --help`"
    )
