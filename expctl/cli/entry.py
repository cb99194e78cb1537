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

import gc
import sys
from typing import Any


def main() -> None:
    collecting = gc.isenabled()
    gc.disable()  # see the module docstring
    from expctl import signals
    from expctl.errors import EXIT_SIGINT, Interrupted

    signals.install()
    try:
        from typer import Abort
        from typer._click.exceptions import ClickException  # typer >= 0.26 vendors click
        from typer.main import get_command

        from expctl.cli.main import app

        command = get_command(app)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    except Interrupted as e:
        sys.exit(e.exit_code)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    code: Any = 0
    try:
        code = command.main(standalone_mode=False, prog_name="expctl")
    except ClickException as e:
        _usage_error(e)
        code = e.exit_code
    except Abort:
        code = 1
    except KeyboardInterrupt:  # Ctrl-C outside any command's own handling
        sys.stderr.write("interrupted\n")
        code = EXIT_SIGINT
    except Interrupted as e:
        sys.stderr.write(f"{e}\n")
        code = e.exit_code
    finally:
        signals.ignore_from_now()  # the outcome is decided; nothing may change it now
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(e: Any) -> None:
    from expctl.cli.common import err

    err(f"error: {e.format_message()}", style="red")
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        usage = ctx.get_usage().replace("Usage: ", "", 1).strip()
        err(f"hint: usage: {usage}; see `{ctx.command_path} --help`", style="yellow")
    else:
        err("hint: see `expctl --help`", style="yellow")
