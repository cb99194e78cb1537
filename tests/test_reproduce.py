"""Reading provenance back (issue 21, "Reading and using it"): `runs show`'s provenance block,
`runs compare`'s code-and-environment table, `runs list --where git.commit=...`/`--column`,
and `expctl run --like RUN [--strict]`, on real runs in a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY = ["data=synthetic", "data.num_samples=128", "trainer.epochs=1", "trainer.device=cpu"]
WALL_CLOCK_KEYS = ("samples_per_s",)  # the only metrics.jsonl key that depends on time


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


@pytest.fixture
def repo(project: Path) -> Path:
    """The example project as a git repository with one commit (runs/ stays untracked)."""
    _git(project, "init", "-q")
    _git(project, "add", "configs")
    _git(project, "commit", "-qm", "configs")
    return project


def _run(cli, *args: str) -> Path:
    result = cli("run", *args, "-q")
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip())


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "runs").glob("*/*") if p.is_dir())


def _edit(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(f"{line}\n")


# -- run --like: bit for bit ---------------------------------------------------------------------


def _metric_values(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_KEYS} for row in rows]


def test_like_latest_reproduces_metrics_bit_for_bit(repo: Path, expctl_exe: list[str]) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}

    def expctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*expctl_exe, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
        )

    first = expctl(
        "run", "trainer.epochs=2", "trainer.deterministic=true", "trainer.device=cpu", "seed=3"
    )
    assert first.returncode == 0, first.stderr
    again = expctl("run", "--like", "latest")
    assert again.returncode == 0, again.stderr
    a, b = Path(first.stdout.strip()), Path(again.stdout.strip())
    assert a != b and b.is_dir()
    assert "differs from the run's record" not in again.stderr  # same commit, clean, same venv
    # the thread count the run trained with is pinned (auto follows the CPUs free now)
    threads = json.loads((a / "summary.json").read_text())["num_threads"]
    assert yaml.safe_load((b / "overrides.yaml").read_text()) == [
        *yaml.safe_load((a / "overrides.yaml").read_text()),
        f"++trainer.num_threads={threads}",
    ]
    assert f"trainer.num_threads={threads} as run" in again.stderr
    rows_a, rows_b = _metric_values(a), _metric_values(b)
    assert len(rows_a) >= 2
    assert rows_a == rows_b  # floats compared exactly: bit for bit
    assert (b / "provenance.json").is_file()


# -- run --like: what differs, --strict ----------------------------------------------------------


def test_like_says_what_differs_and_strict_refuses(repo: Path, cli) -> None:
    config = repo / "configs" / "config.yaml"
    _edit(config, "# before the run")  # a dirty tree: its diff is recorded
    run = _run(cli, *TINY, "seed=5")
    assert (run / "diff.patch").is_file()

    same = cli("run", "--like", run.name, "--strict", "-q")  # the same uncommitted diff
    assert same.exit_code == 0, same.stderr
    assert "differs" not in same.stderr

    _edit(config, "# after the run")
    changed = cli("run", "--like", str(run), "--strict")
    assert changed.exit_code == 2
    assert "uncommitted changes differ from the run's diff.patch" in changed.stderr
    assert "--strict: this run would differ from" in changed.stderr
    assert "in: diff" in changed.stderr

    _git(repo, "commit", "-qam", "edit")
    before = _run_dirs(repo)
    moved = cli("run", "--like", run.name[-6:], "--strict")
    assert moved.exit_code == 2
    assert "in: commit, diff" in moved.stderr
    assert "the run had some (diff.patch), here none" in moved.stderr
    assert _run_dirs(repo) == before  # refused before any run directory exists

    told = cli("run", "--like", run.name)  # without --strict: notes, then the run
    assert told.exit_code == 0, told.stderr
    assert "note: differs from the run's record: commit: the run's" in told.stderr
    new = Path(told.stdout.strip())
    threads = json.loads((run / "summary.json").read_text())["num_threads"]
    assert yaml.safe_load((new / "overrides.yaml").read_text()) == [
        *TINY,
        "seed=5",
        f"++trainer.num_threads={threads}",
    ]


def test_like_names_package_python_and_device_differences(repo: Path, cli) -> None:
    run = _run(cli, *TINY)
    requirements = run / "requirements.txt"
    lines = requirements.read_text().splitlines()
    edited = [("numpy==0.0.1" if line.startswith("numpy==") else line) for line in lines]
    requirements.write_text("\n".join([*edited, "left-behind==1.0"]) + "\n")
    record = json.loads((run / "provenance.json").read_text())
    record["environment"]["python"]["version"] = "2.7.18"
    record["environment"]["torch"]["devices"]["device"] = "mps"
    (run / "provenance.json").write_text(json.dumps(record))

    result = cli("run", "--like", "latest", "--strict")
    assert result.exit_code == 2
    assert "numpy 0.0.1 → " in result.stderr
    assert "left-behind 1.0 → (not installed)" in result.stderr
    assert "python: 2.7.18 in the run" in result.stderr
    assert "device: mps in the run, cpu here" in result.stderr
    assert "in: python, packages, device" in result.stderr


def test_like_a_run_without_provenance_notes_it_and_strict_refuses(repo: Path, cli) -> None:
    run = _run(cli, *TINY)
    (run / "provenance.json").unlink()
    strict = cli("run", "--like", "latest", "--strict")
    assert strict.exit_code == 2
    assert "no provenance.json" in strict.stderr
    assert "in: provenance" in strict.stderr
    plain = cli("run", "--like", "latest~0")
    assert plain.exit_code == 0, plain.stderr
    assert "recorded no config dir" in plain.stderr  # composed with ./configs


def test_like_a_redacted_value_must_be_given_again(repo: Path, cli) -> None:
    run = _run(cli, *TINY, "+db.password=hunter2")
    assert "+db.password=********" in (run / "overrides.yaml").read_text()
    before = _run_dirs(repo)
    refused = cli("run", "--like", "latest")
    assert refused.exit_code == 2
    assert "db.password redacted in its record" in refused.stderr
    assert f"expctl run --like {run.name[-6:]} db.password=..." in refused.stderr
    assert _run_dirs(repo) == before

    given = cli("run", "--like", str(run), "+db.password=hunter3", "-q")
    assert given.exit_code == 0, given.stderr
    assert "hunter3" not in given.stderr + given.stdout

    from expctl.config import ConfigSource
    from expctl.runs.reproduce import like_source

    composed = like_source(run, ConfigSource(overrides=("+db.password=hunter3",))).source
    assert [o for o in composed.overrides if "db.password" in o] == ["+db.password=hunter3"]


def test_like_with_resume_multirun_or_strict_alone_is_exit_2(repo: Path, cli) -> None:
    for args in (
        ("--like", "latest", "--resume", "latest"),
        ("--like", "latest", "-m", "seed=1,2"),
        ("--strict",),
    ):
        result = cli("run", *args)
        assert result.exit_code == 2, args
        assert "hint:" in result.stderr


def test_like_a_sweep_trial_uses_its_parameters(repo: Path, cli) -> None:
    (repo / "sweep.yaml").write_text(
        "method: random\nmetric: {name: val_loss, goal: minimize}\nparameters:\n"
        "  optim.lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}\n"
        + "".join(f"  {o.split('=')[0]}: {{value: {o.split('=')[1]}}}\n" for o in TINY)
    )
    created = cli("sweep", "create", "sweep.yaml")
    assert created.exit_code == 0, created.stderr
    agent = cli("sweep", "agent", created.stdout.strip(), "--count", "1")
    assert agent.exit_code == 0, agent.stderr
    (trial,) = _run_dirs(repo)
    lr = yaml.safe_load((trial / "config.yaml").read_text())["optim"]["lr"]

    result = cli("run", "--like", trial.name, "-q")
    assert result.exit_code == 0, result.stderr
    new = Path(result.stdout.strip())
    assert yaml.safe_load((new / "config.yaml").read_text())["optim"]["lr"] == lr
    assert any(
        o.startswith("optim.lr=") for o in yaml.safe_load((new / "overrides.yaml").read_text())
    )


# -- runs show / compare / list ------------------------------------------------------------------


def test_runs_show_has_a_provenance_block(repo: Path, cli) -> None:
    _edit(repo / "configs" / "config.yaml", "# dirty")
    run = _run(cli, *TINY)
    commit = _git(repo, "rev-parse", "HEAD")
    shown = cli("runs", "show", "latest")
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    block = lines[lines.index("provenance:") :]
    text = "\n".join(block)
    assert f"commit      {commit[:12]} (" in text
    assert "dirty: 1 changed file, diff.patch sha256:" in text
    assert "torch " in text and "python " in text
    assert "host" in text and "device      cpu" in text
    data = json.loads(cli("runs", "show", str(run), "--format", "json").stdout)
    assert data["provenance"]["git"]["commit"] == commit
    assert data["diff_sha256"].startswith("sha256:")


def test_runs_compare_shows_code_and_environment_differences(repo: Path, cli) -> None:
    first = _run(cli, *TINY)
    _edit(repo / "configs" / "config.yaml", "# changed")
    _git(repo, "commit", "-qam", "second")
    _edit(repo / "configs" / "config.yaml", "# dirty")
    second = _run(cli, *TINY)
    requirements = second / "requirements.txt"
    requirements.write_text(requirements.read_text() + "extra-thing==2.0\n")

    result = cli("runs", "compare", str(first), str(second))
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "code and environment (what differs):" in text
    section = text.split("code and environment (what differs):")[1].split("\n\n")[0]
    assert "commit" in section and "dirty" in section and "diff" in section
    assert "package extra-thing  (not installed)" in section
    assert "host" not in section  # the same machine
    data = json.loads(cli("runs", "compare", str(first), str(second), "--format", "json").stdout)
    facts = data["provenance"]["facts"]
    assert facts["dirty"] == [False, True]
    assert facts["diff"][0] is None and facts["diff"][1].startswith("sha256:")
    assert data["provenance"]["packages"] == {"extra-thing": [None, "2.0"]}


def test_runs_list_where_commit_prefix_dirty_and_columns(repo: Path, cli) -> None:
    old = _run(cli, *TINY)
    old_commit = _git(repo, "rev-parse", "HEAD")
    _edit(repo / "configs" / "config.yaml", "# next")
    _git(repo, "commit", "-qam", "next")
    new = _run(cli, *TINY)

    def listed(*args: str) -> list[dict]:
        result = cli("runs", "list", "--format", "json", *args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    assert [r["run_dir"] for r in listed("--where", f"git.commit={old_commit[:7]}")] == [str(old)]
    assert [r["run_dir"] for r in listed("--where", f"git.commit!={old_commit[:7]}")] == [str(new)]
    assert len(listed("--where", "git.dirty=false", "--where", "env.device=cpu")) == 2
    rows = listed("--column", "git.commit")
    assert {r["columns"]["git.commit"] for r in rows} == {
        old_commit,
        _git(repo, "rev-parse", "HEAD"),
    }
    table = cli("runs", "list", "--where", f"git.commit={old_commit[:8]}")
    assert table.exit_code == 0, table.stderr
    header, _, row = table.stdout.splitlines()
    assert "git.commit" in header.split()
    assert old_commit[:12] in row.split() and old_commit not in row
    bad = cli("runs", "list", "--where", "git.comit=abc1")
    assert bad.exit_code == 2
    assert "git.commit" in bad.stderr


def test_runs_list_reads_provenance_only_when_asked(repo: Path, cli) -> None:
    _run(cli, *TINY)
    opened: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and str(args[0]).endswith("provenance.json"):
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # os.open and open() both raise the "open" event
    assert cli("runs", "list", "--where", "seed=42", "--sort", "val_loss").exit_code == 0
    assert opened == []
    assert cli("runs", "list", "--where", "git.dirty=false").exit_code == 0
    assert len(opened) == 1


def test_a_hostile_provenance_file_is_refused_not_read(repo: Path, cli) -> None:
    from expctl.record.read import read_provenance
    from expctl.record.safe_read import Refused

    run = _run(cli, *TINY)
    (run / "provenance.json").unlink()
    os.mkfifo(run / "provenance.json")  # opening it for reading would block forever
    record, note = read_provenance(run)
    assert record is None and isinstance(note, Refused)
    assert "FIFO" in note
    unread = cli("runs", "list", "--where", "git.dirty=false")  # no hang: not read
    assert unread.exit_code == 2
    assert "provenance.json lacks it in every run" in unread.stderr
    (run / "provenance.json").unlink()
    (run / "provenance.json").symlink_to("/dev/zero")
    assert isinstance(read_provenance(run)[1], Refused)
    shown = cli("runs", "show", "latest")
    assert shown.exit_code == 0
    assert "provenance.json is a device" in shown.stdout


def test_runs_show_names_each_resumes_commit(repo: Path, cli) -> None:
    run = _run(cli, *TINY)
    _edit(repo / "configs" / "config.yaml", "# between")
    _git(repo, "commit", "-qam", "between")
    resumed = cli("run", "--resume", str(run), "trainer.epochs=2", "-q")
    assert resumed.exit_code == 0, resumed.stderr
    head = _git(repo, "rev-parse", "HEAD")
    shown = cli("runs", "show", str(run))
    assert shown.exit_code == 0, shown.stderr
    assert any(line.split()[:3] == ["resume", "1", head[:12]] for line in shown.stdout.splitlines())
    data = json.loads(cli("runs", "show", str(run), "--format", "json").stdout)
    assert data["resumes"][0]["provenance"]["git"]["commit"] == head
    assert data["provenance"]["git"]["commit"] != head  # the first attempt's record stays
