"""W&B's sweep YAML → a typed, validated :class:`SweepSpec`.

The schema is W&B's (wandb/sweeps ``config/schema.json``); expctl is stricter where W&B is silently
wrong: unknown keys and misspelt goals, methods, distributions and command macros are errors with a
did-you-mean, and *every* problem of a file is reported at once (:class:`SpecError`, exit 2), each
with its YAML path and line.

This module holds the spec types, the entry points and the top-level keys; the parts live in
:mod:`~expctl.sweeps.spec_yaml` (YAML with line numbers), :mod:`~expctl.sweeps.parameters`
(``parameters:`` and distributions), :mod:`~expctl.sweeps.config_check` (parameters against the
project config) and :mod:`~expctl.sweeps.overrides` (values → Hydra overrides). Their public names
are re-exported here, where callers import them from.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.errors import Problems, SpecError
from expctl.sweeps.config_check import (
    ConfigCheck,
    config_groups,
    config_problems,
    trainer_metric_problem,
)
from expctl.sweeps.macros import MACRO_NAMES
from expctl.sweeps.overrides import render_value, to_overrides
from expctl.sweeps.parameters import (
    DISTRIBUTIONS,
    PARAMETER_KEYS,
    Parameter,
    parse_parameters,
)
from expctl.sweeps.spec_command import check_command, top_names
from expctl.sweeps.spec_problems import is_int, is_number, param_path, sweep_problems
from expctl.sweeps.spec_yaml import load_yaml

__all__ = [
    "DISTRIBUTIONS",
    "EARLY_TERMINATE_KEYS",
    "GOALS",
    "GRID_DISTRIBUTIONS",
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
    "SweepSpec",
    "config_groups",
    "config_problems",
    "load_spec",
    "load_yaml",
    "parse_spec",
    "render_value",
    "to_overrides",
]

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
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
IGNORED_KEYS = ("apiVersion", "kind", "controller", "job", "image_uri", "scheduler", "metrics")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
EARLY_TERMINATE_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
# The macros W&B's agent substitutes, in its documented order (one list: expctl.sweeps.macros).
MACROS = MACRO_NAMES
_MACRO = re.compile(r"\$\{([^}]*)\}")
# The distributions a grid can enumerate (finite sets of values).
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")


# -- the typed spec -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "minimize"
    target: float | None = None

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"

    def reached(self, value: float | None) -> bool:
        """Whether ``value`` meets ``target`` (W&B: the sweep stops when a run reaches it)."""
        if self.target is None or value is None:
            return False
        return value >= self.target if self.maximize else value <= self.target


@dataclass(frozen=True)
class EarlyTerminate:
    """W&B's hyperband: bands ``min_iter·eta^k``, or ``max_iter/eta^k`` for k = 1..s."""

    type: str = "hyperband"
    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3.0
    strict: bool = True

    def bands(self, limit: int = 100) -> list[int]:
        if self.max_iter is not None and self.s is not None:
            bands, band = [], float(self.max_iter)
            for _ in range(self.s):
                band /= self.eta
                if band < 1:
                    break
                bands.append(int(band))
            return sorted(bands)
        bands, band = [], float(self.min_iter or 1)
        for _ in range(limit):
            # min_iter with max_iter but no s: the bands below max_iter (W&B's max_iter bands
            # never include max_iter itself)
            if self.max_iter is not None and band >= self.max_iter:
                break
            bands.append(int(band))
            band *= self.eta
        return bands


@dataclass(frozen=True)
class SweepSpec:
    method: str
    parameters: tuple[Parameter, ...]
    metric: Metric | None = None
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

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)

    def missing_program(self, cwd: Path | None = None) -> Path | None:
        """The ``program`` file the command runs, when it does not exist (from ``cwd``, the
        directory an agent runs it from); None when it exists or is not run."""
        from expctl.sweeps.macros import DEFAULT_COMMAND

        if not self.program or "${program}" not in (self.command or DEFAULT_COMMAND):
            return None
        path = Path(cwd or Path.cwd()) / self.program
        return None if path.exists() else path

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
    metric = _metric(data.get("metric"), problems) if "metric" in data else None
    early = (
        _early_terminate(data["early_terminate"], problems)
        if data.get("early_terminate") is not None
        else None
    )
    strings = _strings(data, problems)
    command = (
        check_command(data.get("command"), strings["program"], problems, top_names(data))
        if "command" in data
        else None
    )
    parameters = _parameters(data, problems, runs_own=bool(strings["program"] or command))
    run_cap = _run_cap(data, problems)
    _method_needs(method, parameters, metric, early, data, problems)
    hint = None
    if config is not None and not strings["program"] and command is None and parameters:
        n = len(problems.items)
        keys = config_problems(parameters, data, config, problems)
        parameter_problems = len(problems.items) > n
        if metric is not None:
            trainer_metric_problem(metric.name, keys, problems)
        if parameter_problems:
            hint = (
                "parameters are overrides of the project config (--config-dir/--config-name); "
                "give `program:` to run your own script instead"
            )
    if problems.items:
        raise SpecError(source, problems.items, hint=hint)
    return SweepSpec(
        method=method or "random",
        parameters=tuple(sorted(parameters, key=lambda p: p.name)),
        metric=metric,
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


def _top_level_keys(data: dict, problems: Problems) -> None:
    for key in data:
        if key in IGNORED_KEYS:
            problems.warnings.append(
                f"{key!r} is accepted for W&B compatibility but ignored by expctl"
            )
        elif key in TOP_LEVEL_KEYS:
            continue
        elif difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.8):
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


def _parameters(data: dict, problems: Problems, *, runs_own: bool) -> list[Parameter]:
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
    return parse_parameters(params_raw, problems)


def _method_needs(
    method: str | None,
    parameters: list[Parameter],
    metric: Metric | None,
    early: EarlyTerminate | None,
    data: dict,
    problems: Problems,
) -> None:
    """What a method or hyperband needs of the rest of the file."""
    if method == "grid":
        for p in parameters:
            if p.distribution not in GRID_DISTRIBUTIONS:
                problems.add(
                    param_path(p.name, data),
                    f"distribution {p.distribution!r} cannot be used with method: grid "
                    f"(grid takes {', '.join(GRID_DISTRIBUTIONS)}; "
                    "use values: [...] or method: random)",
                )
    if metric is None:
        if method == "bayes":
            problems.add("metric", "method: bayes needs a `metric` (name and goal) to optimise")
        if early is not None:
            problems.add("early_terminate", "hyperband early termination needs a `metric`")


def _method(data: dict, problems: Problems) -> str | None:
    method = data.get("method")
    if method is None:
        problems.add("method", "missing: choose one of grid, random, bayes")
        return None
    if method == "custom":
        problems.add(
            "method",
            "method 'custom' needs W&B's server scheduler; expctl runs grid, random and bayes",
        )
        return None
    if method not in METHODS:
        problems.bad_choice("method", "method", method, METHODS)
        return None
    return str(method)


def _metric(raw: Any, problems: Problems) -> Metric | None:
    if not isinstance(raw, dict):
        problems.add("metric", "must be a mapping with `name` and `goal`")
        return None
    problems.unknown_keys("metric", raw, METRIC_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(
            "metric.name", "missing: the name of the logged metric to optimise, e.g. val_loss"
        )
        name = None
    goal = raw.get("goal", "minimize")
    if goal not in GOALS:
        problems.bad_choice("metric.goal", "goal", goal, GOALS)
        goal = "minimize"
    target = raw.get("target")
    if target is not None and not (is_number(target) and math.isfinite(target)):
        problems.add("metric.target", f"must be a finite number, got {target!r}")
        target = None
    if "impute" in raw and raw["impute"] not in ("latest", "best", "worst"):
        problems.bad_choice("metric.impute", "impute", raw["impute"], ("latest", "best", "worst"))
    if name is None:
        return None
    return Metric(name=name, goal=goal, target=float(target) if target is not None else None)


def _early_terminate(raw: Any, problems: Problems) -> EarlyTerminate | None:
    if not isinstance(raw, dict):
        problems.add("early_terminate", "must be a mapping: {type: hyperband, min_iter: N}")
        return None
    ok = problems.unknown_keys("early_terminate", raw, EARLY_TERMINATE_KEYS)
    kind = raw.get("type")
    if kind != "hyperband":
        if kind is None:
            problems.add("early_terminate.type", "missing: the only type is 'hyperband'")
        else:
            problems.bad_choice("early_terminate.type", "type", kind, ("hyperband",))
        ok = False
    min_iter, max_iter, s = raw.get("min_iter"), raw.get("max_iter"), raw.get("s")
    eta = raw.get("eta", 3)
    strict = raw.get("strict", True)
    for key, value in (("min_iter", min_iter), ("max_iter", max_iter), ("s", s)):
        if value is not None and not (is_int(value) and value >= 1):
            problems.add(f"early_terminate.{key}", f"must be an integer >= 1, got {value!r}")
            ok = False
    if min_iter is None and max_iter is None:
        problems.add("early_terminate", "give min_iter (bands min_iter*eta^k) or max_iter and s")
        ok = False
    elif min_iter is not None and max_iter is not None and s is not None:
        problems.warnings.append(
            "early_terminate: both min_iter and max_iter+s are given; W&B uses max_iter and s "
            "(min_iter is ignored), and so does expctl"
        )
        min_iter = None
    elif max_iter is not None and s is None and min_iter is None:
        problems.add("early_terminate.s", "missing: max_iter needs s (the number of bands)")
        ok = False
    elif max_iter is not None and s is None:
        # W&B's schema accepts this (it asks for min_iter, or max_iter and s), but its stopping
        # code takes the max_iter branch and reads `s`: it would fail there, once runs log
        problems.warnings.append(
            "early_terminate: min_iter and max_iter without s; expctl stops at the bands "
            "min_iter*eta^k below max_iter, but W&B's server would fail on this file when it "
            "checks runs (its hyperband reads `s` whenever max_iter is given): add s, or drop "
            "max_iter, to run it on W&B too"
        )
    if not is_number(eta) or eta <= 1:
        problems.add("early_terminate.eta", f"must be a number > 1, got {eta!r}")
        ok = False
    if not isinstance(strict, bool):
        problems.add("early_terminate.strict", f"must be true or false, got {strict!r}")
        ok = False
    if not ok:
        return None
    early = EarlyTerminate(min_iter=min_iter, max_iter=max_iter, s=s, eta=float(eta), strict=strict)
    if not early.bands():
        problems.add("early_terminate", "no bands: max_iter/eta < 1; raise max_iter or lower eta")
        return None
    return early
