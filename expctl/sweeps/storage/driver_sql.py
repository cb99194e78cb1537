"""SQLAlchemy Core statements compiled once for a database, then run on the DBAPI cursor of an
Optuna session's transaction.

Between two trials an agent runs five statements under SQLite's one write lock, which every
agent of the machine queues for. Through SQLAlchemy's execution layer (a cache-key lookup, an
execution context and a result object per statement, even for a compiled Core statement) they
held the lock 0.19 ms of CPU, 0.11 ms run here (one agent, ``synchronous=OFF``); with 8 agents
on 2 cores the hold is stretched by preemption, so each of its microseconds counts several
times. SQLAlchemy still writes the SQL and converts the values (its compiler and its types'
bind processors: an ``Enum`` stored by name, a ``DateTime`` as SQLite's text), so the
statements stay those of Optuna's models on every dialect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple


class Prepared(NamedTuple):
    """One statement as its database driver takes it."""

    sql: str
    order: tuple[str, ...] | None  # the parameters' names for a positional paramstyle
    constants: dict[str, Any]  # values the statement carries itself (``state = 'WAITING'``)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]  # a type's bind conversions

    def parameters(self, given: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = {**self.constants, **given}
        for name, process in self.processors:
            values[name] = process(values[name])
        return values if self.order is None else [values[name] for name in self.order]


def prepare(statement: Any, dialect: Any, keys: Sequence[str] | None = None) -> Prepared:
    """``statement`` compiled for ``dialect``; ``keys``: the columns an ``INSERT`` is given
    (all of the table's otherwise). No expanding ``IN (…)`` list: SQLAlchemy writes its SQL at
    each execution."""
    compiled = statement.compile(dialect=dialect, column_keys=keys)
    constants, processors = {}, []
    for bind, name in compiled.bind_names.items():
        if not bind.required:
            constants[name] = bind.effective_value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((name, process))
    order = tuple(compiled.positiontup) if compiled.positional else None
    return Prepared(compiled.string, order, constants, tuple(processors))


@contextlib.contextmanager
def cursor(session: Any) -> Iterator[Any]:
    """A DBAPI cursor of an ORM ``session``'s transaction, closed after the block (the
    session commits or rolls back the transaction, as it would its own statements)."""
    db = session.connection().connection.cursor()
    try:
        yield db
    finally:
        db.close()


def run(cursor: Any, prepared: Prepared, **values: Any) -> list[tuple[Any, ...]]:
    """The statement's rows, every one fetched: a statement left part-read stays active in
    SQLite (an ``UPDATE … RETURNING`` too) and its transaction with it."""
    cursor.execute(prepared.sql, prepared.parameters(values))
    return cursor.fetchall() if cursor.description is not None else []
