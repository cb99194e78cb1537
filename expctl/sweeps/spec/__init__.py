"""W&B's sweep YAML → a typed, validated :class:`SweepSpec`.

The schema is W&B's (wandb/sweeps ``config/schema.json``); expctl is stricter where W&B is silently
wrong: unknown keys and misspelt goals, methods, distributions and command macros are errors with a
did-you-mean, and *every* problem of a file is reported at once (:class:`SpecError`, exit 2), each
with its YAML path and line.

This package's ``__init__`` holds the spec type, the entry points and the top-level keys; the
parts live in :mod:`~expctl.sweeps.spec.yaml` (YAML with line numbers),
:mod:`~expctl.sweeps.spec.parameters` (``parameters:`` and distributions),
:mod:`~expctl.sweeps.spec.metric` (``metric:`` and ``early_terminate:``),
:mod:`~expctl.sweeps.spec.command` (``command:``), :mod:`~expctl.sweeps.spec.config_check`
(parameters against the project config) and :mod:`~expctl.sweeps.spec.overrides` (values → Hydra
overrides). Their public names are re-exported here, where callers import them from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from expctl.errors import Problems, SpecError, UsageError, did_you_mean
from expctl.sweeps.methods import METHODS, check_method
from expctl.sweeps.program.macros import MACRO_NAMES
from expctl.sweeps.spec.command import check_command, top_names
from expctl.sweeps.spec.config_check import (
    ConfigCheck,
    config_groups,
    config_problems,
    trainer_metric_problem,
)
from expctl.sweeps.spec.metric import (
    EARLY_TERMINATE_KEYS,
    GOALS,
    METRIC_KEYS,
    EarlyTerminate,
    Metric,
    parse_early_terminate,
    parse_metric,
    parse_metrics,
)
from expctl.sweeps.spec.overrides import render_value, to_overrides
from expctl.sweeps.spec.parameters import (
    DISTRIBUTIONS,
    PARAMETER_KEYS,
    Parameter,
    parse_parameters,
)
from expctl.sweeps.spec.problems import is_int, sweep_problems
from expctl.sweeps.spec.scheduler import Scheduler, objectives_problems, parse_scheduler
from expctl.sweeps.spec.yaml import load_yaml

__all__ = [
    "DISTRIBUTIONS",
    "EARLY_TERMINATE_KEYS",
    "GOALS",
    "IGNORED_KEYS",
    "MACROS",
    "METHODS",
    "METRIC_KEYS",
    "PARAMETER_KEYS",
    "TOP_LEVEL_KEYS",
    "ConfigCheck",
    "EarlyTerminate",
    "Metric",
    "Parameter",
    "Scheduler",
    "SweepSpec",
    "config_groups",
    "config_problems",
    "load_spec",
    "load_yaml",
    "parse_spec",
    "render_value",
    "to_overrides",
]

TOP_LEVEL_KEYS = (
    "apiVersion",
    "kind",
    "controller",
    "description",
    "program",
    "job",
    "image_uri",
    "entity",
    "project",
    "name",
    "method",
    "command",
    "run_cap",
    "metric",
    "metrics",
    "scheduler",
    "early_terminate",
    "parameters",
)
# Accepted for compatibility with W&B files but without effect on expctl's engine.
IGNORED_KEYS = ("apiVersion", "kind", "controller", "job", "image_uri")
# The macros W&B's agent substitutes, in its documented order (one list:
# expctl.sweeps.program.macros).
MACROS = MACRO_NAMES
_MACRO = re.compile(r"\$\{([^}]*)\}")


# -- the typed spec -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    method: str
    parameters: tuple[Parameter, ...]
    metric: Metric | None = None
    metrics: tuple[Metric, ...] = ()  # `metrics:`, a multi-objective sweep (method: custom)
    scheduler: Scheduler | None = None
    early_terminate: EarlyTerminate | None = None
    run_cap: int | None = None
    program: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None
    description: str | None = None
    project: str | None = None
    entity: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    source: str = "<sweep>"
    warnings: tuple[str, ...] = ()

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """What the sweep optimises: every entry of ``metrics``, else ``metric``, else nothing."""
        return self.metrics or ((self.metric,) if self.metric else ())

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """The Optuna study's directions, one per objective (W&B's default goal: minimize)."""
        return ["maximize" if m.maximize else "minimize" for m in self.objectives] or ["minimize"]

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)

    def target_reached(self, value: float | list[float] | None) -> bool:
        """W&B: "the sweep finishes once any run reaches the target". With several objectives
        (W&B has not said), a run reaches it when it reaches every target given."""
        if not isinstance(value, list):
            return self.metric is not None and self.metric.reached(value)
        pairs = zip(self.objectives, value, strict=True)
        targeted = [(m, v) for m, v in pairs if m.target is not None]
        return bool(targeted) and all(m.reached(v) for m, v in targeted)

    def missing_program(self, cwd: Path | None = None) -> Path | None:
        """The ``program`` file the command runs, when it does not exist (from ``cwd``, the
        directory an agent runs it from); None when it exists or is not run."""
        from expctl.sweeps.program.macros import DEFAULT_COMMAND

        if not self.program or "${program}" not in (self.command or DEFAULT_COMMAND):
            return None
        path = Path(cwd or Path.cwd()) / self.program
        return None if path.exists() else path

    def check_program_here(self, sweep_id: str) -> None:
        """UsageError when the ``program`` is not here: refused before an agent claims any
        trial (none is burnt on it)."""
        missing = self.missing_program()
        if missing is not None:
            raise UsageError(
                f"sweep {sweep_id} runs program {self.program!r}, which does not exist "
                f"here: {missing}",
                hint="start the agent in the directory the program path is relative to (the "
                "project's root, as with `wandb agent`)",
            )

    @property
    def runs_own_command(self) -> bool:
        """Trials run the user's program/command (W&B's agent protocol), not expctl's trainer.

        W&B runs a ``command`` even without ``program`` (one that does not use ${program}).
        """
        return bool(self.program or self.command)


# -- reading and validating -----------------------------------------------------------------------


def load_spec(path: str | Path, config: ConfigCheck | None = None) -> SweepSpec:
    """Read and validate a sweep YAML file (raises :class:`SpecError` listing every problem).

    With ``config``, parameters of a sweep without ``program``/``command`` must also exist in
    that config (see :func:`config_problems`); those problems are reported together with the others.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(
            str(path),
            [(str(path), "file not found")],
            hint="pass the path of a W&B sweep YAML, e.g. configs/sweeps/grid.yaml",
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(
            str(path),
            [(str(path), "not a UTF-8 text file (a binary file?)")],
            hint="a sweep file is YAML text, e.g. configs/sweeps/grid.yaml",
        ) from None
    data, lines, warnings = load_yaml(text, str(p))
    return parse_spec(data, source=str(p), lines=lines, pre_warnings=warnings, config=config)


def parse_spec(
    data: Any,
    *,
    source: str = "<sweep>",
    lines: dict[str, int] | None = None,
    pre_warnings: list[str] | None = None,
    config: ConfigCheck | None = None,
) -> SweepSpec:
    """Validate a sweep config dict (as loaded from YAML) into a :class:`SweepSpec`; every
    problem of the file in one :class:`SpecError`."""
    problems = sweep_problems(source, lines or {})
    problems.warnings.extend(pre_warnings or [])
    if not isinstance(data, dict):
        problems.add("", "a sweep file must be a mapping with at least `method` and `parameters`")
        raise SpecError(source, problems.items)
    _top_level_keys(data, problems)
    method = _method(data, problems)
    metric = parse_metric(data.get("metric"), problems) if "metric" in data else None
    metrics = parse_metrics(data["metrics"], problems) if "metrics" in data else ()
    objectives_problems(data, method, problems)
    scheduler = parse_scheduler(data, method, problems)
    early = (
        parse_early_terminate(data["early_terminate"], problems)
        if data.get("early_terminate") is not None
        else None
    )
    strings = _strings(data, problems)
    command = (
        check_command(data.get("command"), strings["program"], problems, top_names(data))
        if "command" in data
        else None
    )
    defined_by_run = bool(scheduler and scheduler.search_space)  # W&B: parameters optional
    program = bool(strings["program"] or command)
    parameters = _parameters(data, problems, runs_own=program or defined_by_run, program=program)
    run_cap = _run_cap(data, problems)
    _method_needs(
        method, parameters, metric or (metrics[0] if metrics else None), early, data, problems
    )
    hint = None
    if config is not None and not strings["program"] and command is None and parameters:
        hint = _trainer_problems(parameters, data, config, metric, metrics, problems)
    if problems.items:
        raise SpecError(source, problems.items, hint=hint)
    return SweepSpec(
        method=method or "random",
        parameters=tuple(sorted(parameters, key=lambda p: p.name)),
        metric=metric,
        metrics=metrics,
        scheduler=scheduler,
        early_terminate=early,
        run_cap=run_cap,
        program=strings["program"],
        command=command,
        name=strings["name"],
        description=strings["description"],
        project=strings["project"],
        entity=strings["entity"],
        raw=data,
        source=source,
        warnings=tuple(problems.warnings),
    )


def _trainer_problems(
    parameters: list[Any],
    data: dict,
    config: ConfigCheck,
    metric: Any,
    metrics: tuple[Any, ...],
    problems: Problems,
) -> str | None:
    """A sweep of expctl's trainer: every parameter must be a key of the project config and
    every objective a metric the trainer logs; the hint when a parameter is not."""
    n = len(problems.items)
    keys = config_problems(parameters, data, config, problems)
    parameter_problems = len(problems.items) > n
    if metric is not None:
        trainer_metric_problem(metric.name, keys, problems)
    for i, objective in enumerate(metrics):
        trainer_metric_problem(objective.name, keys, problems, f"metrics[{i}].name")
    if not parameter_problems:
        return None
    return (
        "parameters are overrides of the project config (--config-dir/--config-name); "
        "give `program:` to run your own script instead"
    )


def _top_level_keys(data: dict, problems: Problems) -> None:
    for key in data:
        if key in IGNORED_KEYS:
            problems.warnings.append(
                f"{key!r} is accepted for W&B compatibility but ignored by expctl"
            )
        elif key in TOP_LEVEL_KEYS:
            continue
        elif did_you_mean(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.8):
            problems.unknown_key("", str(key), TOP_LEVEL_KEYS)  # a misspelt key: it would vanish
        else:
            # W&B warns ("Malformed sweep config") and creates the sweep; so do we
            problems.warnings.append(
                f"{key!r} is not a W&B sweep key; ignored (W&B ignores it too)"
            )


def _strings(data: dict, problems: Problems) -> dict[str, str | None]:
    strings: dict[str, str | None] = {}
    for key in ("program", "name", "description", "project", "entity"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            problems.add(key, f"must be a string, got {type(value).__name__}")
            value = None
        strings[key] = value
    return strings


def _run_cap(data: dict, problems: Problems) -> int | None:
    run_cap = data.get("run_cap")
    if run_cap is not None and not (is_int(run_cap) and run_cap > 0):
        problems.add("run_cap", f"must be a positive integer, got {run_cap!r}")
        return None
    return run_cap


def _parameters(
    data: dict, problems: Problems, *, runs_own: bool, program: bool
) -> list[Parameter]:
    params_raw = data.get("parameters")
    if params_raw is None:
        if not runs_own:
            problems.add(
                "parameters", "missing: a sweep needs `parameters` (the config keys to vary)"
            )
        return []
    if not isinstance(params_raw, dict) or not params_raw:
        problems.add("parameters", "must be a non-empty mapping of parameter name -> distribution")
        return []
    return parse_parameters(params_raw, problems, program=program)


def _method_needs(
    method: str | None,
    parameters: list[Parameter],
    metric: Metric | None,
    early: EarlyTerminate | None,
    data: dict,
    problems: Problems,
) -> None:
    """What a method or hyperband needs of the rest of the file."""
    if method is not None:
        METHODS[method].spec_problems(parameters, metric, data, problems)
    if early is not None and "metrics" in data and "scheduler" not in data:
        problems.add(
            "early_terminate",
            "hyperband early termination judges one `metric`; a multi-objective sweep "
            "(`metrics`) cannot use it",
        )
    elif metric is None and early is not None:
        problems.add("early_terminate", "hyperband early termination needs a `metric`")


def _method(data: dict, problems: Problems) -> str | None:
    return check_method(data.get("method"), problems)
