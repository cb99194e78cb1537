"""`expctl sweep create|agent|status|list|stop|repair` — W&B sweep YAML on a serverless engine.

Each command parses its arguments, calls one function of :mod:`expctl.sweeps`, and renders the
result: data (the sweep id, status tables/JSON) on stdout, progress and hints on stderr.
optuna/hydra/torch/wandb are imported inside the commands so `expctl --help` stays fast.

Two backends: ``local`` (default: the serverless engine, ids like ``k3v9x2ab``) and ``wandb``
(`create --backend wandb` hands the validated YAML to W&B's server; its sweeps are named
``ENTITY/PROJECT/ID``, and `agent` runs W&B's agent protocol on such a path).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from expctl.cli import sweep_agent, sweep_results
from expctl.cli.common import (
    ConfigDirOpt,
    ConfigNameOpt,
    err,
    examples,
    handle_errors,
    out,
)
from expctl.cli.output import Lines, Shown, Table, TableOrJson, emit, short_number, table_lines
from expctl.cli.sweep_options import FormatOpt, StorageOpt, SweepIdArg

if TYPE_CHECKING:
    from expctl.sweeps.overview import SweepStatus, TrialRow
    from expctl.sweeps.service import CreatedSweep

app = typer.Typer(
    help="Create W&B-style sweeps and run agents, with or without a W&B server.",
    no_args_is_help=True,
)


@app.command(
    "create",
    epilog=examples(
        "SWEEP_ID=$(expctl sweep create configs/sweeps/grid.yaml)",
        "expctl sweep create configs/sweeps/random.yaml --storage sqlite:///sweeps.db",
        "SWEEP=$(expctl sweep create sweep.yaml --backend wandb --project digits --entity my-team)",
    ),
)
@handle_errors
def create(
    spec_file: Annotated[Path, typer.Argument(help="A W&B sweep YAML file.", show_default=False)],
    storage: StorageOpt = None,
    config_dir: ConfigDirOpt = None,
    config_name: ConfigNameOpt = "config",
    project: Annotated[
        str | None,
        typer.Option(help="W&B project for the trials' runs (--backend wandb: the sweep's too)."),
    ] = None,
    entity: Annotated[
        str | None,
        typer.Option(help="W&B entity (user or team); default: the YAML's, then WANDB_ENTITY."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Sweep name (default: the YAML's `name`).")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            envvar="EXPCTL_SWEEP_BACKEND",
            help="local: the serverless engine in --storage. wandb: create the sweep on W&B's "
            "server (needs `wandb login`); prints ENTITY/PROJECT/ID.",
        ),
    ] = "local",
) -> None:
    """Validate a W&B sweep YAML and create the sweep; prints only the sweep id on stdout.

    The YAML is checked the same way for both backends (every problem at once, parameters
    against the project's config when there is no `program`) before anything is created.
    """
    from expctl.sweeps.service import create_sweep_from_file

    created = create_sweep_from_file(
        spec_file,
        backend=backend,
        storage=storage,
        config_dir=config_dir,
        config_name=config_name,
        project=project,
        entity=entity,
        name=name,
        on_warning=lambda warning: err(f"warning: {warning}", style="yellow"),
    )
    _describe_new_sweep(created)
    out(created.ref)


def _describe_new_sweep(created: CreatedSweep) -> None:
    """What was created, and the command that starts its agents (stderr)."""
    spec, planned = created.spec, created.planned
    where = "on W&B's server" if created.backend == "wandb" else f"storage: {created.storage}"
    planned_text = f", {planned} runs planned" if planned is not None else ""
    cap = f", run_cap {spec.run_cap}" if spec.run_cap and planned is None else ""
    label = f" {spec.name!r}" if spec.name else ""
    err(f"created sweep {created.ref}{label}: method {spec.method}{planned_text}{cap}")
    err(f"  {where}")
    if spec.metric:
        target = f", target {spec.metric.target:g}" if spec.metric.target is not None else ""
        err(f"  metric: {spec.metric.name} ({spec.metric.goal}{target})")
    for i, objective in enumerate(spec.metrics):  # a multi-objective sweep's `metrics:`
        err(f"  {'metrics:' if i == 0 else '        '} {objective.name} ({objective.goal})")
    if spec.early_terminate:
        et = spec.early_terminate
        all_bands = et.bands()
        bands = ", ".join(str(b) for b in all_bands[:5]) + (", ..." if len(all_bands) > 5 else "")
        err(
            f"  early_terminate: hyperband eta={et.eta:g} bands {bands} "
            f"({'strict' if et.strict else 'best so far'})"
        )
    if spec.program:
        err(f"  program: {spec.program}")
    if spec.command:
        from expctl.secrets import redact_argv

        err(f"  command: {' '.join(redact_argv(spec.command))}")
    rows = [(p.name, p.distribution, p.describe()) for p in spec.parameters]
    if rows:
        for line in table_lines(("parameter", "distribution", "values"), rows):
            err(f"  {line}")
    if created.backend == "wandb" and (spec.scheduler or spec.metrics):
        # W&B's server does not sample a sweep with a scheduler: the SDK's scheduler does
        err("start its scheduler (W&B samples no trial without it):")
        err(f"  wandb sweep-scheduler {created.ref}")
    if created.backend == "wandb":
        err("start agents (as many as you like, wherever W&B is reachable):")
        err(f"  expctl sweep agent {created.ref}")
        if spec.runs_own_command:
            own = f"wandb agent {created.ref}"
            err(f"  (for `program:` sweeps W&B's own agent does the same: {own})")
        return
    err("start agents (as many as you like, wherever the storage is reachable):")
    err(f"  {shlex.join(created.agent_command)}")
    if created.storage and ":***@" in created.storage:
        err("  (with EXPCTL_STORAGE set to the storage URL: its password is not printed)")


sweep_agent.register(app)  # `sweep agent`: running trials, here or on SLURM


@app.command(
    "status",
    epilog=examples(
        "expctl sweep status $SWEEP_ID",
        "expctl sweep status $SWEEP_ID --format json | jq .best.command",
    ),
)
@handle_errors
def status(
    sweep_id: SweepIdArg, storage: StorageOpt = None, fmt: FormatOpt = TableOrJson.table
) -> None:
    """Progress, trials (leaderboard) and the best trial's overrides for `expctl run`."""
    from expctl.sweeps.service import status_of

    emit(StatusPage(status_of(sweep_id, storage)), fmt)


# A leaderboard of 100,000 trials is no table anyone reads (and took 1.5 s to print): past this
# many rows it shows the best ones and every running trial, and says how many it left out.
LEADERBOARD_ROWS = 50


class StatusPage(NamedTuple):
    """``sweep status``: each form built only when asked for (at 10⁵ trials each costs ~1 s)."""

    status: SweepStatus

    def to_json(self) -> Any:
        return self.status.to_json()

    def page(self) -> Lines:
        return Lines(_status_lines(self.status))


def _status_lines(status: SweepStatus) -> list[str]:
    metric = status.metric
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts.items())) or "no trials yet"
    planned = f" of {status.planned} planned" if status.planned is not None else ""
    reason = f" ({status.finished_reason})" if status.finished_reason else ""
    lines = [
        f"sweep {status.id} {status.name!r}: {status.method}, {status.state_text}{reason}",
        f"progress: {status.done} done{planned}; {counts}",
    ]
    if status.objectives:  # multi-objective: a column per objective, the front marked
        from expctl.cli.sweep_pareto import status_lines

        return status_lines(status, lines, _agents_line(status))
    if metric:
        lines.append(f"metric: {metric['name']} ({metric['goal']})")
    lines.append(_agents_line(status))
    rows = _leaderboard(status.trials, metric)
    if rows:
        lines.append("")
        value_name = metric["name"] if metric else "value"
        header = ("#", "state", value_name, "seconds", "params", "run dir", "note")
        lines += table_lines(header, rows)
        if len(rows) < len(status.trials):
            left = len(status.trials) - len(rows)
            lines.append(f"... {left:,} more trials (--format json lists every trial)")
    best = status.best
    if best and metric:
        lines += [
            "",
            f"best: trial {best.row.number} {metric['name']}={short_number(best.row.value)}",
            f"  {best.command}",
        ]
    return lines


def _agents_line(status: SweepStatus) -> str:
    alive = sorted(name for name, a in status.agents.items() if a["alive"])
    if alive:
        more = ", ..." if len(alive) > 4 else ""
        line = f"agents: {len(alive)} alive ({', '.join(alive[:4])}{more})"
        from expctl.sweeps.slurm import job_ranges

        jobs = [j["job"] for n in alive if (j := status.agents[n].get("slurm"))]
        return f"{line}; SLURM jobs {job_ranges(jobs)}" if jobs else line
    if status.state == "running":
        from expctl.sweeps.storage import agent_command

        command = shlex.join(agent_command(status.id, status.storage))
        return f"agents: none alive — start one to continue: {command}"
    return "agents: none alive"


def _leaderboard(trials: list[TrialRow], metric: dict[str, Any] | None) -> list[tuple]:
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
    sign = -1 if metric and metric["goal"] == "maximize" else 1

    def key(t: TrialRow) -> tuple:
        value = t.value if t.value is not None else float("inf") * sign
        return (order.get(t.state, 5), sign * value, t.number)

    ordered = sorted(trials, key=key)
    if len(ordered) > LEADERBOARD_ROWS:  # the best, then every running trial
        running = [t for t in ordered[LEADERBOARD_ROWS:] if t.state == "running"]
        ordered = ordered[:LEADERBOARD_ROWS] + running
    rows = []
    for t in ordered:
        params = " ".join(f"{k}={short_number(v)}" for k, v in t.params.items())
        value = short_number(t.value) if t.value is not None else ""
        seconds = f"{t.duration:.1f}" if t.duration is not None else ""
        state = t.state if t.retry_of is None else f"{t.state} (re-run of {t.retry_of})"
        note = t.message if t.state != "complete" and t.message else ""
        rows.append((t.number, state, value, seconds, params, t.run_dir or "", note))
    return rows


@app.command(
    "list",
    epilog=examples(
        "expctl sweep list", "expctl sweep list --format json --storage sqlite:///sweeps.db"
    ),
)
@handle_errors
def list_(storage: StorageOpt = None, fmt: FormatOpt = TableOrJson.table) -> None:
    """Every sweep in the storage, oldest first."""
    from expctl.sweeps.service import sweeps_in_storage

    rows = sweeps_in_storage(storage)
    empty = "no sweeps yet; create one with: expctl sweep create configs/sweeps/grid.yaml"
    table = [
        (
            r.id,
            r.name,
            r.method,
            r.state,
            f"{r.complete}/{r.planned if r.planned is not None else '-'}",
            r.running,
            r.metric or "",
            "" if r.best is None else short_number(r.best),
            r.created,
        )
        for r in rows
    ]
    header = (
        "id",
        "name",
        "method",
        "state",
        "done/planned",
        "running",
        "metric",
        "best",
        "created",
    )
    emit(Shown([r.to_json() for r in rows], Table(header, table, empty=empty)), fmt)


@app.command("stop", epilog=examples("expctl sweep stop $SWEEP_ID"))
@handle_errors
def stop(sweep_id: SweepIdArg, storage: StorageOpt = None) -> None:
    """Start no new trials; agents finish their current trial and exit 0."""
    from expctl.sweeps.service import stop_sweep

    info = stop_sweep(sweep_id, storage)
    err(f"sweep {sweep_id}: {info.state}; agents finish their current trial and exit")


@app.command(
    "repair",
    epilog=examples(
        "expctl sweep repair --dry-run",
        "expctl sweep repair --storage /nfs/project/sweeps.journal",
    ),
)
@handle_errors
def repair(
    storage: StorageOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
) -> None:
    """Repair a damaged journal file: drop (or salvage) damaged lines, keep a backup.

    Stop every agent using the journal first. The journal is replaced only if the repaired
    records replay cleanly; prints the backup's path on stdout.
    """
    from expctl.sweeps.service import repair_storage

    report = repair_storage(storage, dry_run=dry_run)
    for number in report.salvaged:
        err(f"line {number}: a torn record with a complete one after it: kept the complete one")
    for number, why in report.dropped:
        err(f"line {number}: dropped ({why})")
    if report.torn_tail:
        err("the last line is torn (a writer died mid-append): dropped")
    if not report.changed:
        err(f"{report.path}: all {report.lines} records are sound; nothing to repair")
    elif dry_run:
        err(f"{report.path}: would be repaired (run again without --dry-run)")
    else:
        err(f"{report.path}: repaired; the original is kept as {report.backup}")
        out(str(report.backup))


sweep_results.register(app)  # `sweep report` and `sweep best`: reading a sweep's results
