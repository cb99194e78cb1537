"""Artifact pull vs `cp -r` + `sha256sum` of the same files, side by side in one run.

    python benchmarks/artifacts.py                 # ~500 MB in 5 files, median of 3
    python benchmarks/artifacts.py --size-mb 100 --repeats 5

Everything is written to a temp dir under --dir (default: the current directory, i.e. the same
disk as a project-local store) and removed at the end. Both sides read warm page cache; each
repeat runs the baseline and the pulls in alternating order, into fresh directories.

Reported: push throughput (copy + sha256 + fsync into the content-addressed store), pull in
copy mode (copy + verify in one read pass), pull in link mode (verify by reading each blob,
then hard-link: no bytes written, so it is expected to win easily), and the baseline
`cp -r SRC DST && sha256sum DST/*` (copy, then a second read to verify). Ratio = baseline time /
our time (>= 1 means we are as fast or faster; the goal is >= 0.8). GNU sha256sum may lack the
SHA extensions OpenSSL (and Python's hashlib) use, so two more references are printed:
`cp -r` + `openssl dgst -sha256` (a fast verifier) and `cp -r` alone (no verification: a floor).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from expctl.artifacts import ArtifactStore, publish_path


def make_files(directory: Path, total_mb: int, count: int) -> int:
    directory.mkdir()
    chunk = os.urandom(1 << 20)  # incompressible; rotate it so files differ
    per_file = total_mb // count
    for i in range(count):
        with open(directory / f"part-{i}.bin", "wb") as f:
            for j in range(per_file):
                f.write(chunk[(i * 7 + j) % 4096 :] + chunk[: (i * 7 + j) % 4096])
    return per_file * count * (1 << 20)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def shell(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def copy_then_hash(hasher: str | None) -> Callable[[Path, Path], None]:
    """`cp -r SRC DST`, then (if given) ``hasher DST/*``: a copy and a second read pass."""
    verify = f" && {hasher} '{{dst}}'/* > /dev/null" if hasher else ""
    return lambda src, dst: shell(f"cp -r '{src}' '{dst}'" + verify.format(dst=dst))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="expctl-artifacts-bench-", dir=args.dir))
    try:
        size = make_files(work / "src", args.size_mb, args.files)
        mb = size / 1e6
        baselines = {"baseline": copy_then_hash("sha256sum"), "cp": copy_then_hash(None)}
        if shutil.which("openssl"):
            baselines["openssl"] = copy_then_hash("openssl dgst -sha256")
        times: dict[str, list[float]] = {name: [] for name in ("push", "copy", "link", *baselines)}
        store = ArtifactStore(work / "store")
        for r in range(args.repeats):
            # push into a fresh store each time: a second push of the same content is a no-op
            fresh = ArtifactStore(work / f"push-store-{r}")
            times["push"].append(
                timed(
                    lambda s=fresh: publish_path(
                        work / "src", "bench", type="dataset", store_root=s.root
                    )
                )
            )
            shutil.rmtree(fresh.root)
        publish_path(work / "src", "bench", type="dataset", store_root=store.root)

        for r in range(args.repeats):
            runs: dict[str, Callable[[], object]] = {
                "copy": lambda r=r: store.pull("bench", work / f"copy-{r}", mode="copy"),
                "link": lambda r=r: store.pull("bench", work / f"link-{r}", mode="link"),
            }
            for name, run in baselines.items():
                runs[name] = lambda r=r, run=run, name=name: run(work / "src", work / f"{name}-{r}")
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                times[name].append(timed(runs[name]))
                shutil.rmtree(work / f"{name}-{r}", ignore_errors=True)

        median = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"artifact of {mb:.0f} MB in {args.files} files, median of {args.repeats} "
            f"(dir {args.dir}, {os.cpu_count()} CPUs)"
        )
        print(f"{'operation':<44}{'seconds':>9}{'MB/s':>9}{'ratio':>8}")
        rows = [
            ("cp -r + sha256sum (baseline)", "baseline"),
            ("expctl pull, copy mode (--copy)", "copy"),
            ("expctl pull, hard-link mode", "link"),
            ("reference: cp -r + openssl dgst -sha256", "openssl"),
            ("reference: cp -r alone (no verification)", "cp"),
        ]
        for label, name in rows:
            if name in median:
                ratio = median["baseline"] / median[name]
                print(f"{label:<44}{median[name]:>9.2f}{mb / median[name]:>9.0f}{ratio:>8.2f}")
        print(
            f"{'expctl push (copy + sha256 + fsync)':<44}{median['push']:>9.2f}"
            f"{mb / median['push']:>9.0f}{'':>8}"
        )
        if "openssl" in median:
            print(
                f"pull (copy mode) vs cp + openssl: ratio {median['openssl'] / median['copy']:.2f}"
            )
        print("ratio = baseline seconds / expctl seconds (goal >= 0.8)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
