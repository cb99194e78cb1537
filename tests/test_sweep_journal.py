"""The sweep journal under damage: a torn last line heals, garbage is an exit-1 error naming the
file and line (and nothing is appended to it), `expctl sweep repair` fixes what it can."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OBJECTIVE = "def value(ctx):\n    return {'val_loss': float(ctx.params['seed'])}\n"
GRID = """
name: journal
method: grid
metric: {name: val_loss}
parameters:
  seed: {values: [1, 2, 3, 4, 5, 6]}
"""


@pytest.fixture
def sweep(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A grid sweep with 3 of its 6 points complete, in the default journal."""
    (project / "objectives.py").write_text(OBJECTIVE)
    monkeypatch.syspath_prepend(str(project))
    (project / "grid.yaml").write_text(GRID)
    created = cli("sweep", "create", "grid.yaml")
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    ran = cli("sweep", "agent", sweep_id, "--count", "3", "--objective", "objectives:value")
    assert ran.exit_code == 0, ran.stderr
    return sweep_id, project / ".expctl" / "sweeps.journal"


def status(cli, sweep_id: str) -> dict:
    result = cli("sweep", "status", sweep_id, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def lines_parse(journal: Path) -> bool:
    data = journal.read_bytes()
    return data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())


@pytest.mark.parametrize(
    "torn",
    [
        b'{"op_code":6,"worker_id":"x","trial_id":3,"state":1,"val',  # killed mid-append
        b"\x00" * 300,  # a full disk / crash leaving NUL bytes
    ],
)
def test_a_torn_last_line_is_ignored_and_the_next_append_heals_it(cli, sweep, torn):
    sweep_id, journal = sweep
    with journal.open("ab") as f:
        f.write(torn)
    before = status(cli, sweep_id)
    assert before["counts"] == {"complete": 3, "waiting": 3}  # nothing shown as running
    ran = cli("sweep", "agent", sweep_id, "--objective", "objectives:value")
    assert ran.exit_code == 0, ran.stderr
    assert status(cli, sweep_id)["counts"] == {"complete": 6}
    assert lines_parse(journal), "the next record started on a fresh line"
    assert torn in Path(f"{journal}.torn").read_bytes()  # set aside, not silently lost


@pytest.mark.parametrize(
    "garbage",
    [
        b'{"op_code": 99}',
        b"not json at all",
        b'["a", "list"]',
        b'{"op_code": 6}',
        b"[" * 100_000,  # too deep for the JSON parser: RecursionError, not a traceback
        b'{"op_code": 3, "worker_id": "\xff"}',  # not UTF-8
    ],
)
def test_garbage_in_the_middle_is_exit_1_naming_file_and_line_and_nothing_is_appended(
    cli, sweep, garbage
):
    sweep_id, journal = sweep
    lines = journal.read_bytes().splitlines(keepends=True)
    lines.insert(5, garbage + b"\n")
    journal.write_bytes(b"".join(lines))
    damaged = journal.read_bytes()
    for args in (
        ["status", sweep_id],
        ["agent", sweep_id, "--objective", "objectives:value"],
        ["list"],
    ):
        result = cli("sweep", *args)
        assert result.exit_code == 1, (args, result.stderr)
        assert f"{journal}:6: the sweep journal is damaged" in result.stderr
        assert "expctl sweep repair" in result.stderr and "unexpected" not in result.stderr
    assert journal.read_bytes() == damaged  # no command appended to it

    repaired = cli("sweep", "repair")
    assert repaired.exit_code == 0, repaired.stderr
    assert "line 6: dropped" in repaired.stderr
    backup = Path(repaired.stdout.strip())
    assert backup.read_bytes() == damaged
    assert status(cli, sweep_id)["counts"] == {"complete": 3, "waiting": 3}
    assert cli("sweep", "agent", sweep_id, "--objective", "objectives:value").exit_code == 0
    assert status(cli, sweep_id)["counts"] == {"complete": 6}


def test_repair_salvages_a_record_glued_onto_a_torn_one(cli, sweep):
    """What an older writer left: a torn record, then a whole record on the same line."""
    sweep_id, journal = sweep
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[-1] = b'{"op_code":9,"trial' + lines[-1]
    journal.write_bytes(b"".join(lines))
    assert cli("sweep", "status", sweep_id).exit_code == 1
    dry = cli("sweep", "repair", "--dry-run")
    assert dry.exit_code == 0 and "would be repaired" in dry.stderr
    assert cli("sweep", "status", sweep_id).exit_code == 1  # a dry run changes nothing
    repaired = cli("sweep", "repair")
    assert repaired.exit_code == 0 and "kept the complete one" in repaired.stderr
    assert status(cli, sweep_id)["counts"] == {"complete": 3, "waiting": 3}


def test_repair_on_a_sound_journal_changes_nothing(cli, sweep):
    _, journal = sweep
    before = journal.read_bytes()
    result = cli("sweep", "repair")
    assert result.exit_code == 0 and "nothing to repair" in result.stderr
    assert result.stdout == "" and journal.read_bytes() == before


def test_repair_is_for_journals_only(cli, project):
    result = cli("sweep", "repair", "--storage", "sqlite:///x.db")
    assert result.exit_code == 2 and "not a journal file" in result.stderr


@pytest.mark.slow
def test_an_agent_killed_mid_append_leaves_a_journal_the_next_agent_heals(
    project: Path, expctl_exe
):
    """A real SIGKILL while the journal is being appended (a huge user attr widens the window)."""
    (project / "grid.yaml").write_text(GRID)
    env = {**os.environ, "PYTHONPATH": str(project)}
    (project / "objectives.py").write_text(OBJECTIVE)
    created = subprocess.run(
        [*expctl_exe, "sweep", "create", "grid.yaml"], capture_output=True, text=True, env=env
    )
    sweep_id = created.stdout.strip()
    journal = project / ".expctl" / "sweeps.journal"
    writer = subprocess.Popen(
        [
            os.sys.executable,
            "-c",
            "import sys\n"
            "from expctl.sweeps.storage import open_storage\n"
            "h = open_storage()\n"
            "sid = h.storage.get_study_id_from_name(sys.argv[1])\n"
            "h.storage.set_study_user_attr(sid, 'blob', 'x' * 30_000_000)\n",
            sweep_id,
        ],
        env=env,
    )
    size = journal.stat().st_size
    while journal.stat().st_size < size + 100_000:  # the append is under way
        assert writer.poll() is None
    writer.kill()
    writer.wait()
    assert not journal.read_bytes().endswith(b"\n")  # torn for real
    agent = subprocess.run(
        [*expctl_exe, "sweep", "agent", sweep_id, "--objective", "objectives:value"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert agent.returncode == 0, agent.stderr
    assert lines_parse(journal)


def test_batched_writes_beside_another_thread_never_hide_a_record_from_this_process(tmp_path):
    """The agent's heartbeat thread writes while the main thread ends a batch: this process's
    replay must still apply every record (it once skipped one — a completed trial looked
    RUNNING until it went stale and was run a second time)."""
    import threading

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from expctl.sweeps.storage import open_storage
    from expctl.sweeps.storage.journal_writes import batched_writes

    handle = open_storage(str(tmp_path / "s.journal"))
    storage = handle.storage
    study = optuna.create_study(storage=storage)
    ids = [storage.create_new_trial(study._study_id) for _ in range(300)]
    done = threading.Event()

    def beat() -> None:
        i = 0
        while not done.is_set():
            i += 1
            with contextlib.suppress(UpdateFinishedTrialError):  # ended already
                storage.set_trial_system_attr(ids[i % len(ids)], "beat", i)

    beater = threading.Thread(target=beat)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as finely as Python can
    beater.start()
    try:
        for trial_id in ids:
            with batched_writes(storage):
                storage.set_trial_user_attr(trial_id, "result", {"ok": True})
                storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.0])
    finally:
        done.set()
        beater.join()
        sys.setswitchinterval(switch)
    here = [t.state for t in storage.get_all_trials(study._study_id, deepcopy=False)]
    fresh = open_storage(str(tmp_path / "s.journal")).storage
    on_disk = [t.state for t in fresh.get_all_trials(study._study_id, deepcopy=False)]
    assert on_disk == [TrialState.COMPLETE] * len(ids)
    assert here == on_disk
