"""``expctl run --like RUN``: a new run from exactly RUN's composed inputs, and what differs.

:func:`like_source` reads what RUN was composed from — its config directory (provenance.json's
``command.config_dir``), its config name and its overrides (``overrides.yaml``; a sweep trial's
hold its sampled parameters) — and returns them as a :class:`~expctl.config.ConfigSource`, the
new overrides after the recorded ones (later wins, as in Hydra). A recorded value that was
redacted (``********``) is never trained with: it must be given again.

:func:`differences` compares RUN's recorded provenance with this checkout and machine: the
commit, the uncommitted changes (the sha256 of ``git diff HEAD`` now against the run's
``diff.patch``, both taken by :mod:`expctl.provenance.git`), the installed package versions
(``importlib.metadata``'s view, as requirements.txt was written) and the device the config
resolves to. The CLI prints them; ``--strict`` refuses to train when there are any.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import ExpctlError, UsageError
from expctl.record.read import diff_digest, read_overrides, read_provenance, read_requirements
from expctl.runs.overrides import dedupe_overrides, split_override
from expctl.runs.records import load_run

if TYPE_CHECKING:
    from expctl.config import ConfigSource

DEFAULT_CONFIG_NAME = "config"
MAX_PACKAGES_LISTED = 8  # in one difference line; the rest are counted


@dataclass(frozen=True)
class LikeRun:
    """What ``--like`` trains: the source composed, and notes on how it was found."""

    run_dir: Path
    source: ConfigSource
    recorded_overrides: tuple[str, ...]  # as recorded (deduplicated), before the new ones
    provenance: dict[str, Any] | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Difference:
    """One way this run would differ from the record: ``what`` is commit, diff, packages,
    python, device or provenance (nothing recorded to compare with)."""

    what: str
    message: str


def like_source(run_dir: Path, given: ConfigSource) -> LikeRun:
    """The config source that re-makes ``run_dir``'s run, with ``given.overrides`` after its
    recorded ones. Raises :class:`UsageError` (exit 2) for a run that cannot be re-made: a
    program trial, unreadable overrides, or a redacted value not given again."""
    from expctl.config import ConfigSource

    run_dir = Path(run_dir)
    info = load_run(run_dir, check_lock=False)
    if info.refused:
        raise UsageError(
            f"cannot read the record of {run_dir}: {'; '.join(info.refused)}",
            hint="--like needs the run's overrides.yaml and provenance.json as regular files",
        )
    if info.kind == "program":
        raise UsageError(
            f"run {info.id} is a program sweep trial: --like re-makes expctl trainer runs",
            hint="run the sweep's program with the trial's parameters (expctl runs show "
            f"{info.id})",
        )
    recorded, note = read_overrides(run_dir)
    if note:
        raise UsageError(
            f"cannot read the overrides run {info.id} was made with: {note}",
            hint="give the overrides yourself: expctl run KEY=VALUE ...",
        )
    recorded, _ = dedupe_overrides(recorded)
    provenance, _ = read_provenance(run_dir)
    notes: list[str] = []
    config_dir = _config_dir(provenance, given, notes)
    config_name = _config_name(info.summary, provenance, info.sweep is not None, notes)
    kept = _without_redacted(recorded, given.overrides, info.id)
    # one override per key, the new one winning: Hydra refuses a config group given twice
    overrides, values = dedupe_overrides([*kept, *given.overrides])
    overrides += _pinned_threads(info.summary, values, info.id, notes)
    source = ConfigSource(config_dir, config_name, tuple(overrides))
    return LikeRun(run_dir, source, tuple(recorded), provenance, tuple(notes))


def _pinned_threads(
    summary: dict[str, Any], given: dict[str, Any], run_id: str, notes: list[str]
) -> list[str]:
    """The thread count the run trained with, unless an override sets one: with
    ``num_threads: auto`` it follows the CPUs free at the time, and another count changes the
    floats (a re-make is bit for bit only with the same count)."""
    threads = summary.get("num_threads")
    if "trainer.num_threads" in given or not isinstance(threads, int) or threads < 1:
        return []
    notes.append(
        f"trainer.num_threads={threads} as run {run_id} trained (another thread count changes "
        "the results' last digits; pass trainer.num_threads=... to choose)"
    )
    return [f"++trainer.num_threads={threads}"]


def _config_dir(
    provenance: dict[str, Any] | None, given: ConfigSource, notes: list[str]
) -> Path | None:
    """The recorded config directory; the one given (or found as usual) with a note when none
    was recorded or it is gone."""
    command = provenance.get("command") if provenance else None
    recorded = command.get("config_dir") if isinstance(command, dict) else None
    if isinstance(recorded, str) and recorded:
        path = Path(recorded)
        if path.is_dir():
            if given.config_dir is not None and _resolved(given.config_dir) != path.resolve():
                notes.append(
                    f"composing with the run's config dir {path}, not --config-dir "
                    f"{given.config_dir}"
                )
            return path
        notes.append(f"the run's config dir {path} is gone: composing with the current one instead")
    else:
        notes.append(
            "the run recorded no config dir (no provenance.json): composing with the current one"
        )
    return given.config_dir


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def _config_name(
    summary: dict[str, Any], provenance: dict[str, Any] | None, sweep: bool, notes: list[str]
) -> str:
    """summary.json's ``config_name`` when recorded, else ``--config-name`` of the recorded
    command line, else ``config`` (a sweep trial's config name lives in its sweep: noted)."""
    name = summary.get("config_name")
    if isinstance(name, str) and name:
        return name
    command = provenance.get("command") if provenance else None
    argv = command.get("argv") if isinstance(command, dict) else None
    if isinstance(argv, list):
        from_argv = config_name_from_argv([str(a) for a in argv])
        if from_argv:
            return from_argv
    if sweep:
        notes.append(
            f"the sweep trial's config name is not in its record: using {DEFAULT_CONFIG_NAME!r} "
            "(pass --config-name if the sweep used another)"
        )
    return DEFAULT_CONFIG_NAME


def config_name_from_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--config-name``/``-cn`` on a recorded command line (its last one)."""
    name = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break  # overrides follow
        if arg in ("--config-name", "-cn") and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--config-name="):
            name = arg.partition("=")[2]
    return name or None


def _without_redacted(recorded: list[str], given: Sequence[str], run_id: str) -> list[str]:
    """The recorded overrides minus those whose value was redacted and is given again; a
    redacted one not given again is exit 2 (training with ``********`` would be wrong)."""
    from expctl.secrets import REDACTED, is_redacted

    given_keys = {split_override(o)[0] for o in given}
    kept, asked = [], []
    for override in recorded:
        key, value = split_override(override)
        # `+db={password: '********'}`: a value redacted inside a {...} is no scalar
        if key is not None and (is_redacted(value) or REDACTED in override):
            if key not in given_keys:
                asked.append(key)
            continue
        kept.append(override)
    if asked:
        keys = ", ".join(asked)
        example = " ".join(f"{k}=..." for k in asked)
        raise UsageError(
            f"run {run_id} was made with {keys} redacted in its record: give "
            f"{'them' if len(asked) > 1 else 'it'} again",
            hint=f"expctl run --like {run_id} {example}",
        )
    return kept


# -- what differs --------------------------------------------------------------------------------


def differences(like: LikeRun, cwd: Path | None = None) -> list[Difference]:
    """How a run made now from ``like`` would differ from the record: commit, uncommitted
    changes, package and Python versions, device. A run without provenance.json is one
    difference (nothing can be checked). Composes ``like.source`` once (for the device); its
    config errors are raised as usual (exit 2)."""
    record = like.provenance
    if record is None:
        _, note = read_provenance(like.run_dir)
        return [Difference("provenance", f"{note}: commit, packages and device not checked")]
    found: list[Difference] = []
    found += _git_differences(like.run_dir, record, Path.cwd() if cwd is None else cwd)
    found += _package_differences(like.run_dir, record)
    found += _device_differences(like, record)
    return found


def _git_differences(run_dir: Path, record: dict[str, Any], cwd: Path) -> list[Difference]:
    from expctl.provenance.git import GitError, git_facts
    from expctl.provenance.settings import DEFAULT_MAX_DIFF_BYTES

    git = _node(record, "git")
    unknown = git.get("off") or git.get("error")
    if unknown or not git:  # "not a git repository" is known, and compared below
        return [Difference("commit", f"the run's git state is unknown ({unknown or 'absent'})")]
    recorded_diff = _node(git, "diff")
    cap = recorded_diff.get("max_bytes")
    cap = cap if isinstance(cap, int) and cap >= 0 else DEFAULT_MAX_DIFF_BYTES
    try:
        now, diff = git_facts(cwd, os.environ, with_diff=True, max_diff_bytes=cap)
    except GitError as e:
        return [Difference("commit", f"cannot ask git about {cwd}: {e}")]
    found = []
    was, is_ = git.get("commit"), now.get("commit")
    if was != is_:
        found.append(Difference("commit", f"commit: the run's {_commit(git)}, here {_commit(now)}"))
    found += _diff_differences(run_dir, git, recorded_diff, now, diff.patch if diff else b"")
    return found


def _node(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """``parent[key]`` when it is a mapping (a damaged record may hold anything), else {}."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _commit(git: dict[str, Any]) -> str:
    commit = git.get("commit")
    if not commit:
        return f"none ({git.get('note') or 'unknown'})"
    branch = git.get("branch")
    return f"{str(commit)[:12]}{f' ({branch})' if branch else ''}"


def _diff_differences(
    run_dir: Path,
    git: dict[str, Any],
    recorded_diff: dict[str, Any],
    now: dict[str, Any],
    patch: bytes,
) -> list[Difference]:
    was_dirty, is_dirty = git.get("dirty") is True, now.get("dirty") is True
    if not was_dirty and not is_dirty:
        return []
    if not was_dirty:
        count = now.get("changed_files")
        return [
            Difference(
                "diff",
                f"uncommitted changes: {count} changed file{'s' if count != 1 else ''} here; "
                "the run's work tree was clean",
            )
        ]
    if not is_dirty:
        return [Difference("diff", "uncommitted changes: the run had some (diff.patch), here none")]
    recorded, note = diff_digest(run_dir)
    if recorded is None:
        why = note or recorded_diff.get("off") or recorded_diff.get("error") or "no diff.patch"
        return [Difference("diff", f"uncommitted changes here and in the run ({why}): unchecked")]
    current = f"sha256:{hashlib.sha256(patch).hexdigest()}"
    if current == recorded:
        return []
    return [
        Difference(
            "diff",
            f"uncommitted changes differ from the run's diff.patch ({recorded[:19]} there, "
            f"{current[:19]} here)",
        )
    ]


def _package_differences(run_dir: Path, record: dict[str, Any]) -> list[Difference]:
    import platform

    from expctl.provenance.environment import installed_distributions

    env = _node(record, "environment")
    found = []
    python = _node(env, "python")
    was_python = python.get("version")
    if isinstance(was_python, str) and was_python != platform.python_version():
        found.append(
            Difference(
                "python", f"python: {was_python} in the run, {platform.python_version()} here"
            )
        )
    recorded, _ = read_requirements(run_dir)
    if recorded is None:  # requirements.txt off or missing: the key packages of provenance.json
        keyed = _node(env, "packages")
        recorded = {str(k): str(v) for k, v in keyed.items() if isinstance(v, str)}
        if not recorded:
            return [*found, Difference("packages", "package versions were not recorded")]
        current_all = installed_distributions()
        current = {name: current_all.get(name) for name in recorded}
    else:
        current = dict(installed_distributions())
    changed = package_changes(recorded, current)
    if changed:
        shown = ", ".join(changed[:MAX_PACKAGES_LISTED])
        more = len(changed) - MAX_PACKAGES_LISTED
        shown += f" and {more} more" if more > 0 else ""
        found.append(Difference("packages", f"package versions (run → here): {shown}"))
    return found


def package_changes(recorded: dict[str, str], current: dict[str, str | None]) -> list[str]:
    """``torch 2.1.0 → 2.2.0``, ``numpy 1.26 → (not installed)``, ``rich (none) → 13.0``."""
    lines = []
    for name in sorted(set(recorded) | {k for k, v in current.items() if v is not None}):
        was, now = recorded.get(name), current.get(name)
        if was != now:
            lines.append(f"{name} {was or '(not installed)'} → {now or '(not installed)'}")
    return lines


def _device_differences(like: LikeRun, record: dict[str, Any]) -> list[Difference]:
    env = _node(record, "environment")
    torch = _node(env, "torch")
    devices = _node(torch, "devices")
    was = devices.get("device")
    if not isinstance(was, str):
        return []  # not recorded (environment off): the packages line said so when it matters
    was_names = devices.get("names") if isinstance(devices.get("names"), list) else None
    from omegaconf import OmegaConf

    from expctl.device import detect_accelerators, resolve_device
    from expctl.train.launch import draft_config

    requested = OmegaConf.select(draft_config(like.source), "trainer.device", default="auto")
    try:
        now = resolve_device(requested).name
    except ExpctlError as e:  # the device the run used is not here
        return [Difference("device", f"device: the run used {was}; here {e.message}")]
    found = []
    if now != was:
        found.append(Difference("device", f"device: {was} in the run, {now} here"))
    elif was.startswith("cuda") and was_names is not None:
        names = list(detect_accelerators().cuda_names)
        if [str(n) for n in was_names] != names:
            found.append(
                Difference(
                    "device",
                    f"GPUs: {', '.join(map(str, was_names))} in the run, "
                    f"{', '.join(names) or 'none'} here",
                )
            )
    return found
