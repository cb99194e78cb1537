"""Read what a W&B run logged from its transaction log, with no server and while it runs.

Every wandb run (offline or online) writes ``$WANDB_DIR/wandb/<kind>-<time>-<id>/run-<id>.wandb``:
a LevelDB-style log of protobuf ``Record`` messages (``wandb.proto.wandb_internal_pb2``).
wandb 0.31 no longer ships a Python reader (``wandb.sdk.internal.datastore`` is gone; the writer is
in wandb-core, Go), so this module reads the format itself:

- file header: 7 bytes, ``b":W&B"`` + magic 0xBEE1 (uint16 LE) + version 0;
- 32 KiB blocks (the file header counts towards the first block); each chunk has a 7-byte header
  ``crc32 (uint32 LE) | length (uint16 LE) | type (uint8)``, the CRC covering the type byte and the
  data; type 1 = a whole record, 2/3/4 = first/middle/last piece of a record split across blocks;
  a block tail shorter than a header is zero padding.

``history`` records carry what ``wandb.log`` logged (items with ``key`` or ``nested_key`` and
``value_json``); ``summary`` records carry the run summary: wandb-core writes one after every
``log`` (auto-summary: the last value) and one per explicit ``run.summary[...] = v``.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.sweeps.spec.problems import is_number

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32768
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class TransactionLogError(Exception):
    """The file is not a W&B transaction log, or it is corrupt."""


class TransactionLogReader:
    """Incremental reader: each ``read_new()`` returns the records completed since the last call.

    A record the writer has not finished flushing is left for the next call, so this is safe to
    poll while the run is still writing.
    """

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0  # file offset of the next unread chunk
        self._pieces: list[bytes] = []  # FIRST/MIDDLE pieces of a record split across blocks

    def read_new(self) -> list[Any]:
        from wandb.proto import wandb_internal_pb2

        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        records = []
        for payload in self._chunks(data):
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
            record.ParseFromString(payload)
            records.append(record)
        return records

    def _chunks(self, data: bytes):
        """Yield whole record payloads from ``data`` (file bytes from ``self._offset``)."""
        start = self._offset
        i = 0
        if start == 0:
            if len(data) < len(FILE_HEADER):
                return
            if data[: len(FILE_HEADER)] != FILE_HEADER:
                raise TransactionLogError(f"{self.path}: not a W&B transaction log")
            i = len(FILE_HEADER)
            self._offset = start + i
        while True:
            left_in_block = BLOCK_SIZE - (start + i) % BLOCK_SIZE
            if left_in_block < CHUNK_HEADER.size:  # zero padding up to the next block
                if len(data) - i < left_in_block:
                    return
                i += left_in_block
                self._offset = start + i
                continue
            if len(data) - i < CHUNK_HEADER.size:
                return
            crc, length, kind = CHUNK_HEADER.unpack_from(data, i)
            end = i + CHUNK_HEADER.size + length
            if end > len(data):
                return  # the writer has not flushed this chunk completely yet
            piece = data[i + CHUNK_HEADER.size : end]
            if zlib.crc32(piece, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
                raise TransactionLogError(f"{self.path}: bad checksum at offset {start + i}")
            i = end
            self._offset = start + i
            if kind == FULL:
                yield piece
            elif kind == FIRST:
                self._pieces = [piece]
            elif kind == MIDDLE:
                self._pieces.append(piece)
            elif kind == LAST:
                self._pieces.append(piece)
                yield b"".join(self._pieces)
                self._pieces = []
            else:
                raise TransactionLogError(f"{self.path}: unknown chunk type {kind}")


def find_run_log(
    wandb_dir: Path, run_id: str, ignore: set[Path] | frozenset = frozenset()
) -> Path | None:
    """The newest ``run-<id>.wandb`` of ``run_id`` under ``wandb_dir/wandb``, not in ``ignore``."""
    candidates = [p for p in run_logs(wandb_dir, run_id) if p not in ignore]
    return max(candidates, key=lambda p: p.parent.name, default=None)  # names start with a time


def run_logs(wandb_dir: Path, run_id: str) -> list[Path]:
    """Every ``run-<id>.wandb`` of ``run_id``: in ``*-<id>/``, or ``*-<id>-N/`` when wandb found
    that directory taken (a rerun within the same second)."""
    own = re.compile(rf"-{re.escape(run_id)}(-\d+)?$")
    return [
        p
        for p in (wandb_dir / "wandb").glob(f"*-{run_id}*/run-{run_id}.wandb")
        if own.search(p.parent.name)
    ]


@dataclass
class MetricTracker:
    """Follows one metric through history and summary records, W&B's way.

    ``history``: every numeric value logged with ``wandb.log``, in log order (hyperband bands
    index into it). ``final``: the run summary's value — the last logged value, unless the
    program set ``run.summary[metric]`` itself — falling back to the last logged value when the
    summary holds something else (e.g. ``define_metric(summary="min")`` dicts).
    """

    metric: str
    history: list[float] = field(default_factory=list)
    logged_keys: set[str] = field(default_factory=set)
    # every wandb.log call's numbers ({"step": _step, key: value}): the trial's metrics.jsonl
    rows: list[dict[str, float]] = field(default_factory=list)
    summary_value: Any = None
    summary_set: bool = False
    exit_code: int | None = None

    def feed(self, record: Any) -> list[float]:
        """Update from one record; returns the metric values it logged (usually 0 or 1)."""
        kind = record.WhichOneof("record_type")
        if kind == "history":
            new = []
            row: dict[str, float] = {}
            for key, value in _flat_items(record.history.item):
                if key == "_step" and is_number(value):
                    row["step"] = float(value)
                if key.startswith("_"):
                    continue  # _step, _runtime, _timestamp: wandb's own bookkeeping
                self.logged_keys.add(key)
                if is_number(value):
                    row[key] = float(value)
                if key == self.metric and is_number(value):
                    new.append(float(value))
            self.history += new
            if len(row) > ("step" in row):
                self.rows.append(row)
            return new
        if kind == "summary":
            for key, value in _flat_items(record.summary.update):
                if key == self.metric:
                    self.summary_value, self.summary_set = value, True
            for item in record.summary.remove:
                if _item_key(item) == self.metric:
                    self.summary_value, self.summary_set = None, False
        elif kind == "exit":
            self.exit_code = record.exit.exit_code
        return []

    @property
    def final(self) -> float | None:
        if self.summary_set and is_number(self.summary_value):
            return float(self.summary_value)
        return self.history[-1] if self.history else None

    def missing_message(self) -> str:
        """Why there is no final value (for a failed trial)."""
        if self.summary_set:
            return (
                f"metric {self.metric!r} in the run summary is not a number: "
                f"{_short(self.summary_value)}"
            )
        keys = sorted(self.logged_keys)
        logged = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "") if keys else "nothing"
        return (
            f"the program never logged metric {self.metric!r} with wandb.log (it logged: {logged})"
        )


def _item_key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def _flat_items(items: Any):
    """(dotted key, value) pairs; a logged {"val": {"loss": 1}} gives "val.loss", as in W&B."""
    for item in items:
        try:
            value = json.loads(item.value_json)
        except ValueError:
            continue
        yield from _flatten(_item_key(item), value)


def _flatten(key: str, value: Any):
    yield key, value
    if isinstance(value, dict) and "_type" not in value:  # _type: media, histograms, tables
        for sub, sub_value in value.items():
            yield from _flatten(f"{key}.{sub}", sub_value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_metric(path: Path, metric: str) -> MetricTracker:
    """Everything run log ``path`` says about ``metric`` (one-shot convenience)."""
    tracker = MetricTracker(metric)
    for record in TransactionLogReader(path).read_new():
        tracker.feed(record)
    return tracker


__all__ = [
    "MetricTracker",
    "TransactionLogError",
    "TransactionLogReader",
    "find_run_log",
    "is_number",
    "read_metric",
]


class RunLogWatcher:
    """Finds a program's run log once it appears and feeds new records to a MetricTracker."""

    def __init__(
        self,
        wandb_dir: Path,
        run_id: str,
        metric: str,
        ignore: dict[Path, tuple[int, int] | None],
        on_metric: Callable[[int, float], bool] | None,
    ):
        self.wandb_dir, self.run_id, self.ignore = wandb_dir, run_id, ignore
        self.on_metric = on_metric
        self.tracker = MetricTracker(metric)
        self.reader: TransactionLogReader | None = None
        self.run_dir: Path | None = None
        self.error: str | None = None

    def poll(self, child_running: bool) -> bool:
        """Read what is new; True if ``on_metric`` asked to stop while the child runs."""
        if self.error:
            return False
        if self.reader is None:
            stale = {p for p, seen in self.ignore.items() if file_identity(p) == seen}
            log = find_run_log(self.wandb_dir, self.run_id, stale)
            if log is None:
                return False
            self.reader, self.run_dir = TransactionLogReader(log), log.parent
        try:
            records = self.reader.read_new()
        except (OSError, TransactionLogError) as e:
            self.error = f"could not read the wandb run log: {e}"
            return False
        stop = False
        for record in records:
            for value in self.tracker.feed(record):
                index = len(self.tracker.history) - 1
                # keep reporting after a stop request: every value is reported exactly once
                if self.on_metric is not None and self.on_metric(index, value) and child_running:
                    stop = True
        return stop


def file_identity(path: Path) -> tuple[int, int] | None:
    """(inode, modification time): a file rewritten in place is another file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)
