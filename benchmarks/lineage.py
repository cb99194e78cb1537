"""`expctl artifacts show` (lineage) over a store of 1,000 versions and 1,000 run directories.

    python benchmarks/lineage.py                  # 1,000 versions, 1,000 runs, median of 7
    python benchmarks/lineage.py --runs 5000 --repeats 11

Builds, in a temp dir (removed at the end), a store of ``--versions`` versions of one model
(manifests with a realistic config in their metadata, as the trainer publishes them) and
``--runs`` run directories with realistic ``summary.json``, ``overrides.yaml`` and
``provenance.json``: run i published version i; a third of the runs were ``--init-from`` an
earlier version, so the version shown has a chain of ancestors and a handful of consumers.

Timed, warm cache, median of ``--repeats``:

* ``version_lineage`` as a library call (resolve, producer, chain, scan of every summary.json),
  and ``find_consumers`` (the scan) alone;
* ``expctl artifacts show NAME:vK`` and ``--format json`` as the CLI process users run;
* baselines in the same run: ``expctl --help`` (process start, the floor of any command),
  the same ``artifacts show`` over an empty runs root (the command's fixed cost: Typer's option
  parsing, imports, resolving the version) and ``expctl runs list`` over the same runs root
  (reads every summary.json too).

Ratios: show process / each baseline process. The goal (issue 21): the library call ≤ 100 ms,
and the scan's cost in the process (show minus the empty-runs-root baseline) ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from expctl.artifacts import ArtifactStore
from expctl.artifacts.manifest import ArtifactVersion, FileEntry, content_digest
from expctl.runs.lineage import find_consumers, version_lineage

NAME = "bench-model"


def config(i: int) -> dict:
    return {
        "model": {"_target_": "expctl.models.MLP", "hidden": [128, 64], "dropout": 0.1},
        "optim": {"_target_": "torch.optim.AdamW", "lr": 10 ** -(2 + i % 3), "weight_decay": 0.01},
        "data": {"name": "digits", "batch_size": 64, "num_workers": 0, "val_fraction": 0.2},
        "trainer": {"epochs": 10, "device": "cpu", "precision": "32", "seed": i},
        "checkpoint": {"monitor": "val_loss", "mode": "min", "top_k": 3},
        "artifact": {"publish": True, "name": NAME, "aliases": ["best"]},
        "wandb": {"mode": "offline", "project": "expctl", "tags": ["bench"]},
    }


def build(root: Path, n_versions: int, n_runs: int) -> tuple[ArtifactStore, Path, int]:
    """The store and runs root; returns the version number to show (mid-chain)."""
    rng = random.Random(0)
    store = ArtifactStore(root / "store")
    runs_root = root / "runs"
    name_dir = store.name_dir(NAME)
    name_dir.mkdir(parents=True)
    versions: list[ArtifactVersion] = []
    run_dirs: list[Path] = []
    inits: list[int | None] = []
    for i in range(max(n_versions, n_runs)):
        run_dir = (
            runs_root
            / "digits-mlp"
            / f"20260101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-r{i:05d}"
        )
        run_dirs.append(run_dir)
        # a third of runs start from an earlier version, mostly a recent one
        inits.append(max(0, i - rng.randint(1, 5)) if i and rng.random() < 0.34 else None)
    for i in range(n_versions):
        files = []
        for k in range(3):
            data = f"{i}-{k}".encode() * 100
            sha = hashlib.sha256(data).hexdigest()
            blob = store.blob_path(sha)
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            files.append(FileEntry(f"epoch={k}-step={k * 100}.pt", len(data), sha))
        metrics = {"val_loss": 1 / (i + 1), "val_acc": 0.9, "train_loss": 0.3, "epoch": 9}
        version = ArtifactVersion(
            NAME,
            i,
            "model",
            content_digest(files),
            tuple(files),
            "2026-01-01T00:00:00+00:00",
            {
                "run_dir": str(run_dirs[i]) if i < n_runs else None,
                "best_metrics": metrics,
                "final_metrics": metrics,
                "monitor": "val_loss",
                "mode": "min",
                "config": config(i),
                "best_file": files[0].path,
            },
        )
        (name_dir / f"v{i}.json").write_text(json.dumps(version.manifest(), indent=2))
        versions.append(version)
    (name_dir / "aliases.json").write_text(json.dumps({"latest": n_versions - 1, "best": 0}))
    for i, run_dir in enumerate(run_dirs[:n_runs]):
        run_dir.mkdir(parents=True)
        init = inits[i]
        init_from = None
        if init is not None and init < n_versions:
            v = versions[init]
            init_from = {
                "ref": v.ref,
                "version": v.ref,
                "file": v.files[0].path,
                "sha256": v.files[0].sha256,
            }
        metrics = {"val_loss": 1 / (i + 1), "val_acc": 0.9, "train_loss": 0.3, "epoch": 9}
        summary = {
            "status": "completed",
            "name": "digits-mlp",
            "run_dir": str(run_dir),
            "started_at": f"2026-01-01T00:00:{i % 60:02d}.000+00:00",
            "ended_at": "2026-01-01T01:00:00+00:00",
            "error": None,
            "seed": i,
            "device": "cpu",
            "device_description": "CPU (16 threads)",
            "precision": "32",
            "num_threads": 16,
            "world_size": 1,
            "epochs_completed": 10,
            "step": 1000,
            "resumed_from_step": None,
            "init_from": init_from,
            "overrides": ["trainer.epochs=10", f"optim.lr={10 ** -(2 + i % 3)}"],
            "sweep": None,
            "final_metrics": metrics,
            "best_metrics": metrics,
            "monitor": {"metric": "val_loss", "mode": "min"},
            "best_checkpoint": "checkpoints/epoch=9-step=1000.pt",
            "checkpoints": [f"checkpoints/epoch={k}-step={k * 100}.pt" for k in range(3)],
            "last_checkpoint": "checkpoints/last.pt",
            "wandb": {
                "mode": "offline",
                "path": None,
                "run_id": f"r{i:05d}",
                "sync_command": None,
                "sync_dirs": [],
            },
            "artifact": versions[i].ref if i < n_versions else None,
            "timings": {"total_s": 3600.0, "first_step_s": 1.2},
            "notes": [],
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        (run_dir / "overrides.yaml").write_text(f"- trainer.epochs=10\n- optim.lr={0.01}\n")
        (run_dir / "metrics.jsonl").write_text(json.dumps(metrics) + "\n")
        provenance = {
            "git": {"commit": hashlib.sha1(str(i).encode()).hexdigest(), "dirty": i % 2 == 0}
        }
        (run_dir / "provenance.json").write_text(json.dumps(provenance))

    # the version to show: in the second half, with the longest chain of ancestors behind it,
    # then the most consumers
    def ancestors(i: int) -> int:
        n = 0
        while i < n_runs and inits[i] is not None:
            i, n = inits[i] or 0, n + 1
        return n

    consumed = [i for i in inits[:n_runs] if i is not None and i >= n_versions // 2]
    candidates = set(consumed) or {n_versions // 2}
    target = max(candidates, key=lambda i: (ancestors(i), consumed.count(i)))
    return store, runs_root, target


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm the page cache and imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    args = parser.parse_args()

    exe = shutil.which("expctl", path=str(Path(sys.executable).parent))
    base = [exe] if exe else [sys.executable, "-m", "expctl"]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="expctl-lineage-") as tmp:
        root = Path(tmp)
        store, runs_root, target = build(root, args.versions, args.runs)
        ref = f"{NAME}:v{target}"
        lineage = version_lineage(store, ref, runs_root)
        print(
            f"store: {args.versions} versions, runs root: {args.runs} runs; showing {ref}: "
            f"{len(lineage.chain)} ancestors, {len(lineage.consumers)} consumers"
        )
        common = ["--store", str(store.root), "--runs-dir", str(runs_root)]

        def process(*argv: str) -> Callable[[], object]:
            return lambda: subprocess.run(
                [*base, *argv], check=True, stdout=subprocess.DEVNULL, cwd=root
            )

        timings = {
            "version_lineage (library call)": median_ms(
                lambda: version_lineage(store, ref, runs_root), args.repeats
            ),
            "  of which: find_consumers (scan of every summary.json)": median_ms(
                lambda: find_consumers(lineage.version, runs_root, []), args.repeats
            ),
            "expctl artifacts show (process)": median_ms(
                process("artifacts", "show", ref, *common), args.repeats
            ),
            "expctl artifacts show --format json (process)": median_ms(
                process("artifacts", "show", ref, *common, "--format", "json"), args.repeats
            ),
            "baseline: expctl --help (process)": median_ms(process("--help"), args.repeats),
            "baseline: expctl artifacts show, empty runs root (process)": median_ms(
                process("artifacts", "show", ref, "--store", str(store.root), "--runs-dir", "none"),
                args.repeats,
            ),
            "baseline: expctl runs list (process)": median_ms(
                process("runs", "list", "--runs-dir", str(runs_root)), args.repeats
            ),
        }
    width = max(map(len, timings))
    for label, ms in timings.items():
        print(f"{label.ljust(width)}  {ms:8.1f} ms")
    show = timings["expctl artifacts show (process)"]
    start = timings["baseline: expctl --help (process)"]
    listing = timings["baseline: expctl runs list (process)"]
    empty = timings["baseline: expctl artifacts show, empty runs root (process)"]
    print(f"show process / --help process:   {show / start:.2f}x")
    print(f"show process / same command over no runs: {show / empty:.2f}x")
    print(f"show process / runs list process: {show / listing:.2f}x")
    print(f"show's own work (process - --help): {show - start:.1f} ms")
    print(f"the scan in the process (show - same over no runs): {show - empty:.1f} ms")


if __name__ == "__main__":
    main()
