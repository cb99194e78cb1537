"""Looking at real processes from tests: whether one is alive, what it wrote to a terminal."""

from __future__ import annotations

import os
import select
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie is dead, only not yet reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # reaped between the two looks
        return False
    return state not in ("Z", "X")


def read_terminal(fd: int, timeout: float) -> bytes:
    """Everything written to the pty whose controlling side is ``fd``, until the program closes
    it; fails when nothing arrives for ``timeout`` seconds (the program hung). Closes ``fd``."""
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, f"nothing on the terminal for {timeout} s: the program hung"
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
