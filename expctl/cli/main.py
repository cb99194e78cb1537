"""The `expctl` command: root options and the command groups, registered lazily.

Each command lives in its own small module and imports its heavy dependencies (hydra, torch,
wandb, optuna) inside the command function. The root group goes one step further: it knows
each command's name and one-line help (``COMMANDS`` below) and imports a command's module and
builds its click objects only when that command is invoked (or completed, or asked for by a
test), so ``expctl --help`` costs little more than ``import typer`` and ``expctl config show``
builds the parameters of ``config show`` alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from enum import Enum
from gettext import gettext as _
from typing import Annotated, Any

import typer
from typer._click import Command, Context, HelpFormatter
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

from expctl import __version__
from expctl.cli.common import examples, set_debug, show_warnings_as_lines

# name -> (module under expctl.cli, the first paragraph of the command's own help: what
# `expctl --help` shortens into its line). Order is the order of `expctl --help`;
# tests/test_cli_lazy.py checks that these strings match the commands' help.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "run",
        "Compose the config, train on the best device, log to W&B, keep a local record.",
    ),
    "runs": (
        "runs",
        "List, inspect, compare and plot runs from their run directories (offline).",
    ),
    "sweep": (
        "sweep",
        "Create W&B-style sweeps and run agents, with or without a W&B server.",
    ),
    "artifacts": (
        "artifacts",
        "Versioned model/dataset artifacts: a local store that works offline, or W&B. "
        "The store is ./.expctl/artifacts unless $EXPCTL_ARTIFACTS or --store says otherwise.",
    ),
    "config": ("config_cmd", "Inspect the composed configuration."),
}

# Settings every command's click objects are built with (those of the root app: plain help).
_BUILD_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,  # plain help: rich help rendering alone costs ~70 ms of startup
}


def load_command(name: str) -> Command:
    """Import the module of command ``name`` and build its click command (or group), exactly as
    ``app.add_typer(module.app, name=name)`` (``run.register(app)`` for ``run``) on the root app
    would."""
    module = importlib.import_module(f"expctl.cli.{COMMANDS[name][0]}")
    shell = typer.Typer(**_BUILD_SETTINGS)
    group = getattr(module, "app", None)
    if isinstance(group, typer.Typer):
        shell.add_typer(group, name=name)
    else:  # a single command
        module.register(shell)
    command = typer.main.get_group(shell).commands[name]
    defer_type_adapters(command)
    return command


class _Commands(MutableMapping[str, Command]):
    """A group's ``commands``: every name known up front, each command built on first access.

    ``keys()``/``in`` never build anything (Typer's did-you-mean reads ``commands.keys()``);
    ``[name]``/``get(name)`` build that one command.
    """

    def __init__(
        self, built: Mapping[str, Command], loaders: Mapping[str, Callable[[], Command]]
    ) -> None:
        self._built = dict(built)
        self._loaders = {name: load for name, load in loaders.items() if name not in built}
        self._order = [*loaders, *(name for name in built if name not in loaders)]

    def is_built(self, name: str) -> bool:
        return name in self._built

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            self._built[name] = self._loaders.pop(name)()  # KeyError: no such command
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command
        self._loaders.pop(name, None)
        if name not in self._order:
            self._order.append(name)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._built.pop(name, None)
        self._loaders.pop(name, None)
        self._order.remove(name)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)


class LazyGroup(TyperGroup):
    """The root group: the commands of ``COMMANDS`` are built when first looked up. Commands
    registered on ``app`` directly (``@app.command``, ``app.add_typer``) are built by Typer as
    usual and take precedence over a lazy one of the same name."""

    def __init__(self, *, commands: Any = None, **kwargs: Any) -> None:
        super().__init__(commands=commands, **kwargs)
        loaders = {name: _loader(name) for name in COMMANDS}
        self.commands = _Commands(self.commands, loaders)
        defer_type_adapters(self)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Typer's command list, with the stored one-line help of commands not built yet."""
        commands = self.commands
        assert isinstance(commands, _Commands)
        rows: list[tuple[str, Command | str]] = []
        for name in self.list_commands(ctx):
            if commands.is_built(name) or name not in COMMANDS:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command))
            else:
                rows.append((name, COMMANDS[name][1]))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        lines = [
            (
                name,
                make_default_short_help(entry, limit).strip()
                if isinstance(entry, str)
                else entry.get_short_help_str(limit),
            )
            for name, entry in rows
        ]
        with formatter.section(_("Commands")):
            formatter.write_dl(lines)


def _loader(name: str) -> Callable[[], Command]:
    return lambda: load_command(name)


# -- Typer's pydantic adapters, built only for values that need them --------------------------
#
# Typer (>= 0.26) coerces every parameter of the invoked command through a pydantic TypeAdapter,
# built on first use: importing pydantic and building the adapters of `config show`'s 9
# parameters (and its --help option) costs ~45 ms, a fifth of the command. For the values that
# need no conversion (a default, a string option, a list of strings, an enum choice) the
# adapter's result is the value itself (or, for choices, what Typer's own choice coercion
# returns), so those are passed through here; any other value (a path, a number given as text,
# a bad choice) goes to Typer's adapter, built then, with Typer's own conversion and error
# message. tests/test_cli_lazy.py compares both on every parameter of every command.

# Private Typer API, so only on the Typer versions tests/test_cli_lazy.py has checked it with;
# any other Typer builds its adapters as it always does (slower, never different).
_CHECKED_TYPER = ((0, 26), (0, 30))
try:
    _typer_version = tuple(map(int, typer.__version__.split(".")[:2]))
    if not _CHECKED_TYPER[0] <= _typer_version < _CHECKED_TYPER[1]:
        raise ImportError(typer.__version__)
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_choice, lenient_issubclass
    from typer._typing import get_args, get_origin, is_literal_type, literal_values
    from typer.core import _TyperParameter
except (ImportError, ValueError):  # another Typer: its adapters are built as it builds them
    _DEFER = False
else:
    _DEFER = True

    class _DeferredRuntimeParam(RuntimeParam):
        """Typer's runtime coercion of one parameter, without its adapter until one is needed.
        (Not a dataclass of its own: generating one costs more than this whole module.)"""

        descriptor: Any

        def __init__(self, descriptor: Any) -> None:
            super().__init__(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )
            object.__setattr__(self, "descriptor", descriptor)  # RuntimeParam is frozen

        def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
            result = _pass_through(self.annotation, self.parameter_info, value, ctx)
            if result is not _NOT_PASSED:
                return result
            typer_own = build_runtime_param(self.descriptor)
            param._runtime_param = typer_own  # from now on Typer's own, as if never deferred
            return typer_own._coerce_value(value, param=param, ctx=ctx)


_NOT_PASSED: Any = object()


def _pass_through(annotation: Any, info: Any, value: Any, ctx: Context) -> Any:
    """What Typer's adapter would return for ``value``, where that needs no pydantic; else
    ``_NOT_PASSED``."""
    if info.parser is not None:
        return _NOT_PASSED
    if annotation is str:
        return value if type(value) is str else _NOT_PASSED
    if annotation is int or annotation is float:
        bounded = info.min is not None or info.max is not None or info.clamp
        return value if type(value) is annotation and not bounded else _NOT_PASSED
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        strings = isinstance(value, list | tuple) and all(type(v) is str for v in value)
        return list(value) if strings else _NOT_PASSED
    enum = lenient_issubclass(annotation, Enum)
    if enum or is_literal_type(annotation):
        choices = list(annotation) if enum else literal_values(annotation)
        try:
            return coerce_cli_choice(
                value, choices=choices, case_sensitive=info.case_sensitive, ctx=ctx
            )
        except ValueError:  # not a choice: Typer's adapter words the error
            return _NOT_PASSED
    return _NOT_PASSED


def defer_type_adapters(command: Command) -> None:
    """Let ``command``'s parameters, its help option and its subcommands' (those built) skip
    pydantic for values that need no conversion (see above)."""
    if not _DEFER:
        return
    for parameter in command.params:
        _defer(parameter)
    if "get_help_option" not in vars(command):  # made per context: deferred once made
        make_help_option = command.get_help_option

        def get_help_option(ctx: Context) -> Any:
            option = make_help_option(ctx)
            _defer(option)
            return option

        command.get_help_option = get_help_option  # type: ignore[method-assign]
    commands = getattr(command, "commands", None)
    if isinstance(commands, _Commands):  # only those built: the others are deferred when built
        subcommands = [commands[name] for name in commands if commands.is_built(name)]
    else:
        subcommands = list((commands or {}).values())
    for sub in subcommands:
        defer_type_adapters(sub)


def _defer(parameter: Any) -> None:
    if isinstance(parameter, _TyperParameter) and parameter._runtime_param is None:
        parameter._runtime_param = _DeferredRuntimeParam(parameter.type_descriptor)


app = typer.Typer(
    name="expctl",
    cls=LazyGroup,
    help="Compose configs, train PyTorch models, track with W&B and run sweeps, online or offline.",
    epilog=examples(
        "expctl run optim.lr=3e-4",
        "SWEEP_ID=$(expctl sweep create configs/sweeps/grid.yaml) && expctl sweep agent $SWEEP_ID",
        "expctl config show --select optim",
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    **_BUILD_SETTINGS,
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

