"""Everything expctl does with Typer's private internals, in one place: the lazy root group and
the deferred pydantic adapters. ``cli/main.py`` is the command table; this is how it is served.

What it relies on (Typer 0.26–0.29, which vendors click as ``typer._click``), and why.
``tests/test_cli_lazy.py::test_typer_internals_we_rely_on_are_there`` checks each of them, so a
Typer upgrade that moves one fails there, by name, before anything subtler breaks:

- ``typer._click.Command``, ``Context``, ``HelpFormatter`` (types) and
  ``typer._click.utils.make_default_short_help(help, max_length)``: the root's command list is
  formatted without building the commands, shortening their stored one-line help as click does.
- ``typer._click.exceptions.ClickException``, ``NoSuchOption``: what ``cli/entry.py`` renders as
  usage errors (Typer exports neither).
- ``typer.core.TyperGroup``: its ``__init__(commands=...)``, its ``commands`` attribute (replaced
  by a mapping that builds on lookup), ``list_commands(ctx)``, ``format_commands(ctx,
  formatter)`` and ``get_command(ctx, name)``, which :class:`LazyGroup` overrides or calls.
- ``Command.get_help_option(ctx)`` (made per context, wrapped per command) and
  ``Command.get_short_help_str(limit)``.
- ``Typer.registered_commands`` (their ``name``), ``registered_groups``,
  ``registered_callback``, ``info.callback``: :func:`add_command_app` tells the app of one
  command (``run``) from a group by them, and ``add_typer(app, name=None)`` merges the former.
- ``typer.core._TyperParameter``'s ``_runtime_param`` (the coercion, built on first use) and
  ``type_descriptor`` (``annotation``, ``parameter_info``, ``file_annotation``);
  ``typer._coercion.RuntimeParam`` (a frozen dataclass of ``parameter_info`` and ``annotation``
  whose ``_coerce_value(value, param, ctx)`` does the work) and ``build_runtime_param``;
  ``typer._param_types.coerce_cli_choice``, ``coerce_cli_path``, ``routes_to_path``,
  ``lenient_issubclass``; ``typer._typing.get_args``, ``get_origin``, ``is_literal_type``,
  ``literal_values``: the deferred adapters below.

On a Typer outside ``CHECKED_TYPER`` the adapters are not deferred (slower, never different);
the lazy group and the usage-error types are needed on every Typer: without them the import of
this module fails, loudly, at the first command.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from enum import Enum
from gettext import gettext as _
from pathlib import Path
from typing import Any, ClassVar, cast

import typer
from typer._click import Command, Context, HelpFormatter
from typer._click.exceptions import ClickException, NoSuchOption
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

__all__ = [
    "ClickException",
    "LazyGroup",
    "NoSuchOption",
    "add_command_app",
    "build_command",
    "defer_type_adapters",
    "lazy_group",
]

# name -> (module holding `app`, the first paragraph of the command's own help)
Table = Mapping[str, tuple[str, str]]


def add_command_app(parent: typer.Typer, app: typer.Typer, name: str) -> None:
    """Register a command module's ``app`` on ``parent``, the one way every command is
    registered: an app whose only command is called ``name`` (``run``) is that command, merged
    into ``parent`` as in Typer's one-file-per-command docs; any other app is the group ``name``
    (``config``, whose only command is ``show``, too)."""
    is_the_command = (
        [info.name for info in app.registered_commands] == [name]
        and not app.registered_groups
        and not app.registered_callback
        and not app.info.callback  # a DefaultPlaceholder(None) when unset: falsy
    )
    parent.add_typer(app, name=None if is_the_command else name)


def build_command(name: str, table: Table, settings: Mapping[str, Any]) -> Command:
    """Import the module of command ``name`` and build its click command (or group), exactly as
    :func:`add_command_app` on a root app made with ``settings`` would."""
    module = importlib.import_module(table[name][0])
    shell = typer.Typer(**settings)
    add_command_app(shell, module.app, name)
    command = typer.main.get_group(shell).commands[name]
    defer_type_adapters(command)
    return command


def lazy_group(table: Table, settings: Mapping[str, Any]) -> type[LazyGroup]:
    """The root group's class (Typer instantiates it): serves the commands of ``table``, each
    built with ``settings`` (the root app's) when first looked up."""
    return cast(
        "type[LazyGroup]", type("LazyRoot", (LazyGroup,), {"table": table, "settings": settings})
    )


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
    """The root group: the commands of ``table`` are built when first looked up. Commands
    registered on the app directly (``@app.command``, ``app.add_typer``) are built by Typer as
    usual and take precedence over a lazy one of the same name. Made by :func:`lazy_group`."""

    table: ClassVar[Table] = {}
    settings: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, commands: Any = None, **kwargs: Any) -> None:
        super().__init__(commands=commands, **kwargs)
        loaders = {name: self._loader(name) for name in self.table}
        self.commands = _Commands(self.commands, loaders)
        defer_type_adapters(self)

    def _loader(self, name: str) -> Callable[[], Command]:
        return lambda: build_command(name, self.table, self.settings)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Typer's command list, with the stored one-line help of commands not built yet."""
        commands = self.commands
        assert isinstance(commands, _Commands)
        rows: list[tuple[str, Command | str]] = []
        for name in self.list_commands(ctx):
            if commands.is_built(name) or name not in self.table:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command))
            else:
                rows.append((name, self.table[name][1]))
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


# -- Typer's pydantic adapters, built only for values that need them --------------------------
#
# Typer (>= 0.26) coerces every parameter of the invoked command through a pydantic TypeAdapter,
# built on first use: importing pydantic and building the adapters of `config show`'s 9
# parameters (and its --help option) costs ~45 ms, a fifth of the command; a Path option's
# adapter ~80 ms. For the values whose conversion needs no pydantic (a default, a string, a list
# of strings, an enum choice, a path, a plain decimal number within its bounds) the result is
# computed here as Typer's adapter computes it (for a path: Typer's own `coerce_cli_path` checks
# on the text, then the Path pydantic would make of it); any other value (a number in another
# notation, a bad choice, a number out of bounds, a path that Path() would rewrite) goes to
# Typer's adapter, built then, with Typer's own conversion and error message.
# tests/test_cli_lazy.py compares both on every parameter of every command, and on more kinds.

# Private Typer API, so only on the Typer versions tests/test_cli_lazy.py has checked it with;
# any other Typer builds its adapters as it always does (slower, never different).
CHECKED_TYPER = ((0, 26), (0, 30))
try:
    _typer_version = tuple(map(int, typer.__version__.split(".")[:2]))
    if not CHECKED_TYPER[0] <= _typer_version < CHECKED_TYPER[1]:
        raise ImportError(typer.__version__)
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import (
        coerce_cli_choice,
        coerce_cli_path,
        lenient_issubclass,
        routes_to_path,
    )
    from typer._typing import get_args, get_origin, is_literal_type, literal_values
    from typer.core import _TyperParameter
except (ImportError, ValueError):  # another Typer: its adapters are built as it builds them
    DEFER = False
else:
    DEFER = True

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
            result = _pass_through(self.descriptor, value, param, ctx)
            if result is not _NOT_PASSED:
                return result
            typer_own = build_runtime_param(self.descriptor)
            param._runtime_param = typer_own  # from now on Typer's own, as if never deferred
            return typer_own._coerce_value(value, param=param, ctx=ctx)


_NOT_PASSED: Any = object()


def _pass_through(descriptor: Any, value: Any, param: Any, ctx: Context) -> Any:
    """What Typer's adapter would return for ``value``, where that needs no pydantic; else
    ``_NOT_PASSED``."""
    annotation, info = descriptor.annotation, descriptor.parameter_info
    if info.parser is not None or descriptor.file_annotation is not None:
        return _NOT_PASSED
    if annotation is str:
        return value if type(value) is str else _NOT_PASSED
    if annotation is int or annotation is float:
        return _number(annotation, info, value)
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
    if lenient_issubclass(annotation, Path) and routes_to_path(annotation, info):
        path_type = info.path_type or annotation
        if type(value) is not str or not lenient_issubclass(path_type, Path):
            return _NOT_PASSED
        path = path_type(value)  # what pydantic makes of a str
        if str(path) != value or path == Path("-"):  # "", "a/", "./a"; Typer's dash test
            return _NOT_PASSED  # sees the Path, and os.stat would see another name
        # Typer's own checks (exists, dir_okay...) and messages, on the text
        checked = coerce_cli_path(value, info, path_type=None, param=param, ctx=ctx)
        return path if checked is value else path_type(checked)
    return _NOT_PASSED


def _number(annotation: type, info: Any, value: Any) -> Any:
    """An int/float given as itself or as plain decimal digits (``12``, ``-3``, ``0.25``: what
    pydantic reads as ``int(text)``/``float(text)``), within its bounds; else ``_NOT_PASSED``."""
    if type(value) is str:
        whole, dot, fraction = value.removeprefix("-").partition(".")
        plain = (
            value.isascii()
            and whole.isdigit()
            and len(whole) <= 15  # far from float rounding and int digit limits
            and (not dot or (annotation is float and fraction.isdigit() and len(fraction) <= 15))
        )
        if not plain:
            return _NOT_PASSED
        value = annotation(value)
    elif type(value) is not annotation or value != value:  # another type, or NaN
        return _NOT_PASSED
    if (info.min is not None and value < info.min) or (info.max is not None and value > info.max):
        return _NOT_PASSED  # clamped, or refused in Typer's words
    return value


def defer_type_adapters(command: Command) -> None:
    """Let ``command``'s parameters, its help option and its subcommands' (those built) skip
    pydantic for values that need no conversion (see above)."""
    if not DEFER:
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
