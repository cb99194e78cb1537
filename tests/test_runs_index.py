"""The runs index is a cache: `runs list` through it says exactly what reading every run dir
says, however the run dirs change under it and whatever happens to the index file itself.

Every check compares the indexed selection with the one made without an index
(``EXPCTL_RUNS_INDEX=0``: every run dir read, `apply_where` + `sort_views` as before).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expctl.fsutil import atomic_write_json
from expctl.record.scan import scan_runs_root
from expctl.runs import index as runs_index
from expctl.runs import index_store
from expctl.runs.labels import update_labels
from expctl.runs.query import RunView, apply_where, filter_runs, parse_condition, sort_views
from expctl.runs.records import load_run
from expctl.runs.selection import select_runs

QUERIES: list[dict] = [
    {},
    {"limit": 5},
    {"sort": "val_loss", "limit": 7},
    {"sort": "-val_loss", "limit": 7},
    {"sort": "val_loss"},
    {"sort": "optim.lr", "limit": 9},  # ties: many runs share a learning rate
    {"sort": "-optim.lr"},
    {"sort": "model", "limit": 4},  # text values
    {"sort": "config.data.batch_size", "limit": 6},  # from config.yaml
    {"sort": "data.batch_size", "limit": 6},  # a bare key only the config has
    {"where": ["optim.lr<0.05"], "sort": "val_loss", "limit": 10},
    {"where": ["model=large", "val_loss>=0.5"]},
    {"where": ["best.val_loss<0.6"], "sort": "-best.val_loss"},
    {"where": ["tag=keep"]},
    {"where": ["tag!=keep"], "limit": 3},
    {"where": ["status!=completed"]},
    {"where": ["name~exp-1*"], "sort": "duration"},
    {"where": ["config.optim.name=adam"], "limit": 20},
    {"where": ["param.seed=3"]},
    {"statuses": ["failed,interrupted"], "sort": "val_acc"},
    {"name": "exp-2", "sort": "-val_acc", "limit": 2},
    {"where": ["sweep=s1"], "sort": "started"},
    {"where": ["kind=program"]},
]


def _write_run(root: Path, i: int, rng: random.Random) -> Path:
    """A run dir as `expctl run` writes it (summary.json, overrides.yaml, config.yaml), with
    the values that make selecting hard: ties, NaN, missing metrics, text, program runs."""
    kind = "program" if i % 11 == 0 else "trainer"
    run_dir = root / f"exp-{i % 4}" / f"20260101-{i // 60:02d}{i % 60:02d}00-{i:06x}"
    run_dir.mkdir(parents=True)
    val_loss = rng.choice([rng.random(), rng.random(), 0.5, float("nan"), None])
    final = {"val_acc": round(rng.random(), 2), "train_loss": rng.random()}
    if val_loss is not None:
        final["val_loss"] = val_loss
    lr = rng.choice([0.001, 0.01, 0.1])
    summary = {
        "status": rng.choice(["completed"] * 6 + ["failed", "interrupted"]),
        "kind": kind,
        "name": f"exp-{i % 4}",
        "started_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
        "ended_at": f"2026-01-01T01:{i // 60:02d}:{i % 60:02d}+00:00",
        "final_metrics": final,
        "best_metrics": {"val_loss": rng.random()} if i % 3 else {},
        "monitor": {"metric": "val_loss", "mode": "min"},
        "sweep": {"id": "s1", "trial": i} if i % 5 == 0 else None,
    }
    if kind == "program":
        summary["params"] = {"optim.lr": lr, "seed": i % 7}
    atomic_write_json(run_dir / "summary.json", summary)
    overrides = [f"optim.lr={lr}", f"model={rng.choice(['small', 'large'])}", f"seed={i % 7}"]
    (run_dir / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    batch = rng.choice([16, 32, 64])
    optim = rng.choice(["adam", "sgd"])
    (run_dir / "config.yaml").write_text(
        f"data:\n  batch_size: {batch}\noptim:\n  name: {optim}\n  lr: {lr}\n"
    )
    if i % 7 == 0:
        update_labels(run_dir, add=["keep"])
    return run_dir


def _tree(root: Path, count: int, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    return [_write_run(root, i, rng) for i in range(count)]


def _without_index(root: Path, query: dict) -> list[dict]:
    """What `runs list` chose before there was an index."""
    runs = [load_run(p) for p in scan_runs_root(root).dirs]
    runs = [r for r in runs if not r.refused]
    runs = filter_runs(runs, name=query.get("name"), statuses=query.get("statuses", []))
    conditions = [parse_condition(w) for w in query.get("where", [])]
    views = sort_views(apply_where([RunView(r) for r in runs], conditions), query.get("sort"))
    if query.get("limit") is not None:
        views = views[: query["limit"]]
    return [_shown(v) for v in views]


def _with_index(root: Path, query: dict) -> list[dict]:
    conditions = [parse_condition(w) for w in query.get("where", [])]
    selection = select_runs(
        root,
        name=query.get("name"),
        statuses=query.get("statuses", []),
        conditions=conditions,
        sort=query.get("sort"),
        limit=query.get("limit"),
    )
    return [_shown(v) for v in selection.views]


def _shown(view: RunView) -> dict:
    data = view.run.to_json()
    data.pop("duration_s")  # a running run's grows while we look
    return json.loads(json.dumps(data, default=str).replace("NaN", '"nan"'))


def _same(root: Path) -> None:
    for query in QUERIES:
        assert _with_index(root, query) == _without_index(root, query), query


@pytest.fixture
def index_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs-index"
    monkeypatch.setenv("EXPCTL_INDEX_DIR", str(path))
    return path


def _index_files(index_dir: Path) -> list[Path]:
    return sorted(index_dir.glob("*.idx"))


def _settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every change so far count as settled (instead of waiting SETTLE_NS)."""
    monkeypatch.setattr(runs_index, "SETTLE_NS", -(10**18))


def test_the_index_selects_what_reading_every_run_dir_selects(tmp_path, index_dir, monkeypatch):
    root = tmp_path / "runs"
    _tree(root, 150)
    _settle(monkeypatch)
    _same(root)  # first time: builds the index
    assert len(_index_files(index_dir)) == 1
    _same(root)  # then answered from it (the run dirs only stat-ed)


def test_a_warm_query_reads_no_record_file(tmp_path, index_dir, monkeypatch):
    root = tmp_path / "runs"
    _tree(root, 40)
    _settle(monkeypatch)
    _with_index(root, {"sort": "val_loss"})  # build
    read: list[str] = []
    real_load_run = runs_index.load_run
    monkeypatch.setattr(runs_index, "load_run", lambda p: read.append(str(p)) or real_load_run(p))
    _with_index(root, {"sort": "val_loss", "limit": 3, "where": ["optim.lr<0.05"]})
    assert read == []  # only the 3 shown runs are read, by the selection itself


def test_new_deleted_finished_retagged_and_rewritten_runs_are_seen(
    tmp_path, index_dir, monkeypatch
):
    root = tmp_path / "runs"
    dirs = _tree(root, 60)
    _settle(monkeypatch)
    _same(root)
    rng = random.Random(1)
    _write_run(root, 60, rng)  # new
    _write_run(root, 61, rng)
    import shutil

    shutil.rmtree(dirs[3])  # deleted
    shutil.rmtree(dirs[0].parent)  # a whole name
    summary = json.loads((dirs[10] / "summary.json").read_text())
    summary["final_metrics"]["val_loss"] = -1.0  # now the best
    summary["status"] = "failed"
    atomic_write_json(dirs[10] / "summary.json", summary)  # as expctl writes: a rename
    update_labels(dirs[13], add=["keep"])
    update_labels(dirs[14], remove=["keep"])
    _same(root)
    assert _with_index(root, {"sort": "val_loss", "limit": 1})[0]["id"] == dirs[10].name[-6:]


def test_a_running_run_is_asked_each_time_and_shows_crashed_once_its_process_is_gone(
    tmp_path, index_dir, monkeypatch
):
    root = tmp_path / "runs"
    _tree(root, 10)
    run_dir = _write_run(root, 10, random.Random(2))
    summary = json.loads((run_dir / "summary.json").read_text())
    atomic_write_json(run_dir / "summary.json", {**summary, "status": "running"})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from expctl.rundir import "
            "holding_run_dir\nwith holding_run_dir(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        _settle(monkeypatch)
        assert [r["status"] for r in _with_index(root, {"where": ["status=running"]})] == [
            "running"
        ]
        _same(root)
    finally:
        holder.kill()
        holder.wait()
    # the same files, the same directory times: only the lock says it is gone
    assert _with_index(root, {"where": ["status=running"]}) == []
    assert len(_with_index(root, {"where": ["status=crashed"]})) == 1
    _same(root)


def test_a_change_inside_the_timestamp_granularity_is_not_missed(tmp_path, index_dir):
    """A record rewritten in place right after the index was written keeps the directory's
    times on a coarse filesystem: such rows are re-read until they are older than SETTLE_NS."""
    root = tmp_path / "runs"
    dirs = _tree(root, 20)
    _same(root)
    summary_path = dirs[5] / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["final_metrics"]["val_loss"] = -5.0
    with open(summary_path, "r+") as f:  # in place: no rename, the directory's times stay
        f.write(json.dumps(summary))
        f.truncate()
    assert index_store.load_index(index_file := index_store.index_file(root), str(root)) is not None
    assert os.stat(dirs[5]).st_mtime_ns < os.stat(index_file).st_mtime_ns  # times unchanged
    assert _with_index(root, {"sort": "val_loss", "limit": 1})[0]["id"] == dirs[5].name[-6:]
    _same(root)


def test_shown_rows_are_read_from_the_run_dir_even_when_the_index_is_stale(
    tmp_path, index_dir, monkeypatch
):
    root = tmp_path / "runs"
    dirs = _tree(root, 20)
    _settle(monkeypatch)
    _same(root)
    before = os.stat(dirs[7])
    (dirs[7] / "overrides.yaml").write_text("- optim.lr=0.5\n")  # in place: no rename
    after = os.stat(dirs[7])
    assert (before.st_mtime_ns, before.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns)
    shown = {r["id"]: r for r in _with_index(root, {})}
    assert shown[dirs[7].name[-6:]]["overrides"] == ["optim.lr=0.5"]


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "flipped byte", "empty", "other version", "other root", "directory"],
)
def test_a_damaged_index_is_rebuilt_and_never_shows_wrong_data(
    tmp_path, index_dir, monkeypatch, damage
):
    root = tmp_path / "runs"
    _tree(root, 40)
    _settle(monkeypatch)
    _same(root)
    [path] = _index_files(index_dir)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "flipped byte":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other version":
        path.write_bytes(data.replace(index_store.MAGIC, index_store.MAGIC[:-1] + b"Y", 1))
    elif damage == "other root":  # another root's index copied over this one's
        other = tmp_path / "other"
        _tree(other, 5, seed=9)
        _with_index(other, {})
        path.write_bytes(index_store.index_file(other).read_bytes())
    else:
        path.unlink()
        path.mkdir()  # not even a file: the index is unusable, listing still works
    _same(root)


def test_an_unwritable_index_dir_only_costs_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("EXPCTL_INDEX_DIR", str(blocker / "index"))
    root = tmp_path / "runs"
    _tree(root, 20)
    _same(root)


def test_concurrent_listers_and_writers_agree_with_the_run_dirs(tmp_path, index_dir):
    """Four `runs list` processes and a writer adding runs at once: every listing is
    complete and valid JSON, and afterwards the index agrees with the run dirs."""
    root = tmp_path / "runs"
    _tree(root, 60)
    env = {**os.environ, "EXPCTL_INDEX_DIR": str(index_dir), "WANDB_MODE": "disabled"}
    args = [sys.executable, "-m", "expctl", "runs", "list", "--runs-dir", str(root)]
    listers = [
        subprocess.Popen(
            [*args, "--format", "json", "--sort", "val_loss"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    rng = random.Random(3)
    for i in range(60, 80):
        _write_run(root, i, rng)
    for lister in listers:
        out, err = lister.communicate(timeout=120)
        assert lister.returncode == 0, err
        listed = json.loads(out)
        assert 60 <= len(listed) <= 80  # each saw the tree at some moment
    time.sleep(0.01)
    _same(root)


def test_the_cli_lists_through_the_index_and_without_it_alike(tmp_path, index_dir):
    root = tmp_path / "runs"
    _tree(root, 30)
    args = [sys.executable, "-m", "expctl", "runs", "list", "--runs-dir", str(root)]
    args += ["--where", "optim.lr<0.05", "--sort", "-val_acc", "--limit", "5", "--format", "json"]

    def listing(**env: str) -> list:
        proc = subprocess.run(
            args, env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout)

    plain = listing(EXPCTL_RUNS_INDEX="0")
    assert not _index_files(index_dir)  # EXPCTL_RUNS_INDEX=0 writes none
    first, second = listing(), listing()
    assert _index_files(index_dir)
    for rows in (first, second):
        assert [r["id"] for r in rows] == [r["id"] for r in plain]
        assert [r["final"] for r in rows] == [r["final"] for r in plain]
    assert all(not (isinstance(r["final"], float) and math.isnan(r["final"])) for r in plain)


def test_a_first_listing_read_by_worker_processes_is_the_same(tmp_path, index_dir, monkeypatch):
    """Many new runs are read by one worker process per CPU: the rows they send back build
    the same index (and the same listing) as reading them here."""
    monkeypatch.setattr(runs_index, "PARALLEL_FROM", 1)
    monkeypatch.setattr(runs_index, "_CHUNK", 7)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    root = tmp_path / "runs"
    _tree(root, 50)
    rows, runs = runs_index.read_rows(root, runs_index.scan(root, set()).paths)
    assert runs is None and len(rows) == 50  # read by the workers
    _settle(monkeypatch)
    _same(root)


def test_artifact_consumers_come_through_the_index_and_stay_fresh(tmp_path, index_dir, monkeypatch):
    """`artifacts show`'s consumers (runs initialised from a version) are found through the
    index's init_from columns: a consumer written after the index was built is found too."""
    from types import SimpleNamespace

    from expctl.runs.lineage import find_consumers

    root = tmp_path / "runs"
    dirs = _tree(root, 30)
    version = SimpleNamespace(ref="model:v3", files=[SimpleNamespace(sha256="ab" * 32)])

    def consume(run_dir: Path, init: dict) -> None:
        summary = json.loads((run_dir / "summary.json").read_text())
        atomic_write_json(run_dir / "summary.json", {**summary, "init_from": init})

    consume(dirs[4], {"version": "model:v3", "path": "x"})
    _settle(monkeypatch)
    assert [Path(c.run_dir) for c in find_consumers(version, root, [])] == [dirs[4]]
    consume(dirs[9], {"sha256": "ab" * 32})  # a pulled copy of the version's file
    consume(dirs[11], {"version": "model:v2"})  # another version: not a consumer
    found = {Path(c.run_dir) for c in find_consumers(version, root, [])}
    assert found == {dirs[4], dirs[9]}
