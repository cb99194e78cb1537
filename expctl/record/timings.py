"""The summary's ``timings``: start-up latency and the loop's wall and CPU seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path


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
