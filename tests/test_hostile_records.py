"""Run records others can write (a shared runs directory, a copied tree) read safely and printed
safely: `expctl runs list|show|compare` and `expctl sweep list` in real subprocesses.

Hostile files are real: FIFOs, symlinks to /dev/zero and /dev/urandom, YAML alias bombs, names
holding terminal escapes. Every command runs under a wall-clock timeout and an address-space
limit, in a fresh parent that reports its peak memory, so a regression fails fast instead of
hanging the suite or eating the machine.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import read_terminal

TIMEOUT_S = 30  # a listing of a few runs takes about a second; a hang is killed here
PEAK_KB = 300_000  # `runs list` needs ~60 MB; /dev/zero read whole needed 23 GB
ADDRESS_SPACE = 2 * 1024**3  # and the old code dies at this wall instead of the machine's

# Run under the limits; prints the child's peak RSS in KB as the last stdout line, exit 124 on
# a timeout (the child is killed).
MEASURE = f"""
import resource, subprocess, sys
def limit():
    resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
try:
    p = subprocess.run(sys.argv[1:], capture_output=True, timeout={TIMEOUT_S}, preexec_fn=limit)
except subprocess.TimeoutExpired:
    sys.stderr.write("TIMEOUT\\n")
    sys.exit(124)
sys.stderr.buffer.write(p.stderr)
sys.stdout.buffer.write(p.stdout)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(p.returncode)
"""

HOSTILE_NAME = "\x1b]0;pwned\x07\x1b[2J[red]boom[/red]\u202e"
RAW = ("\x1b", "\x07", "\u202e")  # none of these may reach a terminal


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    peak_kb: int


def expctl(expctl_exe: list[str], *args: str, cwd: Path | None = None, **env: str) -> Result:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "300", **env}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *expctl_exe, *args],
        capture_output=True,
        cwd=cwd,
        env=full_env,
        timeout=TIMEOUT_S + 30,
    )
    stdout = proc.stdout.decode("utf-8", errors="replace")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    assert proc.returncode != 124, f"expctl {' '.join(args)} hung: {stderr}"
    *lines, peak = stdout.rstrip("\n").split("\n")
    return Result(proc.returncode, "\n".join(lines), stderr, int(peak))


def assert_ok(result: Result) -> None:
    assert result.returncode == 0, result.stderr
    for text in ("Traceback", "unexpected", "please report", "MemoryError"):
        assert text not in result.stderr, result.stderr
    assert result.peak_kb < PEAK_KB, f"peak {result.peak_kb} KB"


def make_run(runs: Path, name: str, suffix: str, *, lr: float = 0.1) -> Path:
    """A run directory as `expctl run` writes it (summary, overrides, config, metrics)."""
    run = runs / name / f"20260101-1200{len(list(runs.glob('*/*'))):02d}-{suffix}"
    run.mkdir(parents=True)
    summary = {
        "name": name,
        "status": "completed",
        "started_at": "2026-01-01T12:00:00+00:00",
        "ended_at": "2026-01-01T12:00:05+00:00",
        "monitor": {"metric": "val_loss", "mode": "min"},
        "final_metrics": {"val_loss": 0.5},
        "best_metrics": {"val_loss": 0.4},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "overrides.yaml").write_text(f"- optim.lr={lr}\n")
    (run / "config.yaml").write_text(f"optim:\n  lr: {lr}\nmodel: small\n")
    rows = [{"step": i, "epoch": i, "val_loss": 1.0 / (i + 1)} for i in range(3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def alias_bomb() -> str:
    """1 KB of YAML naming 9**9 values ("billion laughs")."""
    lines = ["- &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"- &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def replace(path: Path, how: str) -> None:
    """Make the record file ``path`` hostile in the way ``how`` names."""
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how in ("/dev/zero", "/dev/urandom"):
        path.symlink_to(how)
    elif how == "alias-bomb":
        path.write_text(alias_bomb())
    elif how == "huge":
        path.write_bytes(b" " * (9 * 1024 * 1024) + b"{}")
    elif how == "deep-json":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif how == "long-number":
        path.write_text('{"status": "completed", "x": ' + "1" * 5000 + "}")
    else:
        raise AssertionError(how)


# -- item 10: files that are not safe to read ----------------------------------------------------


@pytest.mark.parametrize(
    ("record", "how"),
    [
        ("summary.json", "fifo"),
        ("summary.json", "/dev/zero"),
        ("summary.json", "/dev/urandom"),
        ("summary.json", "huge"),
        ("summary.json", "deep-json"),
        ("summary.json", "long-number"),
        ("overrides.yaml", "fifo"),
        ("overrides.yaml", "/dev/zero"),
        ("overrides.yaml", "alias-bomb"),
    ],
)
def test_runs_list_skips_a_hostile_record_with_one_warning(isolated, expctl_exe, record, how):
    runs = isolated / "runs"
    make_run(runs, "good", "aaa111")
    bad = make_run(runs, "bad", "bbb222")
    replace(bad / record, how)
    for fmt in ("table", "json"):
        result = expctl(expctl_exe, "runs", "list", "--runs-dir", str(runs), "-f", fmt)
        assert_ok(result)
        assert "aaa111" in result.stdout
        assert "bbb222" not in result.stdout  # left out of the listing...
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and str(bad) in warnings[0], result.stderr  # ...and said once
        assert record in warnings[0]


def test_a_symlinked_record_file_is_followed_to_a_regular_file(isolated, expctl_exe):
    """A copied run dir may link its files: a link to a regular file is read as usual."""
    runs = isolated / "runs"
    run = make_run(runs, "linked", "ccc333")
    elsewhere = isolated / "kept-summary.json"
    (run / "summary.json").rename(elsewhere)
    (run / "summary.json").symlink_to(elsewhere)
    result = expctl(expctl_exe, "runs", "list", "--runs-dir", str(runs), "-f", "json")
    assert_ok(result)
    [listed] = json.loads(result.stdout)
    assert listed["status"] == "completed" and listed["notes"] == []


@pytest.mark.parametrize("how", ["fifo", "/dev/zero", "/dev/urandom"])
def test_runs_show_and_compare_survive_hostile_metrics(isolated, expctl_exe, how):
    runs = isolated / "runs"
    make_run(runs, "good", "aaa111")
    bad = make_run(runs, "bad", "bbb222", lr=0.2)
    replace(bad / "metrics.jsonl", how)
    shown = expctl(expctl_exe, "runs", "show", "bbb222", "--runs-dir", str(runs))
    assert_ok(shown)
    assert "metrics.jsonl is" in shown.stdout and "not a regular file" in shown.stdout
    compared = expctl(expctl_exe, "runs", "compare", "aaa111", "bbb222", "--runs-dir", str(runs))
    assert_ok(compared)
    assert "optim.lr" in compared.stdout  # the rest of the comparison is there
    assert "run bbb222: metrics.jsonl is" in compared.stderr


def test_an_alias_bomb_config_is_refused_by_show_compare_and_where(isolated, expctl_exe):
    runs = isolated / "runs"
    make_run(runs, "good", "aaa111")
    bad = make_run(runs, "bad", "bbb222")
    (bad / "config.yaml").write_text(
        "\n".join(f"k{i}: {line[2:]}" for i, line in enumerate(alias_bomb().splitlines())) + "\n"
    )
    shown = expctl(expctl_exe, "runs", "show", "bbb222", "--runs-dir", str(runs))
    assert_ok(shown)
    assert "config.yaml expands to more than 100,000 values" in shown.stdout
    compared = expctl(expctl_exe, "runs", "compare", "aaa111", "bbb222", "--runs-dir", str(runs))
    assert_ok(compared)
    assert "config.yaml expands to more than 100,000 values" in compared.stderr
    where = expctl(expctl_exe, "runs", "list", "--runs-dir", str(runs), "--where", "model=small")
    assert_ok(where)
    assert "aaa111" in where.stdout and "bbb222" not in where.stdout


def test_a_fifo_lock_file_does_not_hang_the_listing(isolated, expctl_exe):
    runs = isolated / "runs"
    run = make_run(runs, "locked", "ddd444")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    os.mkfifo(run / ".lock")  # a running run's lock is checked: is its process alive?
    result = expctl(expctl_exe, "runs", "list", "--runs-dir", str(runs))
    assert_ok(result)
    assert "ddd444" in result.stdout


def test_metrics_are_read_up_to_a_limit_that_is_said(isolated, monkeypatch):
    from expctl.record import read as records

    run = make_run(isolated / "runs", "long", "eee555")
    rows = [{"step": i, "val_loss": 1.0} for i in range(50)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(records, "MAX_METRICS_ROWS", 10)
    read, notes = records.read_metrics(run)
    assert [r["step"] for r in read] == list(range(10))
    assert notes == [
        "metrics.jsonl is longer than expctl reads (10 rows or 128 MiB): only its first 10 "
        "rows were read"
    ]
    monkeypatch.setattr(records, "MAX_METRICS_ROWS", 1000)
    monkeypatch.setattr(records, "MAX_METRICS_BYTES", 100)  # a line cut here is not "torn"
    read, notes = records.read_metrics(run)
    assert len(read) == 100 // len(json.dumps(rows[0]) + "\n")
    assert len(notes) == 1 and "only its first" in notes[0]


# -- item 11: runs roots that are not a readable directory ---------------------------------------


def test_runs_list_of_proc_is_no_runs_not_a_crash(isolated, expctl_exe):
    result = expctl(expctl_exe, "runs", "list", EXPCTL_RUNS_DIR="/proc")
    assert_ok(result)
    assert "no runs under /proc" in result.stderr
    assert len([x for x in result.stderr.splitlines() if x.startswith("warning:")]) <= 1


def test_a_runs_dir_that_is_a_file_is_exit_2_as_for_run(isolated, expctl_exe):
    (isolated / "runs.txt").write_text("not a directory\n")
    for args in (["list"], ["show", "latest"], ["compare", "latest"]):
        result = expctl(expctl_exe, "runs", *args, "--runs-dir", "runs.txt", cwd=isolated)
        assert result.returncode == 2, result.stderr
        first, hint = result.stderr.strip().splitlines()
        assert first == "error: the runs directory runs.txt is a file, not a directory"
        assert hint.startswith("hint: pass a directory with --runs-dir")


def _unreadable_dir(isolated: Path) -> Path:
    """A directory this process cannot list: chmod 000, or (as root) /proc/1/fdinfo where a
    container denies it; skip where neither is unreadable."""
    locked = isolated / "locked"
    (locked / "20260101-120000-fff666").mkdir(parents=True)
    locked.chmod(0)
    try:
        os.listdir(locked)
    except PermissionError:
        return locked
    locked.chmod(0o755)
    try:
        os.listdir("/proc/1/fdinfo")
    except PermissionError:
        return Path("/proc/1/fdinfo")
    pytest.skip("running as root where every directory is readable")


def test_an_unreadable_directory_in_the_tree_is_skipped_with_one_warning(isolated, expctl_exe):
    runs = isolated / "runs"
    make_run(runs, "good", "aaa111")
    unreadable = _unreadable_dir(isolated)
    (runs / "theirs").symlink_to(unreadable)
    try:
        result = expctl(expctl_exe, "runs", "list", "--runs-dir", str(runs))
    finally:
        (isolated / "locked").chmod(0o755)
    assert_ok(result)
    assert "aaa111" in result.stdout
    [warning] = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert "unreadable directory" in warning and "theirs" in warning


# -- item 3: terminal escapes in names, overrides and notes --------------------------------------


def _hostile_runs(isolated: Path) -> Path:
    runs = isolated / "runs"
    make_run(runs, "good", "aaa111")
    bad = make_run(runs, "bad", "bbb222", lr=0.2)
    summary = json.loads((bad / "summary.json").read_text())
    summary["name"] = HOSTILE_NAME
    summary["error"] = "line one\x1b[2J\nline two"
    (bad / "summary.json").write_text(json.dumps(summary))
    (bad / "overrides.yaml").write_text(json.dumps([f"model={HOSTILE_NAME}"]) + "\n")
    (bad / "config.yaml").write_text(json.dumps({"optim": {"lr": 0.2}, "model": HOSTILE_NAME}))
    return runs


def assert_no_raw_escapes(text: str) -> None:
    for char in RAW:
        assert char not in text, repr(text)


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "-f", "csv"],
        ["show", "bbb222"],
        ["compare", "aaa111", "bbb222"],
    ],
    ids=["list", "list-csv", "show", "compare"],
)
def test_terminal_escapes_in_records_are_shown_escaped(isolated, expctl_exe, args):
    runs = _hostile_runs(isolated)
    result = expctl(expctl_exe, "runs", *args, "--runs-dir", str(runs))
    assert_ok(result)
    assert_no_raw_escapes(result.stdout)
    assert_no_raw_escapes(result.stderr)
    assert "\\x1b]0;pwned\\x07\\x1b[2J[red]boom[/red]\\u202e" in result.stdout  # visibly odd


def test_json_keeps_the_exact_text(isolated, expctl_exe):
    runs = _hostile_runs(isolated)
    result = expctl(expctl_exe, "runs", "list", "--runs-dir", str(runs), "-f", "json")
    assert_ok(result)
    assert_no_raw_escapes(result.stdout)  # json.dumps writes \u001b
    by_id = {r["id"]: r for r in json.loads(result.stdout)}
    assert by_id["bbb222"]["name"] == HOSTILE_NAME
    assert by_id["bbb222"]["overrides"] == [f"model={HOSTILE_NAME}"]


def test_rich_compare_on_a_terminal_escapes_and_reads_no_markup(isolated, expctl_exe):
    runs = _hostile_runs(isolated)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(COLUMNS="300", TERM="xterm-256color")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*expctl_exe, "runs", "compare", "aaa111", "bbb222", "--runs-dir", str(runs)],
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    output = read_terminal(master, TIMEOUT_S)  # fails if runs compare hangs
    assert proc.wait(timeout=TIMEOUT_S) == 0, proc.stderr.read() if proc.stderr else ""
    screen = output.decode("utf-8", errors="replace")
    assert "─" in screen or "━" in screen  # drawn by rich, not the plain renderer
    assert "\x1b]0;" not in screen and "\x1b[2J" not in screen and "\x07" not in screen
    assert "\u202e" not in screen
    assert "[red]boom[/red]" in screen  # shown as written, not taken as rich markup


def test_sweep_list_shows_an_escaped_sweep_name(isolated, expctl_exe):
    (isolated / "sweep.yaml").write_text(
        'name: "\\e]0;pwned\\a\\e[2J"\nprogram: t.py\nmethod: random\n'
        "parameters:\n  x: {values: [1, 2]}\n"
    )
    created = expctl(expctl_exe, "sweep", "create", "sweep.yaml", cwd=isolated)
    assert created.returncode == 0, created.stderr
    listed = expctl(expctl_exe, "sweep", "list", cwd=isolated)
    assert_ok(listed)
    assert_no_raw_escapes(listed.stdout)
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in listed.stdout


def test_notes_on_stderr_escape_a_hostile_run_directory_name(isolated, expctl_exe):
    runs = isolated / "runs"
    good = make_run(runs, "good", "aaa111")
    hostile = runs / "bad" / "x\x1b]0;pwned\x07\x1b[2J"
    hostile.mkdir(parents=True)
    (hostile / "summary.json").write_text('{"status": "compl')  # torn: a note names the run
    result = expctl(expctl_exe, "runs", "compare", str(good), str(hostile), "--runs-dir", str(runs))
    assert_ok(result)
    assert_no_raw_escapes(result.stderr)
    assert "note: run x\\x1b]0;pwned\\x07\\x1b[2J: summary.json is not valid JSON" in result.stderr
