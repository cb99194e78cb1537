"""W&B's sweep YAML → a typed, validated :class:`SweepSpec`.

The schema is W&B's (wandb/sweeps ``config/schema.json``); expctl is stricter where W&B is silently
wrong: unknown keys and misspelt goals, methods, distributions and command macros are errors with a
did-you-mean, and *every* problem of a file is reported at once (:class:`SpecError`, exit 2), each
with its YAML path and line.

Nested ``parameters:`` blocks are flattened to dotted config paths
(``optim: {parameters: {lr: ..}}`` → ``optim.lr``). YAML is read so that ``1e-5`` is a float
(PyYAML's YAML 1.1 resolver reads it as a string, a classic sweep bug).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.errors import SpecError, did_you_mean
from expctl.sweeps.macros import MACRO_NAMES

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
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

# distribution -> keys it takes (besides `distribution`) and their defaults (None: required)
DISTRIBUTIONS: dict[str, dict[str, Any]] = {
    "constant": {"value": None},
    "categorical": {"values": None},
    "categorical_w_probabilities": {"values": None, "probabilities": None},
    "int_uniform": {"min": None, "max": None},
    "uniform": {"min": None, "max": None},
    "q_uniform": {"min": None, "max": None, "q": 1.0},
    "log_uniform": {"min": None, "max": None},
    "log_uniform_values": {"min": None, "max": None},
    "q_log_uniform": {"min": None, "max": None, "q": 1.0},
    "q_log_uniform_values": {"min": None, "max": None, "q": 1.0},
    "inv_log_uniform": {"min": None, "max": None},
    "inv_log_uniform_values": {"min": None, "max": None},
    "normal": {"mu": 0.0, "sigma": 1.0},
    "q_normal": {"mu": 0.0, "sigma": 1.0, "q": 1.0},
    "log_normal": {"mu": 0.0, "sigma": 1.0},
    "q_log_normal": {"mu": 0.0, "sigma": 1.0, "q": 1.0},
    "beta": {"a": 1.0, "b": 1.0},
    "q_beta": {"a": 1.0, "b": 1.0, "q": 1.0},
}
PARAMETER_KEYS = (
    "distribution",
    "parameters",
    *sorted({k for d in DISTRIBUTIONS.values() for k in d}),
)
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
# min/max are values that must be > 0 (the others take exponents)
_POSITIVE_MIN = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")


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
        if self.max_iter is not None:
            bands, band = [], float(self.max_iter)
            for _ in range(self.s or 0):
                band /= self.eta
                if band < 1:
                    break
                bands.append(int(band))
            return sorted(bands)
        bands, band = [], float(self.min_iter or 1)
        for _ in range(limit):
            bands.append(int(band))
            band *= self.eta
        return bands


@dataclass(frozen=True)
class Parameter:
    """One swept config path and its W&B distribution (keys and defaults as in W&B)."""

    name: str
    distribution: str
    value: Any = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] = ()
    min: float | None = None
    max: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    a: float | None = None
    b: float | None = None

    @property
    def is_constant(self) -> bool:
        return self.distribution == "constant"

    def describe(self) -> str:
        """A short human description for the `sweep create` table."""
        d = self.distribution
        if d == "constant":
            return repr(self.value)
        if d == "categorical":
            return ", ".join(_short(v) for v in self.values)
        if d == "categorical_w_probabilities":
            return ", ".join(
                f"{_short(v)} (p={p:g})"
                for v, p in zip(self.values, self.probabilities, strict=True)
            )
        keys = [k for k in DISTRIBUTIONS[d] if getattr(self, k) is not None]
        return " ".join(f"{k}={getattr(self, k)!r}" for k in keys)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 30 else text[:27] + "..."


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

    @property
    def searched(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if not p.is_constant)


# -- YAML loading with line numbers ---------------------------------------------------------------


def _loader_class() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads ``1e-5`` and ``1E5`` as floats (YAML 1.2), not strings."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def load_yaml(text: str, source: str) -> tuple[Any, dict[str, int], list[tuple[str, str]]]:
    """Parse YAML; return (data, {dotted yaml path: line}, problems such as duplicate keys)."""
    import yaml

    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(
            source,
            [(line, f"YAML syntax error: {e.problem or e.context}")],
            hint="fix the YAML at that line (indentation, quotes, brackets)",
        ) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    if node is not None:
        _index_lines(node, "", lines, problems, source)
    return data, lines, problems


def _index_lines(
    node: Any, prefix: str, lines: dict[str, int], problems: list, source: str
) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            if key in seen:
                problems.append(
                    (
                        f"{source}:{key_node.start_mark.line + 1}: {path}",
                        "duplicate key (YAML keeps only the last one)",
                    )
                )
            seen.add(key)
            lines.setdefault(path, key_node.start_mark.line + 1)
            _index_lines(value_node, path, lines, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines.setdefault(path, item.start_mark.line + 1)
            _index_lines(item, path, lines, problems, source)


# -- validation -----------------------------------------------------------------------------------


class _Problems:
    """Collects (path, message) pairs; paths carry ``file:line:`` where the YAML gave one."""

    def __init__(self, source: str, lines: dict[str, int]):
        self.source = source
        self.lines = lines
        self.items: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = self._line(path)
        where = f"{Path(self.source).name}:{line}: {path}" if line else path
        self.items.append((where, message))

    def _line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return None

    def unknown_key(
        self,
        path: str,
        key: str,
        allowed: tuple[str, ...] | list[str],
        also: tuple[str, ...] = (),
    ) -> None:
        close = did_you_mean(key, list(allowed)) or did_you_mean(key, list(also))
        suffix = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
        self.add(f"{path}.{key}" if path else key, f"unknown key {key!r}{suffix}")

    def bad_choice(self, path: str, what: str, value: Any, allowed: tuple[str, ...]) -> None:
        close = did_you_mean(str(value), list(allowed))
        suffix = f"; did you mean {close[0]!r}?" if close else ""
        self.add(path, f"unknown {what} {value!r}{suffix} (one of: {', '.join(allowed)})")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ConfigCheck:
    """Check parameters against this project config (sweeps without `program`)."""

    config_dir: Path | None = None
    config_name: str = "config"


def load_spec(path: str | Path, config: ConfigCheck | None = None) -> SweepSpec:
    """Read and validate a sweep YAML file (raises :class:`SpecError` listing every problem).

    With ``config``, parameters of a sweep without ``program`` must also exist in that config
    (see :func:`config_problems`); those problems are reported together with the others.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(
            str(path),
            [(str(path), "file not found")],
            hint="pass the path of a W&B sweep YAML, e.g. configs/sweeps/grid.yaml",
        )
    text = p.read_text(encoding="utf-8")
    data, lines, problems = load_yaml(text, str(p))
    return parse_spec(data, source=str(p), lines=lines, pre_problems=problems, config=config)


def parse_spec(
    data: Any,
    *,
    source: str = "<sweep>",
    lines: dict[str, int] | None = None,
    pre_problems: list[tuple[str, str]] | None = None,
    config: ConfigCheck | None = None,
) -> SweepSpec:
    """Validate a sweep config dict (as loaded from YAML) into a :class:`SweepSpec`."""
    problems = _Problems(source, lines or {})
    problems.items.extend(pre_problems or [])
    if not isinstance(data, dict):
        problems.add("", "a sweep file must be a mapping with at least `method` and `parameters`")
        raise SpecError(source, problems.items)
    warnings: list[str] = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.unknown_key("", str(key), TOP_LEVEL_KEYS)
        elif key in IGNORED_KEYS:
            warnings.append(f"{key!r} is accepted for W&B compatibility but ignored by expctl")

    method = _method(data, problems)
    metric = _metric(data.get("metric"), problems) if "metric" in data else None
    early = (
        _early_terminate(data["early_terminate"], problems)
        if data.get("early_terminate") is not None
        else None
    )
    run_cap = data.get("run_cap")
    if run_cap is not None and not (_is_int(run_cap) and run_cap > 0):
        problems.add("run_cap", f"must be a positive integer, got {run_cap!r}")
        run_cap = None
    strings = {}
    for key in ("program", "name", "description", "project", "entity"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            problems.add(key, f"must be a string, got {type(value).__name__}")
            value = None
        strings[key] = value
    command = (
        _command(data.get("command"), strings["program"], problems) if "command" in data else None
    )

    params_raw = data.get("parameters")
    parameters: list[Parameter] = []
    if params_raw is None:
        if not strings["program"]:
            problems.add(
                "parameters", "missing: a sweep needs `parameters` (the config keys to vary)"
            )
    elif not isinstance(params_raw, dict) or not params_raw:
        problems.add("parameters", "must be a non-empty mapping of parameter name -> distribution")
    else:
        parameters = list(_parameters(params_raw, "parameters", "", problems))
        seen: set[str] = set()
        for p in parameters:
            if p.name in seen:
                problems.add(f"parameters.{p.name}", "given twice (nested and dotted forms)")
            seen.add(p.name)

    if method == "grid":
        for p in parameters:
            if p.distribution not in GRID_DISTRIBUTIONS:
                problems.add(
                    _param_path(p.name, data),
                    f"distribution {p.distribution!r} cannot be used with method: grid "
                    f"(grid takes {', '.join(GRID_DISTRIBUTIONS)}; "
                    "use values: [...] or method: random)",
                )
    if metric is None:
        if method == "bayes":
            problems.add("metric", "method: bayes needs a `metric` (name and goal) to optimise")
        if early is not None:
            problems.add("early_terminate", "hyperband early termination needs a `metric`")

    hint = None
    if config is not None and not strings["program"] and parameters:
        n = len(problems.items)
        config_problems(parameters, data, config, problems)
        if len(problems.items) > n:
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
        warnings=tuple([*warnings, *problems.warnings]),
    )


def _param_path(name: str, data: dict) -> str:
    """The YAML path of a flattened parameter (nested blocks re-expanded for line lookup)."""
    node: Any = data.get("parameters", {})
    parts = name.split(".")
    path = "parameters"
    i = 0
    while i < len(parts):
        # the longest dotted key at this level wins (flat `a.b` or nested `a: {parameters:}`)
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if isinstance(node, dict) and key in node:
                path = f"{path}.{key}"
                node = node[key]
                i = j
                if i < len(parts) and isinstance(node, dict) and "parameters" in node:
                    node = node["parameters"]
                    path = f"{path}.parameters"
                break
        else:
            return f"{path}.{'.'.join(parts[i:])}"
    return path


def _method(data: dict, problems: _Problems) -> str | None:
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


def _metric(raw: Any, problems: _Problems) -> Metric | None:
    if not isinstance(raw, dict):
        problems.add("metric", "must be a mapping with `name` and `goal`")
        return None
    for key in raw:
        if key not in METRIC_KEYS:
            problems.unknown_key("metric", str(key), METRIC_KEYS)
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
    if target is not None and not _is_number(target):
        problems.add("metric.target", f"must be a number, got {target!r}")
        target = None
    if "impute" in raw and raw["impute"] not in ("latest", "best", "worst"):
        problems.bad_choice("metric.impute", "impute", raw["impute"], ("latest", "best", "worst"))
    if name is None:
        return None
    return Metric(name=name, goal=goal, target=float(target) if target is not None else None)


def _early_terminate(raw: Any, problems: _Problems) -> EarlyTerminate | None:
    if not isinstance(raw, dict):
        problems.add("early_terminate", "must be a mapping: {type: hyperband, min_iter: N}")
        return None
    ok = True
    for key in raw:
        if key not in EARLY_TERMINATE_KEYS:
            problems.unknown_key("early_terminate", str(key), EARLY_TERMINATE_KEYS)
            ok = False
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
        if value is not None and not (_is_int(value) and value >= 1):
            problems.add(f"early_terminate.{key}", f"must be an integer >= 1, got {value!r}")
            ok = False
    if min_iter is None and max_iter is None:
        problems.add("early_terminate", "give min_iter (bands min_iter*eta^k) or max_iter and s")
        ok = False
    elif min_iter is not None and max_iter is not None:
        problems.add(
            "early_terminate",
            "give either min_iter or max_iter+s, not both (W&B silently ignores min_iter)",
        )
        ok = False
    elif max_iter is not None and s is None:
        problems.add("early_terminate.s", "missing: max_iter needs s (the number of bands)")
        ok = False
    if not _is_number(eta) or eta <= 1:
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


def _command(raw: Any, program: str | None, problems: _Problems) -> tuple[str, ...] | None:
    if not isinstance(raw, list) or not all(isinstance(x, str | int | float) for x in raw):
        problems.add(
            "command",
            "must be a list of strings, e.g. [${env}, ${interpreter}, ${program}, ${args}]",
        )
        return None
    items = tuple(str(x) for x in raw)
    for i, item in enumerate(items):
        for name in _MACRO.findall(item):
            if name.startswith("envvar:") and len(name) > len("envvar:"):
                known = True
            else:
                known = name in MACROS
            if not known:
                close = did_you_mean(name, [*MACROS, "envvar:NAME"])
                macros = ", ".join("${" + m + "}" for m in (*MACROS, "envvar:NAME"))
                suffix = f"did you mean ${{{close[0]}}}?" if close else f"macros: {macros}"
                problems.add(f"command[{i}]", f"unknown macro ${{{name}}}; {suffix}")
            elif item != f"${{{name}}}":
                problems.add(
                    f"command[{i}]",
                    f"macro ${{{name}}} inside {item!r} is not substituted: "
                    "W&B replaces only list items that are exactly one macro",
                )
            elif name == "program" and not program:
                problems.add(f"command[{i}]", "${program} is used but the sweep has no `program`")
    return items


def _parameters(raw: dict, yaml_path: str, prefix: str, problems: _Problems) -> Iterator[Parameter]:
    for key, body in raw.items():
        key = str(key)
        path = f"{yaml_path}.{key}"
        name = f"{prefix}{key}"
        if not _PARAM_NAME.match(key):
            problems.add(
                path,
                "parameter names are letters, digits, '_', '.', '-' "
                "(and do not start with a digit)",
            )
            continue
        if not isinstance(body, dict):
            problems.add(
                path, f"must be a mapping like {{values: [...]}} or {{value: x}}, got {body!r}"
            )
            continue
        if "parameters" in body:
            others = [k for k in body if k != "parameters"]
            if others:
                problems.add(
                    path, f"a nested `parameters:` block cannot also have {', '.join(others)}"
                )
            nested = body["parameters"]
            if not isinstance(nested, dict) or not nested:
                problems.add(f"{path}.parameters", "must be a non-empty mapping")
                continue
            yield from _parameters(nested, f"{path}.parameters", f"{name}.", problems)
            continue
        parameter = _parameter(name, body, path, problems)
        if parameter is not None:
            yield parameter


def _infer_distribution(body: dict, path: str, problems: _Problems) -> str | None:
    if "values" in body:
        return "categorical_w_probabilities" if "probabilities" in body else "categorical"
    if "value" in body:
        return "constant"
    if "min" in body and "max" in body:
        lo, hi = body["min"], body["max"]
        if _is_int(lo) and _is_int(hi):
            return "int_uniform"
        if isinstance(lo, float) and isinstance(hi, float):
            return "uniform"
        if _is_number(lo) and _is_number(hi):
            problems.add(
                path,
                f"ambiguous bounds min={lo!r} max={hi!r} (one int, one float): write "
                "both as ints (int_uniform) or both as floats (uniform), or set `distribution`",
            )
            return None
    problems.add(
        path,
        "cannot infer the distribution: give values: [...], value: x, min and max, "
        "or `distribution`",
    )
    return None


def _parameter(name: str, body: dict, path: str, problems: _Problems) -> Parameter | None:
    dist = body.get("distribution")
    if dist is None:
        dist = _infer_distribution(body, path, problems)
        if dist is None:
            return None
    elif dist == "categorical" and "probabilities" in body:
        dist = "categorical_w_probabilities"
    elif dist not in DISTRIBUTIONS:
        problems.bad_choice(f"{path}.distribution", "distribution", dist, tuple(DISTRIBUTIONS))
        return None
    allowed = DISTRIBUTIONS[dist]
    ok = True
    for key in body:
        if key == "distribution":
            continue
        if key not in allowed:
            ok = False
            if key in PARAMETER_KEYS:
                problems.add(
                    f"{path}.{key}",
                    f"{dist} does not take {key!r} (it takes: {', '.join(allowed) or 'nothing'})",
                )
            else:
                problems.unknown_key(path, str(key), [*allowed, "distribution"], PARAMETER_KEYS)
    args: dict[str, Any] = {}
    for key, default in allowed.items():
        if key in body:
            args[key] = body[key]
        elif default is None:
            problems.add(path, f"{dist} needs {key!r}")
            ok = False
        else:
            args[key] = default
    if not ok:
        return None
    return _check_arguments(name, dist, args, path, problems)


def _check_arguments(
    name: str, dist: str, args: dict, path: str, problems: _Problems
) -> Parameter | None:
    ok = True
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key in args and not _is_number(args[key]):
            problems.add(f"{path}.{key}", f"must be a number, got {args[key]!r}")
            ok = False
    if not ok:
        return None
    if dist == "int_uniform":
        for key in ("min", "max"):
            if not _is_int(args[key]):
                problems.add(
                    f"{path}.{key}", f"int_uniform needs integer bounds, got {args[key]!r}"
                )
                ok = False
    if "min" in args and ok and args["min"] >= args["max"]:
        problems.add(path, f"min ({args['min']!r}) must be less than max ({args['max']!r})")
        ok = False
    if dist in _POSITIVE_MIN and args["min"] <= 0:
        problems.add(
            f"{path}.min",
            f"{dist} takes values: min must be > 0, got {args['min']!r} "
            "(for exponents use " + dist.removesuffix("_values") + ")",
        )
        ok = False
    if "q" in args and args["q"] <= 0:
        problems.add(f"{path}.q", f"must be > 0, got {args['q']!r}")
        ok = False
    if "sigma" in args and args["sigma"] < 0:
        problems.add(f"{path}.sigma", f"must be >= 0, got {args['sigma']!r}")
        ok = False
    for key in ("a", "b"):
        if key in args and args[key] <= 0:
            problems.add(f"{path}.{key}", f"must be > 0, got {args[key]!r}")
            ok = False
    exponents = dist in ("log_uniform", "q_log_uniform", "inv_log_uniform")
    if exponents and ok and max(abs(args["min"]), abs(args["max"])) > 700:
        problems.add(
            path,
            f"{dist} takes base-e exponents: e^{args['max']} overflows "
            f"(did you mean {dist.replace('uniform', 'uniform_values')}?)",
        )
        ok = False
    elif exponents and ok and 0 < args["min"] < args["max"] <= 1:
        problems.warnings.append(
            f"{path}: {dist} takes base-e exponents, so min={args['min']!r} max={args['max']!r} "
            f"draws values in [{math.exp(args['min']):.4g}, {math.exp(args['max']):.4g}]; "
            f"for limit values use {dist.replace('uniform', 'uniform_values')}"
        )
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] = ()
    if "values" in args:
        if not isinstance(args["values"], list) or not args["values"]:
            problems.add(f"{path}.values", "must be a non-empty list")
            ok = False
        else:
            values = tuple(args["values"])
    if "probabilities" in args and ok:
        probs = args["probabilities"]
        if not isinstance(probs, list) or not all(_is_number(p) and p >= 0 for p in probs):
            problems.add(f"{path}.probabilities", "must be a list of numbers >= 0")
            ok = False
        elif len(probs) != len(values):
            problems.add(
                f"{path}.probabilities", f"{len(probs)} probabilities for {len(values)} values"
            )
            ok = False
        elif not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            problems.add(f"{path}.probabilities", f"must sum to 1, they sum to {sum(probs):g}")
            ok = False
        else:
            probabilities = tuple(float(p) for p in probs)
    if not ok:
        return None
    numbers = {k: args[k] for k in ("min", "max", "q", "mu", "sigma", "a", "b") if k in args}
    return Parameter(
        name=name,
        distribution=dist,
        value=args.get("value"),
        values=values,
        probabilities=probabilities,
        **numbers,
    )


# -- checking parameters against the project's config ---------------------------------------------


def config_groups(config_dir: Path) -> dict[str, list[str]]:
    """Config groups of a Hydra config dir (subdirectories, nested with '/') and their options."""
    groups: dict[str, list[str]] = {}
    for sub in sorted(p for p in config_dir.rglob("*") if p.is_dir()):
        options = sorted(f.stem for f in sub.glob("*.yaml"))
        if options:
            groups[sub.relative_to(config_dir).as_posix()] = options
    return groups


def config_problems(
    parameters: list[Parameter], raw: dict, config: ConfigCheck, problems: _Problems
) -> None:
    """Every parameter must be a config key or a config group whose option(s) exist.

    Keys that exist only once a swept group option is selected (``scheduler.T_max`` with
    ``scheduler: {values: [cosine]}``) are looked up in the config composed with that option.
    """
    from expctl.config import ConfigSource, compose_config, find_config_dir, iter_key_paths

    directory, _ = find_config_dir(config.config_dir)
    groups = config_groups(directory)
    source = ConfigSource(config.config_dir, config.config_name)
    cfg = compose_config(source, resolve=False, require_complete=False)
    keys = set(iter_key_paths(_plain(cfg)))
    group_params = [p for p in parameters if p.name.replace(".", "/") in groups]
    for p in group_params:
        options = groups[p.name.replace(".", "/")]
        for choice in _choices(p):
            if not isinstance(choice, str) or choice not in options:
                close = did_you_mean(str(choice), options)
                suffix = f"did you mean {close[0]!r}? " if close else ""
                problems.add(
                    _param_path(p.name, raw),
                    f"{choice!r} is not an option of config group {p.name!r} "
                    f"({suffix}options: {', '.join(options)})",
                )
    unknown = [p for p in parameters if p not in group_params and p.name not in keys]
    if unknown and group_params:
        keys |= _keys_with_group_options(config, group_params, groups)
    for p in unknown:
        if p.name in keys:
            continue
        close = did_you_mean(p.name, sorted(keys)) or did_you_mean(p.name, sorted(groups))
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "top-level keys: " + ", ".join(sorted(k for k in keys if "." not in k))
        )
        problems.add(
            _param_path(p.name, raw),
            f"{p.name!r} is neither a key of the composed config nor a config group; {hint}",
        )


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def _choices(p: Parameter) -> tuple[Any, ...]:
    return (p.value,) if p.is_constant else p.values


def _keys_with_group_options(
    config: ConfigCheck, group_params: list[Parameter], groups: dict[str, list[str]]
) -> set[str]:
    from expctl.config import ConfigSource, compose_config, iter_key_paths
    from expctl.errors import ExpctlError

    keys: set[str] = set()
    for p in group_params:
        for choice in _choices(p):
            if choice not in groups[p.name.replace(".", "/")]:
                continue
            try:
                cfg = compose_config(
                    ConfigSource(config.config_dir, config.config_name, (f"{p.name}={choice}",)),
                    resolve=False,
                    require_complete=False,
                )
            except ExpctlError:
                continue
            keys |= set(iter_key_paths(_plain(cfg)))
    return keys


# -- parameter values → Hydra overrides -----------------------------------------------------------


def to_overrides(params: dict[str, Any], raw_keys: dict[str, str] | None = None) -> list[str]:
    """``key=value`` overrides in Hydra's grammar for sampled values.

    A parameter named after a config group (``model: large``) becomes ``model=large``, which
    selects the option. ``raw_keys`` (multirun) maps a parameter to its override key, prefix
    included (``+extra``), and its values are already Hydra strings.
    """
    overrides = []
    for name, value in params.items():
        if raw_keys and name in raw_keys:
            overrides.append(f"{raw_keys[name]}={value}")
        else:
            overrides.append(f"{name}={render_value(value)}")
    return overrides


_BARE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./\-]*$")
_WORDS = {"true", "false", "null", "inf", "nan"}


def render_value(value: Any) -> str:
    """A Python value written so that Hydra's override parser reads back the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if _BARE.match(value) and value.lower() not in _WORDS:
            return value
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{render_value(v)}" for k, v in value.items()) + "}"
    return render_value(str(value))
