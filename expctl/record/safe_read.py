"""How any record file is opened: tolerantly, and never in a way that hangs or floods memory.

Run directories may sit on a shared filesystem that others write to, so every record file is
read defensively (:func:`read_record_bytes`): a symlink is followed (copied run dirs use them)
but the file it names must be a regular file — a FIFO, a device (``/dev/zero``) or a socket is
*refused* and never opened in a way that blocks — and no more than a size limit is read. YAML
records are read under an alias limit (:data:`MAX_YAML_NODES`, shared with the sweep files'
reader). A refusal is a :class:`Refused` note; callers decide whether to show or skip the run.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

# The most bytes read of one record file. A summary, the overrides and the resolved config are
# kilobytes; metrics.jsonl grows with the run (one line per logged step), so it is read a line
# at a time up to its own limits and the note says where reading stopped.
MAX_RECORD_BYTES = 8 * 1024 * 1024
MAX_METRICS_BYTES = 128 * 1024 * 1024
MAX_METRICS_ROWS = 1_000_000
# diff.patch is capped by provenance.max_diff_bytes (1 MB by default) but the cap is the user's:
# it is hashed a block at a time, up to this many bytes
MAX_DIFF_BYTES = 128 * 1024 * 1024
# the most values a YAML file may expand to through aliases (sweep files and records alike)
MAX_YAML_NODES = 100_000


class Refused(str):
    """A note saying a record file was refused as unsafe to read (see the module docstring)."""


class RefusedFile(Exception):
    """Raised by :func:`read_record_bytes`; ``note`` says which file and why."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = Refused(note)


class TooManyYamlNodes(Exception):
    """A YAML document whose aliases expand past :data:`MAX_YAML_NODES` values."""


def open_record_file(path: Path, limit: int | None) -> int:
    """An open descriptor on ``path`` if it is (or links to) a regular file of at most ``limit``
    bytes; :class:`RefusedFile` otherwise. FileNotFoundError/OSError as os.open raises them.

    Checked before opening (a device is never opened) and again on the open file (it may have
    been swapped meanwhile); opened non-blocking, so a FIFO put there after the check cannot
    block the open.
    """
    _check_regular(path, os.stat(path), limit)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_regular(path, os.fstat(fd), limit)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_record_bytes(path: Path, limit: int = MAX_RECORD_BYTES) -> bytes:
    """The bytes of a small record file (see :func:`open_record_file`); a file that grew past
    ``limit`` while being read is refused too."""
    with os.fdopen(open_record_file(path, limit), "rb") as f:
        # sized to the file: read(limit + 1) allocates the whole limit (8 MiB) per small file
        size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, limit) + 1)
        if len(data) > size:  # it grew while being read
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise RefusedFile(_too_large(path, limit))
    return data


def _check_regular(path: Path, st: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(f"{path.name} is {_file_kind(st.st_mode)}, not a regular file: not read")
    if limit is not None and st.st_size > limit:
        raise RefusedFile(_too_large(path, limit))


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a file"


def _too_large(path: Path, limit: int) -> str:
    return f"{path.name} is larger than {mib(limit)}: not read"


def mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def read_text(path: Path) -> tuple[str | None, str | None]:
    """``(text, None)``; ``(None, None)`` when missing; ``(None, note)`` when unreadable."""
    try:
        return read_record_bytes(path).decode("utf-8", errors="replace"), None
    except FileNotFoundError:
        return None, None
    except RefusedFile as e:
        return None, e.note
    except OSError as e:
        return None, f"cannot read {path.name}: {e.strerror or e}"


def read_yaml(path: Path) -> tuple[bool, Any, str | None]:
    """``(found, data, note)``: data None when the file is missing, empty or unreadable (then
    the note says why)."""
    text, note = read_text(path)
    if text is None:
        return note is not None, None, note
    try:
        return True, _yaml_load(text), None
    except TooManyYamlNodes:
        note = f"{path.name} expands to more than {MAX_YAML_NODES:,} values (nested YAML aliases)"
        return True, None, Refused(f"{note}: not read")
    except RecursionError:
        return True, None, Refused(f"{path.name} is nested too deep: not read")
    except Exception as e:  # yaml.YAMLError and friends: a damaged file
        return True, None, f"{path.name} is not valid YAML ({type(e).__name__}): damaged"


def _yaml_load(text: str) -> Any:
    """Safe YAML under the alias limit (a 1 KB "billion laughs" would otherwise take minutes
    and gigabytes); :class:`TooManyYamlNodes` past it."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml: ~10x faster
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_YAML_NODES:
            raise TooManyYamlNodes(MAX_YAML_NODES)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expanded_size(root: Any, limit: int = MAX_YAML_NODES) -> int:
    """How many values a YAML node graph expands to through its aliases, counted up to
    ``limit + 1`` ("billion laughs": 1 KB of nested aliases naming billions of values). Counted
    on the node graph, each shared node once per use, in time linear in the file."""
    import yaml

    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        sizes[id(node)] = min(total, limit + 1)
        return sizes[id(node)]

    return size(root)
