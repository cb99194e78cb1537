"""``metric:`` and ``early_terminate:`` of a sweep file: their types and their validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from expctl.errors import Problems
from expctl.sweeps.spec.problems import is_int, is_number

GOALS = ("minimize", "maximize")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
EARLY_TERMINATE_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")


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


def parse_metric(raw: Any, problems: Problems, path: str = "metric") -> Metric | None:
    """``metric:`` (or one entry of ``metrics:``, at ``path``) as a :class:`Metric`."""
    if not isinstance(raw, dict):
        problems.add(path, "must be a mapping with `name` and `goal`")
        return None
    problems.unknown_keys(path, raw, METRIC_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(
            f"{path}.name", "missing: the name of the logged metric to optimise, e.g. val_loss"
        )
        name = None
    goal = raw.get("goal", "minimize")
    if goal not in GOALS:
        problems.bad_choice(f"{path}.goal", "goal", goal, GOALS)
        goal = "minimize"
    target = raw.get("target")
    if target is not None and not (is_number(target) and math.isfinite(target)):
        problems.add(f"{path}.target", f"must be a finite number, got {target!r}")
        target = None
    if "impute" in raw and raw["impute"] not in ("latest", "best", "worst"):
        problems.bad_choice(f"{path}.impute", "impute", raw["impute"], ("latest", "best", "worst"))
    if name is None:
        return None
    return Metric(name=name, goal=goal, target=float(target) if target is not None else None)


def parse_metrics(raw: Any, problems: Problems) -> tuple[Metric, ...]:
    """``metrics:`` (W&B's multi-objective list, wandb/sweeps#135): at least 2 metric objects,
    each the same object as ``metric:``. Two entries naming one metric are refused (W&B does
    not check it; the front of a metric against itself is one point)."""
    if not isinstance(raw, list):
        problems.add("metrics", "must be a list of at least 2 metric objects ({name, goal})")
        return ()
    if len(raw) < 2:
        problems.add(
            "metrics",
            f"needs at least 2 metric objects, got {len(raw)} (one objective: use `metric:`)",
        )
    metrics: list[Metric] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        metric = parse_metric(item, problems, f"metrics[{i}]")
        if metric is None:
            continue
        if metric.name in seen:
            problems.add(
                f"metrics[{i}].name",
                f"{metric.name!r} is already objective {seen[metric.name]}; each objective "
                "names a different metric",
            )
            continue
        seen[metric.name] = i
        metrics.append(metric)
    return tuple(metrics)


def parse_early_terminate(raw: Any, problems: Problems) -> EarlyTerminate | None:
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
