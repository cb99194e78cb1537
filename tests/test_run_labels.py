"""Run labels: `expctl runs tag|untag|note` on real run directories (expctl.runs.labels).

One tiny run is trained once per module with the real `expctl run`; each test works on its own
copies of that run directory, named so `latest` / `latest~1` / id prefixes are known. Labels
live in `labels.json` beside the record: `summary.json` is never rewritten, several `runs tag`
processes at once lose nothing, hostile label files are refused like any record file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expctl.runs.labels import (
    LABELS_FILE,
    LABELS_LOCK_FILE,
    MAX_TAG_CHARS,
    Labels,
    initial_labels,
    matches_tag,
    read_labels,
)

REPO = Path(__file__).resolve().parents[1]
TINY = ["trainer.epochs=1", "data=synthetic", "data.num_samples=128"]
RECORD_FILES = ("summary.json", "metrics.jsonl", "config.yaml", "overrides.yaml")
OLD = "20260101-120000-aaa111"  # latest~1
NEW = "20260101-120001-bbb222"  # latest


def _exe() -> list[str]:
    exe = shutil.which("expctl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "expctl"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCTL_", "WANDB_"))}
    env.update(WANDB_MODE="disabled", WANDB_SILENT="true", NO_COLOR="1", COLUMNS="300")
    return env


def expctl(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_exe(), *args],
        cwd=cwd,
        env=_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,  # a hang (a FIFO opened blocking, a lock never released) fails here
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory written by a real `expctl run`."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(REPO / "configs", root / "configs")
    proc = expctl("run", *TINY, "-q", cwd=root)
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.strip())
    assert (run / "summary.json").is_file()
    return run


@pytest.fixture
def runs(trained: Path, isolated: Path) -> Path:
    """./runs with two copies of the trained run: OLD (latest~1) and NEW (latest)."""
    for dirname in (OLD, NEW):
        shutil.copytree(trained, isolated / "runs" / "digits-mlp" / dirname, symlinks=True)
    return isolated / "runs"


def _run(runs: Path, dirname: str = NEW) -> Path:
    return runs / "digits-mlp" / dirname


def _labels_json(run: Path) -> dict:
    return json.loads((run / LABELS_FILE).read_text())


def _record_state(run: Path) -> dict[str, tuple[bytes, int]]:
    return {f: ((run / f).read_bytes(), (run / f).stat().st_mtime_ns) for f in RECORD_FILES}


# -- the commands --------------------------------------------------------------------------------


def test_tag_is_a_set_and_untag_of_a_missing_tag_is_a_note(runs: Path, cli) -> None:
    run = _run(runs)
    first = cli("runs", "tag", "latest", "baseline", "lr-sweep")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == str(run.absolute())  # data: the run directory, only it
    assert "tagged run digits-mlp/bbb222 with baseline, lr-sweep" in first.stderr

    again = cli("runs", "tag", "latest", "baseline", "best")
    assert again.exit_code == 0, again.stderr
    assert "already had baseline" in again.stderr
    assert _labels_json(run)["tags"] == ["baseline", "lr-sweep", "best"]  # baseline kept once

    untag = cli("runs", "untag", "latest", "lr-sweep", "never-there")
    assert untag.exit_code == 0, untag.stderr
    assert "has no tag never-there" in untag.stderr
    assert "untagged run digits-mlp/bbb222: lr-sweep" in untag.stderr
    assert untag.stdout.strip() == str(run.absolute())
    assert _labels_json(run)["tags"] == ["baseline", "best"]

    nothing = cli("runs", "untag", "latest", "never-there")
    assert nothing.exit_code == 0 and "has no tag never-there" in nothing.stderr
    assert _labels_json(run)["tags"] == ["baseline", "best"]


def test_notes_replace_append_clear_and_stdin(runs: Path) -> None:
    cwd = runs.parent
    run = _run(runs)
    assert expctl("runs", "note", "latest", "first try", cwd=cwd).returncode == 0
    assert _labels_json(run)["notes"] == "first try"
    assert expctl("runs", "note", "latest", "second try", cwd=cwd).returncode == 0
    assert _labels_json(run)["notes"] == "second try"  # one text, replaced (W&B's run notes)
    assert expctl("runs", "note", "latest", "--append", "lr too high", cwd=cwd).returncode == 0
    assert _labels_json(run)["notes"] == "second try\nlr too high"
    table = expctl("runs", "list", cwd=cwd).stdout
    assert table.splitlines()[0].split()[-1] == "note"
    assert "  second try\n" in table, table  # the note column: the user's note
    piped = expctl("runs", "note", "latest", "-", cwd=cwd, stdin="from\r\nstdin\r\n")  # CRLF too
    assert piped.returncode == 0, piped.stderr
    assert _labels_json(run)["notes"] == "from\nstdin"
    cleared = expctl("runs", "note", "latest", "", cwd=cwd)
    assert cleared.returncode == 0 and "cleared" in cleared.stderr
    assert _labels_json(run) == {"tags": [], "notes": None}


def test_labels_never_rewrite_the_record(runs: Path) -> None:
    cwd = runs.parent
    run = _run(runs)
    before = _record_state(run)
    time.sleep(0.01)  # not a timing assertion: lets a rewrite show in mtime_ns on coarse clocks
    for args in (
        ("tag", "latest", "baseline", "x"),
        ("untag", "latest", "x"),
        ("note", "latest", "some notes"),
        ("note", "latest", "--append", "more"),
    ):
        proc = expctl("runs", *args, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    assert _record_state(run) == before  # bytes and mtime of every record file
    assert _labels_json(run) == {"tags": ["baseline"], "notes": "some notes\nmore"}
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())  # no temp file left


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("", "is empty"),
        ("two words", "contains whitespace"),
        ("tab\there", "contains whitespace"),
        ("a,b", "contains a comma"),
        ("\x1b[2Jboom", "control character U+001B"),
        ("rtl\u202eevil", "control character U+202E"),
        ("x" * (MAX_TAG_CHARS + 1), "longer than 64"),
    ],
)
def test_invalid_tags_exit_2_with_a_hint_and_write_nothing(
    runs: Path, cli, tag: str, why: str
) -> None:
    for command in ("tag", "untag"):
        result = cli("runs", command, "latest", "fine", tag)
        assert result.exit_code == 2, (command, result.stderr)
        assert why in result.stderr
        assert "hint: a tag is 1 to 64 characters" in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
    assert not (_run(runs) / LABELS_FILE).exists()  # not even the valid tag was written


def test_longest_and_unicode_tags_are_fine(runs: Path, cli) -> None:
    longest = "x" * MAX_TAG_CHARS
    result = cli("runs", "tag", "latest", longest, "größe", "v2.1", "lr=0.1")
    assert result.exit_code == 0, result.stderr
    assert _labels_json(_run(runs))["tags"] == [longest, "größe", "v2.1", "lr=0.1"]


def test_notes_with_terminal_escapes_are_refused(runs: Path, cli) -> None:
    result = cli("runs", "note", "latest", "hi\x1b]0;pwned\x07")
    assert result.exit_code == 2
    assert "control character U+001B" in result.stderr and "hint:" in result.stderr
    assert not (_run(runs) / LABELS_FILE).exists()


def test_run_references_are_those_of_runs_show(runs: Path, cli) -> None:
    old, new = _run(runs, OLD), _run(runs, NEW)
    assert cli("runs", "tag", "latest", "newest").exit_code == 0
    assert cli("runs", "tag", "latest~1", "older").exit_code == 0
    assert cli("runs", "tag", "aaa", "by-prefix").exit_code == 0
    assert cli("runs", "tag", str(new), "by-path").exit_code == 0
    assert _labels_json(old)["tags"] == ["older", "by-prefix"]
    assert _labels_json(new)["tags"] == ["newest", "by-path"]
    unknown = cli("runs", "tag", "zzz", "x")
    assert unknown.exit_code == 2
    assert "no run 'zzz'" in unknown.stderr and "hint:" in unknown.stderr
    ambiguous = cli("runs", "note", "20260101", "x")
    assert ambiguous.exit_code == 2 and "ambiguous" in ambiguous.stderr


def test_list_and_show_show_labels(runs: Path, cli) -> None:
    assert cli("runs", "tag", "latest", "baseline", "best").exit_code == 0
    assert cli("runs", "note", "latest", "line one").exit_code == 0
    assert cli("runs", "note", "latest", "--append", "line two").exit_code == 0

    table = cli("runs", "list")
    assert table.exit_code == 0, table.stderr
    header, _, *rows = table.stdout.splitlines()
    assert "tags" in header.split()
    newest = next(r for r in rows if r.startswith("bbb222"))
    older = next(r for r in rows if r.startswith("aaa111"))
    assert "baseline,best" in newest and "baseline" not in older

    csv_out = cli("runs", "list", "--format", "csv").stdout.splitlines()
    columns = csv_out[0].split(",")
    import csv

    by_id = {row["id"]: row for row in csv.DictReader(csv_out)}
    assert "tags" in columns
    assert by_id["bbb222"]["tags"] == "baseline,best" and by_id["aaa111"]["tags"] == ""

    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    labels = {r["id"]: r["labels"] for r in listed}
    assert labels["bbb222"] == {"tags": ["baseline", "best"], "notes": "line one\nline two"}
    assert labels["aaa111"] == {"tags": [], "notes": None}

    page = cli("runs", "show", "latest").stdout.splitlines()
    assert any(line.split() == ["tags", "baseline,", "best"] for line in page), page
    notes_at = next(i for i, line in enumerate(page) if line.startswith("notes "))
    assert page[notes_at].split(None, 1)[1] == "line one"
    assert page[notes_at + 1].strip() == "line two"  # the second line, indented under it

    shown = json.loads(cli("runs", "show", "latest", "--format", "json").stdout)
    assert shown["run"]["labels"] == {"tags": ["baseline", "best"], "notes": "line one\nline two"}


def test_an_untagged_listing_has_no_tags_column(runs: Path, cli) -> None:
    header = cli("runs", "list").stdout.splitlines()[0].split()
    assert "tags" not in header  # tables stay as narrow as before until something is tagged


def test_a_running_run_can_be_tagged(runs: Path, cli) -> None:
    """W&B lets people edit a running run's tags; the labels lock is not the writer's lock."""
    from expctl.rundir import holding_run_dir

    run = _run(runs)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    with holding_run_dir(run):  # as the training process holds it for the whole run
        result = cli("runs", "tag", "latest", "watching")
        assert result.exit_code == 0, result.stderr
        listed = json.loads(cli("runs", "list", "--format", "json").stdout)
        this = next(r for r in listed if r["id"] == "bbb222")
        assert this["status"] == "running"
        assert this["labels"]["tags"] == ["watching"]


# -- several writers at once ---------------------------------------------------------------------


def _waiters_on(path: Path) -> int:
    """How many processes are blocked waiting for an flock on ``path`` (from /proc/locks)."""
    st = path.stat()
    inode = f":{st.st_ino} "
    return sum(
        1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and inode in line
    )


def test_eight_concurrent_tag_processes_lose_nothing(runs: Path) -> None:
    """8 real `expctl runs tag` processes, released at the same instant: every tag is kept.

    The test holds the labels lock while they start, waits until all 8 are blocked on it
    (/proc/locks), then lets go: all 8 read-modify-writes race for the same file at once.
    """
    run = _run(runs)
    lock_path = run / LABELS_LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    procs = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        procs = [
            subprocess.Popen(
                [*_exe(), "runs", "tag", str(run), f"t{i}"],
                cwd=runs.parent,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
        while _waiters_on(lock_path) < 8:
            assert all(p.poll() is None for p in procs), "a tagger finished without the lock"
            assert time.monotonic() < deadline, "the 8 taggers never all waited on the lock"
            time.sleep(0.05)
    finally:
        os.close(fd)  # release: the 8 go
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        assert stdout.strip() == str(run)
    assert sorted(_labels_json(run)["tags"]) == sorted(f"t{i}" for i in range(8))


# -- hostile and damaged label files -------------------------------------------------------------


def test_a_fifo_or_device_labels_file_is_refused_like_any_record_file(runs: Path) -> None:
    cwd = runs.parent
    fifo_run, device_run = _run(runs, OLD), _run(runs, NEW)
    os.mkfifo(fifo_run / LABELS_FILE)
    (device_run / LABELS_FILE).symlink_to("/dev/zero")

    listed = expctl("runs", "list", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    assert "aaa111" not in listed.stdout
    assert "bbb222" not in listed.stdout
    assert "skipped run" in listed.stderr and "FIFO" in listed.stderr
    assert "labels.json is a device" in listed.stderr

    for ref in ("aaa", "bbb"):
        tagged = expctl("runs", "tag", ref, "x", cwd=cwd)
        assert tagged.returncode == 1, tagged.stderr
        assert "labels of run" in tagged.stderr and "not changed" in tagged.stderr
        assert "hint: move" in tagged.stderr and "Traceback" not in tagged.stderr
    assert (device_run / LABELS_FILE).is_symlink()  # left as found

    shown = expctl("runs", "show", "bbb", cwd=cwd)
    assert shown.returncode == 0, shown.stderr  # show still works, saying what it did not read
    assert "labels.json is a device" in shown.stdout


def test_a_damaged_labels_file_is_noted_and_never_overwritten(runs: Path, cli) -> None:
    run = _run(runs)
    (run / LABELS_FILE).write_text('{"tags": ["base')  # not something expctl writes
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    this = next(r for r in listed if r["id"] == "bbb222")
    assert this["labels"] == {"tags": [], "notes": None}
    assert any("labels.json is not valid JSON" in n for n in this["notes"])

    result = cli("runs", "tag", "latest", "x")
    assert result.exit_code == 1
    assert "not changed" in result.stderr and "hint:" in result.stderr
    assert (run / LABELS_FILE).read_text() == '{"tags": ["base'


def test_invalid_tags_inside_the_file_are_dropped_with_a_note(runs: Path, cli) -> None:
    run = _run(runs)
    (run / LABELS_FILE).write_text(json.dumps({"tags": ["ok", "bad tag", "\x1b[31m", 3]}))
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    this = next(r for r in listed if r["id"] == "bbb222")
    assert this["labels"]["tags"] == ["ok"]
    assert any("3 invalid tags dropped" in n for n in this["notes"])


def test_a_symlinked_lock_file_is_refused(runs: Path, cli, tmp_path: Path) -> None:
    run = _run(runs)
    elsewhere = tmp_path / "elsewhere.lock"
    (run / LABELS_LOCK_FILE).symlink_to(elsewhere)
    result = cli("runs", "tag", "latest", "x")
    assert result.exit_code == 1
    assert "symbolic link" in result.stderr and "hint:" in result.stderr
    assert not elsewhere.exists() and not (run / LABELS_FILE).exists()


# -- the library calls `expctl run`, W&B init and `--where` use ------------------------------------


def test_initial_labels_merge_and_validate_before_writing(runs: Path) -> None:
    from expctl.errors import UsageError

    run = _run(runs)
    assert initial_labels(run) == Labels()
    assert not (run / LABELS_FILE).exists()  # nothing given: nothing written
    assert initial_labels(run, ["a", "b", "a"], "started by a script") == Labels(
        ("a", "b"), "started by a script"
    )
    # a resume adds to what the run has, and keeps its notes when given none
    assert initial_labels(run, ["c"]) == Labels(("a", "b", "c"), "started by a script")
    with pytest.raises(UsageError) as refused:
        initial_labels(run, ["ok", "not ok"])
    assert refused.value.exit_code == 2
    assert read_labels(run) == Labels(("a", "b", "c"), "started by a script")
    assert read_labels(_run(runs, OLD)) == Labels()


def test_matches_tag_exact_and_glob() -> None:
    labels = Labels(("baseline", "lr-0.1"), None)
    assert matches_tag(labels, "baseline")
    assert not matches_tag(labels, "base")
    assert matches_tag(labels, "lr-*") and matches_tag(labels, "base?ine")
    assert not matches_tag(Labels(), "*")
    assert matches_tag(["a", "b"], "b")


# -- expctl run --tag/--notes, W&B, --where tag=, the report ---------------------------------


def _wandb_run_record(run_dir: Path):
    """The run record (tags, notes) of the run's offline W&B log, read back."""
    from expctl.sweeps.wandb.metrics import TransactionLogReader

    summary = json.loads((run_dir / "summary.json").read_text())
    (sync_dir,) = summary["wandb"]["sync_dirs"]  # WANDB_DIR is the test's own
    (log,) = Path(sync_dir).glob("run-*.wandb")
    runs = [
        r.run for r in TransactionLogReader(log).read_new() if r.WhichOneof("record_type") == "run"
    ]
    assert runs, "the offline log holds the run record"
    return runs[-1]


@pytest.mark.slow
def test_run_tag_and_notes_label_the_run_and_reach_wandb_at_init(project: Path, cli) -> None:
    done = cli(
        "run", "trainer.epochs=1", "-q", "--tag", "baseline", "-t", "adamw", "--notes", "first try"
    )
    assert done.exit_code == 0, done.stderr
    run_dir = Path(done.stdout.strip())
    assert _labels_json(run_dir) == {"tags": ["baseline", "adamw"], "notes": "first try"}
    record = _wandb_run_record(run_dir)
    assert list(record.tags) == ["baseline", "adamw"] and record.notes == "first try"
    listed = cli("runs", "list", "--where", "tag=baseline", "--format", "json")
    assert [r["run_dir"] for r in json.loads(listed.stdout)] == [str(run_dir)], listed.stderr
    assert (
        json.loads(cli("runs", "list", "--where", "tag!=baseline", "--format", "json").stdout) == []
    )
    assert (
        len(json.loads(cli("runs", "list", "--where", "tag~ada*", "--format", "json").stdout)) == 1
    )


@pytest.mark.slow
def test_a_resume_keeps_the_runs_labels_and_adds_new_ones(project: Path, cli) -> None:
    first = cli("run", "trainer.epochs=1", "-q", "--tag", "a")
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    assert cli("runs", "tag", str(run_dir), "b").exit_code == 0
    again = cli("run", "--resume", str(run_dir), "trainer.epochs=2", "-q", "--tag", "c")
    assert again.exit_code == 0, again.stderr
    assert _labels_json(run_dir)["tags"] == ["a", "b", "c"]


def test_a_bad_tag_on_run_is_exit_2_before_any_run_dir(project: Path, cli) -> None:
    bad = cli("run", "trainer.epochs=1", "--tag", "has space")
    assert bad.exit_code == 2
    assert "hint:" in bad.stderr
    assert not (project / "runs").exists()
