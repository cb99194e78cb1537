"""Where sweeps live: Optuna storages addressed by URL.

Default (embedded, no server): the Optuna **journal file** ``.expctl/sweeps.journal`` in the
current project directory. Why the journal and not SQLite (measured with Optuna 5.0, see
docs/notes): the journal resolves concurrent claims by log order — popping a queued grid point is
atomic across processes, also on NFS (symlink lock) — and ran 3–10× more trials/s than SQLite,
which has no ``SELECT … FOR UPDATE`` and double-popped queued trials under concurrent agents.

Accepted by ``--storage`` / ``$EXPCTL_STORAGE``:

* ``journal:///abs/path.journal`` or any path (``runs/x.journal``, ``/nfs/sweeps.log``):
  a journal file;
* ``sqlite:///path.db`` — SQLite (single machine; writers queue on an ``flock`` beside the
  database, and a claim or a finish is one conditional statement, which makes claims
  exactly-once there too; WAL mode on a local filesystem: ``storage.sqlite_writes``);
* ``postgresql://…``, ``mysql://…`` — Optuna's RDB storage for many nodes (row locks);
* ``redis://…`` — Optuna's journal on Redis (needs the ``redis`` package).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import RuntimeFailure, UsageError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

DEFAULT_STORAGE = Path(".expctl") / "sweeps.journal"
ENV_VAR = "EXPCTL_STORAGE"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


@dataclass
class StorageHandle:
    """An opened storage plus what expctl needs to make state changes atomic on it."""

    url: str
    kind: str  # journal | sqlite | rdb | redis
    storage: BaseStorage
    lock_path: Path | None = None
    _lock_fd: int | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def transition_lock(self) -> Iterator[None]:
        """Serialise trial state changes where the storage itself cannot: SQLite without
        ``RETURNING`` (< 3.35) or with SQLAlchemy 1.4, where Optuna's ORM reads a trial's state
        and writes the new one in two steps.

        The journal decides races by log order, PostgreSQL/MySQL lock the trial row (``SELECT
        … FOR UPDATE``), and elsewhere on SQLite every state change is one conditional
        statement (``storage.rdb_writes``: the pop, and ``finish`` for every final state), so
        for them this is a no-op: with 8 agents on 2 cores its holder was often preempted
        while the others queued (8 agents' no-op trials 1.10-1.17x faster without it).
        """
        from expctl.sweeps.storage import rdb_writes

        if self.lock_path is None or rdb_writes.statements(self.storage) is not None:
            yield
            return
        import fcntl

        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @property
    def file(self) -> Path | None:
        """The file a journal or SQLite storage lives in (None for servers and :memory:)."""
        if self.kind == "journal":
            return Path(self.url[len("journal://") :])
        if self.kind == "sqlite":
            path = self.url[len("sqlite:///") :]
            return Path(path) if path and path != ":memory:" else None
        return None

    def check_space(self) -> None:
        """Exit 1 (``no space left on device DEVICE writing FILE``) when the storage's disk has
        no byte free: a claim could still slip into the file's last block while the trial's
        result never could, leaving it RUNNING. Said before a sweep is created or claimed."""
        path = self.file
        if path is None:
            return
        try:
            fs = os.statvfs(path if path.exists() else path.parent)
        except OSError:
            return  # nothing to say ahead; the write itself will
        free = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
        if free == 0:
            raise storage_write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        remove = getattr(self.storage, "remove_session", None)
        if callable(remove):
            remove()
        engine = getattr(self.storage, "engine", None)
        if engine is not None:
            engine.dispose()


def resolve_url(explicit: str | None = None) -> str:
    """``--storage`` > ``$EXPCTL_STORAGE`` > the project-local journal file (absolute URL)."""
    url = explicit or os.environ.get(ENV_VAR) or ""
    if not url:
        return f"journal://{DEFAULT_STORAGE.resolve()}"
    return normalise_url(url)


def normalise_url(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("", "file"):
        path = Path(url.split("://", 1)[1] if scheme else url).expanduser().resolve()
        if path.suffix in (".db", ".sqlite", ".sqlite3"):
            return f"sqlite:///{path}"
        return f"journal://{path}"
    if scheme == "journal":
        return f"journal://{Path(url[len('journal://') :]).expanduser().resolve()}"
    if scheme == "sqlite":
        rest = url[len("sqlite:///") :]
        if rest and not rest.startswith("/") and rest != ":memory:":
            return f"sqlite:///{Path(rest).expanduser().resolve()}"
        return url
    if scheme in ("postgresql", "postgres", "mysql", "redis", "rediss") or "+" in scheme:
        return url
    raise UsageError(
        f"unsupported storage URL {url!r}",
        hint="use a journal file path (e.g. .expctl/sweeps.journal), sqlite:///sweeps.db, "
        "postgresql://user@host/db, mysql://... or redis://host:6379",
    )


def is_default(url: str) -> bool:
    return url == f"journal://{DEFAULT_STORAGE.resolve()}"


def agent_command(sweep_id: str, url: str) -> list[str]:
    """The command that starts an agent on this sweep, to paste: ``--storage`` unless it is the
    default. A password in the URL is never echoed (it comes from ``$EXPCTL_STORAGE`` then)."""
    command = ["expctl", "sweep", "agent", sweep_id]
    shown = describe(url)
    if not is_default(url) and shown == url and ":***@" not in url:
        command += ["--storage", url]
    return command


def describe(url: str) -> str:
    """The URL with any password replaced (for messages)."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def open_storage(url: str | None = None, *, create: bool = True) -> StorageHandle:
    """Open the storage at ``url`` (resolved as :func:`resolve_url` does)."""
    url = resolve_url(url)
    quiet_optuna()
    scheme = url.split("://", 1)[0].lower()
    if scheme == "journal":
        return _open_journal(Path(url[len("journal://") :]), url, create)
    if scheme in ("redis", "rediss"):
        return _open_redis(url)
    return _open_rdb(url, scheme, create)


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO and warns about experimental APIs; stderr is for people."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # GPSampler notes once per process that without `greenlet` it optimises its acquisition
    # sequentially: ~50-70 ms per suggestion here, nothing next to a trial, so not worth a
    # dependency or a warning on every agent's stderr.
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _DropGreenletNotice) for f in handler.filters):
            handler.addFilter(_DropGreenletNotice())


class _DropGreenletNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "'greenlet' package is unavailable" not in record.getMessage()


def _open_journal(path: Path, url: str, create: bool) -> StorageHandle:
    from expctl.sweeps.storage.journal import CheckedJournalFileBackend, CheckedJournalStorage
    from expctl.sweeps.storage.journal_lock import AgentJournalLock

    if path.exists():
        refuse_non_journal(path)
    elif not create:
        raise _no_storage(path)
    else:
        _make_parent(path)
    try:
        # kernel-queued between agents, and still Optuna's symlink lock (atomic on every NFS
        # version, unlike flock on `nolock` mounts) towards Optuna's own tools
        lock = AgentJournalLock(str(path))
        storage = CheckedJournalStorage(CheckedJournalFileBackend(str(path), lock_obj=lock))
    except (OSError, ValueError) as e:
        raise RuntimeFailure(
            f"cannot open journal storage {path}: {e}", hint="check the path and its permissions"
        ) from e
    return StorageHandle(url=url, kind="journal", storage=storage)


def refuse_non_journal(path: Path) -> None:
    """:class:`UsageError` unless the existing ``path`` is a sweep journal
    (:func:`expctl.sweeps.storage.journal.not_a_journal`): expctl takes over only an empty file."""
    from expctl.sweeps.storage.journal import not_a_journal

    why = not_a_journal(path)
    if why is not None:
        raise UsageError(
            f"{path} is not a sweep journal: {why}",
            hint="pass the path of a sweep journal, or of a file that does not exist yet "
            "(--storage / EXPCTL_STORAGE); expctl writes only to an empty file or a journal",
        )


def _no_storage(path: Path) -> UsageError:
    return UsageError(
        f"no sweep storage at {path}",
        hint="create a sweep first (expctl sweep create SWEEP.yaml) or pass "
        "--storage / EXPCTL_STORAGE",
    )


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_write_error(path.parent, e) from None


def storage_write_error(path: str | Path, error: OSError) -> RuntimeFailure:
    """:func:`expctl.fsutil.write_error` (``no space left on device DEVICE writing FILE``, exit 1)
    for a sweep storage's file, with a hint about the storage rather than the runs dir."""
    from expctl.fsutil import WriteError, write_error

    failure = write_error(path, error)
    if not isinstance(failure, WriteError) or error.errno not in _DISK_ERRNOS:
        return failure
    return WriteError(
        failure.path,
        error,
        failure.message,
        "free space there, or keep the sweep storage on another disk (--storage / EXPCTL_STORAGE)",
    )


_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _open_redis(url: str) -> StorageHandle:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalRedisBackend

    try:
        backend = JournalRedisBackend(url)
        storage = JournalStorage(backend)
    except ImportError as e:
        raise UsageError("redis storage needs the `redis` package", hint="pip install redis") from e
    except Exception as e:
        raise RuntimeFailure(
            f"cannot connect to {describe(url)}: {e}",
            hint="check that the Redis server is reachable",
        ) from e
    return StorageHandle(url=url, kind="redis", storage=storage)


def _with_driver(url: str, scheme: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; use psycopg2 when only it is installed
    (``pip install expctl[postgres]`` brings psycopg2-binary)."""
    import importlib.util

    found = importlib.util.find_spec
    if scheme in ("postgresql", "postgres") and not found("psycopg") and found("psycopg2"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _open_rdb(url: str, scheme: str, create: bool) -> StorageHandle:
    from optuna.storages import RDBStorage

    lock_path = None
    kwargs: dict[str, Any] = {}
    opened_url = url
    if scheme == "sqlite":
        from expctl.sweeps.storage import sqlite_writes

        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            if not Path(path).exists():
                if not create:  # a read (list, status, best, report) never creates storage
                    raise _no_storage(Path(path))
                _make_parent(Path(path))
            read_only = None if create else sqlite_writes.read_only_url(path)
            opened_url = read_only or url
            lock_path = None if read_only else Path(path + ".lock")
        # generous busy timeout: agents write heartbeats while others claim
        connect_args: dict[str, Any] = {"timeout": 30}
        if lock_path is not None:
            connect_args["factory"] = sqlite_writes.QueuedWritesConnection
        kwargs["engine_kwargs"] = {"connect_args": connect_args}
    else:
        # survive database restarts / idle-connection reaping on long trials
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        storage = RDBStorage(
            _with_driver(opened_url, scheme), skip_compatibility_check=False, **kwargs
        )
    except ImportError as e:
        raise UsageError(
            f"{scheme} storage needs a database driver: {e}",
            hint="pip install psycopg2-binary (PostgreSQL) or PyMySQL (MySQL)",
        ) from e
    except Exception as e:
        raise RuntimeFailure(
            f"cannot open storage {describe(url)}: {str(e).splitlines()[0]}",
            hint="check the URL, that the server is reachable and the database exists",
        ) from e
    _index_trial_states(storage)
    return StorageHandle(
        url=url,
        kind="sqlite" if scheme == "sqlite" else "rdb",
        storage=storage,
        lock_path=lock_path,
    )


# Claims ask for a study's WAITING and RUNNING trials (trial_index): without an index on the
# state, each such query scanned the whole study (at 10⁵ trials on PostgreSQL a claim took
# 37-114 ms; with it 18 ms, most of it Optuna's own count of past trials).
_STATE_INDEX = "ix_expctl_trials_study_state"


def _index_trial_states(storage: Any) -> None:
    """Add expctl's index on Optuna's ``trials`` table (study, state, id) once; a database
    where this user may not create one is used without it."""
    import sqlalchemy

    engine = storage.engine
    with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
        indexes = sqlalchemy.inspect(engine).get_indexes("trials")
        if any(index["name"] == _STATE_INDEX for index in indexes):
            return
        with engine.begin() as db:
            columns = "trials (study_id, state, trial_id)"
            db.execute(sqlalchemy.text(f"CREATE INDEX IF NOT EXISTS {_STATE_INDEX} ON {columns}"))
