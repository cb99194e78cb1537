"""What a sweep says must be true, and what it touches must be a sweep's: real files, real
processes, real mounts.

* a metric the trainer never logs is refused at create; a failed trial is failed in the storage,
  in `sweep status`, in its run dir's summary.json (`runs list`) and in the agent's exit code;
* W&B's hyperband with min_iter and max_iter but no s is accepted, `metric.target: .nan` is not;
* a file that is not a journal (a copy of /etc/passwd, a SQLite file, /dev/null) is never
  repaired, taken over or read without bound; reads never create a storage;
* `sweep repair` keeps the journal's mode, owner, group and ACL;
* a trial whose agent died while recording its result is recorded from its run dir, not re-run;
* a disk with 0 bytes free is one clear line, exit 1, and no trial is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest
from disks import fill, tmpfs

PROGRAM = """\
import wandb
run = wandb.init()
wandb.log({"loss": float(run.config.x)})
wandb.finish()
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def program_sweep(project: Path, points: int = 1, metric: str = "loss") -> Path:
    (project / "prog.py").write_text(PROGRAM)
    values = ", ".join(str(i + 1) for i in range(points))
    return write(
        project / "prog.yaml",
        f"""
        program: prog.py
        method: grid
        metric: {{name: {metric}}}
        parameters:
          x: {{values: [{values}]}}
        """,
    )


def status(cli, sweep_id: str, *storage: str) -> dict:
    result = cli("sweep", "status", sweep_id, *storage, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# -- 19.4: a metric the trainer never logs --------------------------------------------------------


def test_a_trainer_sweep_on_a_metric_the_trainer_never_logs_is_refused_at_create(
    cli, project: Path
) -> None:
    spec = write(
        project / "acc.yaml",
        """
        method: random
        metric: {name: val_accuracy, goal: maximize}
        parameters:
          optim.lr: {min: 0.001, max: 0.1}
        """,
    )
    result = cli("sweep", "create", str(spec))
    assert result.exit_code == 2, result.stderr
    assert "acc.yaml:3: metric.name: 'val_accuracy' is not a metric expctl's trainer logs" in (
        result.stderr
    )
    assert "did you mean 'val_acc'?" in result.stderr and "val_loss" in result.stderr
    assert result.stdout == "" and not (project / ".expctl").exists()


def test_a_program_sweep_whose_program_never_names_its_metric_is_a_warning(
    cli, project: Path
) -> None:
    spec = program_sweep(project, metric="accuracy")
    result = cli("sweep", "create", str(spec))
    assert result.exit_code == 0, result.stderr
    assert "warning: metric 'accuracy' does not appear in prog.py" in result.stderr


@pytest.mark.slow
def test_a_trial_failed_for_its_metric_is_failed_everywhere_and_the_agent_says_so(
    cli, project: Path
) -> None:
    """A sweep stored before the create-time check (the library takes it): the trainer runs to
    the end, the trial fails, and storage, status, summary.json and the exit code agree."""
    from sweep_helpers import create

    from expctl.config import find_config_dir
    from expctl.sweeps.spec import parse_spec

    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "val_accuracy"},
            "parameters": {"trainer.epochs": {"value": 1}, "trainer.device": {"value": "cpu"}},
        }
    )
    info = create(spec, config_dir=find_config_dir(None)[0])
    result = cli("sweep", "agent", info.id)
    assert result.exit_code == 1, result.stderr
    assert "every trial this agent ran failed (1)" in result.stderr
    assert "metric 'val_accuracy' was never logged" in result.stderr
    [trial] = status(cli, info.id)["trials"]
    assert trial["state"] == "fail"
    summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "failed" and "val_accuracy" in summary["error"]
    listed = cli("runs", "list", "--format", "json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["failed"]


# -- 19.9, 19.13: what W&B accepts, and what it should not -----------------------------------------


@pytest.mark.parametrize("eta", ["", ", eta: 3"])
def test_hyperband_with_min_iter_and_max_iter_but_no_s_is_accepted_with_a_warning(
    cli, project: Path, eta: str
) -> None:
    spec = write(
        project / "hb.yaml",
        f"""
        method: random
        metric: {{name: val_loss, goal: minimize}}
        early_terminate: {{type: hyperband, min_iter: 3, max_iter: 27{eta}}}
        parameters:
          optim.lr: {{min: 0.001, max: 0.1}}
        """,
    )
    result = cli("sweep", "create", str(spec))
    assert result.exit_code == 0, result.stderr
    # min_iter·eta^k below max_iter: the bands W&B's max_iter/eta^k would give with s = 2
    assert "early_terminate: hyperband eta=3 bands 3, 9 (strict)" in result.stderr
    assert "W&B's server would fail on this file" in result.stderr


def test_a_nan_metric_target_is_a_spec_error_with_its_line(cli, project: Path) -> None:
    spec = write(
        project / "nan.yaml",
        """
        method: random
        metric: {name: val_loss, goal: minimize, target: .nan}
        parameters:
          optim.lr: {min: 0.001, max: 0.1}
        """,
    )
    result = cli("sweep", "create", str(spec))
    assert result.exit_code == 2
    assert "nan.yaml:3: metric.target: must be a finite number, got nan" in result.stderr


def test_a_too_large_multirun_says_what_a_multirun_can_do(cli, project: Path) -> None:
    lrs = ",".join(f"0.{i:03d}" for i in range(1, 102))
    seeds = ",".join(str(i) for i in range(100))
    result = cli("run", "-m", f"optim.lr={lrs}", f"seed={seeds}")
    assert result.exit_code == 2
    assert "the grid has 10,100 points" in result.stderr
    hint = result.stderr.split("hint:", 1)[1]
    assert "run_cap: N" in hint and "sweep create" in hint  # in a sweep file, not with -m
    assert "add run_cap" not in hint and "split it into several `expctl run -m`" in hint


# -- 20.6, 20.11: only a journal is a journal --------------------------------------------------


def test_repair_refuses_a_file_that_is_not_a_journal(cli, project: Path) -> None:
    passwd = project / "passwd.journal"
    shutil.copyfile("/etc/passwd", passwd)
    before = passwd.read_bytes()
    result = cli("sweep", "repair", "--storage", str(passwd))
    assert result.exit_code == 2, result.stderr
    assert f"{passwd} is not a sweep journal" in result.stderr and "repaired" not in result.stderr
    assert passwd.read_bytes() == before
    assert [p.name for p in project.iterdir() if p.name.startswith("passwd")] == [passwd.name]


def _sqlite_file(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("create table t (x)")


@pytest.mark.parametrize("kind", ["one line", "sqlite"])
def test_create_never_takes_over_a_file_that_is_not_a_journal(
    cli, project: Path, kind: str
) -> None:
    target = project / "x.journal"
    if kind == "one line":
        target.write_bytes(b"my notes, no newline")
    else:
        _sqlite_file(target)
    before = target.read_bytes()
    spec = program_sweep(project)
    result = cli("sweep", "create", str(spec), "--storage", str(target))
    assert result.exit_code == 2, result.stderr
    assert f"{target} is not a sweep journal" in result.stderr
    assert target.read_bytes() == before and not Path(f"{target}.torn").exists()


def test_an_empty_file_may_become_a_journal(cli, project: Path) -> None:
    target = project / "empty.journal"
    target.touch()
    result = cli("sweep", "create", str(program_sweep(project)), "--storage", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes().startswith(b'{"op_code":')


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_device_as_storage_is_bad_input(cli, project: Path, device: str) -> None:
    spec = program_sweep(project)
    commands = [("sweep", "list"), ("sweep", "create", str(spec)), ("sweep", "status", "abc")]
    for args in (*commands, ("sweep", "agent", "abc"), ("sweep", "repair")):
        result = cli(*args, env={"EXPCTL_STORAGE": device})
        assert result.exit_code == 2, (args, result.stderr)
        assert f"{device} is not a sweep journal: it is not a regular file" in result.stderr
        assert "unexpected" not in result.stderr


def test_read_commands_never_create_a_storage(cli, project: Path) -> None:
    storage = "sqlite:///typo/path.db"  # relative: ./typo/path.db
    for args in (
        ("sweep", "list"),
        ("sweep", "status", "abc"),
        ("sweep", "best", "abc"),
        ("sweep", "report", "abc"),
    ):
        result = cli(*args, "--storage", storage)
        assert result.exit_code == 2, (args, result.stderr)
        assert f"no sweep storage at {project / 'typo' / 'path.db'}" in result.stderr, args
    missing_journal = cli("sweep", "list", "--storage", str(project / "nope.journal"))
    assert missing_journal.exit_code == 2 and "no sweep storage at" in missing_journal.stderr
    assert not (project / "typo").exists() and not (project / "nope.journal").exists()


# -- 20.7: repair keeps who may write the journal ---------------------------------------------


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX access ACL in the kernel's xattr format (version 2; tag, perm, id)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _damaged_journal(cli, project: Path) -> Path:
    journal = project / "shared.journal"
    created = cli("sweep", "create", str(program_sweep(project)), "--storage", str(journal))
    assert created.exit_code == 0, created.stderr
    with journal.open("ab") as f:
        f.write(b"a line no crash writes\n")
    return journal


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_repair_keeps_mode_owner_group_and_acl(cli, project: Path) -> None:
    journal = _damaged_journal(cli, project)
    os.chown(journal, 0, 100)  # root:users
    os.chmod(journal, 0o664)
    undefined = 0xFFFFFFFF
    # user::rw- user:nobody:rw- group::rw- mask::rw- other::r--
    entries = [(1, 6, undefined), (2, 6, 65534), (4, 6, undefined), (16, 6, undefined)]
    acl = _acl(*entries, (32, 4, undefined))
    try:
        os.setxattr(journal, "system.posix_acl_access", acl)
    except OSError:
        acl = b""  # no ACLs on this filesystem: mode, owner and group still count
    before = journal.stat()
    result = cli("sweep", "repair", "--storage", str(journal))
    assert result.exit_code == 0, result.stderr
    assert "dropped" in result.stderr
    after = journal.stat()
    assert after.st_ino != before.st_ino  # replaced atomically, not rewritten in place
    assert (oct(after.st_mode), after.st_uid, after.st_gid) == (oct(before.st_mode), 0, 100)
    if acl:
        assert os.getxattr(journal, "system.posix_acl_access") == acl


def test_the_torn_bytes_file_is_as_writable_as_the_journal(cli, project: Path) -> None:
    """Another user's agent heals the next torn tail: it must be able to append to .torn."""
    journal = project / "shared.journal"
    spec = program_sweep(project)
    sweep_id = cli("sweep", "create", str(spec), "--storage", str(journal)).stdout.strip()
    os.chmod(journal, 0o664)
    with journal.open("ab") as f:
        f.write(b'{"op_code":5,"worker')  # a writer died mid-append
    old_umask = os.umask(0o022)
    try:
        stopped = cli("sweep", "stop", sweep_id, "--storage", str(journal))
    finally:
        os.umask(old_umask)
    assert stopped.exit_code == 0, stopped.stderr
    torn = Path(f"{journal}.torn")
    assert b'{"op_code":5,"worker' in torn.read_bytes()
    assert oct(torn.stat().st_mode & 0o777) == oct(0o664)


# -- 20.8: a torn COMPLETE record ----------------------------------------------------------------


def _tear_the_result_of(journal: Path, number: int) -> None:
    """Cut the journal where the agent appended trial ``number``'s result, mid-record: what a
    node that died during that append leaves."""
    lines = journal.read_bytes().splitlines(keepends=True)
    at = next(
        i
        for i, line in enumerate(lines)
        if b'"expctl:result"' in line and json.loads(line).get("trial_id") == number
    )
    journal.write_bytes(b"".join(lines[:at]) + lines[at][: len(lines[at]) // 2])


@pytest.mark.slow
def test_a_trial_whose_result_record_was_torn_is_recorded_from_its_run_not_rerun(
    cli, project: Path, expctl_exe: list[str]
) -> None:
    spec = program_sweep(project, points=1)
    sweep_id = cli("sweep", "create", str(spec)).stdout.strip()
    first = cli("sweep", "agent", sweep_id)
    assert first.exit_code == 0, first.stderr
    journal = project / ".expctl" / "sweeps.journal"
    _tear_the_result_of(journal, 0)
    [trial] = status(cli, sweep_id)["trials"]
    assert trial["state"] == "running"  # what the torn record leaves
    again = subprocess.run(
        [*expctl_exe, "sweep", "agent", sweep_id, "--stale-after", "0.5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "re-run of trial" not in again.stderr and "re-queued as trial" not in again.stderr
    assert "agent done: no trials; the sweep is finished (grid complete)" in again.stderr
    data = status(cli, sweep_id)
    [trial] = data["trials"]
    assert (trial["state"], trial["value"]) == ("complete", 1.0)
    assert data["state"] == "finished"
    assert len(list((project / "runs").glob("*/*/summary.json"))) == 1  # it ran once


# -- 20.9: a disk with 0 bytes free ---------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_under_the_storage_is_one_clear_line_and_leaves_no_trial_running(
    cli, project: Path, expctl_exe: list[str]
) -> None:

    spec = program_sweep(project, points=2)
    with tmpfs(project / "full", "64k") as full:
        journal = full / "s.journal"
        sweep_id = cli("sweep", "create", str(spec), "--storage", str(journal)).stdout.strip()
        fill(full)
        agent = subprocess.run(
            [*expctl_exe, "sweep", "agent", sweep_id, "--storage", str(journal)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert agent.returncode == 1, agent.stderr
        assert f"no space left on device {full} writing {journal}" in agent.stderr
        assert "unexpected" not in agent.stderr and "Traceback" not in agent.stderr
        counts = status(cli, sweep_id, "--storage", str(journal))["counts"]
        assert "running" not in counts, counts
        other = full / "other.journal"
        created = subprocess.run(
            [*expctl_exe, "sweep", "create", str(spec), "--storage", str(other)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert created.returncode == 1, created.stderr
        assert f"no space left on device {full} writing {other}" in created.stderr
        assert "unexpected" not in created.stderr and created.stdout == ""
