"""``expctl sweep repair``: a damaged journal made usable again (see
:mod:`expctl.sweeps.storage.journal` for what damage is)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.errors import RuntimeFailure
from expctl.sweeps.storage.journal import RECORD_START, JournalDamaged, parse_record


@dataclass
class RepairReport:
    path: Path
    lines: int = 0
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    salvaged: list[int] = field(default_factory=list)  # lines whose valid record was kept
    torn_tail: bool = False
    backup: Path | None = None

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.salvaged or self.torn_tail)


def repair_journal(path: Path, *, dry_run: bool = False) -> RepairReport:
    """Drop damaged lines (keeping the valid record glued after a torn one), check that the
    result replays, keep ``JOURNAL.bak-STAMP``, and replace the journal atomically.

    Run it with no agent using the journal: agents remember byte offsets into it.
    """
    from optuna.storages.journal._storage import JournalStorageReplayResult

    from expctl.sweeps.storage import refuse_non_journal

    refuse_non_journal(path)  # an arbitrary file would lose every line: never "repair" it
    report = RepairReport(path)
    raw = path.read_bytes()
    *lines, last = raw.split(b"\n")
    report.torn_tail = bool(last)
    replay = JournalStorageReplayResult("repair-")
    kept: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        report.lines = number
        record, reason = _usable(line, path, number, replay)
        if record is None:
            salvaged = _salvage(line, path, number)
            if salvaged is not None and _usable(salvaged, path, number, replay)[0] is not None:
                kept.append(salvaged)
                report.salvaged.append(number)
            else:
                report.dropped.append((number, reason))
            continue
        kept.append(line)
    text = b"".join(line + b"\n" for line in kept)
    _check_replays(text, path)
    if dry_run or not report.changed:
        return report
    report.backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        shutil.copy2(path, report.backup)
        _keep_owner(path, report.backup)
        _replace_keeping_access(path, text)
    except OSError as e:
        from expctl.sweeps.storage import storage_write_error

        raise storage_write_error(path, e) from None
    return report


def _replace_keeping_access(path: Path, text: bytes) -> None:
    """Atomically replace ``path`` with ``text``, keeping its mode, owner, group and extended
    attributes (POSIX ACLs are ``system.posix_acl_access``): a group-shared journal must stay
    appendable by the other users' agents. Where the owner cannot be given back (not root, the
    file is someone else's), the file is rewritten in place instead — it keeps everything, and
    the backup is already on disk."""
    import tempfile

    from expctl.fsutil import fsync_dir

    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        shutil.copystat(path, tmp)  # mode, times and xattrs (ACLs included) where supported
        if not _keep_owner(path, tmp):
            tmp.unlink()
            _rewrite_in_place(path, text)
            return
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_owner(source: Path, target: Path) -> bool:
    """Give ``target`` the owner and group of ``source``; False where that is not allowed."""
    st = source.stat()
    try:
        os.chown(target, st.st_uid, st.st_gid)
    except PermissionError:
        return False
    os.chmod(target, st.st_mode & 0o7777)  # chown clears set-group-id bits
    return True


def _rewrite_in_place(path: Path, text: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(text)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _usable(line: bytes, path: Path, number: int, replay: Any) -> tuple[dict[str, Any] | None, str]:
    """The record on ``line`` if it parses and applies (to ``replay``), else why not."""
    try:
        record = parse_record(line, path, number)
    except JournalDamaged as damage:
        return None, damage.message.split("(", 1)[-1].rstrip(")")
    try:
        replay.apply_logs([record])
    except Exception as e:  # the record's fields do not fit (they are read before any change)
        replay.log_number_read -= 1
        return None, f"cannot apply record: {e!r}"
    return record, ""


def _salvage(line: bytes, path: Path, number: int) -> bytes | None:
    """A torn record with a complete one appended to it: keep the complete one."""
    start = line.rfind(RECORD_START)
    while start > 0:
        try:
            parse_record(line[start:], path, number)
            return line[start:]
        except JournalDamaged:
            start = line.rfind(RECORD_START, 0, start)
    return None


def _check_replays(text: bytes, path: Path) -> None:
    """Apply every record to a fresh in-memory replay; a journal that does not replay is not
    written (dropping a record other records depend on cannot be repaired automatically)."""
    from optuna.storages.journal._storage import JournalStorageReplayResult

    replay = JournalStorageReplayResult("repair-")
    logs = [json.loads(line) for line in text.splitlines() if line]
    try:
        replay.apply_logs(logs)
    except Exception as e:
        raise RuntimeFailure(
            f"{path}: the journal cannot be repaired automatically: without its damaged lines "
            f"record {replay.log_number_read} no longer applies ({e!r})",
            hint="restore the journal from a backup, or create the sweep again",
        ) from None
