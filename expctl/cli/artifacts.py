"""`expctl artifacts ...` (owned by issue 6)."""

from __future__ import annotations

import typer

from expctl.cli.common import handle_errors
from expctl.errors import NotImplementedYet

app = typer.Typer(help="Versioned model/dataset artifacts: local store or W&B.", no_args_is_help=True)


@app.command("pull")
@handle_errors
def pull(ref: str) -> None:
    """Fetch an artifact version."""
    raise NotImplementedYet("expctl artifacts pull")
