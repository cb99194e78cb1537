"""Per-record cost of reading a sweep journal: expctl's parse and replay against Optuna's own.

Every agent parses and applies every record every other agent appends, so these costs are paid
once per agent and record. The journal is a real one: a grid sweep run by two agents.

    python benchmarks/journal_replay.py               # a 4,000-point grid, best of 7
    python benchmarks/journal_replay.py --points 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # sweep_helpers

from sweep_helpers import agent, create

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage.journal_records import parse_lines
from expctl.sweeps.storage.journal_replay import FastReplay


def best_of(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from optuna.storages.journal._storage import JournalStorageReplayResult

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "sweeps.journal")
        spec = parse_spec(
            {
                "method": "grid",
                "metric": {"name": "loss"},
                "parameters": {"x": {"values": list(range(args.points))}},
            }
        )
        info = create(spec, url)
        for _ in range(2):
            agent(info.id, url, objective=lambda ctx: 0.0, count=args.points // 2)
        raw = Path(url).read_bytes()
    lines = raw.split(b"\n")[:-1]
    records = [json.loads(line) for line in lines]
    n = len(lines)
    print(f"a {args.points}-point grid run by 2 agents: {n} records, {len(raw) / n:.0f} bytes each")
    print(f"{'per record':<34}{'Optuna':>10}{'expctl':>10}{'ratio':>9}")
    rows = [
        (
            "parse (json.loads / parse_lines)",
            lambda: [json.loads(line) for line in lines],
            lambda: parse_lines(enumerate(lines, start=1), url),
        ),
        (
            "apply (Optuna's replay / FastReplay)",
            lambda: JournalStorageReplayResult("bench-").apply_logs(records),
            lambda: FastReplay("bench-").apply_logs(records),
        ),
    ]
    for name, theirs, ours in rows:
        a, b = best_of(args.repeats, theirs) / n * 1e6, best_of(args.repeats, ours) / n * 1e6
        print(f"{name:<34}{a:>8.2f}µs{b:>8.2f}µs{b / a:>8.2f}x")


if __name__ == "__main__":
    main()
