"""Checking a sweep's parameters against the project's composed Hydra config.

A sweep without ``program`` runs expctl's trainer, so each parameter is a Hydra override of the
project config; checking them up front catches a typo before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.errors import Problems, did_you_mean, did_you_mean_hint, suggest
from expctl.sweeps.spec.parameters import Parameter
from expctl.sweeps.spec.problems import param_path


@dataclass(frozen=True)
class ConfigCheck:
    """Check parameters against this project config (sweeps without `program`)."""

    config_dir: Path | None = None
    config_name: str = "config"


def config_groups(config_dir: Path) -> dict[str, list[str]]:
    """Config groups of a Hydra config dir (subdirectories, nested with '/') and their options."""
    groups: dict[str, list[str]] = {}
    for sub in sorted(p for p in config_dir.rglob("*") if p.is_dir()):
        options = sorted(f.stem for f in sub.glob("*.yaml"))
        if options:
            groups[sub.relative_to(config_dir).as_posix()] = options
    return groups


def config_problems(
    parameters: list[Parameter], raw: dict, config: ConfigCheck, problems: Problems
) -> set[str]:
    """Every parameter must be a config key or a config group whose option(s) exist; returns
    the composed config's dotted keys.

    Keys that exist only once a swept group option is selected (``scheduler.T_max`` with
    ``scheduler: {values: [cosine]}``) are looked up in the config composed with that option.
    """
    from expctl.config import find_config_dir

    directory, _ = find_config_dir(config.config_dir)
    groups = config_groups(directory)
    keys = _config_keys(config)
    composed = set(keys)
    group_params = [p for p in parameters if _group(p) in groups]
    for p in group_params:
        options = groups[_group(p)]
        for choice in _choices(p):
            if not isinstance(choice, str) or choice not in options:
                suffix = did_you_mean_hint(str(choice), options)
                problems.add(
                    param_path(p.name, raw),
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
        hint = suggest(close).rstrip() or "top-level keys: " + ", ".join(
            sorted(k for k in keys if "." not in k)
        )
        problems.add(
            param_path(p.name, raw),
            f"{p.name!r} is neither a key of the composed config nor a config group; {hint}",
        )
    return composed


def trainer_metric_problem(
    metric: str, keys: set[str], problems: Problems, path: str = "metric.name"
) -> None:
    """A trainer sweep's ``metric.name`` must be a metric expctl's trainer logs: otherwise every
    trial would train to the end and then fail with "metric never logged".

    Only for a config the trainer can train (one with ``model`` and ``data``); a config without
    them is run with ``sweep agent --objective``, whose metrics only that function knows.
    """
    from expctl.train.settings import LOGGED_METRICS  # torch-free

    if not {"model", "data"} <= keys or metric in LOGGED_METRICS:
        return
    guess = did_you_mean_hint(metric, LOGGED_METRICS)
    problems.add(
        path,
        f"{metric!r} is not a metric expctl's trainer logs ({guess}it logs: "
        f"{', '.join(sorted(LOGGED_METRICS))}); give `program:` to run your own script",
    )


def _group(p: Parameter) -> str:
    # `optim.scheduler` sweeps the nested group directory optim/scheduler/.
    return p.name.replace(".", "/")


def _choices(p: Parameter) -> tuple[Any, ...]:
    return (p.value,) if p.is_constant else p.values


def _config_keys(config: ConfigCheck, overrides: tuple[str, ...] = ()) -> set[str]:
    """Dotted key paths of the config composed with ``overrides`` (unresolved: no run dir yet)."""
    from omegaconf import OmegaConf

    from expctl.config import ConfigSource, compose_config, iter_key_paths

    cfg = compose_config(
        ConfigSource(config.config_dir, config.config_name, overrides),
        resolve=False,
        require_complete=False,
    )
    plain = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    return set(iter_key_paths(plain))


def _keys_with_group_options(
    config: ConfigCheck, group_params: list[Parameter], groups: dict[str, list[str]]
) -> set[str]:
    from expctl.errors import ExpctlError

    keys: set[str] = set()
    for p in group_params:
        for choice in _choices(p):
            if choice not in groups[_group(p)]:
                continue
            try:
                keys |= _config_keys(config, (f"{p.name}={choice}",))
            except ExpctlError:
                # an option that does not compose adds no keys (its parameters stay unknown)
                continue
    return keys
