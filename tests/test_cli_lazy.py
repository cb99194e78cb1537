"""The root group builds a command only when it is used, and nothing a user sees changes.

Every help text, usage error and did-you-mean of the lazy CLI is compared with the CLI built the
way Typer builds it eagerly (every `add_typer` up front); parameters coerced without pydantic
must give exactly what Typer's own coercion gives; every private Typer name that
`expctl/cli/typer_compat.py` relies on is checked to be there, with the shape it relies on.
"""

from __future__ import annotations

import dataclasses
import inspect
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

from expctl.cli import main, typer_compat

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
    app.add_typer(run.app)  # one command: merged, as in Typer's one-file-per-command docs
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
        (["config", "show", "--config-dir", "configs"], ["expctl.cli.config_cmd", "hydra"]),
        (["run", "--help"], ["expctl.cli.run"]),
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
    "0",
    "-0",
    "007",
    "0.5",
    "-0.25",
    "12.500",
    "3.",
    ".5",
    "-",
    "1_000",
    "1e3",
    "inf",
    "nan",
    "\u0663",  # an Arabic-Indic 3: str.isdigit says yes, pydantic no
    "9" * 15,
    "9" * 16,
    "9" * 20,
    "0." + "1" * 20,
    3,
    -1,
    0,
    3.0,
    0.25,
    float("nan"),
    True,
    "table",
    "TABLE",
    "json",
    "csv",
    "yaml",
    "bogus",
    b"bytes",
    ".",
    "some/path",
    "~/x",
    "sub",
    "sub/file.txt",
    "sub/",
    "./sub/file.txt",
    "sub//file.txt",
    "sub/file.txt/",
    "missing/dir",
    Path("some/path"),
    ("a", 1),
]


def _coerce(runtime: Any, value: Any, param: Any, ctx: Context) -> tuple[str, str, type]:
    """(outcome, repr of the value or the message, type): repr, as NaN != NaN."""
    try:
        result = runtime.coerce(value, param=param, ctx=ctx)
        return "ok", repr(result), type(result)
    except BadParameter as e:
        return "error", e.format_message(), BadParameter


def _check_coercion(commands: list[Command]) -> int:
    """Each parameter's deferred coercion against Typer's own, on every sample value."""
    from typer._coercion import build_runtime_param
    from typer.core import _TyperParameter

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
                lazy, typer_own = (
                    _coerce(deferred, value, param, ctx),
                    _coerce(own, value, param, ctx),
                )
                assert lazy == typer_own, (
                    command.name,
                    param.name,
                    value,
                )
                param._runtime_param = deferred  # a fallback hands the param to Typer's own
                checked += 1
    return checked


def test_deferred_coercion_gives_what_typer_gives(isolated):
    (isolated / "sub").mkdir()
    (isolated / "sub" / "file.txt").write_text("x")
    root = get_command(main.app)
    commands: list[Command] = [root]
    for path in command_paths()[1:]:
        command: Any = root
        for name in path:
            command = command.commands[name]
        commands.append(command)
    assert _check_coercion(commands) > 1000


def test_deferred_coercion_of_kinds_expctl_does_not_use_yet(isolated):
    """Path checks (exists, file/dir, resolve, str path type), clamped and bounded numbers:
    what a future option may use is Typer's coercion too."""
    (isolated / "sub").mkdir()
    (isolated / "sub" / "file.txt").write_text("x")
    app = typer.Typer()

    @app.command()
    def kinds(
        a: Path = typer.Option(Path("."), exists=True),
        b: Path = typer.Option(Path("."), dir_okay=False),
        c: Path = typer.Option(Path("."), file_okay=False, resolve_path=True),
        d: str = typer.Option(".", path_type=str, exists=True),
        e: Path | None = typer.Option(None, allow_dash=True),
        f: int = typer.Option(1, min=0, max=10, clamp=True),
        g: float = typer.Option(1.0, min=-1, max=1),
        h: float = typer.Option(1.0),
        i: list[Path] = typer.Option([]),
        j: list[int] = typer.Option([]),
    ) -> None:
        pass

    command = get_command(app)
    typer_compat.defer_type_adapters(command)
    assert _check_coercion([command]) > 500


# -- the Typer internals typer_compat relies on ------------------------------------------------


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_typer_internals_we_rely_on_are_there():
    """Every private Typer name in cli/typer_compat.py (and its docstring), with the shape it
    is used with. A Typer upgrade that moves one fails here: re-check typer_compat against it,
    then widen typer_compat.CHECKED_TYPER."""
    import typer._click as click
    import typer._coercion as coercion
    import typer._param_types as param_types
    import typer._typing as typing_
    import typer.core as core
    from typer._click import exceptions, utils

    version = tuple(map(int, typer.__version__.split(".")[:2]))
    low, high = typer_compat.CHECKED_TYPER
    assert low <= version < high, f"typer {typer.__version__}: not checked against typer_compat"
    assert typer_compat.DEFER

    # the lazy group
    for cls in (click.Command, click.Context, click.HelpFormatter):
        assert inspect.isclass(cls)
    assert {"section", "write_dl"} <= set(dir(click.HelpFormatter))
    assert _parameters(utils.make_default_short_help) == ["help", "max_length"]
    assert _parameters(core.TyperGroup.list_commands) == ["self", "ctx"]
    assert _parameters(core.TyperGroup.format_commands) == ["self", "ctx", "formatter"]
    assert _parameters(core.TyperGroup.get_command) == ["self", "ctx", "cmd_name"]
    assert "commands" in _parameters(core.TyperGroup.__init__)
    assert isinstance(core.TyperGroup(name="g", commands={}).commands, dict)
    assert _parameters(click.Command.get_help_option) == ["self", "ctx"]
    assert _parameters(click.Command.get_short_help_str) == ["self", "limit"]
    assert issubclass(exceptions.NoSuchOption, exceptions.ClickException)
    assert exceptions.NoSuchOption("--x").option_name == "--x"
    assert {"exit_code", "format_message"} <= set(dir(exceptions.ClickException))

    # one registration: an app of one command is merged by a nameless add_typer
    one, group = typer.Typer(), typer.Typer()
    one.command("one")(lambda: None)
    group.command("a")(lambda: None)
    group.command("b")(lambda: None)
    for app in (one, group):
        assert [info.name for info in app.registered_commands] == (
            ["one"] if app is one else ["a", "b"]
        )
        assert app.registered_groups == []
        assert not app.registered_callback and not app.info.callback
    parent = typer.Typer()
    parent.command("p")(lambda: None)
    parent.add_typer(one)
    parent.add_typer(group, name="g")
    built = typer.main.get_group(parent).commands
    assert list(built) == ["p", "one", "g"] and not isinstance(built["one"], core.TyperGroup)

    # the deferred adapters
    option = core.TyperOption(
        param_decls=["--x"],
        type_descriptor=coercion.resolve_type_descriptor(str, typer.models.OptionInfo()),
    )
    assert option._runtime_param is None
    descriptor = option.type_descriptor
    assert {"annotation", "parameter_info", "file_annotation"} <= set(vars(descriptor))
    assert issubclass(core.TyperOption, core._TyperParameter)
    assert _parameters(core._TyperParameter.get_runtime_param) == ["self"]
    fields = [field.name for field in dataclasses.fields(coercion.RuntimeParam)]
    assert fields == ["parameter_info", "annotation"]
    assert coercion.RuntimeParam.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert _parameters(coercion.RuntimeParam._coerce_value) == ["self", "value", "param", "ctx"]
    assert _parameters(coercion.RuntimeParam.coerce) == ["self", "value", "param", "ctx"]
    assert _parameters(coercion.build_runtime_param) == ["descriptor"]
    choice = inspect.signature(param_types.coerce_cli_choice).parameters
    assert list(choice) == ["value", "choices", "case_sensitive", "ctx"]
    path = inspect.signature(param_types.coerce_cli_path).parameters
    assert list(path) == ["value", "parameter_info", "path_type", "param", "ctx"]
    assert _parameters(param_types.routes_to_path) == ["annotation", "parameter_info"]
    assert param_types.lenient_issubclass(Path, Path)
    assert not param_types.lenient_issubclass(list[str], Path)
    assert typing_.get_origin(list[str]) is list and typing_.get_args(list[str]) == (str,)
    from typing import Literal

    assert typing_.is_literal_type(Literal["a"]) and typing_.literal_values(Literal["a"]) == ("a",)
    # the ParameterInfo fields the pass-through reads
    info = typer.models.OptionInfo()
    for field in ("parser", "min", "max", "clamp", "case_sensitive", "path_type"):
        assert hasattr(info, field), field


def test_every_command_module_has_the_same_shape():
    """One registration style: each command module exposes `app`, registered with
    typer_compat.add_command_app; none registers itself."""
    import importlib

    for name, (module_name, _) in main.COMMANDS.items():
        module = importlib.import_module(module_name)
        assert isinstance(module.app, typer.Typer), name
        assert not hasattr(module, "register"), name
        shell = typer.Typer()
        typer_compat.add_command_app(shell, module.app, name)
        assert list(get_command_of(shell).commands) == [name]  # type: ignore[attr-defined]


def get_command_of(app: typer.Typer) -> Command:
    return typer.main.get_group(app)


def test_private_typer_is_used_only_in_typer_compat():
    """The quarantine holds: no other module of expctl reaches into Typer's internals."""
    import re

    import expctl

    private = re.compile(r"\btyper\._\w+|\btyper\.core\b|from typer\.(core|_\w+) import")
    offenders = [
        f"{path.relative_to(Path(expctl.__file__).parent)}:{number}"
        for path in sorted(Path(expctl.__file__).parent.rglob("*.py"))
        if path.name != "typer_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == [], "private Typer outside cli/typer_compat.py"
