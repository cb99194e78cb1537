"""``scheduler:`` of a sweep file (wandb/sweeps#135, validator at b1dfc5f) and the rules that tie
it to ``method:``, ``metric``/``metrics``, ``early_terminate`` and ``controller``.

W&B's rules, each checked here with W&B's meaning:

* ``scheduler`` is a mapping with ``engine`` (``optuna | ax | wandb``, required) and optional
  ``source`` (a Python file), ``optimizer`` and ``search_space`` (function names in ``source``;
  each needs ``source``); no other key;
* ``scheduler`` excludes ``early_terminate`` (the scheduler prunes, or nothing does) and
  ``controller: {type: local}``;
* ``engine: wandb`` runs W&B's own methods (grid, bayes, random), never ``method: custom``.

expctl's choices where W&B has not decided (its validator still refuses every engine but
``wandb``): ``engine: optuna`` is expctl's own engine and goes with ``method: custom`` (the
other methods already run on Optuna, as W&B's methods); ``engine: ax`` is refused (Ax is not
installed with expctl); with ``engine: optuna``, ``source`` is the user's code, loaded and run by
every agent like ``program:`` (see :mod:`expctl.sweeps.methods.custom`); ``parameters`` may then
be omitted when ``search_space`` defines them (W&B's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from expctl.errors import Problems
from expctl.sweeps.methods import METHODS

ENGINES = ("optuna", "ax", "wandb")
SCHEDULER_KEYS = ("engine", "source", "optimizer", "search_space")


@dataclass(frozen=True)
class Scheduler:
    engine: str = "optuna"
    source: str | None = None
    optimizer: str | None = None
    search_space: str | None = None


def parse_scheduler(data: dict, method: str | None, problems: Problems) -> Scheduler | None:
    """``scheduler:`` and its rules with the rest of the file (``data``, the whole sweep file);
    None when absent or wrong."""
    raw = data.get("scheduler")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add("scheduler", "must be a mapping: {engine: optuna}")
        return None
    ok = problems.unknown_keys("scheduler", raw, SCHEDULER_KEYS)
    engine = raw.get("engine")
    if engine is None:
        problems.add("scheduler.engine", f"missing: one of {', '.join(ENGINES)}")
        ok = False
    elif engine not in ENGINES:
        problems.bad_choice("scheduler.engine", "engine", engine, ENGINES)
        ok = False
    elif engine == "ax":
        problems.add(
            "scheduler.engine",
            "engine 'ax' is not available in expctl (Ax is not installed with it); "
            "use engine: optuna",
        )
        ok = False
    strings: dict[str, str | None] = {}
    for key in ("source", "optimizer", "search_space"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            problems.add(f"scheduler.{key}", f"must be a string, got {type(value).__name__}")
            value, ok = None, False
        strings[key] = value
    for key in ("optimizer", "search_space"):
        if strings[key] is not None and strings["source"] is None:
            problems.add(f"scheduler.{key}", "needs scheduler.source (the file that defines it)")
            ok = False
    if strings["source"] is not None and engine == "wandb":
        problems.warnings.append(
            "scheduler.source/optimizer/search_space of engine: wandb are W&B's scheduler's; "
            "expctl's engine runs the method and ignores them"
        )
    elif strings["source"] is not None and not (strings["optimizer"] or strings["search_space"]):
        problems.warnings.append(
            "scheduler.source names no function to use (give optimizer or search_space); ignored"
        )
    _exclusions(data, problems)
    if engine in ENGINES and method is not None and engine not in METHODS[method].engines:
        runs = [name for name, m in METHODS.items() if engine in m.engines]
        problems.add(
            "scheduler.engine",
            f"engine: {engine} does not run method: {method} (it runs {', '.join(runs)})",
        )
        ok = False
    if not ok:
        return None
    return Scheduler(engine=engine, **strings)  # type: ignore[arg-type]


def _exclusions(data: dict, problems: Problems) -> None:
    if data.get("early_terminate") is not None:
        problems.add(
            "early_terminate",
            "cannot be used together with `scheduler` (W&B's rule: the scheduler does its own "
            "early termination); drop one of them",
        )
    controller = data.get("controller")
    if isinstance(controller, dict) and controller.get("type") == "local":
        problems.add(
            "controller",
            "`controller: {type: local}` cannot be used together with `scheduler` (W&B's "
            "rule); drop the controller",
        )


def objectives_problems(data: dict, method: str | None, problems: Problems) -> None:
    """W&B's rules for ``metric`` against ``metrics``: not both; ``metrics`` needs
    ``method: custom``."""
    if "metrics" not in data:
        return
    if "metric" in data:
        problems.add(
            "metrics",
            "`metric` and `metrics` cannot both be set: use `metric` for a single objective, "
            "or `metrics` for multi-objective optimisation",
        )
    if method is not None and not METHODS[method].multi_objective:
        takes = [name for name, m in METHODS.items() if m.multi_objective]
        problems.add(
            "metrics",
            f"`metrics` requires `method: {' | '.join(takes)}` (got method: {method}): "
            "multi-objective sweeps run on a custom scheduler (scheduler: {engine: optuna})",
        )
