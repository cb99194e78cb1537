"""Sweep spec parsing and validation, grid semantics, hyperband bands, override rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from expctl.errors import SpecError
from expctl.sweeps.methods.grid import grid_points
from expctl.sweeps.spec import (
    ConfigCheck,
    EarlyTerminate,
    load_spec,
    parse_spec,
    render_value,
    to_overrides,
)


def write(tmp: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(text: str, tmp: Path, config: ConfigCheck | None = None) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp, text), config)
    return info.value.problems


# -- reading ---------------------------------------------------------------------------------------


def test_exponent_floats_are_floats_not_strings(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
        method: random
        parameters:
          lr: {min: 1e-5, max: 1E-1}
          wd: {value: 3e-4}
    """,
        )
    )
    lr = spec.parameter("lr")
    assert lr.distribution == "uniform"  # both bounds floats → uniform, as W&B infers
    assert (lr.min, lr.max) == (1e-5, 0.1)
    assert spec.parameter("wd").value == 3e-4


def test_nested_parameters_flatten_to_dotted_paths(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
        method: grid
        parameters:
          optim:
            parameters:
              lr: {values: [0.1, 0.01]}
              betas:
                parameters:
                  b1: {value: 0.9}
          trainer.epochs: {value: 3}
    """,
        )
    )
    assert [p.name for p in spec.parameters] == ["optim.betas.b1", "optim.lr", "trainer.epochs"]


@pytest.mark.parametrize(
    ("body", "distribution"),
    [
        ("{values: [1, 2]}", "categorical"),
        ("{values: [a, b], probabilities: [0.3, 0.7]}", "categorical_w_probabilities"),
        ("{value: 3}", "constant"),
        ("{min: 1, max: 5}", "int_uniform"),
        ("{min: 0.0, max: 1.0}", "uniform"),
        ("{distribution: normal}", "normal"),
    ],
)
def test_distribution_inference(tmp_path: Path, body: str, distribution: str) -> None:
    spec = load_spec(write(tmp_path, f"method: random\nparameters:\n  p: {body}\n"))
    assert spec.parameter("p").distribution == distribution


def test_wandb_defaults_are_filled(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
        method: random
        parameters:
          n: {distribution: normal}
          b: {distribution: q_beta}
          q: {distribution: q_uniform, min: 0, max: 10}
    """,
        )
    )
    n, b, q = spec.parameter("n"), spec.parameter("b"), spec.parameter("q")
    assert (n.mu, n.sigma) == (0.0, 1.0)
    assert (b.a, b.b, b.q) == (1.0, 1.0, 1.0)
    assert q.q == 1.0


def test_example_sweeps_are_valid() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted((configs / "sweeps").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.parameters, path


def test_metric_early_terminate_and_program(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
        program: train.py
        method: bayes
        metric: {name: acc, goal: maximize, target: 0.99}
        early_terminate: {type: hyperband, max_iter: 27, s: 3}
        command: [${env}, ${interpreter}, ${program}, ${args_no_hyphens}, ${envvar:HOME}]
        run_cap: 10
        parameters:
          lr: {distribution: log_uniform_values, min: 1e-4, max: 1e-1}
    """.replace("[$", "\n          - $")
            .replace(", $", "\n          - $")
            .replace("}]", "}"),
        )
    )
    assert spec.metric is not None and spec.metric.maximize and spec.metric.target == 0.99
    assert spec.metric.reached(0.995) and not spec.metric.reached(0.9)
    assert spec.early_terminate is not None and spec.early_terminate.bands() == [1, 3, 9]
    assert spec.command is not None and spec.command[3] == "${args_no_hyphens}"
    assert spec.run_cap == 10


def test_hyperband_bands_follow_wandb() -> None:
    assert EarlyTerminate(min_iter=2, eta=3).bands()[:4] == [2, 6, 18, 54]
    assert EarlyTerminate(max_iter=5, s=2, eta=2).bands() == [1, 2]
    assert EarlyTerminate(max_iter=10, s=5, eta=3).bands() == [1, 3]  # 10/27 < 1 stops


# -- every problem, all at once -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("parameters: {x: {values: [1]}}", "method", "missing"),
        ("method: gird\nparameters: {x: {values: [1]}}", "method", "did you mean 'grid'"),
        (
            "method: custom\nscheduler: {engine: wandb}\nparameters: {x: {values: [1]}}",
            "scheduler.engine",
            "custom",
        ),
        ("method: grid\nparamters: {x: {values: [1]}}", "paramters", "did you mean 'parameters'"),
        ("method: grid", "parameters", "missing"),
        (
            "method: grid\nmetric: {name: l, goal: minimise}\nparameters: {x: {value: 1}}",
            "metric.goal",
            "did you mean 'minimize'",
        ),
        (
            "method: grid\nmetric: {goal: minimize}\nparameters: {x: {value: 1}}",
            "metric.name",
            "missing",
        ),
        ("method: bayes\nparameters: {x: {min: 0.0, max: 1.0}}", "metric", "bayes needs"),
        ("method: grid\nrun_cap: 0\nparameters: {x: {value: 1}}", "run_cap", "positive"),
        (
            "method: random\nparameters: {x: {distribution: unifrom, min: 0.0, max: 1.0}}",
            "parameters.x.distribution",
            "did you mean 'uniform'",
        ),
        ("method: random\nparameters: {x: {min: 1, max: 2.5}}", "parameters.x", "ambiguous"),
        ("method: random\nparameters: {x: {min: 2.0, max: 1.0}}", "parameters.x", "less than max"),
        (
            "method: random\nparameters: {x: {distribution: log_uniform_values, min: 0, max: 1}}",
            "parameters.x.min",
            "> 0",
        ),
        (
            "method: random\nparameters: {x: {distribution: log_uniform, min: 1, max: 1000}}",
            "parameters.x",
            "exponents",
        ),
        (
            "method: random\nparameters: {x: {distribution: q_uniform, min: 0, max: 1, q: 0}}",
            "parameters.x.q",
            "> 0",
        ),
        (
            "method: random\nparameters: {x: {distribution: normal, sigma: -1}}",
            "parameters.x.sigma",
            ">= 0",
        ),
        ("method: random\nparameters: {x: {distribution: beta, a: 0}}", "parameters.x.a", "> 0"),
        (
            "method: random\nparameters: {x: {distribution: int_uniform, min: 0, max: 1.5}}",
            "parameters.x.max",
            "integer",
        ),
        ("method: random\nparameters: {x: {values: []}}", "parameters.x.values", "non-empty"),
        (
            "method: random\nparameters: {x: {values: [a, b], probabilities: [0.5, 0.6]}}",
            "parameters.x.probabilities",
            "sum to 1",
        ),
        (
            "method: random\nparameters: {x: {values: [a, b], probabilities: [1.0]}}",
            "parameters.x.probabilities",
            "1 probabilities for 2 values",
        ),
        (
            "method: random\nparameters: {x: {values: [a], probabilites: [1.0]}}",
            "parameters.x.probabilites",
            "did you mean 'probabilities'",
        ),
        (
            "method: random\nparameters: {x: {distribution: normal, min: 0}}",
            "parameters.x.min",
            "does not take",
        ),
        (
            "method: random\nparameters: {x: {distribution: uniform, min: 0.0}}",
            "parameters.x",
            "needs 'max'",
        ),
        ("method: random\nparameters: {x: 3}", "parameters.x", "must be a mapping"),
        ("method: random\nparameters: {1x: {value: 1}}", "parameters.1x", "names"),
        (
            "method: random\nparameters: {x: {parameters: {}}}",
            "parameters.x.parameters",
            "non-empty",
        ),
        (
            "method: grid\nparameters: {x: {min: 0.0, max: 1.0}}",
            "parameters.x",
            "cannot be used with method: grid",
        ),
        (
            "method: grid\nparameters: {x: {distribution: normal}}",
            "parameters.x",
            "cannot be used with method: grid",
        ),
        (
            "method: grid\nparameters: {x: {values: [a, b], probabilities: [0.5, 0.5]}}",
            "parameters.x",
            "cannot be used with method: grid",
        ),
        (
            "method: grid\nearly_terminate: {type: hyperbnd, min_iter: 1}\nmetric: {name: l}\n"
            "parameters: {x: {value: 1}}",
            "early_terminate.type",
            "did you mean 'hyperband'",
        ),
        (
            "method: grid\nearly_terminate: {type: hyperband}\nmetric: {name: l}\n"
            "parameters: {x: {value: 1}}",
            "early_terminate",
            "min_iter",
        ),
        (
            "method: grid\nearly_terminate: {type: hyperband, max_iter: 9}\nmetric: {name: l}\n"
            "parameters: {x: {value: 1}}",
            "early_terminate.s",
            "needs s",
        ),
        (
            "method: grid\nearly_terminate: {type: hyperband, min_iter: 1, eta: 1}\n"
            "metric: {name: l}\nparameters: {x: {value: 1}}",
            "early_terminate.eta",
            "> 1",
        ),
        (
            "method: grid\nearly_terminate: {type: hyperband, min_iter: 1}\n"
            "parameters: {x: {value: 1}}",
            "early_terminate",
            "needs a `metric`",
        ),
        (
            "method: grid\ncommand:\n  - ${programm}\nprogram: t.py\nparameters: {x: {value: 1}}",
            "command[0]",
            "did you mean ${program}",
        ),
        (
            "method: grid\ncommand:\n  - ${program}\nparameters: {x: {value: 1}}",
            "command[0]",
            "no `program`",
        ),
        (
            "method: grid\ncommand:\n  - --x=${args}\nparameters: {x: {value: 1}}",
            "command[0]",
            "exactly one macro",
        ),
        (
            "method: grid\nparameters:\n  a.b: {value: 1}\n  a: {parameters: {b: {value: 2}}}",
            "parameters.a.b",
            "given twice",
        ),
    ],
)
def test_each_spec_error(tmp_path: Path, text: str, path: str, message: str) -> None:
    problems = problems_of(text, tmp_path)
    assert any(p.endswith(path) and message in m for p, m in problems), problems


def test_problems_carry_file_and_line(tmp_path: Path) -> None:
    problems = problems_of("method: grid\nparameters:\n  x:\n    distribution: unifrom\n", tmp_path)
    assert problems[0][0] == "sweep.yaml:4: parameters.x.distribution"


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        """
        method: gird
        metric: {name: loss, goal: minimise}
        early_terminate: {type: hyperbnd, min_iter: 0}
        parameters:
          a: {distribution: unifrom, min: 0, max: 1}
          b: {min: 1, max: 2.5}
          c: {values: [1], probabilites: [1.0]}
    """,
        tmp_path,
    )
    assert len(problems) == 7
    text = "\n".join(m for _, m in problems)
    for expected in (
        "'grid'",
        "'minimize'",
        "'hyperband'",
        ">= 1",
        "'uniform'",
        "ambiguous",
        "'probabilities'",
    ):
        assert expected in text


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    problems = problems_of("method: grid\nparameters:\n  x: [1, 2\n", tmp_path)
    assert problems[0][0].startswith(str(tmp_path / "sweep.yaml") + ":")
    assert "YAML syntax error" in problems[0][1]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_log_uniform_with_values_instead_of_exponents_warns(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
        method: random
        parameters: {lr: {distribution: log_uniform, min: 1e-5, max: 1e-1}}
    """,
        )
    )
    assert any("log_uniform_values" in w for w in spec.warnings)


def test_ignored_wandb_keys_warn_but_pass(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
        method: grid
        controller: {type: local}
        parameters: {x: {value: 1}}
    """,
        )
    )
    assert any("controller" in w for w in spec.warnings)


# -- parameters against the project's config ------------------------------------------------------


def test_parameters_checked_against_config(project: Path) -> None:
    path = write(
        project,
        """
        method: grid
        parameters:
          optim.lr: {values: [0.1]}
          optim.lrr: {values: [0.1]}
          model: {values: [small, larg]}
          scheduler: {value: cosine}
          scheduler.T_max: {value: 3}
          scheduler.T_mx: {value: 3}
          trainer.epochs: {value: 2}
    """,
    )
    with pytest.raises(SpecError) as info:
        load_spec(path, ConfigCheck(None, "config"))
    messages = {p.split(": ", 1)[1]: m for p, m in info.value.problems}
    assert len(messages) == 3
    assert "did you mean 'optim.lr'" in messages["parameters.optim.lrr"]
    assert "did you mean 'large'" in messages["parameters.model"]
    # T_max exists once scheduler=cosine is selected; the typo does not
    assert "did you mean 'scheduler.T_max'" in messages["parameters.scheduler.T_mx"]
    assert "--config-dir" in (info.value.hint or "")


def test_program_sweeps_skip_the_config_check(project: Path) -> None:
    path = write(project, "program: t.py\nmethod: grid\nparameters: {anything: {value: 1}}\n")
    assert load_spec(path, ConfigCheck(None, "config")).program == "t.py"


# -- grid ------------------------------------------------------------------------------------------


def grid(text: str) -> list[dict]:
    import yaml

    return grid_points(parse_spec(yaml.safe_load(textwrap.dedent(text))))


def test_grid_int_uniform_includes_max_and_q_uniform_excludes_it() -> None:
    assert [p["n"] for p in grid("method: grid\nparameters: {n: {min: 1, max: 3}}")] == [1, 2, 3]
    points = grid("""
        method: grid
        parameters: {q: {distribution: q_uniform, min: 0, max: 1, q: 0.25}}
    """)
    assert [p["q"] for p in points] == [0.0, 0.25, 0.5, 0.75]


def test_grid_product_order_dedup_and_run_cap() -> None:
    points = grid("""
        method: grid
        parameters:
          b: {values: [1, 1.0, 2]}
          a: {values: [x, y]}
          c: {value: 7}
    """)
    # names sorted (W&B), 1 and 1.0 are one point, constants ride along
    assert points == [
        {"a": "x", "b": 1, "c": 7},
        {"a": "x", "b": 2, "c": 7},
        {"a": "y", "b": 1, "c": 7},
        {"a": "y", "b": 2, "c": 7},
    ]
    capped = grid("method: grid\nrun_cap: 3\nparameters: {n: {min: 1, max: 10}}")
    assert [p["n"] for p in capped] == [1, 2, 3]


def test_grid_of_lists_and_dicts() -> None:
    points = grid("method: grid\nparameters: {v: {values: [[1, 2], [1, 2], {a: 1}]}}")
    assert [p["v"] for p in points] == [[1, 2], {"a": 1}]


def test_huge_grid_is_refused() -> None:
    from expctl.sweeps.spec import parse_spec as parse

    spec = parse(
        {
            "method": "grid",
            "parameters": {"a": {"min": 1, "max": 1000}, "b": {"min": 1, "max": 1000}},
        }
    )
    with pytest.raises(SpecError, match=r"the grid has 1,000,000 points .*; at most 100"):
        grid_points(spec, limit=100)


# -- overrides --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1,
        -3,
        0.1,
        1e-05,
        3e300,
        True,
        False,
        None,
        "small",
        "a b",
        "1e-3",
        "true",
        "it's",
        "x=y",
        "a,b",
        [1, 2],
        {"a": 1, "b": "c d"},
        [],
        "path/to/x.yaml",
        "${oc.env:HOME}",
    ],
)
def test_rendered_values_parse_back_in_hydra(value: object) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"k={render_value(value)}"])[0]
    assert parsed.value() == value


def test_group_parameters_select_options() -> None:
    assert to_overrides({"model": "large", "optim.lr": 0.01}) == ["model=large", "optim.lr=0.01"]
    assert to_overrides({"extra": "1"}, {"extra": "+extra"}) == ["+extra=1"]


def test_envvar_macros_are_substituted_inside_items_but_only_for_upper_case_names() -> None:
    base = {
        "method": "random",
        "program": "train.py",
        "metric": {"name": "loss"},
        "parameters": {"lr": {"values": [0.1]}},
    }
    ok = parse_spec({**base, "command": ["${env}", "--data=${envvar:DATA_DIR}", "${args}"]})
    assert ok.command == ("${env}", "--data=${envvar:DATA_DIR}", "${args}")
    with pytest.raises(SpecError) as bad:
        parse_spec({**base, "command": ["${env}", "--data=${envvar:data_dir}", "${args}"]})
    assert bad.value.problems == [
        ("command[1]", "${envvar:data_dir} is never substituted: NAME must match [A-Z0-9_]+")
    ]


# -- W&B's leniency where W&B is lenient (with a warning where a file is suspicious) ---------


def _load(tmp: Path, text: str):
    from expctl.sweeps.spec import load_spec

    path = tmp / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path)


def test_yaml_merge_keys_override_what_they_merge(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        """
        program: train.py
        method: random
        parameters:
          optim.lr: &lr_base {distribution: log_uniform_values, min: 0.0001, max: 0.1}
          optim.weight_decay:
            <<: *lr_base
            max: 0.001
        """,
    )
    wd = spec.parameter("optim.weight_decay")
    assert (wd.distribution, wd.min, wd.max) == ("log_uniform_values", 0.0001, 0.001)
    assert not any("twice" in w for w in spec.warnings)


def test_a_key_written_twice_keeps_the_last_with_a_warning_naming_both_lines(tmp_path: Path):
    spec = _load(
        tmp_path,
        """
        program: train.py
        method: grid
        parameters:
          bs:
            values: [16, 32]
            values: [64]
        """,
    )
    assert spec.parameter("bs").values == (64,)
    assert any("parameters.bs.values is written twice (lines 6 and 7)" in w for w in spec.warnings)


def test_hyperband_with_min_iter_and_max_iter_uses_max_iter_as_wandb_does(tmp_path: Path):
    spec = _load(
        tmp_path,
        """
        program: train.py
        method: random
        metric: {name: loss}
        early_terminate: {type: hyperband, min_iter: 3, max_iter: 27, s: 2}
        parameters:
          lr: {min: 0.001, max: 0.1}
        """,
    )
    assert spec.early_terminate is not None and spec.early_terminate.bands() == [3, 9]
    assert any("W&B uses max_iter" in w for w in spec.warnings)


def test_foreign_top_level_keys_warn_misspelt_ones_fail(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        "program: t.py\nmethod: random\nrun_name: x\nparameters: {lr: {values: [1]}}\n",
    )
    assert any("'run_name' is not a W&B sweep key" in w for w in spec.warnings)
    problems = problems_of(
        "program: t.py\nmethod: random\nmetrc: {name: x}\nparameters: {lr: {values: [1]}}",
        tmp_path,
    )
    assert any("did you mean 'metric'" in m for _, m in problems)


def test_mixed_bounds_in_a_nested_block_are_uniform_as_in_wandb(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        """
        program: train.py
        method: random
        parameters:
          optim:
            parameters:
              lr: {min: 0, max: 0.1}
        """,
    )
    assert spec.parameter("optim.lr").distribution == "uniform"
    assert any("mix an int and a float" in w for w in spec.warnings)


def test_exponent_log_uniform_says_what_it_draws(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        """
        program: train.py
        method: random
        parameters:
          learning_rate: {distribution: log_uniform, min: -9.21, max: -2.3}
        """,
    )
    assert any("[0.0001, 0.1003]" in w and "log_uniform_values" in w for w in spec.warnings)


@pytest.mark.parametrize(
    ("values", "runs"),
    [("[1e-5, 0.00001]", 1), ("[3e6, 3000000, 3000000.0]", 1), ("[[64.0, 32], [64, 32]]", 2)],
)
def test_grid_duplicates_collapse_as_in_wandb(tmp_path: Path, values: str, runs: int) -> None:
    from expctl.sweeps.methods.grid import grid_points

    spec = _load(tmp_path, f"program: t.py\nmethod: grid\nparameters:\n  x: {{values: {values}}}\n")
    assert len(grid_points(spec)) == runs


def test_a_program_takes_any_argument_name_as_wandb_passes_it(tmp_path: Path) -> None:
    """W&B's server calls `max_grad:norm` malformed and still runs the sweep, passing
    `--max_grad:norm=0.8` (a public sweep file does this); a trainer sweep's parameter is a
    config override, where such a name cannot be said."""
    from expctl.sweeps.program.macros import build_command

    def sweep(program: str, *names: str) -> str:
        lines = [program, "method: grid", "parameters:"]
        return "\n".join([*lines, *(f'  "{n}": {{values: [0.2, 0.8]}}' for n in names)])

    spec = load_spec(write(tmp_path, sweep("program: train.py", "max_grad:norm", "ok")))
    assert [p.name for p in spec.parameters] == ["max_grad:norm", "ok"]
    assert any("'max_grad:norm' is not a W&B parameter name" in w for w in spec.warnings)
    argv = build_command(
        None, "train.py", {"max_grad:norm": 0.8}, sweep_id="s", run_id="r", wandb_dir=tmp_path
    )
    assert argv[-1] == "--max_grad:norm=0.8"
    # still refused: what would not stay one `--name=value` argument, and any trainer override
    refused = problems_of(sweep("program: train.py", "bad name", "a=b", "ok"), tmp_path)
    assert refused == [
        (
            f"sweep.yaml:{line}: parameters.{name}",
            "a name passed as --name=value cannot hold '=', a space or a newline",
        )
        for line, name in ((4, "bad name"), (5, "a=b"))
    ]
    trainer = problems_of(sweep("", "max_grad:norm"), tmp_path)
    assert [path for path, _ in trainer] == ["sweep.yaml:4: parameters.max_grad:norm"]
