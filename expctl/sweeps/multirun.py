"""Hydra-style multirun: ``expctl run -m optim.lr=0.1,0.01 trainer.epochs=100,120,140``.

Comma lists, ``choice(...)`` and ``range(...)`` (Hydra's own override parser) expand to their
product, which runs as a local **grid sweep** through the same engine and agent as
``expctl sweep``: sequential and in-process, recorded in the sweep storage (so ``expctl sweep
status <id>`` shows the leaderboard), each run in its own run directory. Overrides without a
sweep apply to every run. Every swept value is composed once up front, so a typo in any of them
is reported before the first run starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from expctl.config import ConfigSource
from expctl.errors import ConfigError, ExpctlError, UsageError
from expctl.sweeps.agent import TrialContext, TrialOutcome, TrialRecord, run_agent
from expctl.sweeps.storage import StorageHandle

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_CHECKS = 64  # up-front compositions (each ~0.15 s); beyond that trials report their own errors


def split_sweeps(overrides: tuple[str, ...] | list[str]) -> tuple[list[str], dict[str, Any]]:
    """Separate plain overrides from sweeps: (base, {name: (override key, [Hydra values])})."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(list(overrides))
    except OverrideParseException as e:
        raise ConfigError(
            f"cannot parse overrides: {str(e).splitlines()[0]}",
            hint="multirun takes Hydra's grammar: key=a,b,c  key=range(1,4)  key=choice(x,y)",
        ) from e
    base: list[str] = []
    sweeps: dict[str, Any] = {}
    for o in parsed:
        if not o.is_sweep_override():
            base.append(o.input_line or "")
            continue
        try:
            values = list(o.sweep_string_iterator())
        except HydraException as e:
            raise UsageError(
                f"cannot enumerate {o.input_line!r}: {e}",
                hint="multirun runs a grid: use a,b,c, choice(...) or range(...), not interval()",
            ) from e
        name = _UNSAFE.sub("_", o.key_or_group).lstrip("._-") or f"param{len(sweeps)}"
        if name in sweeps:
            raise UsageError(f"{o.key_or_group!r} is swept twice", hint="give each key once")
        sweeps[name] = (o.get_key_element(), values)
    return base, sweeps


def run_multirun(
    source: ConfigSource,
    *,
    quiet: bool,
    storage: str | StorageHandle | None = None,
    on_event: Callable[[str], None] | None = None,
) -> list[TrialRecord]:
    """Run the product of the swept overrides as a grid sweep; one :class:`TrialRecord` per run.

    Raises :class:`ConfigError` (exit 2) when any swept value does not compose, and
    :class:`Interrupted` on SIGINT/SIGTERM (the interrupted run stays queued in the sweep:
    ``expctl sweep agent <id>`` finishes the rest).
    """
    from expctl.config import find_config_dir
    from expctl.sweeps.engine import create_sweep
    from expctl.sweeps.spec import parse_spec

    base, sweeps = split_sweeps(source.overrides)
    config_dir, _ = find_config_dir(source.config_dir)
    base_source = ConfigSource(config_dir, source.config_name, tuple(base))
    metric = _check_compositions(base_source, sweeps)
    raw: dict[str, Any] = {
        "name": "multirun",
        "method": "grid",
        "parameters": {name: {"values": values} for name, (_, values) in sweeps.items()},
    }
    if metric is not None:
        raw["metric"] = metric
    spec = parse_spec(raw, source="multirun")
    info = create_sweep(
        spec,
        storage=storage,
        config_dir=config_dir,
        config_name=source.config_name,
        overrides=tuple(base),
        raw_keys={name: key for name, (key, _) in sweeps.items()},
    )
    if on_event is not None:
        on_event(f"multirun: {info.planned} runs as grid sweep {info.id}")
    summary = run_agent(
        info.id,
        storage=storage,
        objective=_trainer(quiet),
        wait=False,
        on_event=on_event,
        flap_guard=(10**9, 1.0, 10**9),  # run every point; the caller reports the failures
    )
    return summary.trials


def _trainer(quiet: bool) -> Callable[[TrialContext], TrialOutcome]:
    from expctl.sweeps.agent import trainer_objective

    def objective(ctx: TrialContext) -> TrialOutcome:
        return trainer_objective(ctx, quiet=quiet)

    return objective


def _check_compositions(base: ConfigSource, sweeps: dict[str, Any]) -> dict[str, str] | None:
    """Compose the base config and each swept value once; all failures in one ConfigError.

    Returns W&B's metric block for the sweep from ``checkpoint.monitor``/``mode`` when the
    config has them (so the multirun gets a leaderboard), else None.
    """
    from omegaconf import OmegaConf

    from expctl.config import compose_config

    cfg = compose_config(base, resolve=False, require_complete=False)
    problems: list[str] = []
    checks = [(key, v) for key, values in sweeps.values() for v in values][:_MAX_CHECKS]
    for key, value in checks:
        override = f"{key}={value}"
        try:
            compose_config(
                ConfigSource(base.config_dir, base.config_name, (*base.overrides, override)),
                resolve=False,
                require_complete=False,
            )
        except ExpctlError as e:
            hint = f" ({e.hint})" if e.hint else ""
            problems.append(f"  {override}: {str(e).splitlines()[0]}{hint}")
    if problems:
        n = len(problems)
        raise ConfigError(
            f"{n} swept override{'s' if n > 1 else ''} cannot be composed\n" + "\n".join(problems),
            hint="fix the values above; every combination runs only once all of them compose",
        )
    monitor = OmegaConf.select(cfg, "checkpoint.monitor", default=None)
    mode = OmegaConf.select(cfg, "checkpoint.mode", default="min")
    if isinstance(monitor, str) and monitor:
        return {"name": monitor, "goal": "maximize" if mode == "max" else "minimize"}
    return None
