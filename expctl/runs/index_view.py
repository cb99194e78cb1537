"""The index's rows as the run objects selecting reads (:class:`LeanRun`): the fields of a
:class:`~expctl.runs.records.RunInfo` that ``--where``/``--sort``/``--status`` look at, served
from the columns, so 100,000 runs are selected without building 100,000 RunInfos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expctl.runs.index import config_column
from expctl.runs.index_store import Table
from expctl.runs.labels import Labels


class _Column:
    """One row's view of a namespace (``final``/``best``/``param``) as the mapping RunInfo has."""

    __slots__ = ("_namespace", "_row", "_table")

    def __init__(self, table: Table, namespace: str, row: int):
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

    def __init__(self, table: Table, root: Path, row: int):
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
    started_at = property(lambda self: self._get("started"))
    ended_at = property(lambda self: self._get("ended"))
    duration_s = property(lambda self: self._get("duration"))
    sort_key = property(lambda self: self._get("sort_key"))

    @property
    def sweep(self) -> dict[str, Any] | None:
        sweep_id = self._get("sweep")
        return {"id": sweep_id} if sweep_id is not None else None

    @property
    def labels(self) -> Labels:
        return Labels(tags=tuple(self._get("tag") or ()), notes=self._get("notes"))

    def config_lookup(self, dotted: str) -> tuple[bool, Any] | None:
        """``(found, value)`` of a config key from the index, or None for a key naming a
        mapping: read that from disk."""
        column = config_column(self.table, self.root, dotted)
        if column is None:
            return None
        return (True, column[self.row]) if self.row in column else (False, None)
