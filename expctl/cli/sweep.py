"""`expctl sweep create|agent|status|list|stop` — W&B sweep YAML on a serverless engine.

Each command parses its arguments, calls one function of :mod:`expctl.sweeps`, and renders the
result: data (the sweep id, status tables/JSON) on stdout, progress and hints on stderr.
optuna/hydra/torch are imported inside the commands so `expctl --help` stays fast.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from expctl.cli.common import (
    ConfigDirOpt,
    ConfigNameOpt,
    SetOpt,
    err,
    examples,
    handle_errors,
    out,
)

app = typer.Typer(
    help="Create W&B-style sweeps and run agents, with or without a W&B server.",
    no_args_is_help=True,
)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="EXPCTL_STORAGE",
        help="Sweep storage: a journal file path (default .expctl/sweeps.journal), "
        "sqlite:///x.db, postgresql://..., mysql://..., redis://...",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="table (for people) or json (for scripts).")
]
SweepIdArg = Annotated[str, typer.Argument(help="The sweep id printed by `sweep create`.")]


def _check_format(fmt: str) -> None:
    from expctl.errors import UsageError

    if fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {fmt!r}", hint="use --format table or --format json")


@app.command(
    "create",
    epilog=examples(
        "SWEEP_ID=$(expctl sweep create configs/sweeps/grid.yaml)",
        "expctl sweep create configs/sweeps/random.yaml --storage sqlite:///sweeps.db",
        "expctl sweep create sweep.yaml --name lr-search --config-name tutorial",
    ),
)
@handle_errors
def create(
    spec_file: Annotated[Path, typer.Argument(help="A W&B sweep YAML file.", show_default=False)],
    storage: StorageOpt = None,
    config_dir: ConfigDirOpt = None,
    config_name: ConfigNameOpt = "config",
    project: Annotated[str | None, typer.Option(help="W&B project for the trials' runs.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Sweep name (default: the YAML's `name`).")
    ] = None,
) -> None:
    """Validate a W&B sweep YAML and create the sweep; prints only the sweep id on stdout."""
    import dataclasses

    from expctl.config import find_config_dir
    from expctl.sweeps.engine import create_sweep
    from expctl.sweeps.spec import ConfigCheck, load_spec
    from expctl.sweeps.storage import is_default, open_storage

    spec = load_spec(spec_file, ConfigCheck(config_dir, config_name))
    if project or name:
        raw = {
            **spec.raw,
            **({"project": project} if project else {}),
            **({"name": name} if name else {}),
        }
        spec = dataclasses.replace(
            spec, raw=raw, project=project or spec.project, name=name or spec.name
        )
    directory: Path | None = None
    if not spec.program:
        directory, _ = find_config_dir(config_dir)
    handle = open_storage(storage)
    info = create_sweep(spec, storage=handle, config_dir=directory, config_name=config_name)
    for warning in spec.warnings:
        err(f"warning: {warning}", style="yellow")
    _describe_new_sweep(info, handle.url)
    agent = ["expctl", "sweep", "agent", info.id]
    if not is_default(handle.url):
        agent += ["--storage", handle.url]
    err("start agents (as many as you like, wherever the storage is reachable):")
    err(f"  {shlex.join(agent)}")
    out(info.id)


def _describe_new_sweep(info: Any, url: str) -> None:
    from expctl.sweeps.storage import describe

    spec = info.spec
    planned = f", {info.planned} runs planned" if info.planned is not None else ""
    cap = f", run_cap {spec.run_cap}" if spec.run_cap and info.planned is None else ""
    label = f" {spec.name!r}" if spec.name else ""
    err(f"created sweep {info.id}{label}: method {spec.method}{planned}{cap}")
    err(f"  storage: {describe(url)}")
    if spec.metric:
        target = f", target {spec.metric.target:g}" if spec.metric.target is not None else ""
        err(f"  metric: {spec.metric.name} ({spec.metric.goal}{target})")
    if spec.early_terminate:
        et = spec.early_terminate
        bands = ", ".join(str(b) for b in et.bands()[:5])
        err(
            f"  early_terminate: hyperband eta={et.eta:g} bands {bands}, ... "
            f"({'strict' if et.strict else 'best so far'})"
        )
    if spec.program:
        err(f"  program: {spec.program}")
    rows = [(p.name, p.distribution, p.describe()) for p in spec.parameters]
    if rows:
        for line in _table(("parameter", "distribution", "values"), rows):
            err(f"  {line}")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """Plain aligned columns: readable on a terminal and in a log file alike."""
    cells = [tuple("" if c is None else str(c) for c in row) for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


@app.command(
    "agent",
    epilog=examples(
        "expctl sweep agent $SWEEP_ID",
        "expctl sweep agent $SWEEP_ID --count 5 --storage /nfs/project/sweeps.journal",
        "sbatch --array=0-7 --wrap 'expctl sweep agent $SWEEP_ID --stale-after 120'",
    ),
)
@handle_errors
def agent(
    sweep_id: SweepIdArg,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Run at most N trials, then exit.")
    ] = None,
    storage: StorageOpt = None,
    stale_after: Annotated[
        float,
        typer.Option(
            "--stale-after",
            min=0.5,
            help="Seconds without a heartbeat after which another agent's trial is considered "
            "dead and re-run.",
        ),
    ] = 60.0,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="When nothing is left to claim, wait for other agents' running trials "
            "(re-running any whose agent dies) instead of exiting.",
        ),
    ] = True,
    config_dir: ConfigDirOpt = None,
    config_name: ConfigNameOpt = "config",
    sets: SetOpt = None,
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            hidden=True,
            help="MODULE:FUNCTION objective(ctx) to run instead of expctl's trainer.",
        ),
    ] = None,
) -> None:
    """Run trials until --count, run_cap, metric.target, the grid's end, or `sweep stop`."""
    from expctl.config import ConfigSource
    from expctl.sweeps.agent import load_objective, run_agent

    source = None
    if config_dir is not None or config_name != "config" or sets:
        source = ConfigSource(config_dir, config_name, tuple(sets or ()))
    fn = load_objective(objective) if objective else None
    err(f"agent for sweep {sweep_id} (stop with Ctrl-C: the running trial is re-queued)")
    summary = run_agent(
        sweep_id,
        storage=storage,
        count=count,
        config_source=source,
        objective=fn,
        stale_after=stale_after,
        wait=wait,
        on_event=lambda line: err(f"  {line}"),
    )
    counts = (
        ", ".join(
            f"{summary.count(s)} {s}" for s in ("complete", "pruned", "failed") if summary.count(s)
        )
        or "no trials"
    )
    err(f"agent done: {counts}; {summary.reason}")


@app.command(
    "status",
    epilog=examples(
        "expctl sweep status $SWEEP_ID",
        "expctl sweep status $SWEEP_ID --format json | jq .best.command",
    ),
)
@handle_errors
def status(sweep_id: SweepIdArg, storage: StorageOpt = None, fmt: FormatOpt = "table") -> None:
    """Progress, trials (leaderboard) and the best trial's overrides for `expctl run`."""
    from expctl.sweeps.engine import sweep_status

    _check_format(fmt)
    data = sweep_status(sweep_id, storage)
    if fmt == "json":
        out(json.dumps(data, indent=2, default=str))
        return
    for line in _status_lines(data):
        out(line)


def _status_lines(data: dict[str, Any]) -> list[str]:
    metric = data["metric"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(data["counts"].items())) or "no trials yet"
    planned = f" of {data['planned']} planned" if data["planned"] is not None else ""
    reason = f" ({data['finished_reason']})" if data.get("finished_reason") else ""
    lines = [
        f"sweep {data['id']}"
        + (f" {data['name']!r}" if data["name"] else "")
        + f": {data['method']}, {data['state']}{reason}",
        f"progress: {data['done']} done{planned}; {counts}",
    ]
    if metric:
        lines.append(f"metric: {metric['name']} ({metric['goal']})")
    rows = _leaderboard(data["trials"], metric)
    if rows:
        lines.append("")
        value_name = metric["name"] if metric else "value"
        lines += _table(("#", "state", value_name, "seconds", "params", "run dir", "note"), rows)
    best = data["best"]
    if best:
        lines += [
            "",
            f"best: trial {best['number']} {metric['name']}={best['value']:.6g}",
            f"  {best['command']}",
        ]
    return lines


def _leaderboard(trials: list[dict[str, Any]], metric: dict[str, Any] | None) -> list[tuple]:
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
    sign = -1 if metric and metric["goal"] == "maximize" else 1

    def key(t: dict[str, Any]) -> tuple:
        value = t["value"] if t["value"] is not None else float("inf") * sign
        return (order.get(t["state"], 5), sign * value, t["number"])

    rows = []
    for t in sorted(trials, key=key):
        params = " ".join(f"{k}={v}" for k, v in t["params"].items())
        value = f"{t['value']:.6g}" if t["value"] is not None else ""
        seconds = f"{t['duration']:.1f}" if t["duration"] is not None else ""
        state = t["state"]
        if t.get("retry_of") is not None:
            state += f" (re-run of {t['retry_of']})"
        note = t["message"] if t["state"] != "complete" and t.get("message") else ""
        rows.append((t["number"], state, value, seconds, params, t["run_dir"] or "", note))
    return rows


@app.command(
    "list",
    epilog=examples(
        "expctl sweep list", "expctl sweep list --format json --storage sqlite:///sweeps.db"
    ),
)
@handle_errors
def list_(storage: StorageOpt = None, fmt: FormatOpt = "table") -> None:
    """Every sweep in the storage, oldest first."""
    from expctl.sweeps.engine import list_sweeps
    from expctl.sweeps.storage import resolve_url

    _check_format(fmt)
    url = resolve_url(storage)
    if url.startswith("journal://") and not Path(url[len("journal://") :]).exists():
        rows: list[dict[str, Any]] = []
    else:
        rows = list_sweeps(url)
    if fmt == "json":
        out(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        err("no sweeps yet; create one with: expctl sweep create configs/sweeps/grid.yaml")
        return
    table = [
        (
            r["id"],
            r["name"] or "",
            r["method"],
            r["state"],
            f"{r['complete']}/{r['planned'] if r['planned'] is not None else '-'}",
            r["running"],
            r["metric"] or "",
            "" if r["best"] is None else f"{r['best']:.6g}",
            r["created"],
        )
        for r in rows
    ]
    for line in _table(
        ("id", "name", "method", "state", "done/planned", "running", "metric", "best", "created"),
        table,
    ):
        out(line)


@app.command("stop", epilog=examples("expctl sweep stop $SWEEP_ID"))
@handle_errors
def stop(sweep_id: SweepIdArg, storage: StorageOpt = None) -> None:
    """Start no new trials; agents finish their current trial and exit 0."""
    from expctl.sweeps.engine import stop_sweep

    info = stop_sweep(sweep_id, storage)
    err(f"sweep {sweep_id}: {info.state}; agents finish their current trial and exit")
