"""The `expctl` command: root options and the command groups.

Each command lives in its own small module and imports its heavy dependencies (hydra, torch,
wandb, optuna) inside the command function, so `expctl --help` stays as fast as `import typer`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from expctl import __version__
from expctl.cli import artifacts, config_cmd, run, runs, sweep
from expctl.cli.common import examples, set_debug, show_warnings_as_lines

app = typer.Typer(
    name="expctl",
    help="Compose configs, train PyTorch models, track with W&B and run sweeps, online or offline.",
    epilog=examples(
        "expctl run optim.lr=3e-4",
        "SWEEP_ID=$(expctl sweep create configs/sweeps/grid.yaml) && expctl sweep agent $SWEEP_ID",
        "expctl config show --select optim",
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich help rendering alone costs ~70 ms of startup
    context_settings={"help_option_names": ["-h", "--help"]},
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


run.register(app)
app.add_typer(runs.app, name="runs")
app.add_typer(sweep.app, name="sweep")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    """Kept for ``python -m expctl`` and older installs: see :mod:`expctl.cli.entry`."""
    from expctl.cli.entry import main as entry

    entry()
