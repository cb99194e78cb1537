"""`expctl sweep ...` (owned by issues 4 and 5)."""

from __future__ import annotations

import typer

from expctl.cli.common import handle_errors
from expctl.errors import NotImplementedYet

app = typer.Typer(help="Create W&B-style sweeps and run agents, with or without a W&B server.",
                  no_args_is_help=True)


@app.command("create")
@handle_errors
def create(spec: str) -> None:
    """Create a sweep from a W&B sweep YAML."""
    raise NotImplementedYet("expctl sweep create")
