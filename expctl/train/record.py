"""The local record of a run, inside its run directory.

    config.yaml      the resolved config (secrets redacted)
    overrides.yaml   the command-line overrides, as given
    metrics.jsonl    every logged row, one JSON object per line
    summary.json     status, final/best metrics, device, timings, W&B path, best checkpoint
    checkpoints/     top-k checkpoints + last.pt (see expctl.train.checkpoints)

Whole files are written atomically (expctl.fsutil). metrics.jsonl is appended a line at a time
(rewriting it per row would be quadratic) and flushed at most every second and whenever a
checkpoint is written; a resumed run first drops rows logged after the checkpoint it resumes
from, so no step appears twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from expctl.fsutil import atomic_write_json, atomic_write_text, write_error

CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
FLUSH_EVERY_S = 1.0


def finite_or_none(value: Any) -> Any:
    """NaN/inf are not JSON: record them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunRecord:
    def __init__(self, run_dir: Path, write: bool = True):
        self.run_dir = Path(run_dir).resolve()  # absolute: callers may chdir
        self.write = write
        if write:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoint_dir.mkdir(exist_ok=True)
        self._metrics: IO[str] | None = None
        self._flushed = time.monotonic()

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    @property
    def summary_path(self) -> Path:
        return self.run_dir / SUMMARY_FILE

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def write_config(self, plain_config: Mapping[str, Any]) -> None:
        if not self.write:
            return
        from expctl.config import dump_yaml
        from expctl.secrets import redact

        atomic_write_text(self.run_dir / CONFIG_FILE, dump_yaml(redact(dict(plain_config))))

    def write_overrides(self, overrides: Sequence[str]) -> list[str]:
        """Record ``overrides``; returns them as recorded."""
        import yaml

        from expctl.secrets import redact_overrides

        # Secrets never reach the disk: the record keeps `key=********` (pass them on resume).
        safe = list(redact_overrides(overrides))
        if self.write:
            atomic_write_text(self.run_dir / OVERRIDES_FILE, yaml.safe_dump(safe))
        return safe

    def read_overrides(self) -> list[str]:
        import yaml

        path = self.run_dir / OVERRIDES_FILE
        if not path.exists():
            return []
        return [str(o) for o in (yaml.safe_load(path.read_text(encoding="utf-8")) or [])]

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        if not self.write:
            return
        clean = {k: finite_or_none(v) for k, v in row.items()}
        try:
            if self._metrics is None:
                self._metrics = self.metrics_path.open("a", encoding="utf-8")
            self._metrics.write(json.dumps(clean) + "\n")
        except OSError as e:
            raise write_error(self.metrics_path, e) from None
        # A flush is a syscall (~0.1 ms here): once a second is enough for `tail -f`.
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        self._flushed = time.monotonic()
        if self._metrics is None:
            return
        try:
            self._metrics.flush()
        except OSError as e:
            metrics, self._metrics = self._metrics, None  # its buffer cannot be written
            with contextlib.suppress(OSError):
                metrics.close()
            raise write_error(self.metrics_path, e) from None

    def drop_metrics_after(self, step: int) -> None:
        """Keep only rows up to ``step`` (resume from a checkpoint taken at ``step``)."""
        if not self.write:
            return
        if not self.metrics_path.exists():
            return
        kept = [r for r in read_metrics(self.run_dir) if int(r.get("step", 0)) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if not self.write:
            return
        atomic_write_json(self.summary_path, _clean(summary))

    def close(self) -> None:
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            try:
                metrics.close()
            except OSError as e:
                raise write_error(self.metrics_path, e) from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a hard kill: everything before it is good
    return rows


def _clean(value: Any) -> Any:
    """JSON-ready: paths as text, NaN/inf as null, secret values scrubbed (error messages and
    notes may quote them)."""
    from expctl.secrets import scrub

    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return scrub(value)
    return finite_or_none(value)


def process_start_time() -> float | None:
    """When this process started (epoch seconds), from /proc on Linux; None elsewhere.

    /proc/self/stat counts the start in clock ticks since boot; the age is measured against
    CLOCK_BOOTTIME, the same clock (``btime`` in /proc/stat is whole seconds: up to 1 s off).
    """
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return None
    try:
        stat = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    start_ticks = float(fields[19])  # field 22 of /proc/<pid>/stat, counted after "(comm)"
    age = time.clock_gettime(boottime) - start_ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age


def timings(
    call_time: float, first_step_time: float | None, loop_times: tuple[float, float] | None
) -> dict[str, float | None]:
    """The summary's ``timings``: start-up latency and the loop's wall and CPU seconds."""
    start = process_start_time()
    loop, cpu = loop_times or (None, None)
    return {
        "process_start_to_first_step_s": _rounded(
            first_step_time - start if first_step_time and start else None
        ),
        "train_call_to_first_step_s": _rounded(
            first_step_time - call_time if first_step_time else None
        ),
        "loop_s": _rounded(loop),
        # loop_cpu_s far below loop_s means the process waited for CPUs (contention)
        "loop_cpu_s": _rounded(cpu),
        "total_s": _rounded(time.time() - call_time),
    }


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


RESUMES_DIR = "resumes"  # resumes/N/: the provenance of the Nth resume (code may have changed)


def start_run_provenance(
    cfg: Any, run_dir: Path, place: Any, *, config_dir: Path | None, resumed: bool
) -> Any:
    """Start writing the run's provenance (``expctl.provenance``) on a helper thread, on rank 0
    only; returns the capture to ``wait()`` on (None elsewhere). A resume's provenance goes to
    ``resumes/N/``: the first attempt's record stays what it was, and a changed commit shows."""
    if not place.group.is_main:
        return None
    import sys

    from expctl.provenance import ProvenanceSettings, start_capture

    settings = ProvenanceSettings.from_config(cfg)
    target = _next_resume_dir(run_dir) if resumed else run_dir
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


def _next_resume_dir(run_dir: Path) -> Path:
    root = run_dir / RESUMES_DIR
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    target = root / str(max(taken, default=0) + 1)
    target.mkdir(parents=True, exist_ok=True)
    return target
