"""Options every sweep-reading command shares (`sweep …`, `runs list --sweep`): one spelling."""

from __future__ import annotations

from typing import Annotated

import typer

from expctl.cli.output import TableOrJson, format_option

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="EXPCTL_STORAGE",
        help="Sweep storage: a journal file path (default .expctl/sweeps.journal), "
        "sqlite:///x.db, postgresql://..., mysql://..., redis://...",
        show_default=False,
    ),
]
FormatOpt = Annotated[TableOrJson, format_option(TableOrJson)]
SweepIdArg = Annotated[str, typer.Argument(help="The sweep id printed by `sweep create`.")]
