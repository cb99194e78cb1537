"""The `expctl` command: the command table and the root options.

Each command lives in its own small module exposing ``app`` (a ``typer.Typer``: a group, or one
command for ``run``) and imports its heavy dependencies (hydra, torch, wandb, optuna) inside the
command function. The root group goes one step further: it knows each command's name and
one-line help (``COMMANDS`` below) and imports a command's module and builds its click objects
only when that command is invoked (or completed, or asked for by a test), so ``expctl --help``
costs little more than ``import typer`` and ``expctl config show`` builds the parameters of
``config show`` alone. How (Typer's private internals, quarantined) is ``cli/typer_compat.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from expctl import __version__
from expctl.cli.common import examples, set_debug, show_warnings_as_lines
from expctl.cli.typer_compat import lazy_group

# name -> (the module whose `app` it is, the first paragraph of the command's own help: what
# `expctl --help` shortens into its line). Order is the order of `expctl --help`;
# tests/test_cli_lazy.py checks that these strings match the commands' help.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "expctl.cli.run",
        "Compose the config, train on the best device, log to W&B, keep a local record.",
    ),
    "runs": (
        "expctl.cli.runs",
        "List, inspect, compare and plot runs from their run directories (offline).",
    ),
    "sweep": (
        "expctl.cli.sweep",
        "Create W&B-style sweeps and run agents, with or without a W&B server.",
    ),
    "artifacts": (
        "expctl.cli.artifacts",
        "Versioned model/dataset artifacts: a local store that works offline, or W&B. "
        "The store is ./.expctl/artifacts unless $EXPCTL_ARTIFACTS or --store says otherwise.",
    ),
    "config": ("expctl.cli.config_cmd", "Inspect the composed configuration."),
}

# Settings of the root app, which every command's click objects are built with: plain help.
SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,  # plain help: rich help rendering alone costs ~70 ms of startup
}

app = typer.Typer(
    name="expctl",
    cls=lazy_group(COMMANDS, SETTINGS),
    help="Compose configs, train PyTorch models, track with W&B and run sweeps, online or offline.",
    epilog=examples(
        "expctl run optim.lr=3e-4",
        "SWEEP_ID=$(expctl sweep create configs/sweeps/grid.yaml) && expctl sweep agent $SWEEP_ID",
        "expctl config show --select optim",
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    **SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"expctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="EXPCTL_DEBUG", help="Show full tracebacks on errors."),
    ] = False,
) -> None:
    set_debug(debug)
    show_warnings_as_lines()
