"""Write a run's provenance into its directory: provenance.json, diff.patch, requirements.txt.

:func:`capture_provenance` does it in the calling thread; :func:`start_capture` does it on a
helper thread so the first training step need not wait for git, and its handle's ``wait()``
(called in the run's ``finally``) joins it and never raises. Each part that fails (git timed
out, a package directory unreadable) becomes ``{"error": ...}`` in provenance.json; the others
are still written. provenance.json is written last, so its presence means the others are done.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from expctl.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from expctl.provenance.environment import (
    environment_facts,
    installed_distributions,
    requirements_text,
)
from expctl.provenance.git import GitError, git_facts
from expctl.provenance.settings import ProvenanceSettings
from expctl.record.files import DIFF_FILE, PROVENANCE_FILE, REQUIREMENTS_FILE, next_resume_dir
from expctl.secrets import redact_argv, scrub

FORMAT = 1

T = TypeVar("T")


@dataclass(frozen=True)
class Provenance:
    """What the caller may want at once (W&B's config, the run summary) of what was written."""

    run_dir: Path
    commit: str | None = None
    branch: str | None = None
    describe: str | None = None
    remote_url: str | None = None  # credentials removed
    dirty: bool | None = None  # None: unknown (no repository, git off, git failed)
    note: str | None = None  # why the git facts are missing or partial, in words
    files: tuple[str, ...] = ()  # names written into run_dir
    error: str | None = None  # the capture as a whole failed or did not finish

    def wandb_git(self) -> dict[str, str]:
        """``wandb.Settings`` git fields: W&B's own git state then names this commit (and the
        remote without credentials) instead of asking git again."""
        fields = {"git_commit": self.commit, "git_remote_url": self.remote_url}
        return {key: value for key, value in fields.items() if value}


def capture_provenance(
    run_dir: Path,
    *,
    argv: Sequence[str],
    cwd: Path,
    config_dir: Path | None = None,
    settings: ProvenanceSettings | None = None,
    repo_dir: Path | None = None,
    device_info: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Provenance:
    """Record how ``run_dir``'s run was made. ``repo_dir`` is the repository to describe (a
    program trial's program directory; default ``cwd``); ``device_info`` the devices the run
    uses (names, count), chosen by the caller. Raises only :class:`expctl.fsutil.WriteError`
    (the run directory cannot be written)."""
    settings = settings or ProvenanceSettings()
    env = os.environ if env is None else env
    started = time.perf_counter()
    record: dict[str, Any] = {
        "format": FORMAT,
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.as_dict(),
        "command": {
            "argv": redact_argv([str(arg) for arg in argv]),
            "cwd": str(cwd),
            "config_dir": str(config_dir) if config_dir is not None else None,
        },
    }
    files: list[str] = []
    distributions: dict[str, str] = {}
    if settings.packages or settings.environment:
        found, error = _attempt(installed_distributions)
        distributions = found or {}
        if error is not None:
            record["packages"] = {"error": error}

    git: dict[str, Any] = {"off": "provenance.git=false"}
    patch = b""
    if settings.git:
        where = repo_dir or cwd
        facts, error = _attempt(
            lambda: git_facts(
                where, env, with_diff=settings.diff, max_diff_bytes=settings.max_diff_bytes
            )
        )
        git = facts[0] if facts is not None else {"path": str(where), "error": error}
        patch = facts[1].patch if facts is not None and facts[1] is not None else b""
    record["git"] = git

    if settings.environment:
        environment, error = _attempt(lambda: environment_facts(env, device_info, distributions))
        record["environment"] = environment if environment is not None else {"error": error}
    else:
        record["environment"] = {"off": "provenance.environment=false"}

    if patch:
        atomic_write_bytes(run_dir / DIFF_FILE, patch)
        files.append(DIFF_FILE)
    if settings.packages and distributions:
        atomic_write_text(run_dir / REQUIREMENTS_FILE, requirements_text(distributions))
        files.append(REQUIREMENTS_FILE)
        record["packages"] = {"file": REQUIREMENTS_FILE, "count": len(distributions)}
    elif not settings.packages:
        record["packages"] = {"off": "provenance.packages=false"}
    record["capture_s"] = round(time.perf_counter() - started, 4)
    atomic_write_json(run_dir / PROVENANCE_FILE, record)
    files.append(PROVENANCE_FILE)
    return _summary(run_dir, record["git"], tuple(files))


class ProvenanceCapture:
    """A capture running on a helper thread (git's processes and file reads release the GIL,
    so the run's own start-up goes on meanwhile)."""

    def __init__(self, run_dir: Path, work: Callable[[], Provenance]):
        self.run_dir = run_dir
        self._work = work
        self._result: Provenance | None = None
        self._thread = threading.Thread(target=self._run, name="expctl-provenance", daemon=True)

    def start(self) -> ProvenanceCapture:
        self._thread.start()
        return self

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> Provenance:
        """Join the capture (at most ``timeout`` seconds); never raises: a failure is the
        result's ``error`` (and, where the directory is writable, a note in provenance.json)."""
        self._thread.join(timeout)
        if self._result is not None:
            return self._result
        if self._thread.is_alive():
            return Provenance(self.run_dir, error=f"still running after {timeout} s")
        return Provenance(self.run_dir, error="provenance capture ended without a result")

    def _run(self) -> None:
        try:
            self._result = self._work()
        except Exception as e:  # a record must never fail a run
            message = scrub(f"provenance capture failed: {_describe(e)}")
            self._result = Provenance(self.run_dir, error=message)
            with contextlib.suppress(Exception):
                atomic_write_json(
                    self.run_dir / PROVENANCE_FILE, {"format": FORMAT, "error": message}
                )


def start_capture(
    run_dir: Path,
    *,
    argv: Sequence[str],
    cwd: Path,
    config_dir: Path | None = None,
    settings: ProvenanceSettings | None = None,
    repo_dir: Path | None = None,
    device_info: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ProvenanceCapture:
    """:func:`capture_provenance` on a helper thread; call ``.wait()`` in the run's ``finally``.
    The arguments are copied now, so the caller may change its environment afterwards."""
    argv = list(argv)
    env = dict(os.environ if env is None else env)
    device = dict(device_info) if device_info is not None else None

    def work() -> Provenance:
        return capture_provenance(
            run_dir,
            argv=argv,
            cwd=cwd,
            config_dir=config_dir,
            settings=settings,
            repo_dir=repo_dir,
            device_info=device,
            env=env,
        )

    return ProvenanceCapture(run_dir, work).start()


def _attempt(part: Callable[[], T]) -> tuple[T | None, str | None]:
    """``(part(), None)``, or ``(None, what went wrong)``: one failed part must not lose the
    others."""
    try:
        return part(), None
    except GitError as e:
        return None, scrub(str(e))
    except Exception as e:  # anything else: said in the record
        return None, scrub(_describe(e))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _summary(run_dir: Path, git: Mapping[str, Any], files: tuple[str, ...]) -> Provenance:
    return Provenance(
        run_dir,
        commit=git.get("commit"),
        branch=git.get("branch"),
        describe=git.get("describe"),
        remote_url=git.get("remote_url"),
        dirty=git.get("dirty"),
        note=git.get("note") or git.get("error") or git.get("off"),
        files=files,
    )


def start_run_provenance(
    cfg: Any, run_dir: Path, place: Any, *, config_dir: Path | None, resumed: bool
) -> ProvenanceCapture | None:
    """Start writing a training run's provenance on a helper thread, on rank 0 only (``place``
    is the trainer's ``Placement``); returns the capture to ``wait()`` on (None elsewhere). A
    resume's provenance goes to ``resumes/N/``: the first attempt's record stays what it was,
    and a changed commit shows."""
    if not place.group.is_main:
        return None
    import sys

    settings = ProvenanceSettings.from_config(cfg)
    target = next_resume_dir(run_dir) if resumed else run_dir
    device: dict[str, Any] = {"device": place.device.name, "processes": place.group.world_size}
    if place.device.name.startswith("cuda"):
        import torch

        device["names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return start_capture(
        target,
        argv=sys.argv,
        cwd=Path.cwd(),
        config_dir=config_dir,
        settings=settings,
        device_info=device,
    )
