"""Which ``_target_``\\ s a config may name: an allowlist, checked before anything is called.

Configs and sweep files are code: a ``_target_`` runs whatever it names (README, "Configs are
code"). A blocklist cannot keep up with everything that writes a file (``numpy.savetxt``,
``torch.save``, ``logging.FileHandler``, ``sqlite3.connect``, ``zipfile.ZipFile``, ...), so
before anything under ``data``/``model``/``optim``/``scheduler``/``loss`` is built, every
``_target_`` there (nested ones and those in ``_args_`` included, after interpolation) must be

* one of a few named callables: ``functools.partial``, plain containers and numbers from
  ``builtins``, tensor constructors such as ``torch.tensor``, the dataset/sampler/loader classes
  of ``torch.utils.data``;
* in ``torch.nn`` or ``torch.optim`` (``lr_scheduler`` included), or expctl's own data
  (``expctl.train.data``);
* in the project: a module whose file lives under the current directory (not an installed
  package in a virtual environment there);
* or named in the config's ``expctl.allow_targets`` list: ``pkg.*`` (a package and everything
  in it) or an exact dotted name (``transformers.AutoModel.from_pretrained``).

The name is checked *before* its module is imported (an import runs code). After the import the
path is walked: every module it passes through, and the module that *defines* the object it
reaches, must be allowed too, so ``torch.nn.modules.module.torch.save`` (``torch`` re-exported
in an allowed module) and ``mymodels.savetxt`` (``from numpy import savetxt``) are refused.
The old identity blocklist stays as a last layer. Defense in depth, not a sandbox: an allowed
class can still do anything when called, and ``expctl.allow_targets`` can be set on the command
line by whoever can set any other key.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import sysconfig
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expctl.errors import ConfigError

ALLOW_KEY = "expctl.allow_targets"  # the config setting that extends the allowlist


def _each(module: str, names: str) -> list[str]:
    return [f"{module}.{name}" for name in names.split()]


def _names(names: str) -> tuple[str, ...]:
    return tuple(names.split())


# exact names (checked by identity after the import too)
_SAFE_NAMES = frozenset(
    [
        "functools.partial",
        *_each("builtins", "dict list tuple set frozenset int float complex str bool range slice"),
        *_each(
            "torch",
            "tensor as_tensor zeros ones full empty eye arange linspace logspace rand randn "
            "randint randperm manual_seed Generator device",
        ),
        *_each(
            "torch.utils.data",
            "Dataset IterableDataset TensorDataset StackDataset ConcatDataset ChainDataset "
            "Subset random_split DataLoader Sampler SequentialSampler RandomSampler "
            "SubsetRandomSampler WeightedRandomSampler BatchSampler DistributedSampler "
            "default_collate default_convert get_worker_info",
        ),
    ]
)
# packages whose every public callable builds a model, optimizer, scheduler, loss or dataset
_SAFE_PACKAGES = (
    "torch.nn",
    "torch.optim",
    "torch.utils.data.dataset",
    "torch.utils.data.sampler",
    "torch.utils.data.dataloader",
    "expctl.train.data",
)
# the tensor functions above are C builtins whose __module__ is "torch"; these are not allowed
# even when reached from an allowed module
_TORCH_FILE_WORK = ("save", "load", "from_file")

# module -> attributes that write or remove files, or start processes
_FORBIDDEN_NAMES: dict[str, tuple[str, ...]] = {
    "builtins": _names("open exec eval compile __import__ breakpoint"),
    "io": _names("open open_code FileIO"),
    "codecs": _names("open"),
    "os": _names(
        "system popen execl execle execlp execlpe execv execve execvp execvpe spawnl "
        "spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe posix_spawn "
        "posix_spawnp mkdir makedirs chmod chown link symlink open write mkfifo mknod "
        "putenv unsetenv chdir remove unlink rmdir removedirs rename renames replace "
        "truncate"
    ),
    "shutil": _names(
        "rmtree copy copy2 copyfile copytree move chown copymode copystat make_archive "
        "unpack_archive"
    ),
    "subprocess": _names("run call check_call check_output Popen getoutput getstatusoutput"),
    "pty": _names("spawn fork"),
    "tempfile": _names(
        "mkstemp mkdtemp NamedTemporaryFile TemporaryFile SpooledTemporaryFile TemporaryDirectory"
    ),
    "webbrowser": _names("open open_new open_new_tab"),
    "torch": _TORCH_FILE_WORK,
}
_FORBIDDEN_PATH_METHODS = _names(
    "write_text write_bytes touch mkdir unlink rmdir rename replace symlink_to hardlink_to "
    "chmod lchmod open"
)


@functools.cache
def _forbidden() -> dict[int, str]:
    """id(callable) -> its name, for everything above that exists on this Python (a last layer
    under the allowlist)."""
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


def allowed_patterns(cfg: Any) -> tuple[str, ...]:
    """The config's ``expctl.allow_targets``: a list of ``pkg.*`` or exact dotted names."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, ALLOW_KEY, default=None)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    else:
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise ConfigError(
            f"{ALLOW_KEY} must be a list of dotted names, got {value!r}",
            hint=f"e.g. {ALLOW_KEY}: [mypkg.*, timm.create_model]",
            where=ALLOW_KEY,
        )
    return tuple(v.strip() for v in value)


def check_targets(node: Any, key: str, allowed: tuple[str, ...] = ()) -> None:
    """Refuse (exit 2) a ``_target_`` under ``node`` that the allowlist does not admit.

    Called before ``instantiate``: nothing under ``node`` has been imported or called yet when
    the name check fails."""
    policy = _Policy(allowed)
    for path, target in _targets(_resolved(node), key):
        refusal = policy.refusal(target)
        if refusal is not None:
            reason, allowable = refusal
            raise ConfigError(
                f"_target_ {target!r} is refused: {reason}",
                hint=_allow_hint(target) if allowable else _file_work_hint(),
                where=path,
            )


def _allow_hint(target: str) -> str:
    top = target.split(".")[0]
    return (
        f"configs are code: if you trust {target}, add this line to the config: "
        f"`expctl: {{allow_targets: [{target}]}}` ([{top}.*] allows all of {top}), or pass "
        f"'++{ALLOW_KEY}=[{target}]'"
    )


def _file_work_hint() -> str:
    return (
        "configs are code: name a class or function that builds the object (e.g. "
        "torch.nn.Linear); do the file work in your own module in the project directory"
    )


class _Policy:
    """The rule of the module docstring, for one config's ``expctl.allow_targets``."""

    def __init__(self, patterns: tuple[str, ...]):
        self.patterns = patterns
        # a user pattern trusts its whole top-level package as the home of what it names
        self.trusted_tops = {p.split(".")[0] for p in patterns}
        self.forbidden = _forbidden()

    def refusal(self, target: str) -> tuple[str, bool] | None:
        """Why ``target`` may not be built and whether ``expctl.allow_targets`` could allow
        it, or None."""
        if not self._name_allowed(target):
            if not _findable(target.split(".")[0]):
                return None  # nothing to import: instantiate says "cannot import", with a hint
            return (
                "only torch.nn, torch.optim, torch.utils.data datasets, the project's own "
                f"modules and what {ALLOW_KEY} names are built",
                True,
            )
        try:
            obj, aliases = _walk(target)
        except Exception:
            return None  # not importable: instantiate says so, with its own did-you-mean
        name = self.forbidden.get(id(obj)) or self.forbidden.get(id(getattr(obj, "__func__", None)))
        if name is not None:
            return f"it is {name}, which writes files or starts processes", False
        if target in self.patterns:
            return None  # named exactly, by the user: trusted whatever module defines it
        for module in aliases:
            if not self._module_allowed(module.__name__):
                return f"it is reached through module {module.__name__}, which is not allowed", True
        if target in _SAFE_NAMES:
            return None if obj is _locate_safe(target) else ("it is not what its name says", False)
        home = getattr(obj, "__module__", None)
        torch_c_function = isinstance(obj, types.BuiltinFunctionType) and home == "torch"
        if torch_c_function and not aliases and _under(target, ("torch.nn",)):
            return None  # torch.nn.functional.conv2d & co. are torch's C functions
        if not isinstance(home, str) or not self._module_allowed(home):
            return f"it is defined in {home}, which is not allowed", True
        return None

    def _name_allowed(self, target: str) -> bool:
        if target in _SAFE_NAMES or _under(target, _SAFE_PACKAGES):
            return True
        if any(_matches(target, p) for p in self.patterns):
            return True
        return _is_project_module(target.split(".")[0])

    def _module_allowed(self, module: str) -> bool:
        if _under(module, _SAFE_PACKAGES) or module.split(".")[0] in self.trusted_tops:
            return True
        return _is_project_module(module)


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _matches(target: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return _under(target, (pattern[:-2],))
    return target == pattern


def _walk(target: str) -> tuple[Any, list[types.ModuleType]]:
    """Import ``target`` as Hydra's ``_locate`` does: the object, and the modules the path
    reaches under another name (``mymodels.np`` is numpy; ``torch.nn`` is itself)."""
    from hydra._internal.utils import _locate

    obj = _locate(target)
    parts = target.split(".")
    aliases: list[types.ModuleType] = []
    current: Any = None
    for i, part in enumerate(parts[:-1]):
        current = importlib.import_module(part) if i == 0 else getattr(current, part)
        if isinstance(current, types.ModuleType) and current.__name__ != ".".join(parts[: i + 1]):
            aliases.append(current)
    return obj, aliases


def _locate_safe(target: str) -> Any:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name, None)


def _findable(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _is_project_module(name: str) -> bool:
    """Does module ``name`` live in the project directory (the current one), outside any
    installed environment? Found without importing it."""
    if not name or name == "expctl" or name.startswith("expctl."):
        return False
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(name) if "." not in name else None
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        origin = spec.origin if spec.has_location else None
        if origin is None and spec.submodule_search_locations:
            origin = next(iter(spec.submodule_search_locations), None)
    if not origin:
        return False
    path = Path(origin).resolve()
    project = Path.cwd().resolve()
    if not path.is_relative_to(project):
        return False
    if {"site-packages", "dist-packages"} & set(path.parts):
        return False
    # a virtual environment inside the project is not the project; a project under /usr is
    installed = (r for r in _installed_roots() if not project.is_relative_to(r))
    return not any(path.is_relative_to(r) for r in installed)


def _installed_roots() -> set[Path]:
    roots = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    roots |= {v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib")}
    return {Path(r).resolve() for r in roots if r}


def _resolved(node: Any) -> Any:
    """The node with interpolations resolved, as instantiate will see it: a ``_target_`` node
    reached through ``${...}`` from elsewhere in the config is checked too."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:
        return node  # unresolvable: instantiate fails on it before calling anything there


def _targets(node: Any, path: str) -> Iterator[tuple[str, str]]:
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig | dict):
        for k in node:
            child = node._get_node(k) if isinstance(node, DictConfig) else node[k]
            child_path = f"{path}.{k!s}"
            if k == "_target_":
                value = node.get(k)
                if isinstance(value, str):
                    yield child_path, value
            else:
                yield from _targets(child, child_path)
    elif isinstance(node, ListConfig | list | tuple):
        for i in range(len(node)):
            child = node._get_node(i) if isinstance(node, ListConfig) else node[i]
            yield from _targets(child, f"{path}.{i}")
