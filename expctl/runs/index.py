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

import contextlib
import marshal
import os
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.record.files import RUN_DIR_NAME
from expctl.record.read import read_config
from expctl.record.scan import is_dir_entry, looks_like_run_dir, root_entries
from expctl.runs.labels import Labels
from expctl.runs.records import RunInfo, load_run

FORMAT_VERSION = 3
MAGIC = b"EXPCTL-RUNS-INDEX"
SETTLE_NS = 2_000_000_000
# the row fields stored one list each (what lookups, filters and the start order read)
ROW_FIELDS = (
    *("id", "name", "status", "kind", "device", "started_at", "ended_at", "duration_s"),
    *("sweep_id", "sort_key", "tags", "notes"),
)
# {row: [note, ...]} of runs whose record files were refused as unsafe (few: kept sparse)
REFUSED = "refused"
NAMESPACES = ("final", "best", "param")
# statuses decided by a lock, not by the files: such runs are re-read on every query
_VOLATILE = (None, "running", "crashed")


def index_file(root: Path) -> Path:
    """Where the index of ``root`` lives: ``$EXPCTL_INDEX_DIR``, else the user's cache dir."""
    base = os.environ.get("EXPCTL_INDEX_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = os.path.join(cache, "expctl", "runs-index")
    # crc32, not hashlib (its import loads OpenSSL: ~20 ms of every `runs list`); two roots
    # sharing a file name only rebuild each other's index, as the stored root is checked
    resolved = Path(root).resolve()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in resolved.name)[:40]
    return Path(base) / f"{name}-{zlib.crc32(str(resolved).encode()):08x}.idx"


def index_disabled() -> bool:
    return os.environ.get("EXPCTL_RUNS_INDEX", "1").lower() in ("0", "off", "false", "no")


# -- the table ------------------------------------------------------------------------------------


@dataclass
class _Table:
    """The index in memory: one row per run dir, columns decoded on first use."""

    root: str
    paths: list[str] = field(default_factory=list)  # "<name>/<run dir>", relative to root
    # (mtime_ns, ctime_ns, inode) of each run dir, flat: compared whole, in C, when unchanged
    sigs: array[int] = field(default_factory=lambda: array("q"))
    snapshot_ns: int = 0  # when the rows were read (for the settle rule)
    recheck: list[int] = field(default_factory=list)  # rows re-read on every query (see refresh)
    # name -> list (a row field), or "final.KEY"/"config.KEY" -> {row: value}; bytes until used
    columns: dict[str, Any] = field(default_factory=dict)
    config_rows: set[int] | bytes = field(default_factory=set)  # rows whose config is indexed
    config_nodes: set[str] | bytes = field(default_factory=set)  # config keys naming a mapping

    def column(self, name: str) -> Any:
        value = self.columns.get(name)
        if isinstance(value, bytes):
            value = self.columns[name] = marshal.loads(value)
        return value

    def keys(self, namespace: str) -> list[str]:
        prefix = namespace + "."
        return [k[len(prefix) :] for k in self.columns if k.startswith(prefix)]

    def decoded_config(self) -> tuple[set[int], set[str]]:
        if isinstance(self.config_rows, bytes):
            self.config_rows = set(marshal.loads(self.config_rows))
        if isinstance(self.config_nodes, bytes):
            self.config_nodes = set(marshal.loads(self.config_nodes))
        return self.config_rows, self.config_nodes


def _load(path: Path, root: str) -> _Table | None:
    """The index at ``path``, or None when it is missing or fails any check."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 8
    if len(data) < head or not data.startswith(MAGIC):
        return None
    version, crc = struct.unpack("<II", data[len(MAGIC) : head])
    body = data[head:]
    if version != FORMAT_VERSION or zlib.crc32(body) != crc:
        return None
    try:
        stored = marshal.loads(body)
        table = _Table(
            root=root,
            paths=stored["paths"].split("\n") if stored["paths"] else [],
            sigs=array("q", stored["sigs"]),
            snapshot_ns=stored["snapshot_ns"],
            recheck=list(stored["recheck"]),
            columns=dict(stored["columns"]),
            config_rows=stored["config_rows"],
            config_nodes=stored["config_nodes"],
        )
    except Exception:  # any damage the CRC missed, or another layout: rebuild, never fail
        return None
    if stored.get("root") != root or len(table.sigs) != 3 * len(table.paths):
        return None
    return table


def _save(path: Path, table: _Table) -> None:
    """Write the index whole (temp file + rename); a cache that cannot be written is skipped."""
    rows, nodes = table.decoded_config()
    body = marshal.dumps(
        {
            "root": table.root,
            "paths": "\n".join(table.paths),
            "sigs": table.sigs.tobytes(),
            "snapshot_ns": table.snapshot_ns,
            "recheck": table.recheck,
            "columns": {
                k: v if isinstance(v, bytes) else marshal.dumps(v) for k, v in table.columns.items()
            },
            "config_rows": marshal.dumps(sorted(rows)),
            "config_nodes": marshal.dumps(sorted(nodes)),
        }
    )
    data = MAGIC + struct.pack("<II", FORMAT_VERSION, zlib.crc32(body)) + body
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError:
        # a read-only or full cache dir: the listing is still right, only slower next time
        with contextlib.suppress(OSError):
            temp.unlink()


# -- scanning and refreshing ----------------------------------------------------------------------


@dataclass
class Scan:
    """The run dirs under a root, with each one's signature."""

    paths: list[str] = field(default_factory=list)
    sigs: array[int] = field(default_factory=lambda: array("q"))  # as _Table.sigs
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
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "kind": run.kind,
        "device": run.device,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": run.duration_s,
        "sweep_id": (run.sweep or {}).get("id"),
        "sort_key": run.sort_key,
        "tags": run.labels.tags,
        "notes": run.labels.notes,
    }


def _marshalable(value: Any) -> Any:
    """``value`` if marshal can store it, else its text (a summary may hold anything JSON can)."""
    try:
        marshal.dumps(value)
    except ValueError:
        return str(value)
    return value


def refresh(root: Path) -> tuple[_Table, Scan, dict[int, RunInfo]]:
    """The index of ``root`` brought up to date with the run dirs (saved when a row changed),
    the scan, and the runs read fresh this time by row: their RunInfo is the truth.

    Re-read: new run dirs, changed ones (signature), and the index's ``recheck`` rows — runs
    whose status a lock decides (running, crashed, none recorded) and runs changed within
    :data:`SETTLE_NS` of the snapshot. When no signature changed, the rows are compared whole
    (two C comparisons) and only the ``recheck`` rows are read."""
    root = Path(root)
    key = str(root.resolve())
    path = index_file(root)
    old = None if index_disabled() else _load(path, key)
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
    table = _Table(root=key, paths=found.paths, sigs=found.sigs, snapshot_ns=time.time_ns())
    _fill(table, old, reused, read)
    statuses = table.column("status")
    table.recheck = [
        row
        for row in range(len(table.paths))
        if statuses[row] in _VOLATILE or _unsettled(table.sigs, row, table.snapshot_ns)
    ]
    if not index_disabled():
        _save(path, table)
    return table, found, fresh


def _unsettled(sigs: array[int], row: int, snapshot_ns: int) -> bool:
    """Whether the run dir changed so close to the snapshot that a later change might keep
    the same times (coarse filesystem timestamps: "racy git")."""
    return snapshot_ns - max(sigs[3 * row], sigs[3 * row + 1]) <= SETTLE_NS


def _compare(
    root: Path, old: _Table | None, found: Scan
) -> tuple[list[int], list[tuple[int, int]]]:
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
    table: _Table, old: _Table | None, reused: list[tuple[int, int]], read: dict[int, _Row]
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


def index_configs(table: _Table, root: Path, rows: Sequence[int] | None = None) -> None:
    """Add the resolved config of every row (or of ``rows``) not indexed yet, then save."""
    done, nodes = table.decoded_config()
    wanted = range(len(table.paths)) if rows is None else rows
    missing = [r for r in wanted if r not in done]
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
        _save(index_file(root), table)


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


# -- lean runs: what --where/--sort read, without building 100,000 RunInfos -----------------------


class _Column:
    """One row's view of a namespace (``final``/``best``/``param``) as the mapping RunInfo has."""

    __slots__ = ("_namespace", "_row", "_table")

    def __init__(self, table: _Table, namespace: str, row: int):
        self._table, self._namespace, self._row = table, namespace, row

    def _values(self, key: str) -> dict[int, Any] | None:
        return self._table.column(f"{self._namespace}.{key}")

    def __contains__(self, key: object) -> bool:
        values = self._values(str(key))
        return values is not None and self._row in values

    def __getitem__(self, key: str) -> Any:
        values = self._values(key)
        if values is None or self._row not in values:
            raise KeyError(key)
        return values[self._row]

    def get(self, key: str, default: Any = None) -> Any:
        values = self._values(key)
        return values.get(self._row, default) if values is not None else default

    def items(self) -> Iterator[tuple[str, Any]]:
        for key in self._table.keys(self._namespace):
            values = self._values(key)
            if values is not None and self._row in values:
                yield key, values[self._row]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.items())


class LeanRun:
    """The fields of a :class:`RunInfo` that selecting reads, served from the index's columns
    (each looked up when read: building 100,000 of these costs ~0.1 s)."""

    __slots__ = ("root", "row", "table")

    def __init__(self, table: _Table, root: Path, row: int):
        self.table, self.root, self.row = table, root, row

    def _get(self, name: str) -> Any:
        return self.table.column(name)[self.row]

    path = property(lambda self: self.root / self.table.paths[self.row])
    final_metrics = property(lambda self: _Column(self.table, "final", self.row))
    best_metrics = property(lambda self: _Column(self.table, "best", self.row))
    params = property(lambda self: _Column(self.table, "param", self.row))
    id = property(lambda self: self._get("id"))
    name = property(lambda self: self._get("name"))
    status = property(lambda self: self._get("status"))
    kind = property(lambda self: self._get("kind"))
    device = property(lambda self: self._get("device"))
    started_at = property(lambda self: self._get("started_at"))
    ended_at = property(lambda self: self._get("ended_at"))
    duration_s = property(lambda self: self._get("duration_s"))
    sort_key = property(lambda self: self._get("sort_key"))
    refused = property(lambda self: self.table.column(REFUSED).get(self.row, []))

    @property
    def sweep(self) -> dict[str, Any] | None:
        sweep_id = self._get("sweep_id")
        return {"id": sweep_id} if sweep_id is not None else None

    @property
    def labels(self) -> Labels:
        return Labels(tags=tuple(self._get("tags") or ()), notes=self._get("notes"))

    def config_lookup(self, dotted: str) -> tuple[bool, Any] | None:
        """``(found, value)`` of a config key from the index (indexing every config the first
        time one is asked for), or None for a key naming a mapping: read that from disk."""
        index_configs(self.table, self.root)
        _, nodes = self.table.decoded_config()
        if dotted in nodes:
            return None
        column = self.table.column(f"config.{dotted}")
        if column is None or self.row not in column:
            return False, None
        return True, column[self.row]
