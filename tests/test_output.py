"""One renderer: every table, JSON, YAML and CSV a command writes goes through
`expctl.cli.output.emit`, with one JSON policy and one escaping rule.

- a lint (AST) fails when a branch on the output format appears outside `cli/output`, and is
  shown to catch one;
- every command offering `--format` is run with each of its formats while `emit`'s writers are
  watched: each writes through exactly the writer of the format asked for;
- the JSON policy (NaN and infinities as "nan"/"inf"/"-inf", strict JSON) and the escaping of
  control characters hold for runs, artifacts, sweeps and config alike.
"""

from __future__ import annotations

import ast
import io
import json
import math
import sys
from pathlib import Path

import pytest
from sweep_helpers import agent

from expctl.cli import output

PACKAGE = Path(output.__file__).resolve().parents[1]  # expctl/
FORMAT_ENUMS = {"TableOrJson", "YamlOrJson", "TableJsonCsv"}
FORMAT_NAMES = {"fmt", "format", "output_format"}
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\u202e"


# -- the lint -------------------------------------------------------------------------------------


def _is_format(node: ast.AST) -> bool:
    """``fmt``, ``fmt.value``, ``TableOrJson.json`` and the like."""
    if isinstance(node, ast.Name):
        return node.id in FORMAT_NAMES
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id in FORMAT_ENUMS:
            return True
        return node.attr == "value" and _is_format(node.value)
    return False


def format_branches(source: str, filename: str = "<source>") -> list[str]:
    """``file:line`` of every comparison with, or ``match`` on, an output format."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        compared = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
        matched = [node.subject] if isinstance(node, ast.Match) else []
        if any(_is_format(n) for n in [*compared, *matched]):
            found.append(f"{filename}:{node.lineno}")
    return found


def _outside_output() -> list[Path]:
    renderer = {PACKAGE / "cli" / "output.py", PACKAGE / "cli" / "output"}
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p not in renderer and (PACKAGE / "cli" / "output") not in p.parents
    ]


def test_no_format_branch_outside_the_renderer():
    files = _outside_output()
    assert len(files) > 50  # the whole package is read, not an empty glob
    found = [b for p in files for b in format_branches(p.read_text(), str(p))]
    assert not found, f"branch on --format outside cli/output (use output.emit): {found}"


@pytest.mark.parametrize(
    "source",
    [
        "if fmt == TableOrJson.json:\n    pass\n",
        "text = a if fmt is YamlOrJson.yaml else b\n",
        "if fmt.value != 'csv':\n    pass\n",
        "if TableJsonCsv.csv == fmt:\n    pass\n",
        "if format in ('json', 'yaml'):\n    pass\n",
        "match fmt:\n    case _:\n        pass\n",
        "header, rows = list_rows(views, csv=fmt == TableJsonCsv.csv)\n",
    ],
)
def test_the_lint_catches_a_format_branch(source):
    assert format_branches(source) == ["<source>:1"]


def test_the_lint_leaves_other_comparisons_alone():
    source = "if method == 'grid':\n    pass\nif fmt_width > 3 or value == fmts:\n    pass\n"
    assert format_branches(source) == []


def test_every_format_choice_has_a_writer():
    for enum in (output.TableOrJson, output.YamlOrJson, output.TableJsonCsv):
        assert {choice.value for choice in enum} <= set(output._WRITERS)


def test_the_cli_modules_stay_under_400_lines():
    long = {
        str(p): n
        for p in (PACKAGE / "cli").glob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long


# -- every command through the one renderer -------------------------------------------------------


def _run_dir(runs: Path, name: str, suffix: str, value: float) -> Path:
    run = runs / "digits" / f"20260101-12000{len(list(runs.glob('*/*')))}-{suffix}"
    run.mkdir(parents=True)
    summary = {
        "name": name,
        "status": "completed",
        "started_at": "2026-01-01T12:00:00+00:00",
        "ended_at": "2026-01-01T12:00:05+00:00",
        "monitor": {"metric": "val_loss", "mode": "min"},
        "final_metrics": {"val_loss": value, "val_acc": float("inf")},
        "best_metrics": {"val_loss": value},
    }
    (run / "summary.json").write_text(json.dumps(summary))  # NaN/Infinity: Python's json
    (run / "overrides.yaml").write_text("- optim.lr=0.1\n")
    (run / "config.yaml").write_text("optim:\n  lr: 0.1\n")
    rows = [{"step": i, "epoch": i, "val_loss": value} for i in range(2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.fixture
def world(cli, isolated: Path) -> dict[str, str]:
    """Two runs (one named with terminal escapes, metrics NaN and inf), an artifact whose
    metadata holds NaN, and a sweep named with terminal escapes (one trial complete)."""
    runs = isolated / "runs"
    _run_dir(runs, "plain", "aaa111", 0.5)
    _run_dir(runs, HOSTILE, "bbb222", float("nan"))
    (isolated / "model.pt").write_bytes(b"weights")
    pushed = cli("artifacts", "push", "model.pt", "--name", "m", "--metadata", '{"x": NaN}')
    assert pushed.exit_code == 0, pushed.stderr
    spec = (
        'name: "\\e]0;pwned\\a"\nprogram: t.py\nmethod: random\n'
        "metric: {name: loss, goal: minimize}\nparameters:\n  x: {values: [1, 2]}\n"
    )
    (isolated / "sweep.yaml").write_text(spec)
    created = cli("sweep", "create", "sweep.yaml")
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    agent(sweep_id, objective=lambda ctx: 0.5, count=1, handle_signals=False, seed=0)
    return {"sweep": sweep_id}


def _commands(sweep: str) -> list[tuple[list[str], tuple[str, ...]]]:
    return [
        (["runs", "list"], ("table", "json", "csv")),
        (["runs", "show", "latest"], ("table", "json")),
        (["runs", "compare", "aaa111", "bbb222"], ("table", "json")),
        (["artifacts", "list"], ("table", "json")),
        (["artifacts", "show", "m"], ("table", "json")),
        (["sweep", "list"], ("table", "json")),
        (["sweep", "status", sweep], ("table", "json")),
        (["sweep", "best", sweep], ("table", "json")),
    ]


def test_every_command_writes_through_the_one_renderer(cli, world, monkeypatch):
    used: list[str] = []
    for name, writer in list(output._WRITERS.items()):

        def watched(result, name=name, writer=writer):
            used.append(name)
            writer(result)

        monkeypatch.setitem(output._WRITERS, name, watched)
    for args, formats in _commands(world["sweep"]):
        for fmt in formats:
            used.clear()
            result = cli(*args, "--format", fmt)
            assert result.exit_code == 0, (args, fmt, result.stderr)
            assert used == [fmt], (args, fmt)
            assert result.stdout.strip(), (args, fmt)


def test_config_show_writes_through_the_one_renderer(cli, project, monkeypatch):
    used: list[str] = []
    for name, writer in list(output._WRITERS.items()):
        monkeypatch.setitem(
            output._WRITERS, name, lambda r, n=name, w=writer: (used.append(n), w(r))
        )
    for fmt in ("yaml", "json"):
        used.clear()
        result = cli("config", "show", "--format", fmt)
        assert result.exit_code == 0, result.stderr
        assert used == [fmt]


def _strict(text: str) -> object:
    def refuse(word: str) -> object:
        raise AssertionError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_one_json_policy_for_every_command(cli, world):
    """Strict JSON everywhere; NaN and inf as the words "nan" and "inf"."""
    for args, formats in _commands(world["sweep"]):
        if "json" not in formats:
            continue
        result = cli(*args, "--format", "json")
        assert result.exit_code == 0, result.stderr
        leaves = _leaves(_strict(result.stdout))
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in leaves)
        if args[0] == "runs":
            assert "nan" in leaves, args
        if args[:2] in (["runs", "list"], ["runs", "show"]):
            assert "inf" in leaves, args
        if args[:2] == ["artifacts", "show"]:
            assert "nan" in leaves
    listed = _strict(cli("runs", "list", "--format", "json").stdout)
    assert HOSTILE in {r["name"] for r in listed}  # JSON keeps the exact text


def test_config_show_json_policy(cli, project):
    result = cli("config", "show", "--format", "json", "+ratio=nan", "+big=inf")
    assert result.exit_code == 0, result.stderr
    shown = _strict(result.stdout)
    assert shown["ratio"] == "nan" and shown["big"] == "inf"


def test_control_characters_escaped_in_every_table_and_csv(cli, world):
    for args, formats in _commands(world["sweep"]):
        for fmt in [f for f in formats if f != "json"]:
            result = cli(*args, "--format", fmt)
            assert result.exit_code == 0, result.stderr
            for raw in ("\x1b", "\x07", "\u202e"):
                assert raw not in result.stdout and raw not in result.stderr, (args, fmt)
    listed = cli("runs", "list").stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202e" in listed  # visibly odd, not acting


# -- the two styles -------------------------------------------------------------------------------


def test_piped_style_is_plain_aligned_columns(capsys):
    page = output.Document(
        [
            output.Lines(["sweep abc: random"]),
            output.Table(("id", "value"), [("a", 1), ("bb", 22)], title="trials"),
        ]
    )
    output.emit(output.Shown({"x": 1}, page), "table")
    assert capsys.readouterr().out.splitlines() == [
        "sweep abc: random",
        "",
        "trials:",
        "  id  value",
        "  --  -----",
        "  a   1",
        "  bb  22",
    ]


def test_an_empty_listing_says_so_on_stderr(capsys):
    output.emit(output.Shown([], output.Table(("id",), [], empty="no runs here")), "table")
    captured = capsys.readouterr()
    assert captured.out == "" and "no runs here" in captured.err


def test_terminal_style_draws_rich_tables_and_escapes(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "40")
    long_path = "/scratch/" + "d" * 70 + "/run"
    rows = [("a1", HOSTILE + "[red]x[/red]", long_path)]
    table = output.Table(("id", "name", "run dir"), rows, title="runs")
    output.emit(output.Shown([], table), "table")
    drawn = screen.getvalue()
    assert long_path in drawn  # drawn at its natural width: never folded or cut with "…"
    assert "─" in drawn or "━" in drawn  # rich, not the plain columns
    assert "\x1b]0;" not in drawn and "\x07" not in drawn and "\u202e" not in drawn
    assert "[red]x[/red]" in drawn  # shown as written, not read as markup


def test_csv_keeps_values_whole(cli, world):
    rows = cli("runs", "list", "--format", "csv").stdout.splitlines()
    header = rows[0].split(",")
    assert {"run_dir", "tags", "final"} <= set(header)
    assert any(",nan," in row for row in rows[1:])


def test_compare_shows_a_nan_best_once(cli, world):
    """NaN is never equal to itself: a run whose final and best are both NaN shows one."""
    table = cli("runs", "compare", "aaa111", "bbb222").stdout
    assert "nan (at best nan)" not in table and "val_loss" in table


# -- one problem collector, written one way -------------------------------------------------------


def test_the_interpolation_walk_collects_into_problems():
    from omegaconf import OmegaConf

    from expctl.config.resolve import resolved_container
    from expctl.errors import Problems

    cfg = OmegaConf.create({"a": "${nope}", "b": {"c": "${a}"}, "d": "${b}"})
    _, walk = resolved_container(cfg)
    assert isinstance(walk.problems, Problems)
    # b.c is reached twice (itself, and d through b): reported once, where it is written
    assert [where for where, _ in walk.problems.items] == ["a", "b.c"]


def test_one_bad_swept_value_is_written_like_every_other_problem(project):
    """Multirun's checks collect into Problems: a single one reads as `where: message` with
    its hint, as a config's or a sweep file's single problem does."""
    from expctl.config import ConfigSource
    from expctl.errors import ConfigError
    from expctl.sweeps.multirun import multirun

    with pytest.raises(ConfigError) as e:
        multirun(ConfigSource(None, "config", ("model=small,larg",)), quiet=True)
    assert e.value.where == "model=larg"
    assert str(e.value).startswith("model=larg: ")
    assert "every combination runs only once" in (e.value.hint or "")


def test_problem_lists_are_written_one_way():
    from expctl.errors import Problems, SpecError

    problems = Problems()
    problems.add("x", "bad")
    problems.add("y", "worse")
    with pytest.raises(Exception) as config_error:
        problems.raise_config_error("problems", hint="fix them")
    spec = SpecError("s.yaml", problems.items)
    assert str(config_error.value).split("\n", 1)[1] == str(spec).split("\n", 1)[1]


# -- one did-you-mean -------------------------------------------------------------------------------

# Not a close match of a name but advice about a value (a log distribution's bounds).
NOT_A_CLOSE_MATCH = {"sweeps/spec/parameters.py"}


def test_did_you_mean_is_matched_and_worded_in_errors_only():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "errors.py" or relative in NOT_A_CLOSE_MATCH:
            continue
        text = path.read_text()
        if "get_close_matches" in text or "did you mean" in text.lower():
            offenders.append(relative)
    assert not offenders, f"use errors.did_you_mean_hint / errors.suggest in: {offenders}"


def test_did_you_mean_wording():
    from expctl.errors import did_you_mean_hint, suggest

    assert did_you_mean_hint("lrr", ["lr", "seed"]) == "did you mean 'lr'? "
    assert did_you_mean_hint("val_los", ["val_loss", "seed"], every=True) == (
        "did you mean val_loss? "
    )
    assert did_you_mean_hint("larg", ["large"], shown=lambda c: f"model={c}") == (
        "did you mean model=large? "
    )
    assert did_you_mean_hint("zzz", ["lr"]) == ""
    assert suggest(["a", "b"], every=True, shown=lambda c: "${" + c + "}", joiner=", ") == (
        "did you mean ${a}, ${b}? "
    )


def test_json_in_a_table_cell_follows_the_json_policy(cli, world):
    page = cli("artifacts", "show", "m").stdout
    assert '  x: "nan"' in page and "NaN" not in page
