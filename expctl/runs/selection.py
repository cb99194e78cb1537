"""`runs list`'s selection: which runs a root holds, filtered, sorted and cut, through the index.

Selecting reads the runs index (:mod:`expctl.runs.index`) for every run whose record has not
changed, and the run dir itself for the rest; the runs it returns are read again from their run
dirs, so what is shown is the record as it is now. ``EXPCTL_RUNS_INDEX=0`` reads every run dir
(the path the index must agree with, and the one tests compare it against).
"""

from __future__ import annotations

import fnmatch
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.runs.index import REFUSED, config_column, refresh
from expctl.runs.index_view import LeanRun
from expctl.runs.query import (
    FIELDS,
    PROVENANCE_PREFIXES,
    Condition,
    RunView,
    _sort_key,
    check_statuses,
)
from expctl.runs.records import load_run


class IndexedView(RunView):
    """A run as ``--where``/``--sort`` see it, its values served by the index."""

    run: LeanRun  # type: ignore[assignment]

    def config_value(self, dotted: str) -> tuple[bool, Any]:
        found = self.run.config_lookup(dotted)
        return found if found is not None else super().config_value(dotted)


@dataclass
class Selection:
    views: list[RunView]  # the runs chosen, in order, each read from its run dir just now
    unreadable: list[str] = field(default_factory=list)  # "<dir>: <why>", skipped
    refused: list[tuple[Path, list[str]]] = field(default_factory=list)  # left out, and why


def select_runs(
    root: Path,
    *,
    name: str | None = None,
    statuses: Sequence[str] = (),
    conditions: Sequence[Condition] = (),
    sort: str | None = None,
    limit: int | None = None,
) -> Selection:
    """The runs under ``root`` as ``runs list`` shows them (see :mod:`expctl.runs.query` for
    what each argument means, and :func:`~expctl.runs.query.apply_where`/``sort_views``, whose
    results these are). Runs with a record file refused as unsafe are left out and named in
    ``refused``."""
    root = Path(root)
    table, found, fresh = refresh(root)
    selection = Selection(views=[], unreadable=found.unreadable)
    refused_notes = table.column(REFUSED)
    # a run is its row number while the index answers for it, a RunView once read from disk
    items: list[Item] = []
    for row in range(len(found.paths)):
        run = fresh.get(row)
        notes = run.refused if run is not None else refused_notes.get(row)
        if notes:
            selection.refused.append(((root / found.paths[row]).absolute(), list(notes)))
        else:
            items.append(RunView(run) if run is not None else row)
    values = _Values(table, root)
    if name is not None or statuses:
        items = _filtered(items, values, name, statuses)
    check_keys([c.key for c in conditions], values, items, "--where")
    for condition in conditions:
        items = [i for i in items if condition.holds(*values.lookup(i, condition.key))]
    items = _sorted(items, sort, values, limit)
    selection.views = [
        RunView(load_run(root / table.paths[i])) if isinstance(i, int) else i for i in items
    ]
    return selection


Item = int | RunView


def _filtered(
    items: list[Item], values: _Values, name: str | None, statuses: Sequence[str]
) -> list[Item]:
    """``filter_runs`` (``--name`` glob, ``--status``) over rows and views alike."""
    wanted = set(check_statuses(statuses))
    names, status_column = values.table.column("name"), values.table.column("status")

    def keep(item: Item) -> bool:
        run_name, status = (
            (names[item], status_column[item])
            if isinstance(item, int)
            else (item.run.name, item.run.status)
        )
        return (name is None or fnmatch.fnmatchcase(run_name, name)) and (
            not wanted or status in wanted
        )

    return [i for i in items if keep(i)]


class _Values:
    """``view.lookup(key)`` for rows and views at once: a key the index can answer is resolved
    into one ``{row: value}`` column first (one dict probe a row afterwards); anything else
    (provenance, a config mapping) is looked up the ordinary way, through an
    :class:`IndexedView` of the row."""

    def __init__(self, table: Any, root: Path):
        self.table, self.root = table, root
        self._columns: dict[str, dict[int, Any] | None] = {}

    def lookup(self, item: Item, key: str) -> tuple[bool, Any]:
        if not isinstance(item, int):
            return item.lookup(key)
        column = self.column(key)
        if column is None:
            return self.view(item).lookup(key)
        return (True, column[item]) if item in column else (False, None)

    def view(self, item: Item) -> RunView:
        if not isinstance(item, int):
            return item
        return IndexedView(LeanRun(self.table, self.root, item))  # type: ignore[arg-type]

    def column(self, key: str) -> dict[int, Any] | None:
        if key not in self._columns:
            self._columns[key] = resolve_column(self.table, key)
        return self._columns[key]

    def start_order(self, item: Item) -> Any:
        if isinstance(item, int):
            return self.table.column("sort_key")[item]
        return item.run.sort_key


def resolve_column(table: Any, key: str) -> dict[int, Any] | None:
    """``{row: value}`` of ``key`` over the indexed rows, resolved as ``RunView.lookup`` does
    (its order: explicit prefixes, run fields, final metrics, parameters, a trainer's config),
    or None when only the ordinary lookup can answer (provenance, a config mapping)."""
    if key.startswith(PROVENANCE_PREFIXES):
        return None
    for namespace in ("final", "best", "param"):
        if key.startswith(namespace + "."):
            return table.column(f"{namespace}.{key[len(namespace) + 1 :]}") or {}
    if key.startswith("config."):
        return config_column(table, Path(table.root), key[len("config.") :])
    if key in FIELDS:  # stored under their own names
        values = table.column(key)
        if key == "tag":
            return {row: tuple(tags or ()) for row, tags in enumerate(values)}
        return dict(enumerate(values))
    final = table.column(f"final.{key}") or {}
    params = table.column(f"param.{key}") or {}
    kinds = table.column("kind")
    trainers_left = [
        row
        for row, kind in enumerate(kinds)
        if kind == "trainer" and row not in final and row not in params
    ]
    resolved: dict[int, Any] = {}
    if trainers_left:
        config = config_column(table, Path(table.root), key)
        if config is None:
            return None
        resolved.update((row, config[row]) for row in trainers_left if row in config)
    resolved.update(params)
    resolved.update(final)
    return resolved


def _sorted(items: list[Item], sort: str | None, values: _Values, limit: int | None) -> list[Item]:
    """``sort_views(views, sort)[:limit]`` (newest first; or by KEY, ties in start order, runs
    without a value last), choosing the first ``limit`` without sorting them all."""
    if not sort:
        if limit is None:
            return sorted(items, key=values.start_order, reverse=True)
        return heapq.nlargest(limit, items, key=values.start_order)
    descending = sort.startswith("-")
    key = sort.lstrip("-+")
    check_keys([key], values, items, "--sort")
    have, missing = _sort_values(items, key, values)
    if limit is not None and limit < len(have):
        # the first `limit` by value, then every run tied with the last of them: only those
        # need the start order that breaks ties
        pick = heapq.nlargest if descending else heapq.nsmallest
        edge = pick(limit, have, key=lambda pair: pair[0])[-1][0]
        have = [p for p in have if (p[0] >= edge if descending else p[0] <= edge)]
    if len({value for value, _ in have}) < len(have):  # ties: start order first (stable sorts)
        have.sort(key=lambda pair: values.start_order(pair[1]))
    have.sort(key=lambda pair: pair[0], reverse=descending)
    chosen = [item for _, item in have]
    if limit is None or len(chosen) < limit:
        chosen += sorted(missing, key=values.start_order)
    return chosen[:limit] if limit is not None else chosen


def _sort_values(
    items: list[Item], key: str, values: _Values
) -> tuple[list[tuple[Any, Item]], list[Item]]:
    """``(sort value, item)`` of the items with a value for ``key``, and those without one
    (absent, null or NaN), as ``sort_views`` splits them."""
    have: list[tuple[Any, Item]] = []
    missing: list[Item] = []
    column = values.column(key)
    for item in items:
        if column is not None and isinstance(item, int):
            found = item in column
            value = column[item] if found else None
        else:
            found, value = values.lookup(item, key)
        if type(value) is float and value == value:  # the common case first: a finite float
            have.append(((0, value), item))
        elif not found or value is None or (isinstance(value, float) and math.isnan(value)):
            missing.append(item)
        else:
            have.append((_sort_key(value), item))
    return have, missing


def check_keys(keys: Sequence[str], values: _Values, items: list[Item], what: str) -> None:
    """:func:`expctl.runs.query.check_keys`, asking the columns first (its error, with the
    keys that exist, when no run has a key)."""
    from expctl.runs.query import check_keys as check_each

    for key in keys:
        if items and not any(values.lookup(i, key)[0] for i in items):
            check_each([key], [values.view(i) for i in items], what)
