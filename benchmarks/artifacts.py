"""Artifact pull and push vs `cp -r` + `openssl dgst -sha256` of the same files, in one run.

    python benchmarks/artifacts.py                      # ~500 MB in 5 files, warm cache, median of 7
    python benchmarks/artifacts.py --cache cold         # drop the page cache before every timing
    python benchmarks/artifacts.py --size-mb 500 --files 1 --repeats 7

Everything is written to a temp dir under --dir (default: the current directory, i.e. the same
disk as a project-local store) and removed at the end. Every repeat times each operation once,
in an order that alternates (forward, then reversed), each into a fresh directory, after a
`sync` (untimed) so one operation's dirty pages are not written back during the next one's
timing. ``--cache warm`` (default): sources and blobs are in the page cache, as right after a
push or a first pull. ``--cache cold``: ``sync; echo 3 > /proc/sys/vm/drop_caches`` before every
timing (needs root and a writable /proc/sys, as in a VM; the benchmark says if it could not).

The main baseline is `cp -r SRC DST && openssl dgst -sha256 DST/*`: the kernel copies
(copy_file_range), then a fast sha256 (SHA extensions) reads the copy back. Ratio = baseline
seconds / expctl seconds (>= 1: as fast or faster; the goal for `pull --copy` is >= 0.8).
References: GNU `sha256sum` instead of openssl (slower where coreutils lacks the SHA
extensions), `cp -r` alone (no verification: a floor), and for push, which fsyncs every blob,
`cp -r` + openssl + `sync DST/*` (fsync of each file). `expctl pull --copy` is timed as a
library call (``ArtifactStore.pull``) and as the CLI process users run (start-up included).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from expctl.artifacts import ArtifactStore, publish_path

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def make_files(directory: Path, total_mb: int, count: int) -> int:
    directory.mkdir()
    chunk = os.urandom(1 << 20)  # incompressible; rotate it so files differ
    per_file = total_mb // count
    for i in range(count):
        with open(directory / f"part-{i}.bin", "wb") as f:
            for j in range(per_file):
                f.write(chunk[(i * 7 + j) % 4096 :] + chunk[: (i * 7 + j) % 4096])
    return per_file * count * (1 << 20)


def cached_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1])
    return -1


def drop_caches() -> str | None:
    """Empty the page cache; None if that is impossible here, else what it did."""
    os.sync()
    before = cached_kb()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return None
    return f"page cache {before // 1024} MB -> {cached_kb() // 1024} MB"


def shell(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def copy_then(*steps: str) -> Callable[[Path, Path], None]:
    """`cp -r SRC DST`, then each step run on ``DST/*`` (a verifying read, an fsync)."""
    after = "".join(f" && {step} '{{dst}}'/* > /dev/null" for step in steps)
    return lambda src, dst: shell(f"cp -r '{src}' '{dst}'" + after.format(dst=dst))


def operations(work: Path, store: ArtifactStore) -> dict[str, Callable[[Path], object]]:
    """name -> run(output path): every operation timed, each writing only to its output."""
    src = work / "src"
    cli = [sys.executable, "-m", "expctl", "artifacts", "pull", "bench", "--copy"]
    ops: dict[str, Callable[[Path], object]] = {
        "pull-copy": lambda out: store.pull("bench", out, mode="copy"),
        "pull-cli": lambda out: subprocess.run(
            [*cli, "--root", str(out), "--store", str(store.root)],
            check=True,
            capture_output=True,
        ),
        "pull-link": lambda out: store.pull("bench", out, mode="link"),
        "push": lambda out: publish_path(src, "bench", type="dataset", store_root=out),
        "cp-sha256sum": lambda out: copy_then("sha256sum")(src, out),
        "cp": lambda out: copy_then()(src, out),
    }
    if shutil.which("openssl"):
        ops["cp-openssl"] = lambda out: copy_then("openssl dgst -sha256")(src, out)
        ops["cp-openssl-sync"] = lambda out: copy_then("openssl dgst -sha256", "sync")(src, out)
    return ops


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its finished children."""
    me, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


Times = dict[str, list[tuple[float, float]]]  # name -> [(wall seconds, CPU seconds)]


def measure(work: Path, store: ArtifactStore, repeats: int, cold: bool) -> Times:
    ops = operations(work, store)
    times: Times = {name: [] for name in ops}
    for r in range(repeats):
        order = list(ops) if r % 2 == 0 else list(reversed(ops))
        for name in order:
            out = work / f"out-{name}-{r}"
            if cold:
                drop_caches()
            else:
                os.sync()
            cpu, start = cpu_seconds(), time.perf_counter()
            ops[name](out)
            times[name].append((time.perf_counter() - start, cpu_seconds() - cpu))
            shutil.rmtree(out, ignore_errors=True)
    return times


ROWS = [
    ("cp -r + openssl dgst -sha256 (baseline)", "cp-openssl"),
    ("expctl pull --copy (library call)", "pull-copy"),
    ("expctl artifacts pull --copy (CLI process)", "pull-cli"),
    ("expctl pull, hard-link mode (library)", "pull-link"),
    ("reference: cp -r + sha256sum (GNU)", "cp-sha256sum"),
    ("reference: cp -r alone (no verification)", "cp"),
    ("expctl push (copy + sha256 + fsync)", "push"),
    ("reference: cp -r + openssl + sync DST/*", "cp-openssl-sync"),
]


def report(times: Times, mb: float, baseline: str) -> None:
    median = {name: statistics.median(wall for wall, _ in t) for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) for name, t in times.items()}
    print(f"{'operation':<46}{'median s':>9}{'min-max s':>12}{'CPU s':>7}{'MB/s':>7}{'ratio':>7}")
    for label, name in ROWS:
        if name not in median:
            continue
        walls = [wall for wall, _ in times[name]]
        spread = f"{min(walls):.2f}-{max(walls):.2f}"
        ratio = median[baseline] / median[name]
        print(
            f"{label:<46}{median[name]:>9.2f}{spread:>12}{cpu[name]:>7.2f}"
            f"{mb / median[name]:>7.0f}{ratio:>7.2f}"
        )
    print(f"ratio = {baseline} median / operation median (>= 1: as fast or faster)")
    print("CPU s = median user+system seconds of the operation (all threads and child processes)")
    print(f"pull --copy vs {baseline}: {median[baseline] / median['pull-copy']:.2f} (goal >= 0.8)")
    if "cp-openssl-sync" in median:
        push = median["cp-openssl-sync"] / median["push"]
        print(f"push vs cp -r + openssl + sync: {push:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cache", choices=["warm", "cold"], default="warm")
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    args = parser.parse_args()

    cold = args.cache == "cold"
    work = Path(tempfile.mkdtemp(prefix="expctl-artifacts-bench-", dir=args.dir))
    try:
        size = make_files(work / "src", args.size_mb, args.files)
        store = ArtifactStore(work / "store")
        publish_path(work / "src", "bench", type="dataset", store_root=store.root)
        cache = "warm: sources and blobs in the page cache; `sync` before each timing"
        if cold:
            dropped = drop_caches()
            if dropped is None:
                cache = "COLD REQUESTED BUT drop_caches IS NOT WRITABLE HERE: measured warm"
                cold = False
            else:
                cache = f"cold: drop_caches before each timing ({dropped})"
        load = os.getloadavg()[0]
        times = measure(work, store, args.repeats, cold)
        baseline = "cp-openssl" if "cp-openssl" in times else "cp-sha256sum"
        print(
            f"artifact of {size / 1e6:.0f} MB in {args.files} files, median of {args.repeats}, "
            f"interleaved (dir {args.dir}, {os.cpu_count()} CPUs, "
            f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)"
        )
        print(f"page cache: {cache}")
        report(times, size / 1e6, baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
