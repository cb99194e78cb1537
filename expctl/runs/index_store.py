r"""The runs index's file: its layout, and loading and saving it whole (see
:mod:`expctl.runs.index` for what it holds and when it is trusted).

Layout: ``MAGIC``, the format version and a CRC-32 of the body (``<II``), then the body: one
``marshal``\ led dict whose columns are themselves ``marshal`` bytes, decoded only when a query
names them. ``marshal`` reads 100,000 floats in ~5 ms (JSON ~40 ms, pickle of the same rows
~3x slower); it is safe here because the file is the user's own cache, never a shared one.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import struct
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 5
MAGIC = b"EXPCTL-RUNS-INDEX"


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
class Table:
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


def load_index(path: Path, root: str) -> Table | None:
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
        table = Table(
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


def save_index(path: Path, table: Table) -> None:
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
