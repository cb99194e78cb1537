"""What every ``expctl sweep`` command does, as library calls the CLI renders.

This layer owns the storages: each call opens the storage a URL names (``--storage``,
``$EXPCTL_STORAGE`` or the project's journal) and closes it; the engine below works on the
opened handle.

* :func:`create_sweep_from_file` — validate a W&B sweep YAML (against the project's config when
  it has no ``program``), apply ``--project/--entity/--name``, and create the sweep on the
  chosen backend: the serverless engine in a storage, or W&B's server.
* :func:`run_sweep_agent` — pick the agent for a sweep reference: the local agent for a local
  id, W&B's agent protocol for ``ENTITY/PROJECT/ID`` (with the local agent's trial function, or
  W&B's own ``program`` runner).
* :func:`status_of`, :func:`stop_sweep`, :func:`sweeps_in_storage`, :func:`repair_storage`.

optuna is imported by the engine modules this one imports; wandb only when W&B is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.config import ConfigSource
from expctl.errors import UsageError, did_you_mean_hint
from expctl.sweeps.agent import AgentOptions, run_agent
from expctl.sweeps.objectives import load_objective
from expctl.sweeps.spec import ConfigCheck, SweepSpec
from expctl.sweeps.trial import AgentSummary, Objective

if TYPE_CHECKING:
    from expctl.sweeps.overview import SweepRow, SweepStatus
    from expctl.sweeps.slurm import AgentArray
    from expctl.sweeps.storage import StorageHandle
    from expctl.sweeps.storage.repair import RepairReport
    from expctl.sweeps.studies import SweepInfo

BACKENDS = ("local", "wandb")

Emit = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


@contextlib.contextmanager
def opened(storage: str | None, *, create: bool = False) -> Iterator[StorageHandle]:
    """The storage ``storage`` names, opened for the block and closed after it."""
    from expctl.sweeps.storage import open_storage

    handle = open_storage(storage, create=create)
    try:
        yield handle
    finally:
        handle.close()


def check_backend(backend: str) -> None:
    """Raise :class:`UsageError` unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        guess = did_you_mean_hint(backend, list(BACKENDS))
        raise UsageError(
            f"unknown sweep backend {backend!r} (--backend or EXPCTL_SWEEP_BACKEND)",
            hint=f"{guess}use --backend local (no server) or --backend wandb (W&B's server)",
        )


# -- create --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedSweep:
    """A new sweep, and what an agent needs to join it."""

    ref: str  # what `sweep agent` takes: a local id, or ENTITY/PROJECT/ID on W&B's server
    backend: str  # "local" | "wandb"
    spec: SweepSpec  # as created (with --project/--entity/--name applied)
    planned: int | None  # grid points, or None when the method has no fixed size
    storage: str | None = None  # local: the storage URL, password hidden (for messages)
    agent_command: tuple[str, ...] = ()  # the command that starts an agent on this sweep


def create_sweep_from_file(
    spec_file: Path,
    *,
    backend: str = "local",
    storage: str | None = None,
    config_dir: Path | None = None,
    config_name: str = "config",
    project: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    on_warning: Emit | None = None,
) -> CreatedSweep:
    """Validate ``spec_file`` (every problem at once, same checks for both backends) and create
    the sweep. ``on_warning`` hears the spec's warnings (before the sweep goes to W&B's server,
    after it is created locally)."""
    check_backend(backend)
    warn = on_warning or _ignore
    spec = _with_identity(
        _load_checked_spec(spec_file, config_dir, config_name), project, entity, name
    )
    if backend == "wandb":
        for warning in spec.warnings:
            warn(warning)
        _warn_missing_program(spec, warn)
        return _create_on_wandb(spec)
    created = _create_locally(spec, storage, config_dir, config_name)
    for warning in spec.warnings:
        warn(warning)
    _warn_missing_program(spec, warn)
    return created


def _warn_missing_program(spec: SweepSpec, warn: Emit) -> None:
    missing = spec.missing_program()
    if missing is not None:  # agents may run elsewhere: not an error here
        warn(
            f"program {spec.program!r} does not exist here ({missing}); each agent runs it "
            "from its own working directory, so start agents where it exists"
        )
        return
    _warn_metric_not_in_program(spec, warn)


def _warn_metric_not_in_program(spec: SweepSpec, warn: Emit) -> None:
    """A program sweep's metric that its program's text never mentions: a warning (the name
    may be built at run time), since a metric never logged fails every trial."""
    if not spec.program or spec.metric is None:
        return
    path = Path(spec.program)
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if spec.metric.name not in text:
        warn(
            f"metric {spec.metric.name!r} does not appear in {spec.program}; a trial whose "
            "program never logs it (wandb.log) fails, so check the name"
        )


def _load_checked_spec(spec_file: Path, config_dir: Path | None, config_name: str) -> SweepSpec:
    from expctl.sweeps.spec import load_spec

    return load_spec(spec_file, ConfigCheck(config_dir, config_name))


def _with_identity(
    spec: SweepSpec, project: str | None, entity: str | None, name: str | None
) -> SweepSpec:
    """The spec with ``--project/--entity/--name`` applied, in its raw YAML too (W&B gets that)."""
    given = {k: v for k, v in (("project", project), ("entity", entity), ("name", name)) if v}
    if not given:
        return spec
    return dataclasses.replace(
        spec,
        raw={**spec.raw, **given},
        project=project or spec.project,
        entity=entity or spec.entity,
        name=name or spec.name,
    )


def _create_locally(
    spec: SweepSpec, storage: str | None, config_dir: Path | None, config_name: str
) -> CreatedSweep:
    from expctl.config import find_config_dir
    from expctl.sweeps.methods import method_for
    from expctl.sweeps.storage import agent_command, describe
    from expctl.sweeps.studies import create_sweep

    directory: Path | None = None
    if not spec.runs_own_command:  # trials compose this project's config: remember where
        directory, _ = find_config_dir(config_dir)
    method_for(spec).check_size()  # before the storage exists: nothing is left
    with opened(storage, create=True) as handle:
        handle.check_space()  # not half a sweep: its grid is queued after the study is written
        info = create_sweep(spec, handle, config_dir=directory, config_name=config_name)
        url = handle.url
    agent = agent_command(info.id, url)
    return CreatedSweep(info.id, "local", spec, info.planned, describe(url), tuple(agent))


def _create_on_wandb(spec: SweepSpec) -> CreatedSweep:
    """The validated YAML, as written (plus --project/--entity/--name), to W&B's server."""
    from expctl.sweeps.methods import method_for
    from expctl.sweeps.wandb.cloud import create_cloud_sweep

    problem = method_for(spec).cloud_problem()
    if problem:
        raise UsageError(
            problem,
            hint="run it on expctl's engine, offline or not: drop --backend wandb (the trials "
            "are W&B runs all the same; `wandb sync` uploads them)",
        )
    plain = json.loads(json.dumps(spec.raw, default=str))
    path = create_cloud_sweep(plain, spec.project, spec.entity)
    planned = method_for(spec).planned()
    return CreatedSweep(path, "wandb", spec, planned, None, ("expctl", "sweep", "agent", path))


# -- agent ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentTarget:
    """Which agent runs the trials; announced (``on_start``) before the first trial."""

    sweep_ref: str
    backend: str  # "local" | "wandb"
    program: str | None = None  # a W&B sweep with `program:`: W&B's agent runs it itself


def run_sweep_agent(
    sweep_ref: str,
    options: AgentOptions = AgentOptions(),
    *,
    storage: str | None = None,
    config_dir: Path | None = None,
    config_name: str = "config",
    overrides: Sequence[str] = (),
    objective: str | None = None,
    on_start: Callable[[AgentTarget], None] | None = None,
    on_event: Emit | None = None,
) -> AgentSummary | None:
    """Run trials of a local sweep id or a W&B-hosted ``ENTITY/PROJECT/ID`` until done.

    Returns the local agent's summary; None for a W&B-hosted sweep (W&B's server keeps the
    tally). ``objective`` is ``MODULE:FUNCTION`` to run instead of expctl's trainer.
    ``on_start`` hears which agent runs once the sweep is found (never for a typo'd id).
    """
    from expctl.sweeps.engine import open_sweep
    from expctl.sweeps.wandb.cloud import is_cloud_sweep_path

    start = on_start or (lambda target: None)
    fn = load_objective(objective) if objective else None
    if is_cloud_sweep_path(sweep_ref):
        source = ConfigSource(config_dir, config_name, tuple(overrides))
        _run_wandb_agent(sweep_ref, options, source, fn, start, on_event)
        return None
    local_source = None  # None: the config dir/name stored with the sweep, no extra overrides
    if config_dir is not None or config_name != "config" or overrides:
        local_source = ConfigSource(config_dir, config_name, tuple(overrides))
    with opened(storage) as handle:
        sweep = open_sweep(sweep_ref, handle, seed=options.seed)
        if fn is None:  # before "agent started": no trial is burnt on a missing program
            sweep.spec.check_program_here(sweep.id)
        start(AgentTarget(sweep_ref, "local"))
        return run_agent(
            sweep, options, config_source=local_source, objective=fn, on_event=on_event
        )


def _run_wandb_agent(
    sweep_path: str,
    options: AgentOptions,
    source: ConfigSource,
    objective: Objective | None,
    start: Callable[[AgentTarget], None],
    on_event: Emit | None,
) -> None:
    """W&B's agent protocol on a W&B-hosted sweep, with the local agent's trial function."""
    from expctl.sweeps.spec import parse_spec
    from expctl.sweeps.wandb.cloud import (
        fetch_cloud_sweep_config,
        parse_sweep_path,
        run_cloud_agent,
    )
    from expctl.sweeps.wandb.trial import wandb_trial_function

    raw = fetch_cloud_sweep_config(sweep_path)
    # W&B's agent runs `program`/`command` itself (a command needs no program).
    own_command = raw.get("program") or " ".join(map(str, raw.get("command") or ()))
    count, trial_timeout = options.count, options.trial_timeout
    if own_command and objective is None:
        if trial_timeout is not None:
            raise UsageError(
                f"--trial-timeout cannot apply to W&B sweep {sweep_path}: it has `program:`, "
                "which W&B's agent runs itself",
                hint="drop --trial-timeout, or create the sweep without --backend wandb "
                "(the serverless agent applies the timeout to program trials)",
            )
        start(AgentTarget(sweep_path, "wandb", program=str(own_command)))
        run_cloud_agent(sweep_path, count, None)
        return
    spec = parse_spec(
        raw, source=sweep_path, config=ConfigCheck(source.config_dir, source.config_name)
    )
    function = wandb_trial_function(
        spec,
        parse_sweep_path(sweep_path)[2],
        config_source=source,
        objective=objective,
        trial_timeout=trial_timeout,
        on_event=on_event,
    )
    start(AgentTarget(sweep_path, "wandb"))
    run_cloud_agent(sweep_path, count, function)


# -- list, status, stop, repair ---------------------------------------------------------------


def sweeps_in_storage(storage: str | None = None) -> list[SweepRow]:
    """Every sweep in the storage, oldest first; none when the project's default journal does
    not exist yet. Listing never creates a storage: a storage named with --storage or
    $EXPCTL_STORAGE that does not exist is a :class:`UsageError` (a typo, most likely)."""
    from expctl.sweeps.overview import list_sweeps
    from expctl.sweeps.storage import is_default, resolve_url

    url = resolve_url(storage)
    if is_default(url) and not Path(url[len("journal://") :]).exists():
        return []
    with opened(url) as handle:
        return list_sweeps(handle)


def status_of(sweep_id: str, storage: str | None = None) -> SweepStatus:
    """Everything ``sweep status`` shows (:class:`expctl.sweeps.overview.SweepStatus`)."""
    from expctl.sweeps.engine import open_sweep
    from expctl.sweeps.overview import sweep_status as overview

    with opened(storage) as handle:
        return overview(open_sweep(sweep_id, handle))


def sweep_status(sweep_id: str, storage: str | None = None) -> dict[str, Any]:
    """:func:`status_of` as JSON-ready data (``sweep status --format json``)."""
    return status_of(sweep_id, storage).to_json()


def stop_sweep(sweep_id: str, storage: str | None = None) -> SweepInfo:
    """No new trials: agents finish their current trial and exit 0."""
    from expctl.sweeps.engine import open_sweep

    with opened(storage) as handle:
        return open_sweep(sweep_id, handle).stop()


def repair_storage(storage: str | None = None, *, dry_run: bool = False) -> RepairReport:
    """:func:`expctl.sweeps.storage.repair.repair_journal` on the journal file ``storage`` names."""
    from expctl.sweeps.storage import describe, resolve_url
    from expctl.sweeps.storage.repair import repair_journal

    url = resolve_url(storage)
    if not url.startswith("journal://"):
        raise UsageError(
            f"{describe(url)} is not a journal file; repair works on journal storages",
            hint="databases keep their own integrity: use their tools (and backups)",
        )
    path = Path(url[len("journal://") :])
    if not path.exists():
        raise UsageError(f"no journal at {path}", hint="pass the journal with --storage")
    return repair_journal(path, dry_run=dry_run)  # refuses a file that is not a journal


# -- on SLURM ---------------------------------------------------------------------------------


def submit_slurm_agents(
    sweep_id: str,
    tasks: int,
    options: AgentOptions,
    *,
    slurm_options: Sequence[str] = (),
    storage: str | None = None,
    agent_args: Sequence[str] = (),
    throttle: int | None = None,
) -> list[AgentArray]:
    """``tasks`` agents of a local sweep as SLURM job arrays (several past the cluster's
    ``MaxArraySize``), at most ``throttle`` running at once; returns the arrays.

    The sweep is opened first (an unknown id is exit 2 here, not in N failed tasks).
    ``agent_args`` are the options each agent runs with (built by the CLI from ``options``).
    """
    from expctl.sweeps.engine import open_sweep
    from expctl.sweeps.slurm import check_counts, submit_agents
    from expctl.sweeps.wandb.cloud import is_cloud_sweep_path

    check_counts(tasks, throttle)

    if is_cloud_sweep_path(sweep_id):
        raise UsageError(
            "--slurm launches agents of a local sweep",
            hint=f"for a W&B-hosted sweep submit `expctl sweep agent {sweep_id}` yourself",
        )
    with opened(storage) as handle:
        open_sweep(sweep_id, handle)
        url = handle.url
    return submit_agents(
        sweep_id, tasks, agent_args, throttle=throttle, slurm_options=slurm_options, storage_url=url
    )
