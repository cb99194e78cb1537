"""The root group builds a command only when it is used, and nothing a user sees changes.

Every help text, usage error and did-you-mean of the lazy CLI is compared with the CLI built the
way Typer builds it eagerly (every `add_typer` up front); parameters coerced without pydantic
must give exactly what Typer's own coercion gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer._click import Command, Context
from typer._click.exceptions import BadParameter
from typer._completion_classes import ZshComplete
from typer.main import get_command
from typer.testing import CliRunner

from expctl.cli import main

EXPECTED = {
    "run": None,
    "runs": {"list", "show", "compare", "plot", "tag", "untag", "note"},
    "sweep": {"create", "agent", "status", "list", "stop", "repair", "report", "best"},
    "artifacts": {"pull", "list", "show", "push", "alias"},
    "config": {"show"},
}


def eager_app() -> typer.Typer:
    """The root app as Typer builds it without laziness: the same callback and settings."""
    from expctl.cli import artifacts, config_cmd, run, runs, sweep

    info = main.app.info
    app = typer.Typer(
        name=info.name,
        help=info.help,
        epilog=info.epilog,
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(main.root)
    run.register(app)
    app.add_typer(runs.app, name="runs")
    app.add_typer(sweep.app, name="sweep")
    app.add_typer(artifacts.app, name="artifacts")
    app.add_typer(config_cmd.app, name="config")
    return app


def command_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(command: Command, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*path, name])
            walk(sub, [*path, name])

    walk(get_command(eager_app()), [])
    return paths


def outcome(app: typer.Typer, args: list[str], width: int = 80) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, terminal_width=width)
    return result.exit_code, result.stdout, result.stderr


def test_every_command_is_registered():
    root = get_command(main.app)
    assert list(root.commands) == list(EXPECTED)  # type: ignore[attr-defined]
    for name, subcommands in EXPECTED.items():
        command = root.commands[name]  # type: ignore[attr-defined]
        assert command.name == name
        if subcommands is not None:
            assert set(command.commands) == subcommands


def test_stored_one_line_helps_are_the_commands_own():
    root = get_command(eager_app())
    for name, (_, short) in main.COMMANDS.items():
        own = (root.commands[name].help or "").split("\n\n")[0]  # type: ignore[attr-defined]
        assert " ".join(short.split()) == " ".join(own.split()), name


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_root_help_is_unchanged_at_every_width(width):
    for args in (["--help"], ["-h"], []):
        assert outcome(main.app, args, width) == outcome(eager_app(), args, width)


def test_every_command_help_is_unchanged():
    eager = eager_app()
    for path in command_paths():
        for flag in ("--help", "-h"):
            args = [*path, flag]
            assert outcome(main.app, args) == outcome(eager, args), args


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["confg", "show"],
        ["swep"],
        ["config"],
        ["config", "shw"],
        ["sweep", "lst"],
        ["--bogus"],
        ["--version"],
        ["config", "show", "--bogus"],
        ["config", "show", "--format", "xml"],
        ["config", "show", "-f", "JSON"],
        ["runs", "list", "--limit", "x"],
        ["runs", "list", "--format", "tsv"],
        ["runs", "show", "latest", "--rows", "1.5"],
        ["sweep", "agent", "nosuch", "--count", "two"],
    ],
)
def test_usage_errors_are_unchanged(args):
    assert outcome(main.app, args) == outcome(eager_app(), args)


def test_config_show_output_is_unchanged(project):
    for args in (
        ["config", "show"],
        ["config", "show", "--format", "json", "--select", "optim", "optim.lr=0.5"],
        ["config", "show", "--config-dir", "configs", "-f", "yaml", "--no-resolve"],
        ["config", "show", "-s", "optim.lr=0.2", "--select", "optim", "--check"],
    ):
        lazy, eager = outcome(main.app, args), outcome(eager_app(), args)
        assert lazy == eager and lazy[0] == 0, args


def test_unknown_command_through_the_entry_point_suggests(expctl_exe):
    proc = subprocess.run([*expctl_exe, "confg", "show"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "No such command 'confg'. Did you mean 'config'?" in proc.stderr
    assert "hint: usage: expctl [OPTIONS] COMMAND [ARGS]..." in proc.stderr


def test_shell_completion_sees_every_command():
    def complete(app: typer.Typer, args: list[str], incomplete: str) -> list[tuple[str, Any]]:
        completer = ZshComplete(get_command(app), {}, "expctl", "_EXPCTL_COMPLETE")
        return [(c.value, c.help) for c in completer.get_completions(args, incomplete)]

    assert [value for value, _ in complete(main.app, [], "")] == list(EXPECTED)
    assert [value for value, _ in complete(main.app, [], "co")] == ["config"]
    assert {value for value, _ in complete(main.app, ["sweep"], "")} == EXPECTED["sweep"]
    for args, incomplete in [([], ""), ([], "s"), (["runs"], ""), (["config", "show"], "--")]:
        assert complete(main.app, args, incomplete) == complete(eager_app(), args, incomplete)


LAZY_PROBE = (
    "import sys; sys.argv = ['expctl', *sys.argv[1:]]\n"
    "from expctl.cli.entry import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "mods = ['expctl.cli.' + m for m in ('run', 'runs', 'sweep', 'artifacts', 'config_cmd')]\n"
    "loaded = [m for m in [*mods, 'pydantic', 'hydra'] if m in sys.modules]\n"
    "sys.stderr.write('LOADED=' + ','.join(loaded))\n"
)


@pytest.mark.parametrize(
    ("args", "loaded"),
    [
        (["--help"], []),
        (["--version"], []),
        (["bogus"], []),
        (["config", "--help"], ["expctl.cli.config_cmd"]),
        (["config", "show"], ["expctl.cli.config_cmd", "hydra"]),
        (["config", "show", "--select", "optim", "-f", "json"], ["expctl.cli.config_cmd", "hydra"]),
        (["runs", "--help"], ["expctl.cli.runs"]),
        (["sweep", "--help"], ["expctl.cli.sweep"]),
    ],
)
def test_only_the_invoked_command_is_built(project, args, loaded):
    proc = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE, *args], capture_output=True, text=True, cwd=project
    )
    assert "LOADED=" in proc.stderr, proc.stderr
    assert proc.stderr.rsplit("LOADED=", 1)[1].strip().split(",") == (loaded or [""])


# -- coercion without pydantic is Typer's coercion -------------------------------------------

SAMPLES: list[Any] = [
    None,
    (),
    [],
    ("a", "b=c"),
    ["x"],
    "",
    "x",
    " 3 ",
    "3",
    "3.5",
    "-1",
    3,
    3.0,
    True,
    "table",
    "TABLE",
    "json",
    "csv",
    "yaml",
    "bogus",
    b"bytes",
    Path("some/path"),
    ("a", 1),
]


def _coerce(runtime: Any, value: Any, param: Any, ctx: Context) -> tuple[str, Any]:
    try:
        return "ok", runtime.coerce(value, param=param, ctx=ctx)
    except BadParameter as e:
        return "error", e.format_message()


def test_deferred_coercion_gives_what_typer_gives(isolated):
    from typer._coercion import build_runtime_param
    from typer.core import _TyperParameter

    root = get_command(main.app)
    commands: list[Command] = [root]
    for path in command_paths()[1:]:
        command: Any = root
        for name in path:
            command = command.commands[name]
        commands.append(command)
    checked = 0
    for command in commands:
        ctx = Context(command, help_option_names=["-h", "--help"])
        for param in [*command.params, command.get_help_option(ctx)]:
            if not isinstance(param, _TyperParameter):
                continue
            deferred = param._runtime_param
            assert deferred is not None
            choices = list(param.type_descriptor.choices or ())
            for value in [*SAMPLES, param.default, *choices, *(str(c) for c in choices)]:
                own = build_runtime_param(param.type_descriptor)
                assert _coerce(deferred, value, param, ctx) == _coerce(own, value, param, ctx), (
                    command.name,
                    param.name,
                    value,
                )
                param._runtime_param = deferred  # a fallback hands the param to Typer's own
                checked += 1
    assert checked > 500
