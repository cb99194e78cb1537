"""A sweep's ``parameters:`` block → flat, validated :class:`Parameter` objects.

Nested ``parameters:`` blocks are flattened to dotted config paths
(``optim: {parameters: {lr: ..}}`` → ``optim.lr``). Without ``distribution``, it is inferred as
W&B does (``values`` → categorical, int bounds → int_uniform, float bounds → uniform).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from expctl.errors import Problems
from expctl.sweeps.spec.problems import is_int, is_number

# distribution -> keys it takes (besides `distribution`) and their defaults (None: required)
CONTINUOUS_DISTRIBUTIONS = frozenset(
    {
        "uniform",
        "log_uniform",
        "log_uniform_values",
        "inv_log_uniform",
        "inv_log_uniform_values",
        "normal",
        "log_normal",
        "beta",
    }
)
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
_NUMERIC_KEYS = ("min", "max", "q", "mu", "sigma", "a", "b")
# min/max are values that must be > 0 (the others take exponents)
_POSITIVE_MIN = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")
_EXPONENTS = ("log_uniform", "q_log_uniform", "inv_log_uniform")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# what a program's own sweep may name a parameter: any printable text that stays one
# `--name=value` argument (no "=", no space, no control character)
_ARGUMENT_NAME = re.compile(r"^[^\s=\x00-\x1f\x7f]+$")


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

    @property
    def is_continuous(self) -> bool:
        """Takes uncountably many values (no ``values``, no ``q``, not int_uniform)."""
        return self.distribution in CONTINUOUS_DISTRIBUTIONS

    def describe(self) -> str:
        """A short human description for the `sweep create` table (secrets hidden)."""
        from expctl.secrets import REDACTED, is_secret_path, redact

        d = self.distribution
        if is_secret_path(self.name) and d in ("constant", "categorical"):
            return REDACTED
        if d == "constant":  # a dict value may hold a secret key, a string a URL's password
            return repr(redact(self.value, self.name))
        if d == "categorical":
            return ", ".join(_short(redact(v, self.name)) for v in self.values)
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


def parse_parameters(raw: dict, problems: Problems, *, program: bool = False) -> list[Parameter]:
    """The valid parameters of a non-empty ``parameters:`` mapping; the rest go to ``problems``.
    ``program``: the sweep runs the user's own command, which takes any argument name."""
    parameters = list(_flatten(raw, "parameters", "", problems, program))
    seen: set[str] = set()
    for p in parameters:
        if p.name in seen:
            problems.add(f"parameters.{p.name}", "given twice (nested and dotted forms)")
        seen.add(p.name)
    return parameters


def _flatten(
    raw: dict, yaml_path: str, prefix: str, problems: Problems, program: bool
) -> Iterator[Parameter]:
    for key, body in raw.items():
        key = str(key)
        path = f"{yaml_path}.{key}"
        name = f"{prefix}{key}"
        if program and not _ARGUMENT_NAME.fullmatch(key):
            problems.add(
                path, "a name passed as --name=value cannot hold '=', a space or a newline"
            )
            continue
        if not program and not _PARAM_NAME.fullmatch(key):
            problems.add(
                path,
                "parameter names are letters, digits, '_', '.', '-' "
                "(and do not start with a digit)",
            )
            continue
        if not _PARAM_NAME.fullmatch(key):
            # W&B's server calls the name malformed and still runs the sweep: the program
            # gets --max_grad:norm=0.8; a config override could not say it
            problems.warnings.append(
                f"{path}: {key!r} is not a W&B parameter name (letters, digits, '_', '.', '-'); "
                f"passed to the program as given, as W&B does"
            )
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
            yield from _flatten(nested, f"{path}.parameters", f"{name}.", problems, program)
            continue
        parameter = _parameter(name, body, path, problems, nested=bool(prefix))
        if parameter is not None:
            yield parameter


def _infer_distribution(
    body: dict, path: str, problems: Problems, nested: bool = False
) -> str | None:
    if "values" in body:
        return "categorical_w_probabilities" if "probabilities" in body else "categorical"
    if "value" in body:
        return "constant"
    if "min" in body and "max" in body:
        lo, hi = body["min"], body["max"]
        if is_int(lo) and is_int(hi):
            return "int_uniform"
        if isinstance(lo, float) and isinstance(hi, float):
            return "uniform"
        if is_number(lo) and is_number(hi) and nested:
            # W&B's client checks only top-level parameters; its schema then reads mixed
            # bounds inside a nested block as uniform
            problems.warnings.append(
                f"{path}: bounds min={lo!r} max={hi!r} mix an int and a float: read as "
                "uniform, as W&B does in nested blocks (write both as floats to say so)"
            )
            return "uniform"
        if is_number(lo) and is_number(hi):
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


def _parameter(
    name: str, body: dict, path: str, problems: Problems, nested: bool = False
) -> Parameter | None:
    dist = body.get("distribution")
    if dist is None:
        dist = _infer_distribution(body, path, problems, nested)
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
    # A distribution takes either numbers or values (see DISTRIBUTIONS), never both.
    if not _numbers_ok(dist, args, path, problems):
        return None
    choices = _choices(args, path, problems)
    if choices is None:
        return None
    values, probabilities = choices
    numbers = {k: args[k] for k in _NUMERIC_KEYS if k in args}
    return Parameter(
        name=name,
        distribution=dist,
        value=args.get("value"),
        values=values,
        probabilities=probabilities,
        **numbers,
    )


def _numbers_ok(dist: str, args: dict, path: str, problems: Problems) -> bool:
    """Check min/max/q/mu/sigma/a/b: types first, then ranges (all range problems at once)."""
    # One check per W&B numeric key, in W&B's own order: split, the table would be scattered.
    ok = True
    for key in _NUMERIC_KEYS:
        if key in args and not is_number(args[key]):
            problems.add(f"{path}.{key}", f"must be a number, got {args[key]!r}")
            ok = False
        elif key in args and not math.isfinite(args[key]):
            # .nan/.inf are valid YAML: a sampler would overflow on them mid-sweep
            problems.add(f"{path}.{key}", f"must be a finite number, got {args[key]!r}")
            ok = False
    if not ok:
        return False
    if dist == "int_uniform":
        for key in ("min", "max"):
            if not is_int(args[key]):
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
    if dist in _EXPONENTS and ok:
        # The classic mistake: limit values given to a distribution that takes exponents.
        values_form = dist.replace("uniform", "uniform_values")
        lo, hi = args["min"], args["max"]
        if max(abs(lo), abs(hi)) > 700:
            problems.add(
                path,
                f"{dist} takes base-e exponents: e^{hi} overflows (did you mean {values_form}?)",
            )
            ok = False
        elif 0 < lo < hi <= 1:
            problems.warnings.append(
                f"{path}: {dist} takes base-e exponents, so min={lo!r} max={hi!r} "
                f"draws values in [{math.exp(lo):.4g}, {math.exp(hi):.4g}]; "
                f"for limit values use {values_form}"
            )
        else:  # W&B warns about this older form too; say what it means
            problems.warnings.append(
                f"{path}: {dist} takes base-e exponents: min={lo!r} max={hi!r} draws values in "
                f"[{math.exp(lo):.4g}, {math.exp(hi):.4g}] ({values_form} takes the values)"
            )
    return ok


def _choices(args: dict, path: str, problems: Problems) -> tuple[tuple, tuple[float, ...]] | None:
    """Check values/probabilities; return them as tuples, or None after reporting a problem."""
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] = ()
    if "values" in args:
        if not isinstance(args["values"], list) or not args["values"]:
            problems.add(f"{path}.values", "must be a non-empty list")
            return None
        values = tuple(args["values"])
    if "probabilities" in args:
        probs = args["probabilities"]
        if not isinstance(probs, list) or not all(is_number(p) and p >= 0 for p in probs):
            problems.add(f"{path}.probabilities", "must be a list of numbers >= 0")
            return None
        if len(probs) != len(values):
            problems.add(
                f"{path}.probabilities", f"{len(probs)} probabilities for {len(values)} values"
            )
            return None
        if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            problems.add(f"{path}.probabilities", f"must sum to 1, they sum to {sum(probs):g}")
            return None
        probabilities = tuple(float(p) for p in probs)
    return values, probabilities
