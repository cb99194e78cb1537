"""The ``expctl`` console script: signal handling first, then everything else.

Signals are installed before Typer (or anything else of ours) is imported, so a Ctrl-C or a
SIGTERM at any moment of start-up ends the process with 130/143 and no traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    from expctl import signals
    from expctl.errors import EXIT_SIGINT, Interrupted

    signals.install()
    try:
        from expctl.cli.main import app
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    except Interrupted as e:
        sys.exit(e.exit_code)
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside any command's own handling
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_SIGINT)
    except Interrupted as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(e.exit_code)
    finally:
        signals.ignore_from_now()  # the outcome is decided; nothing may change it now
