"""Which ``_target_``\\ s a config may name: Hydra's blocklist, plus file writes and processes.

Configs and sweep files are code: a ``_target_`` runs whatever it names (README, "Configs are
code"). Hydra 1.3 blocks the obvious ones (``os.remove``, ``builtins.eval``, ...), but a config
could still write an arbitrary file with ``pathlib.Path.write_text`` or start a process with
``subprocess.run``. A model, a dataset, an optimizer, a scheduler and a loss need none of that,
so before anything is built every ``_target_`` under those nodes is resolved and refused if it
*is* (by identity, so aliases such as ``pathlib.PosixPath.touch`` are caught too) one of the
callables below. It is defense in depth, not a sandbox: a trusted installed class can still do
anything when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from expctl.errors import ConfigError

# module -> attributes that write or remove files, or start processes
_FORBIDDEN_NAMES: dict[str, tuple[str, ...]] = {
    "builtins": ("open", "exec", "eval", "compile", "__import__", "breakpoint"),
    "io": ("open", "open_code", "FileIO"),
    "codecs": ("open",),
    "os": (
        "system",
        "popen",
        "execl",
        "execle",
        "execlp",
        "execlpe",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "spawnl",
        "spawnle",
        "spawnlp",
        "spawnlpe",
        "spawnv",
        "spawnve",
        "spawnvp",
        "spawnvpe",
        "posix_spawn",
        "posix_spawnp",
        "mkdir",
        "makedirs",
        "chmod",
        "chown",
        "link",
        "symlink",
        "open",
        "write",
        "mkfifo",
        "mknod",
        "putenv",
        "unsetenv",
        "chdir",
        "remove",
        "unlink",
        "rmdir",
        "removedirs",
        "rename",
        "renames",
        "replace",
        "truncate",
    ),
    "shutil": (
        "rmtree",
        "copy",
        "copy2",
        "copyfile",
        "copytree",
        "move",
        "chown",
        "copymode",
        "copystat",
        "make_archive",
        "unpack_archive",
    ),
    "subprocess": (
        "run",
        "call",
        "check_call",
        "check_output",
        "Popen",
        "getoutput",
        "getstatusoutput",
    ),
    "pty": ("spawn", "fork"),
    "tempfile": (
        "mkstemp",
        "mkdtemp",
        "NamedTemporaryFile",
        "TemporaryFile",
        "SpooledTemporaryFile",
        "TemporaryDirectory",
    ),
    "webbrowser": ("open", "open_new", "open_new_tab"),
}
_FORBIDDEN_PATH_METHODS = (
    "write_text",
    "write_bytes",
    "touch",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "replace",
    "symlink_to",
    "hardlink_to",
    "chmod",
    "lchmod",
    "open",
)


def _forbidden() -> dict[int, str]:
    """id(callable) -> its name, for everything above that exists on this Python."""
    import pathlib

    found: dict[int, str] = {}
    for module_name, names in _FORBIDDEN_NAMES.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name, None)
            if obj is not None:
                found[id(obj)] = f"{module_name}.{name}"
    for name in _FORBIDDEN_PATH_METHODS:
        obj = getattr(pathlib.Path, name, None)
        if obj is not None:
            found[id(obj)] = f"pathlib.Path.{name}"
    return found


def check_targets(node: Any, key: str) -> None:
    """Refuse (exit 2) a ``_target_`` under ``node`` that writes files or starts processes."""
    from hydra._internal.utils import _locate

    forbidden = _forbidden()
    for path, target in _targets(node, key):
        try:
            obj = _locate(target)
        except Exception:
            continue  # not importable: instantiate says so, with its own hint
        name = forbidden.get(id(obj)) or forbidden.get(id(getattr(obj, "__func__", None)))
        if name is not None:
            raise ConfigError(
                f"_target_ {target!r} ({name}) is refused: it writes files or starts "
                "processes, which building a model, data, optimizer or loss never needs",
                hint="configs are code: name a class or function that builds the object "
                "(e.g. torch.nn.Linear); do the file work in your own module",
                where=path,
            )


def _targets(node: Any, path: str) -> Iterator[tuple[str, str]]:
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        for k in node:
            child = node._get_node(k)
            child_path = f"{path}.{k!s}"
            if k == "_target_" and isinstance(node.get(k), str):
                yield child_path, str(node.get(k))
            else:
                yield from _targets(child, child_path)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from _targets(node._get_node(i), f"{path}[{i}]")
