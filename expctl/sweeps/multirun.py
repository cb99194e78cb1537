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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from expctl.config import ConfigSource
from expctl.errors import (
    ConfigError,
    ExpctlError,
    Problems,
    RuntimeFailure,
    SpecError,
    UsageError,
)
from expctl.sweeps.agent import AgentOptions, run_agent
from expctl.sweeps.trial import TrialContext, TrialOutcome, TrialRecord

if TYPE_CHECKING:
    from expctl.sweeps.spec import SweepSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
SUCCEEDED = ("complete", "pruned")
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


def _as_sweep(override: str) -> str:
    """``key=value`` as the one-value sweep ``key=choice(value)`` (Hydra's grammar)."""
    key, _, value = override.partition("=")
    return f"{key}=choice({value})"


@dataclass
class MultirunResult:
    """Every run of a multirun, in the order they ran, and the sweep that recorded them."""

    sweep_id: str
    metric: str | None  # the value each record holds (``checkpoint.monitor``), if any
    records: list[TrialRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status not in SUCCEEDED]

    def raise_if_failed(self) -> None:
        """Raise :class:`RuntimeFailure` (exit 1) naming each run that failed."""
        failed = self.failed
        if not failed:
            return
        lines = [
            f"  {' '.join(swept_overrides(r)) or f'run {r.number}'}: {r.message or r.status}"
            for r in failed
        ]
        raise RuntimeFailure(
            f"{len(failed)} of {len(self.records)} runs failed (multirun {self.sweep_id})\n"
            + "\n".join(lines),
            hint=f"each run's directory has its record; `expctl sweep status {self.sweep_id}` "
            "shows them all, and its command reruns one",
        )


def multirun(
    source: ConfigSource,
    *,
    quiet: bool,
    storage: str | None = None,
    on_event: Callable[[str], None] | None = None,
) -> MultirunResult:
    """Run the product of the swept overrides as a grid sweep, every point even when some fail.

    ``quiet=False`` lets each run's trainer report progress on stderr; ``on_event`` hears one
    line per run started/finished. Raises :class:`ConfigError` (exit 2) when any swept value
    does not compose, and :class:`Interrupted` on SIGINT/SIGTERM (the interrupted run stays
    queued in the sweep: ``expctl sweep agent <id>`` finishes the rest). Failed runs are in
    the result (:meth:`MultirunResult.raise_if_failed`).
    """
    # One linear sequence (compose, check, create the local grid, run the agent, report): no
    # branch of it is worth a function of its own.
    from expctl.config import find_config_dir
    from expctl.sweeps.engine import open_sweep
    from expctl.sweeps.service import opened
    from expctl.sweeps.spec import parse_spec
    from expctl.sweeps.studies import create_sweep

    base, sweeps = split_sweeps(source.overrides)
    settable = [o for o in base if "=" in o and not o.startswith("~")]
    if not sweeps:
        if not settable:
            raise UsageError(
                "multirun: nothing to sweep",
                hint="give comma-separated values (expctl run -m optim.lr=0.1,0.01), "
                "or drop -m to run once",
            )
        # As in Hydra, a multirun without a comma is one run: sweep the last override's value.
        last = settable[-1]
        base = [o for o in base if o is not last]
        sweeps.update(split_sweeps([_as_sweep(last)])[1])
    config_dir, _ = find_config_dir(source.config_dir)
    base_source = ConfigSource(config_dir, source.config_name, tuple(base))
    raw: dict[str, Any] = {
        "name": "multirun",
        "method": "grid",
        "parameters": {name: {"values": values} for name, (_, values) in sweeps.items()},
    }
    _check_multirun_size(parse_spec(raw, source="multirun"))  # before composing each value
    metric = _check_compositions(base_source, sweeps)
    if metric is not None:
        raw["metric"] = metric
    spec = parse_spec(raw, source="multirun")
    raw_keys = {name: key for name, (key, _) in sweeps.items()}
    # run every point in order, here; the caller reports the failures (no flapping guard)
    options = AgentOptions(wait=False, flap_guard=(10**9, 1.0, 10**9))
    with opened(storage, create=True) as handle:
        handle.check_space()
        info = create_sweep(
            spec,
            handle,
            config_dir=config_dir,
            config_name=source.config_name,
            overrides=tuple(base),
            raw_keys=raw_keys,
        )
        if on_event is not None:
            on_event(f"multirun: {info.planned} runs as grid sweep {info.id}")
        sweep = open_sweep(info.id, handle)
        summary = run_agent(sweep, options, objective=_trainer(quiet), on_event=on_event)
    name = metric["name"] if metric else None
    return MultirunResult(info.id, name, summary.trials)


def _check_multirun_size(spec: SweepSpec) -> None:
    """A grid too large to queue, with what a ``-m`` user can do (``run_cap``, the hint of
    :func:`~expctl.sweeps.methods.grid.check_grid_size`, is a sweep-file key ``-m`` cannot set)."""
    from expctl.sweeps.methods.grid import MAX_GRID_POINTS, check_grid_size

    try:
        check_grid_size(spec, MAX_GRID_POINTS)
    except SpecError as e:
        raise SpecError(
            "expctl run -m",
            e.problems,
            hint="give fewer comma-separated values, split it into several `expctl run -m` "
            "commands (one per value of a key), or write a sweep file with method: random and "
            "run_cap: N for `expctl sweep create` + `expctl sweep agent`",
        ) from None


def swept_overrides(record: TrialRecord) -> list[str]:
    """The run's own overrides as Hydra reads them (``+c=0``), without those every run shares:
    the agent puts one per swept parameter after the shared ones. Secrets hidden (for display)."""
    from expctl.secrets import redact_overrides

    return redact_overrides(record.overrides[len(record.overrides) - len(record.params) :])


def _trainer(quiet: bool) -> Callable[[TrialContext], TrialOutcome]:
    from expctl.sweeps.objectives import trainer_objective

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
    problems = Problems()
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
            hint = f" ({e.hint})" if e.hint else ""  # each value's own, on its line
            problems.add(override, f"{str(e).splitlines()[0]}{hint}")
    problems.raise_config_error(
        "swept overrides cannot be composed",
        hint="fix the values above; every combination runs only once all of them compose",
    )
    monitor = OmegaConf.select(cfg, "checkpoint.monitor", default=None)
    mode = OmegaConf.select(cfg, "checkpoint.mode", default="min")
    if isinstance(monitor, str) and monitor:
        return {"name": monitor, "goal": "maximize" if mode == "max" else "minimize"}
    return None
