"""What `expctl runs list|show` hand to :func:`expctl.cli.output.emit`: the listing (rows for
a table and for CSV, records for JSON) and the `runs show` page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from expctl.cli.output import Lines, Table, printable, short_number, table_lines

if TYPE_CHECKING:
    from expctl.runs.query import RunView
    from expctl.runs.records import RunInfo


class RunsListing(NamedTuple):
    """`runs list`: one row per run; ``extra`` the columns asked for beyond the fixed ones."""

    views: list[RunView]
    extra: list[str]
    empty: str  # said on stderr when no run is listed

    def to_json(self) -> list[dict[str, Any]]:
        return [_list_json(v, self.extra) for v in self.views]

    def page(self) -> Table:
        header, rows = list_rows(self.views, self.extra, csv=False)
        return Table(header, rows, empty=self.empty)

    def csv_table(self) -> Table:
        header, rows = list_rows(self.views, self.extra, csv=True)
        return Table(header, rows)


def _list_json(view: RunView, extra: list[str]) -> dict[str, object]:
    data = view.run.to_json()
    if extra:  # the keys asked for, as --where reads them (null: the run has none)
        data["columns"] = {key: view.lookup(key)[1] for key in extra}
    return data


class RunPage(NamedTuple):
    """`runs show`: everything read about one run; JSON has it whole, the page summarises."""

    info: RunInfo
    data: dict[str, Any]  # the JSON document (run, summary, config, provenance, metrics...)
    facts: list[tuple[str, Any]]  # provenance lines of the page
    max_rows: int

    def to_json(self) -> dict[str, Any]:
        return self.data

    def page(self) -> Lines:
        d = self.data
        return Lines(
            show_lines(self.info, d["config"], d["metrics"], d["notes"], self.max_rows, self.facts)
        )


def list_rows(
    views: list[Any], extra: list[str], *, csv: bool
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    header = ["id", "name", "status", "started", "duration", "device", "metric", "final", "best"]
    header += extra
    # CSV always has the column (a stable schema); a table only when some run is tagged
    tagged = csv or any(v.run.labels.tags for v in views)
    if tagged:
        header.append("tags")
    header += ["overrides", "note"]
    if csv:
        header.insert(len(header) - 1, "run_dir")
    rows = []
    for v in views:
        r = v.run
        row: list[Any] = [
            r.id,
            r.name,
            r.status,
            r.started_at if csv else when(r.started_at),
            (round(r.duration_s, 3) if r.duration_s is not None else None)
            if csv
            else duration(r.duration_s),
            r.device,
            r.monitor,
            r.final_value if csv else num(r.final_value),
            r.best_value if csv else num(r.best_value),
        ]
        for key in extra:
            found, value = v.lookup(key)
            row.append((value if csv else column_cell(key, value)) if found else None)
        if tagged:
            row.append(",".join(r.labels.tags))  # tags hold no commas
        row.append(" ".join(r.overrides) if csv else overrides_text(r))
        if csv:
            row.append(str(r.path))
        # the table's note: what reading the record found, then the user's own (`runs note`)
        told = [r.labels.notes.splitlines()[0]] if r.labels.notes and not csv else []
        row.append("; ".join(r.notes) if csv else short("; ".join([*r.notes[:1], *told])))
        rows.append(tuple(row))
    return tuple(header), rows


SHORT_COMMIT = 12  # hex digits of a commit in tables (CSV and JSON keep it whole)


def column_cell(key: str, value: Any) -> Any:
    if key == "git.commit" and isinstance(value, str):
        return value[:SHORT_COMMIT]
    if isinstance(value, bool):
        return "true" if value else "false"
    return num(value) if isinstance(value, int | float) else value


def show_lines(
    info: RunInfo,
    config: dict[str, Any] | None,
    metric_rows: list[dict[str, Any]],
    notes: list[str],
    max_rows: int,
    provenance: list[tuple[str, Any]] | None = None,
) -> list[str]:
    """`runs show`: the run's facts, its provenance, its final/best metrics, its config, its
    metric rows."""
    from expctl.runs.compare import is_number

    lines = _fact_lines(_run_facts(info, notes))
    if provenance:
        lines += ["", "provenance:"]
        lines += ["  " + line for line in _fact_lines(provenance)]
    keys = [k for k in info.final_metrics if is_number(info.final_metrics[k])]
    if keys:
        lines += ["", "metrics:"]
        table = [(k, num(info.final_metrics.get(k)), num(info.best_metrics.get(k))) for k in keys]
        lines += ["  " + line for line in table_lines(("metric", "final", "best"), table)]
    if config is not None:
        import yaml

        lines += ["", "config:"]
        dumped = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
        lines += ["  " + line for line in dumped.rstrip().splitlines()]
    if metric_rows:
        lines += _metric_rows_lines(info, metric_rows, max_rows)
    return [printable(line) for line in lines]  # one line each, nothing raw from the record


def _fact_lines(facts: list[tuple[str, Any]]) -> list[str]:
    """``label  value`` lines, aligned; empty values left out, long ones continued."""
    width = max(len(k) for k, _ in facts)
    lines = []
    for k, v in facts:
        if v in (None, ""):
            continue
        first, *more = printable(v, lines=True).splitlines() or [""]  # an error's traceback
        lines += [f"{k.ljust(width)}  {first}", *(" " * (width + 2) + m for m in more)]
    return lines


def provenance_facts(
    record: dict[str, Any] | None,
    note: str | None,
    digest: str | None,
    resumes: list[tuple[str, dict[str, Any] | None]],
) -> list[tuple[str, Any]]:
    """(label, value) lines of `runs show`'s provenance block: the code (commit, dirty, diff),
    key versions, host, devices, SLURM ids, how it was started, and each resume's commit."""
    from expctl.runs.records import provenance_fields

    if record is None:
        return [("missing", note or "no provenance.json")]
    f = provenance_fields(record)
    facts: list[tuple[str, Any]] = [("commit", _commit_text(f, digest))]
    if f.get("git.remote"):
        facts.append(("remote", f["git.remote"]))
    versions = [f"python {f['env.python']}"] if f.get("env.python") else []
    versions += [f"expctl {f['env.expctl']}"] if f.get("env.expctl") else []
    versions += [f"{k[4:]} {v}" for k, v in f.items() if k.startswith("pkg.")]
    facts.append(("versions", ", ".join(versions)))
    facts.append(("host", f.get("env.host")))
    devices = f.get("env.device")
    if devices:
        devices += f" ({f['env.gpus']})" if f.get("env.gpus") else ""
        devices += f", {f['env.processes']} processes" if f.get("env.processes", 1) != 1 else ""
        if f.get("env.cuda"):
            devices += f", CUDA {f['env.cuda']}"
        if f.get("env.cuda_visible_devices") is not None:
            devices += f", CUDA_VISIBLE_DEVICES={f['env.cuda_visible_devices']}"
    facts.append(("device", devices))
    slurm = [f"job {f['env.slurm_job']}"] if f.get("env.slurm_job") else []
    slurm += [f"array {f['env.slurm_array']}"] if f.get("env.slurm_array") else []
    slurm += [f"nodes {f['env.slurm_nodes']}"] if f.get("env.slurm_nodes") else []
    facts.append(("slurm", ", ".join(slurm)))
    node = record.get("command")
    command: dict[str, Any] = node if isinstance(node, dict) else {}
    argv = command.get("argv")
    if isinstance(argv, list):
        facts.append(("command", " ".join(map(str, argv))))
    facts.append(("cwd", command.get("cwd")))
    facts.append(("config dir", command.get("config_dir")))
    for name, resumed in resumes:
        what = _commit_text(provenance_fields(resumed), None) if resumed else "no provenance.json"
        facts.append((f"resume {name}", what))
    return facts


def _commit_text(f: dict[str, Any], digest: str | None) -> str:
    commit = f.get("git.commit")
    if not commit:
        return f.get("git.note") or "unknown"
    text = commit[:SHORT_COMMIT]
    where = [f.get("git.branch") or f.get("git.describe") or "detached"]
    if f.get("git.dirty"):
        changed = f.get("git.changed_files")
        where.append(f"dirty: {changed} changed file{'s' if changed != 1 else ''}")
        if digest:
            where.append(f"diff.patch {digest[: len('sha256:') + SHORT_COMMIT]}")
    elif f.get("git.dirty") is False and not f.get("git.workdir_untracked"):
        where.append("clean")
    if f.get("git.workdir_untracked"):
        where.append("this directory is untracked: not in the commit")
    return f"{text} ({', '.join(where)})"


def _run_facts(info: RunInfo, notes: list[str]) -> list[tuple[str, Any]]:
    """(label, value) lines of `runs show`, from the summary; damage and notes last."""
    s = info.summary
    facts: list[tuple[str, Any]] = [
        ("run", str(info.path)),
        ("id", info.id),
        ("name", info.name),
        ("tags", ", ".join(info.labels.tags)),
        ("notes", info.labels.notes),
        ("status", info.status),
        ("kind", info.kind),
        ("started", f"{when(info.started_at)}   duration {duration(info.duration_s)}"),
        ("device", info.device),
    ]
    if info.sweep:
        facts.append(("sweep", f"{info.sweep.get('id')} trial {info.sweep.get('trial')}"))
    if info.monitor:
        final, best = num(info.final_value), num(info.best_value)
        goal = info.mode or "?"
        facts.append(("monitor", f"{info.monitor} ({goal}): final {final}, best {best}"))
    if s.get("best_checkpoint"):
        kept = len(s.get("checkpoints") or [])
        facts.append(("checkpoint", f"{s['best_checkpoint']} (best of {kept} kept)"))
    from expctl.runs.lineage import run_artifacts

    made = run_artifacts(info.path, s)
    if made.produced:
        facts.append(("artifact", ", ".join(made.produced)))
    if made.consumed:
        facts.append(("init from", ", ".join(made.consumed)))
    from expctl.trackers.base import tracking_entries

    for entry in tracking_entries(s):  # old run dirs: their `wandb` block
        backend, mode = str(entry["backend"]), entry.get("mode")
        if entry.get("sync_command"):
            facts.append((backend, f"{mode}: {entry['sync_command']}"))
        elif mode and backend == "wandb":
            facts.append((backend, f"{mode} {entry.get('path') or ''}".strip()))
        elif mode and entry.get("run_id"):
            facts.append((backend, f"run {entry['run_id']} in {entry.get('path')}"))
        elif mode:
            facts.append((backend, str(entry.get("command") or entry.get("path") or mode)))
    if s.get("command"):
        command = s["command"]
        shown = " ".join(map(str, command)) if isinstance(command, list) else command
        facts.append(("command", shown))
    facts.append(("overrides", " ".join(info.overrides) or "(none)"))
    if info.error:
        facts.append(("error", info.error))
    facts += [("damaged", note) for note in notes]
    facts += [("note", str(note)) for note in s.get("notes") or []]
    return facts


def _metric_rows_lines(
    info: RunInfo, metric_rows: list[dict[str, Any]], max_rows: int
) -> list[str]:
    """The last ``max_rows`` rows of metrics.jsonl as a table, and the monitor's sparkline."""
    from expctl.runs.compare import metric_series, sparkline

    columns = list(dict.fromkeys(k for row in metric_rows for k in row))
    shown = metric_rows[-max_rows:] if max_rows else []
    last = f", the last {len(shown)}" if len(shown) < len(metric_rows) else ""
    lines = ["", f"metrics.jsonl ({len(metric_rows)} rows{last}):"]
    if shown:
        cells = [tuple(num(row.get(c)) for c in columns) for row in shown]
        lines += ["  " + line for line in table_lines(tuple(columns), cells)]
    points = metric_series(metric_rows, info.monitor, "step") if info.monitor else []
    if points:
        values = [v for _, v in points]
        spark = f"{sparkline(values)}  {num(values[0])} → {num(values[-1])}"
        lines.append(f"  {info.monitor}: {spark}")
    return lines


def num(value: Any) -> str:
    if value is None:
        return ""
    return short_number(value)


def overrides_text(run: RunInfo) -> str:
    """Overrides for a table: floats to 4 significant digits (CSV and JSON keep them whole)."""
    from expctl.runs.overrides import split_override

    shown = []
    for override in run.overrides:
        key, value = split_override(override)
        if key is not None and isinstance(value, float) and not override.startswith("~"):
            prefix = override[: len(override) - len(override.lstrip("+"))]
            shown.append(f"{prefix}{key}={value:.4g}")
        else:
            shown.append(override)
    return " ".join(shown)


def short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def when(iso: str | None) -> str:
    from expctl.runs.records import parse_time

    moment = parse_time(iso)
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
