"""A run's labels: its tags and its notes, as W&B has them (``wandb.init(tags=..., notes=...)``).

The one home of the labels file: its name, its format, its rules, how it is read and how it is
changed. It lives beside the run's record, never inside it::

    RUN_DIR/labels.json      {"tags": ["baseline", "lr-sweep"], "notes": "first try"}
    RUN_DIR/.labels.lock     flock'ed while labels.json is being changed

``summary.json`` belongs to the process that writes the run; labels belong to people, who may
change them at any time, even while the run is still running (W&B allows that too). Keeping them
in their own file means neither writer can overwrite the other's change. Every change is
read-modify-write under an ``flock`` on the lock file, and ``labels.json`` is replaced
atomically (:mod:`expctl.fsutil`), so several ``expctl runs tag`` at once lose nothing and a
reader sees the old labels or the new ones, never half a file.

Tags are a set (W&B's run tags): adding one twice keeps one, removing a missing one changes
nothing. Notes are one text (W&B's run notes): ``runs note`` replaces it (``--append`` adds a
line). Nothing here prints; bad input is a :class:`~expctl.errors.UsageError` (exit 2).

Cheap to import (standard library only): ``expctl run`` and the listing commands import it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.errors import RuntimeFailure, UsageError
from expctl.record.files import LABELS_FILE, LABELS_LOCK_FILE  # the run dir's names, in one home

# W&B refuses tags longer than 64 characters; more than a few hundred tags is a mistake (a loop)
MAX_TAG_CHARS = 64
MAX_TAGS = 256
MAX_NOTES_CHARS = 20_000
# what is read of labels.json: the largest valid file is ~40 KB; anything bigger is not ours
MAX_LABELS_BYTES = 1024 * 1024

TAG_HINT = (
    "a tag is 1 to 64 characters without spaces, commas or control characters, "
    "e.g. baseline, lr-sweep, v2.1"
)


@dataclass(frozen=True)
class Labels:
    """A run's tags (in the order they were first added, each once) and its notes."""

    tags: tuple[str, ...] = ()
    notes: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "notes": self.notes}


@dataclass(frozen=True)
class LabelChange:
    """What one change did: the labels now, and which requested tags changed nothing."""

    labels: Labels
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    already: tuple[str, ...] = ()  # asked to add, but the run had them
    missing: tuple[str, ...] = ()  # asked to remove, but the run did not have them
    changed: bool = False  # whether labels.json was written


_KEEP = object()  # update_labels(notes=...): leave the notes as they are


# -- rules ---------------------------------------------------------------------------------------


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a valid tag (None when it is)."""
    if not isinstance(tag, str) or not tag:
        return "is empty"
    if len(tag) > MAX_TAG_CHARS:
        return f"is longer than {MAX_TAG_CHARS} characters"
    for char in tag:
        if char.isspace():
            return "contains whitespace"
        if char == ",":
            return "contains a comma (WANDB_TAGS and CSV use commas to separate tags)"
        if _category(char).startswith("C"):  # Cc, Cf (bidi overrides), Cs, Co, Cn
            return f"contains the control character U+{ord(char):04X}"
    return None


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` in order, each once; a :class:`UsageError` naming every invalid one."""
    given = list(tags)
    bad = [f"{t!r} {why}" for t in given if (why := tag_problem(t))]
    if bad:
        n = len(bad)
        raise UsageError(f"invalid tag{'s' if n > 1 else ''}: {'; '.join(bad)}", hint=TAG_HINT)
    return tuple(dict.fromkeys(given))


def check_notes(notes: str) -> str:
    """``notes`` if they can be a run's notes (any text with lines and tabs, at most
    :data:`MAX_NOTES_CHARS`); a :class:`UsageError` otherwise."""
    if len(notes) > MAX_NOTES_CHARS:
        raise UsageError(
            f"notes are {len(notes):,} characters, more than {MAX_NOTES_CHARS:,}",
            hint="keep notes short; put long text in a file inside the run directory",
        )
    for char in notes:
        if char not in "\n\t" and _category(char) in ("Cc", "Cf"):
            raise UsageError(
                f"notes contain the control character U+{ord(char):04X}",
                hint="notes are plain text: lines and tabs are fine, terminal escapes are not",
            )
    return notes


def matches_tag(tags: Labels | Iterable[str], pattern: str) -> bool:
    """Whether one of the tags is ``pattern`` (a glob when it holds ``*``, ``?`` or ``[``):
    ``--where tag=baseline``, ``--where 'tag~lr-*'``."""
    names = tags.tags if isinstance(tags, Labels) else tuple(tags)
    if any(c in pattern for c in "*?["):
        return any(fnmatch.fnmatchcase(t, pattern) for t in names)
    return pattern in names


# -- reading -------------------------------------------------------------------------------------


def labels_path(run_dir: Path) -> Path:
    return Path(run_dir) / LABELS_FILE


def parse_labels(data: bytes) -> tuple[Labels, str | None]:
    """Labels from the bytes of ``labels.json`` and a note on what could not be read (then the
    labels hold what could be: tags that break the rules are dropped)."""
    try:
        raw = json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError) as e:
        what = "empty" if not data.strip() else f"not valid JSON ({type(e).__name__})"
        return Labels(), f"{LABELS_FILE} is {what}: damaged, its labels are not shown"
    if not isinstance(raw, dict):
        return Labels(), f"{LABELS_FILE} is not a JSON object: damaged, its labels are not shown"
    tags_node = raw.get("tags", [])
    notes_node = raw.get("notes")
    problems = []
    if not isinstance(tags_node, list):
        problems.append("tags is not a list")
        tags_node = []
    tags = [t for t in tags_node if isinstance(t, str) and tag_problem(t) is None]
    if len(tags) < len(tags_node):
        problems.append(f"{len(tags_node) - len(tags)} invalid tags dropped")
    if notes_node is not None and not isinstance(notes_node, str):
        problems.append("notes is not text")
        notes_node = None
    labels = Labels(tuple(dict.fromkeys(tags)), notes_node or None)
    note = f"{LABELS_FILE}: {', '.join(problems)}: damaged" if problems else None
    return labels, note


def load_labels(run_dir: Path) -> tuple[Labels, str | None]:
    """The run's labels and a note when its ``labels.json`` could not be (fully) read; no file
    means no labels. Read the way every record file is (:func:`read_record_bytes`): a FIFO, a
    device or an oversized file is refused, and the note is then a
    :class:`~expctl.record.safe_read.Refused`. Never raises."""
    from expctl.record.safe_read import RefusedFile, read_record_bytes

    path = labels_path(run_dir)
    try:
        data = read_record_bytes(path, MAX_LABELS_BYTES)
    except FileNotFoundError:
        return Labels(), None
    except RefusedFile as e:
        return Labels(), e.note
    except OSError as e:
        return Labels(), f"cannot read {LABELS_FILE}: {e.strerror or e}"
    return parse_labels(data)


def read_labels(run_dir: Path) -> Labels:
    """The run's labels (empty when it has none, or they cannot be read): what ``expctl run``
    gives W&B at init."""
    return load_labels(run_dir)[0]


# -- changing ------------------------------------------------------------------------------------


def add_tags(run_dir: Path, tags: Iterable[str]) -> LabelChange:
    """Tag the run (``expctl runs tag``); tags it has already are kept once."""
    return update_labels(run_dir, add=tags)


def remove_tags(run_dir: Path, tags: Iterable[str]) -> LabelChange:
    """Untag the run (``expctl runs untag``); a tag it does not have is reported in
    :attr:`LabelChange.missing`, not an error."""
    return update_labels(run_dir, remove=tags)


def set_notes(run_dir: Path, notes: str, *, append: bool = False) -> LabelChange:
    """Replace the run's notes (``expctl runs note``); ``append`` adds ``notes`` as a new line
    after the notes it has. Empty notes (without ``append``) clear them."""
    check_notes(notes)
    if not append:
        return update_labels(run_dir, notes=notes or None)
    return update_labels(run_dir, append_notes=notes)


def initial_labels(run_dir: Path, tags: Iterable[str] = (), notes: str | None = None) -> Labels:
    """Write the labels ``expctl run --tag ... --notes ...`` was given (added to those the run
    has already, for ``--resume``); nothing is written when there are none."""
    tags = check_tags(tags)
    if notes is not None:
        check_notes(notes)
    if not tags and notes is None:
        return read_labels(run_dir)
    return update_labels(run_dir, add=tags, notes=notes if notes is not None else _KEEP).labels


def update_labels(
    run_dir: Path,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    notes: Any = _KEEP,
    append_notes: str | None = None,
) -> LabelChange:
    """Change the run's labels under its labels lock and replace ``labels.json`` atomically
    (only when something changed). A ``labels.json`` that cannot be read is not replaced: the
    change is refused (exit 1) rather than losing what the file held."""
    add = check_tags(add)
    remove = check_tags(remove)
    if notes is not _KEEP and notes is not None:
        check_notes(notes)
    if append_notes is not None:
        check_notes(append_notes)
    with _labels_lock(Path(run_dir)):
        current = _read_for_update(Path(run_dir))
        tags = list(current.tags)
        added = tuple(t for t in add if t not in tags)
        tags += added
        removed = tuple(t for t in remove if t in tags)
        tags = [t for t in tags if t not in removed]
        if len(tags) > MAX_TAGS:
            raise UsageError(
                f"run {run_dir} would have {len(tags)} tags, more than {MAX_TAGS}",
                hint="untag some first (expctl runs untag RUN TAG ...)",
            )
        new_notes = current.notes if notes is _KEEP else notes
        if append_notes:
            new_notes = f"{current.notes}\n{append_notes}" if current.notes else append_notes
            check_notes(new_notes)
        labels = Labels(tuple(tags), new_notes or None)
        changed = labels != current
        if changed:
            _write(Path(run_dir), labels)
    return LabelChange(
        labels=labels,
        added=added,
        removed=removed,
        already=tuple(t for t in add if t not in added),
        missing=tuple(t for t in remove if t not in removed),
        changed=changed,
    )


def _read_for_update(run_dir: Path) -> Labels:
    from expctl.record.safe_read import RefusedFile, read_record_bytes

    path = labels_path(run_dir)
    try:
        data = read_record_bytes(path, MAX_LABELS_BYTES)
    except FileNotFoundError:
        return Labels()
    except RefusedFile as e:
        raise _damaged(path, e.note) from None
    except OSError as e:
        raise _damaged(path, f"cannot read it: {e.strerror or e}") from None
    labels, note = parse_labels(data)
    if note:
        raise _damaged(path, note)
    return labels


def _damaged(path: Path, why: str) -> RuntimeFailure:
    return RuntimeFailure(
        f"labels of run {path.parent} not changed: {why}",
        hint=f"move {path} away (or fix it), then run the command again",
    )


def _write(run_dir: Path, labels: Labels) -> None:
    from expctl.fsutil import atomic_write_json

    atomic_write_json(labels_path(run_dir), labels.to_json())


@contextlib.contextmanager
def _labels_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``RUN_DIR/.labels.lock``: released by the kernel when the
    holder dies, so it never goes stale. Not the run's own ``.lock``, which its writer holds
    for the whole run: labels can change while a run is running."""
    import fcntl

    from expctl.fsutil import write_error

    path = run_dir / LABELS_LOCK_FILE
    # O_NOFOLLOW: a symlink put there cannot make us create or lock a file elsewhere;
    # O_NONBLOCK: a FIFO put there cannot block the open
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RuntimeFailure(
                f"{path} is a symbolic link: labels not changed",
                hint=f"remove {path}; expctl creates it",
            ) from None
        raise write_error(path, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _category(char: str) -> str:
    """The Unicode category of ``char`` (unicodedata imported on first use: every `runs list`
    imports this module, few of them check a tag)."""
    import unicodedata

    return unicodedata.category(char)
