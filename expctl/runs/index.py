"""A cache of what `runs list` reads, so selecting among 100,000 run dirs takes under a second.

The run directories stay the source of truth; the index only remembers what was read from
each one last time, keyed by the directory's identity and times:

- **Fresh or re-read, never trusted blind.** Every query lists the runs root and ``stat``\\ s
  each run dir (one call: ~3 µs). expctl writes every record file by an atomic rename, which
  changes the directory's mtime/ctime, so a new, deleted, finished or tagged run is re-read.
  A directory whose times are within :data:`SETTLE_NS` of the index's own snapshot may change
  again inside the filesystem's timestamp granularity ("racy git"): it is re-read next time
  too. A run still ``running`` (or with no status) depends on a lock, not on its files: it is
  always re-read.
- **Shown rows come from disk.** The index picks the rows (``--where``/``--sort``/``--limit``);
  what is printed is read again from those run dirs, so even a record edited in place (no
  rename: the directory's times stay) is never shown with old values.
- **A cache may vanish or rot.** It lives in the user's cache directory (never in a shared
  runs dir others can write), one file per runs root, written whole to a temp file and renamed:
  several processes may refresh it at once and the last complete one wins. A file that is
  truncated, garbled, of another version or for another root fails its checks (magic,
  version, CRC-32, root) and is rebuilt from the run dirs, silently.

Columns are stored separately (``marshal``, each behind its own CRC) and decoded only when a
query names them: sorting 100,000 runs by ``val_loss`` decodes one column, not 100,000 records.
The resolved config is indexed the first time a query needs it (YAML is ~20x slower to read
than JSON: ~0.4 ms a file).
"""

from __future__ import annotations

import marshal
import os
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.record.files import RUN_DIR_NAME
from expctl.record.read import read_config
from expctl.record.scan import is_dir_entry, looks_like_run_dir, root_entries
from expctl.runs.index_store import (
    Table,
    index_disabled,
    index_file,
    load_index,
    save_index,
)
from expctl.runs.query import FIELDS, field_value
from expctl.runs.records import RunInfo, load_run

SETTLE_NS = 2_000_000_000
# the row fields stored one list each: the run fields of `--where` under their own names
# (query.FIELDS), the start order, and what the run was initialised from (artifact lineage)
ROW_FIELDS = (*FIELDS, "sort_key", "init_version", "init_sha256")
# {row: [note, ...]} of runs whose record files were refused as unsafe (few: kept sparse)
REFUSED = "refused"
# statuses decided by a lock, not by the files: such runs are re-read on every query
_VOLATILE = (None, "running", "crashed")


# -- scanning and refreshing ----------------------------------------------------------------------


@dataclass
class Scan:
    """The run dirs under a root, with each one's signature."""

    paths: list[str] = field(default_factory=list)
    sigs: array[int] = field(default_factory=lambda: array("q"))  # as Table.sigs
    unreadable: list[str] = field(default_factory=list)


def scan(root: Path, known: set[str]) -> Scan:
    """Every run dir two levels under ``root``, as :func:`record.scan.scan_runs_root` decides them
    (a directory already in the index is one: no need to look inside it again)."""

    found = Scan()
    for name_entry in root_entries(root):
        if name_entry.name.startswith(".") or not is_dir_entry(name_entry):
            continue
        try:
            entries = list(os.scandir(name_entry.path))
        except FileNotFoundError:
            continue
        except OSError as e:
            found.unreadable.append(f"{name_entry.path}: {e.strerror or e}")
            continue
        for entry in entries:
            rel = f"{name_entry.name}/{entry.name}"
            if rel not in known:
                if not is_dir_entry(entry):
                    continue
                if not RUN_DIR_NAME.match(entry.name) and not looks_like_run_dir(Path(entry.path)):
                    continue
            try:
                st = os.stat(entry.path)
            except OSError:
                continue  # removed while we looked, or a dangling link: not a run dir now
            found.paths.append(rel)
            found.sigs.extend((st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return found


def _row_values(run: RunInfo) -> dict[str, Any]:
    fields = {key: field_value(run, key) for key in FIELDS}
    return {**fields, "sort_key": run.sort_key, **init_source(run.summary)}


def init_source(summary: dict[str, Any]) -> dict[str, str | None]:
    """The artifact version ref and file digest a run was initialised from (``init_from``)."""
    init = summary.get("init_from") if isinstance(summary, dict) else None
    init = init if isinstance(init, dict) else {}
    version, sha = init.get("version"), init.get("sha256")
    return {
        "init_version": version if isinstance(version, str) else None,
        "init_sha256": sha if isinstance(sha, str) else None,
    }


def _marshalable(value: Any) -> Any:
    """``value`` if marshal can store it, else its text (a summary may hold anything JSON can)."""
    try:
        marshal.dumps(value)
    except ValueError:
        return str(value)
    return value


def refresh(root: Path) -> tuple[Table, Scan, dict[int, RunInfo]]:
    """The index of ``root`` brought up to date with the run dirs (saved when a row changed),
    the scan, and the runs read fresh this time by row: their RunInfo is the truth.

    Re-read: new run dirs, changed ones (signature), and the index's ``recheck`` rows — runs
    whose status a lock decides (running, crashed, none recorded) and runs changed within
    :data:`SETTLE_NS` of the snapshot. When no signature changed, the rows are compared whole
    (two C comparisons) and only the ``recheck`` rows are read."""
    root = Path(root)
    key = str(root.resolve())
    path = index_file(root)
    old = None if index_disabled() else load_index(path, key)
    found = scan(root, set(old.paths) if old else set())
    if old is not None and found.paths == old.paths and found.sigs == old.sigs:
        fresh = {row: load_run(root / found.paths[row]) for row in old.recheck}
        if not any(_unsettled(old.sigs, row, old.snapshot_ns) for row in old.recheck):
            return old, found, fresh
        read = {row: _row_of(run) for row, run in fresh.items()}
        reused = [(row, row) for row in range(len(found.paths)) if row not in fresh]
    else:
        to_read, reused = _compare(root, old, found)
        rows, runs = read_rows(root, [found.paths[r] for r in to_read])
        read = dict(zip(to_read, rows, strict=True))
        fresh = dict(zip(to_read, runs, strict=True)) if runs is not None else {}
    table = Table(root=key, paths=found.paths, sigs=found.sigs, snapshot_ns=time.time_ns())
    _fill(table, old, reused, read)
    statuses = table.column("status")
    table.recheck = [
        row
        for row in range(len(table.paths))
        if statuses[row] in _VOLATILE or _unsettled(table.sigs, row, table.snapshot_ns)
    ]
    if not index_disabled():
        save_index(path, table)
    return table, found, fresh


def _unsettled(sigs: array[int], row: int, snapshot_ns: int) -> bool:
    """Whether the run dir changed so close to the snapshot that a later change might keep
    the same times (coarse filesystem timestamps: "racy git")."""
    return snapshot_ns - max(sigs[3 * row], sigs[3 * row + 1]) <= SETTLE_NS


def _compare(root: Path, old: Table | None, found: Scan) -> tuple[list[int], list[tuple[int, int]]]:
    """Row by row: the rows to read again, and (new row, old row) of those still as stored."""
    old_rows = {p: i for i, p in enumerate(old.paths)} if old else {}
    recheck = set(old.recheck) if old else set()
    to_read: list[int] = []
    reused: list[tuple[int, int]] = []
    for row, rel in enumerate(found.paths):
        i = old_rows.get(rel)
        if (
            old is not None
            and i is not None
            and i not in recheck
            and old.sigs[3 * i : 3 * i + 3] == found.sigs[3 * row : 3 * row + 3]
        ):
            reused.append((row, i))
        else:
            to_read.append(row)
    return to_read, reused


# what one run contributes to the columns: (row fields, final, best, params, refused notes)
_Row = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], list[str]]
# reading this many runs or more is shared among processes (~100 µs a run, mostly parsing)
PARALLEL_FROM = 4000
_CHUNK = 1000


def _row_of(run: RunInfo) -> _Row:
    def plain(mapping: Any) -> dict[str, Any]:
        return {str(k): _marshalable(v) for k, v in mapping.items()}

    values = {name: _marshalable(v) for name, v in _row_values(run).items()}
    refused = [str(note) for note in run.refused]  # Refused is a str subclass
    return values, plain(run.final_metrics), plain(run.best_metrics), plain(run.params), refused


def read_rows(root: Path, rels: Sequence[str]) -> tuple[list[_Row], list[RunInfo] | None]:
    """The rows of the runs ``rels`` (and their RunInfo when read in this process): in worker
    processes, one per CPU this process may use, when there are many (a first listing of
    100,000 runs), else here."""
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8)
    if len(rels) < PARALLEL_FROM or workers < 2:
        runs = [load_run(root / rel) for rel in rels]
        return [_row_of(run) for run in runs], runs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork where it is safe (Linux): a worker starts in ~1 ms with expctl already imported
    method = "fork" if sys.platform == "linux" else None
    chunks = [list(rels[i : i + _CHUNK]) for i in range(0, len(rels), _CHUNK)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        parts = pool.map(_read_chunk, [str(root)] * len(chunks), chunks)
        return [row for part in parts for row in part], None


def _read_chunk(root: str, rels: list[str]) -> list[_Row]:
    return [_row_of(load_run(Path(root) / rel)) for rel in rels]


def _fill(
    table: Table, old: Table | None, reused: list[tuple[int, int]], read: dict[int, _Row]
) -> None:
    """The new table's columns: reused rows copied from ``old``, the others from ``read``."""
    size = len(table.paths)
    for name in ROW_FIELDS:
        values: list[Any] = [None] * size
        if old is not None:
            previous = old.column(name)
            for row, i in reused:
                values[row] = previous[i]
        for row, run_row in read.items():
            values[row] = run_row[0][name]
        table.columns[name] = values
    sparse: dict[str, dict[int, Any]] = {REFUSED: {}}
    if old is not None:
        moved = {i: row for row, i in reused}
        for name in [c for c in old.columns if c not in ROW_FIELDS]:
            column = old.column(name)
            kept = {moved[i]: v for i, v in column.items() if i in moved}
            if kept:
                sparse[name] = kept
        rows, nodes = old.decoded_config()
        table.config_rows = {moved[i] for i in rows if i in moved}
        table.config_nodes = set(nodes)
    sparse.setdefault(REFUSED, {})
    for row, (_, final, best, params, refused) in read.items():
        if refused:
            sparse[REFUSED][row] = refused
        for namespace, mapping in (("final", final), ("best", best), ("param", params)):
            for k, v in mapping.items():
                sparse.setdefault(f"{namespace}.{k}", {})[row] = v
    table.columns.update(sparse)


def config_column(table: Table, root: Path, dotted: str) -> dict[int, Any] | None:
    """``{row: value}`` of the config key ``dotted`` (indexing every config the first time one
    is asked for), or None for a key naming a mapping: only the config itself has that."""
    index_configs(table, root)
    _, nodes = table.decoded_config()
    if dotted in nodes:
        return None
    return table.column(f"config.{dotted}") or {}


def index_configs(table: Table, root: Path) -> None:
    """Add the resolved config of every row not indexed yet, then save."""
    done, nodes = table.decoded_config()
    missing = [r for r in range(len(table.paths)) if r not in done]
    if not missing:
        return
    for row in missing:
        config, _ = read_config(root / table.paths[row])
        for key, value in _flatten(config or {}, ""):
            if value is _NODE:
                nodes.add(key)
                continue
            column = table.columns.get(f"config.{key}")
            if column is None:
                column = table.columns[f"config.{key}"] = {}
            elif isinstance(column, bytes):
                column = table.column(f"config.{key}")
            column[row] = _marshalable(value)
        done.add(row)
    if not index_disabled():
        save_index(index_file(root), table)


_NODE = object()


def _flatten(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Dotted keys of every value (and of every mapping or list, as :data:`_NODE`), as
    ``query._dotted`` walks them: lists by index."""
    items: Any = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, dict | list) and v:
            yield key, _NODE
            yield from _flatten(v, key + ".")
        else:
            yield key, v
