"""``metrics:``, ``method: custom`` and ``scheduler:`` (wandb/sweeps#135, validator at b1dfc5f):
each rule of W&B's schema and cfg.py, with files modelled on wandb/sweeps' own
``tests/test_config.py`` cases, plus expctl's choices where W&B has not decided."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from expctl.errors import SpecError
from expctl.sweeps.methods import method_for
from expctl.sweeps.methods.custom import CustomMethod
from expctl.sweeps.spec import load_spec, parse_spec

PARAMS = "parameters: {v1: {values: [1, 2, 3]}}\n"
TWO = "metrics: [{name: loss, goal: minimize}, {name: accuracy, goal: maximize}]\n"


def write(tmp: Path, text: str) -> Path:
    path = tmp / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(text: str, tmp: Path) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp, text))
    return info.value.problems


def where(problems: list[tuple[str, str]]) -> list[str]:
    return [w.split(": ", 1)[-1] for w, _ in problems]


# -- valid files ---------------------------------------------------------------------------------


def test_metrics_multi_objective_with_custom_method(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "method: custom\n" + TWO + PARAMS))
    assert [(m.name, m.goal) for m in spec.metrics] == [
        ("loss", "minimize"),
        ("accuracy", "maximize"),
    ]
    assert spec.multi_objective and spec.directions == ["minimize", "maximize"]
    assert spec.metric is None and spec.scheduler is None
    assert isinstance(method_for(spec), CustomMethod)


def test_metrics_filled_with_defaults() -> None:
    spec = parse_spec(
        {
            "method": "custom",
            "metrics": [{"name": "loss"}, {"name": "accuracy"}],
            "parameters": {"v1": {"values": [1, 2, 3]}},
        }
    )
    assert spec.directions == ["minimize", "minimize"]


def test_custom_with_optuna_engine_and_single_metric() -> None:
    spec = parse_spec(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna"},
            "metric": {"name": "loss", "goal": "maximize"},
            "parameters": {"v1": {"values": [1, 2, 3]}},
        }
    )
    assert spec.scheduler is not None and spec.scheduler.engine == "optuna"
    assert not spec.multi_objective and spec.directions == ["maximize"]
    assert [m.name for m in spec.objectives] == ["loss"]


def test_scheduler_wandb_engine_runs_wandb_methods() -> None:
    # test_scheduler_wandb_engine_valid / test_scheduler_only_engine_required: W&B's own methods
    for method in ("bayes", "grid", "random"):
        metric = {"metric": {"name": "loss"}} if method == "bayes" else {}
        spec = parse_spec(
            {
                "method": method,
                "scheduler": {"engine": "wandb"},
                "parameters": {"v1": {"values": [1, 2, 3]}},
                **metric,
            }
        )
        assert spec.scheduler is not None and spec.scheduler.engine == "wandb"


def test_controller_cloud_is_acceptable_with_scheduler() -> None:
    parse_spec(
        {
            "method": "bayes",
            "metric": {"name": "loss"},
            "scheduler": {"engine": "wandb"},
            "controller": {"type": "cloud"},
            "parameters": {"v1": {"values": [1, 2, 3]}},
        }
    )


def test_early_terminate_without_scheduler_still_works() -> None:
    spec = parse_spec(
        {
            "method": "custom",
            "metric": {"name": "loss"},
            "early_terminate": {"type": "hyperband", "min_iter": 3},
            "parameters": {"v1": {"values": [1, 2, 3]}},
        }
    )
    assert spec.early_terminate is not None


def test_custom_without_any_metric_warns_and_samples() -> None:
    spec = parse_spec({"method": "custom", "parameters": {"v1": {"values": [1, 2]}}})
    assert any("nothing to optimise" in w for w in spec.warnings)
    assert spec.directions == ["minimize"]


def test_search_space_makes_parameters_optional() -> None:
    spec = parse_spec(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna", "source": "s.py", "search_space": "space"},
            "metrics": [{"name": "a"}, {"name": "b"}],
        }
    )
    assert spec.parameters == () and spec.scheduler is not None
    assert spec.scheduler.search_space == "space" and spec.scheduler.source == "s.py"


def test_metrics_and_scheduler_are_no_longer_ignored_keys() -> None:
    spec = parse_spec(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna"},
            "metrics": [{"name": "a"}, {"name": "b"}],
            "parameters": {"v1": {"values": [1, 2]}},
        }
    )
    assert not any("ignored" in w for w in spec.warnings)


# -- invalid files: every rule, with its line -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        # test_metrics_requires_custom_method
        ("method: bayes\n" + TWO + PARAMS, "metrics", "requires `method: custom`"),
        # test_metric_and_metrics_mutually_exclusive / ..._error_message_is_specific
        (
            "method: custom\nmetric: {name: loss}\n" + TWO + PARAMS,
            "metrics",
            "cannot both be set",
        ),
        # test_metrics_requires_at_least_two
        (
            "method: custom\nmetrics: [{name: loss, goal: minimize}]\n" + PARAMS,
            "metrics",
            "at least 2",
        ),
        # test_fill_validate_metrics_rejects_non_list
        ("method: custom\nmetrics: not-a-list\n" + PARAMS, "metrics", "must be a list"),
        # test_fill_validate_metrics_rejects_non_dict_items
        (
            "method: custom\nmetrics: [{name: loss}, not-a-dict]\n" + PARAMS,
            "metrics[1]",
            "must be a mapping",
        ),
        # W&B's fill replaces an invalid goal with the default; expctl refuses it (did-you-mean)
        (
            "method: custom\nmetrics: [{name: loss, goal: minimise}, {name: acc}]\n" + PARAMS,
            "metrics[0].goal",
            "did you mean 'minimize'",
        ),
        (
            "method: custom\nmetrics: [{name: loss, impute: bestt}, {name: acc}]\n" + PARAMS,
            "metrics[0].impute",
            "did you mean 'best'",
        ),
        (
            "method: custom\nmetrics: [{name: loss, gaol: minimize}, {name: acc}]\n" + PARAMS,
            "metrics[0].gaol",
            "did you mean 'goal'",
        ),
        (
            "method: custom\nmetrics: [{goal: minimize}, {name: acc}]\n" + PARAMS,
            "metrics[0].name",
            "missing",
        ),
        (
            "method: custom\nmetrics: [{name: acc}, {name: acc, goal: maximize}]\n" + PARAMS,
            "metrics[1].name",
            "already objective 0",
        ),
        # test_scheduler_invalid_engine_rejected
        (
            "method: custom\nscheduler: {engine: not-a-real-engine}\n" + TWO + PARAMS,
            "scheduler.engine",
            "unknown engine",
        ),
        (
            "method: custom\nscheduler: {engine: optna}\n" + TWO + PARAMS,
            "scheduler.engine",
            "did you mean 'optuna'",
        ),
        # test_scheduler_missing_required_field
        (
            "method: custom\nscheduler: {source: scheduler.py}\n" + TWO + PARAMS,
            "scheduler.engine",
            "missing",
        ),
        ("method: custom\nscheduler: optuna\n" + TWO + PARAMS, "scheduler", "must be a mapping"),
        (
            "method: custom\nscheduler: {engine: optuna, engin: x}\n" + TWO + PARAMS,
            "scheduler.engin",
            "did you mean 'engine'",
        ),
        # test_scheduler_optimizer_or_search_space_requires_source
        (
            "method: custom\nscheduler: {engine: optuna, optimizer: build_study}\n" + TWO + PARAMS,
            "scheduler.optimizer",
            "needs scheduler.source",
        ),
        (
            "method: custom\nscheduler: {engine: optuna, search_space: space}\n" + TWO + PARAMS,
            "scheduler.search_space",
            "needs scheduler.source",
        ),
        # W&B: `parameters` is required unless scheduler.search_space is set
        ("method: custom\nscheduler: {engine: optuna}\n" + TWO, "parameters", "missing"),
        # test_scheduler_unavailable_engine_raises (ax): expctl has no Ax
        ("method: custom\nscheduler: {engine: ax}\n" + TWO + PARAMS, "scheduler.engine", "Ax"),
        # test_scheduler_engine_wandb_requires_method
        (
            "method: custom\nscheduler: {engine: wandb}\n" + PARAMS,
            "scheduler.engine",
            "does not run method: custom",
        ),
        # expctl's choice: engine optuna is method custom (the others run on Optuna already)
        (
            "method: bayes\nmetric: {name: l}\nscheduler: {engine: optuna}\n" + PARAMS,
            "scheduler.engine",
            "does not run method: bayes",
        ),
        # test_scheduler_and_early_terminate_mutually_exclusive
        (
            "method: custom\nmetric: {name: l}\nscheduler: {engine: optuna}\n"
            "early_terminate: {type: hyperband, min_iter: 3}\n" + PARAMS,
            "early_terminate",
            "cannot be used together with `scheduler`",
        ),
        # test_scheduler_and_controller_mutually_exclusive
        (
            "method: bayes\nmetric: {name: l}\nscheduler: {engine: wandb}\n"
            "controller: {type: local}\n" + PARAMS,
            "controller",
            "cannot be used together with `scheduler`",
        ),
        # hyperband judges one metric: not with `metrics`
        (
            "method: custom\n" + TWO + "early_terminate: {type: hyperband, min_iter: 3}\n" + PARAMS,
            "early_terminate",
            "multi-objective",
        ),
    ],
)
def test_each_rule_is_one_problem_at_its_path(
    text: str, path: str, message: str, tmp_path: Path
) -> None:
    problems = problems_of(text, tmp_path)
    found = zip(where(problems), (m for _, m in problems), strict=True)
    assert any(p == path and message in m for p, m in found), problems


def test_problems_carry_file_line_and_all_come_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        """
        method: bayes
        metric: {name: loss}
        metrics:
          - {name: loss, goal: minimise}
        scheduler: {engine: optna, optimizer: f}
        parameters: {v1: {values: [1, 2, 3]}}
        """,
        tmp_path,
    )
    located = [w for w, _ in problems]
    assert "sweep.yaml:4: metrics" in located  # at least 2 / both set / requires custom
    assert "sweep.yaml:5: metrics[0].goal" in located
    assert "sweep.yaml:6: scheduler.engine" in located
    assert "sweep.yaml:6: scheduler.optimizer" in located
    messages = " | ".join(m for _, m in problems)
    for expected in ("at least 2", "cannot both be set", "requires `method: custom`"):
        assert expected in messages


def test_trainer_sweep_objectives_must_be_logged_by_the_trainer(tmp_path: Path) -> None:
    from expctl.sweeps.spec import ConfigCheck

    text = (
        "method: custom\nmetrics: [{name: val_loss}, {name: val_acurracy, goal: maximize}]\n"
        "parameters: {optim.lr: {values: [0.1]}}\n"
    )
    root = Path(__file__).resolve().parents[1]
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text), ConfigCheck(root / "configs", "config"))
    problems = info.value.problems
    assert any(w.endswith("metrics[1].name") and "val_acc" in m for w, m in problems), problems
