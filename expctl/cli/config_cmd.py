"""`expctl config show`: print the composed config and name every missing value."""

from __future__ import annotations

from typing import Annotated

import typer

from expctl.cli.common import (
    ConfigDirOpt,
    ConfigNameOpt,
    OverridesArg,
    SetOpt,
    debug_enabled,
    err,
    examples,
    handle_errors,
)
from expctl.cli.output import Lines, Shown, YamlOrJson, emit, format_option

app = typer.Typer(help="Inspect the composed configuration.", no_args_is_help=True)


@app.command(
    "show",
    epilog=examples(
        "expctl config show model=large --select model",
        "expctl config show --config-name tutorial --check name=exp1",
        "expctl config show --format json | jq .optim.lr",
    ),
)
@handle_errors
def show(
    overrides: OverridesArg = None,
    config_dir: ConfigDirOpt = None,
    config_name: ConfigNameOpt = "config",
    sets: SetOpt = None,
    select: Annotated[
        str | None, typer.Option("--select", help="Print only this subtree (a dotted key).")
    ] = None,
    fmt: Annotated[YamlOrJson, format_option(YamlOrJson)] = YamlOrJson.yaml,
    resolve: Annotated[
        bool, typer.Option("--resolve/--no-resolve", help="Resolve ${...} interpolations.")
    ] = True,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 2 if any value is missing (???).")
    ] = False,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Do not redact credential-looking values.")
    ] = False,
) -> None:
    """Print the composed config (resolved), with ??? visible; list missing keys on stderr."""
    from expctl import config as cfgmod
    from expctl.errors import MissingValuesError

    source = cfgmod.ConfigSource.from_cli(config_dir, config_name, overrides, sets)
    if debug_enabled():
        where, how = cfgmod.find_config_dir(source.config_dir)
        err(f"config dir: {where} ({how})")
    shown = cfgmod.show_config(source, select=select, resolve=resolve, show_secrets=show_secrets)
    emit(Shown(shown.plain, Lines([])), fmt)  # YAML: OmegaConf's own dumper, as Hydra's

    if shown.missing:
        error = MissingValuesError(shown.missing)
        if check:
            raise error
        err(f"warning: {error.message}", style="yellow")
        err(f"hint: {error.hint}")
