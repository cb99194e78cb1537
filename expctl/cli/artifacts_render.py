"""What `expctl artifacts list|show` hand to :func:`expctl.cli.output.emit`: the versions'
table and the lineage page of one version (JSON: the store's own records, whole)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from expctl.cli.output import Lines, Table, json_cell, printable, short_number, table_lines

if TYPE_CHECKING:
    from expctl.artifacts.store import ArtifactVersion
    from expctl.runs.lineage import Lineage, LineageRun

CONSUMERS_SHOWN = 10  # runs listed under "consumed by" on the page (JSON lists them all)


class VersionList(NamedTuple):
    """`artifacts list`: one row per version. One table on a terminal and in a pipe: nothing
    is cut, so two versions never read the same; scripts use --format json."""

    versions: list[ArtifactVersion]
    empty: str  # said on stderr when the store holds none

    def to_json(self) -> list[dict[str, Any]]:
        return [v.summary() for v in self.versions]

    def page(self) -> Table:
        return Table(LIST_COLUMNS, version_rows(self.versions), empty=self.empty)


class LineagePage(NamedTuple):
    """`artifacts show`: a version, where it came from and what was trained from it."""

    lineage: Lineage

    def to_json(self) -> dict[str, Any]:
        return self.lineage.to_json()

    def page(self) -> Lines:
        return Lines(lineage_lines(self.lineage))


def _metric(version: ArtifactVersion) -> str:
    """The creating run's monitored metric (``val_loss=0.1594``): what ``best`` compares."""
    monitored = version.monitored
    return f"{monitored[0]}={monitored[2]:.4g}" if monitored else ""


LIST_COLUMNS = ("ref", "type", "aliases", "metric", "size", "files", "created", "run")


def version_table(versions: list[ArtifactVersion]) -> list[str]:
    """``artifacts list`` as plain aligned lines (the piped style of :class:`VersionList`)."""
    return table_lines(LIST_COLUMNS, version_rows(versions))


def version_rows(versions: list[ArtifactVersion]) -> list[tuple[Any, ...]]:
    return [
        (
            v.ref,
            v.type,
            ",".join(v.aliases),
            _metric(v),
            size_text(v.size),
            len(v.files),
            v.created[:16].replace("T", " "),  # minutes are enough to tell versions apart
            _short_run(v.run_dir),
        )
        for v in versions
    ]


def _short_run(path: str | None) -> str:
    """RUN_NAME/STAMP-ID identifies a run (a table cell: the full path is in plain/json)."""
    return "/".join(Path(path).parts[-2:]) if path else ""


def files_text(version: ArtifactVersion) -> str:
    n = len(version.files)
    return f"{n} file{'' if n == 1 else 's'}"


def size_text(n: int) -> str:
    from expctl.artifacts.store import human_size

    return human_size(n)


def lineage_lines(lineage: Lineage) -> list[str]:
    """The human page of ``artifacts show``, one printable line each."""
    v = lineage.version
    lines = [
        f"artifact      {v.ref}",
        f"type          {v.type}",
        f"created       {v.created}",
        f"digest        sha256:{v.digest}",
        f"size          {size_text(v.size)} in {files_text(v)}",
        f"aliases       {', '.join(v.aliases) or '(none)'}",
        "files:",
        *("  " + line for line in _file_table(v)),
    ]
    shown = {k: val for k, val in v.metadata.items() if k != "config"}
    if shown or "config" in v.metadata:
        lines.append("metadata:")
        lines += [f"  {k}: {_short_json(val)}" for k, val in shown.items()]
        if "config" in v.metadata:
            lines.append("  config: (the run's resolved config; --format json shows it)")
    lines.append("produced by:")
    lines += ["  " + line for line in _run_lines(lineage.producer, "no run recorded")]
    lines.append("initialised from:")
    if not lineage.chain:
        lines.append("  nothing (trained from scratch, or not recorded)")
    for link in lineage.chain:  # newest first: each one was trained from the next
        what = link.version or str(link.init_from.get("file") or link.init_from.get("ref"))
        sha = str(link.init_from.get("sha256") or "")[:12]
        where = "" if link.in_store or link.version is None else ", no longer in the store"
        lines.append(f"  <- {what} (file {link.init_from.get('file')}, sha256 {sha}{where})")
        if link.producer is not None:
            lines += ["     " + line for line in _run_lines(link.producer, "")]
        if link.stop:
            lines.append(f"     ({link.stop})")
    consumers = lineage.consumers
    count = len(consumers)
    lines.append(
        f"consumed by:  {count} run{'' if count == 1 else 's'} under {lineage.runs_root}"
        + (" (--init-from)" if count else "")
    )
    for run in consumers[:CONSUMERS_SHOWN]:
        lines.append("  " + _run_lines(run, "")[0])
    if count > CONSUMERS_SHOWN:
        lines.append(f"  … and {count - CONSUMERS_SHOWN} more (--format json lists them all)")
    return [printable(line) for line in lines]  # names and paths come from shared files


def _short_json(value: object, width: int = 100) -> str:
    """A metadata value on one line: long metric dicts are cut (--format json has them whole)."""
    text = json_cell(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _file_table(version: ArtifactVersion) -> list[str]:
    rows = [(f.path, size_text(f.size), f.sha256[:12]) for f in version.files]
    return table_lines(("path", "size", "sha256"), rows)


def _run_lines(run: LineageRun | None, none: str) -> list[str]:
    """``RUN_DIR (status, started)``, then its commit and key final metrics."""
    if run is None:
        return [none] if none else []
    if not run.exists:
        return [f"{run.run_dir} (run directory no longer exists)"]
    started = (run.started_at or "")[:19].replace("T", " ")
    head = f"{run.run_dir} ({run.status}{', ' + started if started else ''})"
    commit = run.commit[:12] if run.commit else "unknown"
    if run.commit and run.dirty:
        commit += " (dirty)"
    metrics = " ".join(f"{k}={short_number(val)}" for k, val in run.metrics.items())
    return [head, f"commit {commit}" + (f"   {metrics}" if metrics else "")]
