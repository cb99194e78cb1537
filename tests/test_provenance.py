"""A run's provenance (expctl.provenance): real git repositories made with the real `git`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from expctl.errors import ConfigError
from expctl.fsutil import WriteError
from expctl.provenance import (
    DIFF_FILE,
    PROVENANCE_FILE,
    REQUIREMENTS_FILE,
    ProvenanceSettings,
    capture_provenance,
    start_capture,
    strip_credentials,
)
from expctl.provenance.environment import installed_distributions, normalize
from expctl.provenance.git import (
    DUBIOUS_OWNERSHIP,
    GIT_NOT_INSTALLED,
    NO_COMMITS,
    NOT_A_REPOSITORY,
)
from expctl.secrets import remember

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
MB = 1_000_000


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment capture and the test's own git calls see: no user/system git config,
    no repository discovered above tmp_path, a fixed identity for commits."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def git(repo: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def make_repo(path: Path, env: dict[str, str], *, commit: bool = True) -> Path:
    path.mkdir(parents=True)
    git(path, env, "init", "-q", "-b", "main")
    (path / "train.py").write_text("lr = 0.1\nepochs = 3\n")
    if commit:
        git(path, env, "add", "train.py")
        git(path, env, "commit", "-q", "-m", "first")
    return path


def capture(run_dir: Path, repo: Path, env: dict[str, str], **kwargs: Any):
    run_dir.mkdir(exist_ok=True)
    kwargs.setdefault("argv", ["expctl", "run", "optim.lr=0.1"])
    return capture_provenance(run_dir, cwd=repo, config_dir=repo / "configs", env=env, **kwargs)


def record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / PROVENANCE_FILE).read_text())


def every_file_text(run_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in run_dir.iterdir())


# -- git states -------------------------------------------------------------------------------


def test_clean_repository_records_commit_and_writes_no_diff(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    run_dir = tmp_path / "run"
    result = capture(run_dir, repo, env)
    head = git(repo, env, "rev-parse", "HEAD").strip()
    facts = record(run_dir)["git"]
    assert (facts["commit"], facts["branch"], facts["detached"]) == (head, "main", False)
    assert facts["describe"] == head[:7]  # no tags: the abbreviated commit
    assert (facts["dirty"], facts["changed_files"], facts["untracked_files"]) == (False, 0, 0)
    assert "diff" not in facts and not (run_dir / DIFF_FILE).exists()
    assert (result.commit, result.branch, result.dirty, result.note) == (head, "main", False, None)
    assert result.describe == head[:7]
    assert result.wandb_git() == {"git_commit": head}  # no remote: only the commit
    assert sorted(result.files) == [PROVENANCE_FILE, REQUIREMENTS_FILE]


def test_a_project_untracked_inside_another_repository_is_not_called_clean(
    tmp_path: Path, env
) -> None:
    """A project copied into another project's clone (the tutorial's `cp -r examples/course`):
    the enclosing commit holds none of its code, and `runs show` must not say "clean"."""
    from expctl.cli.runs_render import _commit_text
    from expctl.runs.records import provenance_fields

    repo = make_repo(tmp_path / "repo", env)
    project = repo / "my-course"
    project.mkdir()
    (project / "train.py").write_text("lr = 0.2\n")
    run_dir = tmp_path / "run"
    capture(run_dir, project, env)
    facts = record(run_dir)["git"]
    assert (facts["dirty"], facts["workdir_untracked"], facts["untracked"]) == (False, True, ["./"])
    shown = _commit_text(provenance_fields(record(run_dir)), None)
    assert "clean" not in shown and "this directory is untracked: not in the commit" in shown
    git(repo, env, "add", "my-course")
    git(repo, env, "commit", "-q", "-m", "the project")
    capture(run_dir, project, env)
    assert record(run_dir)["git"]["workdir_untracked"] is False
    assert _commit_text(provenance_fields(record(run_dir)), None).endswith("(main, clean)")
    # deeper in an untracked directory, and in an ignored one: still not in the commit
    (repo / ".gitignore").write_text("ignored/\n")
    for nested in (repo / "untracked" / "proj", repo / "ignored" / "proj"):
        nested.mkdir(parents=True)
        capture(run_dir, nested, env)
        assert record(run_dir)["git"]["workdir_untracked"] is True, nested


def test_dirty_repository_writes_the_diff_and_counts_files(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    git(repo, env, "tag", "v1.0")
    (repo / "train.py").write_text("lr = 0.5\nepochs = 3\n")  # modified
    (repo / "staged.py").write_text("x = 1\n")
    git(repo, env, "add", "staged.py")  # staged new file: `git diff HEAD` has it
    (repo / "notes.txt").write_text("UNTRACKED-CONTENT\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "a.txt").write_text("UNTRACKED-CONTENT\n")
    run_dir = tmp_path / "run"
    result = capture(run_dir, repo, env)
    facts = record(run_dir)["git"]
    assert facts["dirty"] is True and result.dirty is True
    assert facts["changed_files"] == 2
    assert facts["untracked_files"] == 2  # an untracked directory counts once, as git shows it
    assert sorted(facts["untracked"]) == ["notes.txt", "scratch/"]
    assert facts["describe"] == "v1.0-dirty" == result.describe
    assert facts["describe"] == git(repo, env, "describe", "--always", "--dirty", "--tags").strip()
    patch = (run_dir / DIFF_FILE).read_bytes()
    assert patch.decode() == git(repo, env, "diff", "HEAD")
    assert facts["diff"] == {
        "file": DIFF_FILE,
        "bytes": len(patch),
        "total_bytes": len(patch),
        "max_bytes": MB,
        "truncated": False,
    }
    assert b"+lr = 0.5" in patch and b"+x = 1" in patch
    assert "UNTRACKED-CONTENT" not in every_file_text(run_dir)  # listed, never copied
    # The patch is the working tree's change: it reverse-applies cleanly onto it.
    git(repo, env, "apply", "-R", "--check", str(run_dir / DIFF_FILE))


def test_capture_never_writes_the_users_repository(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    os.utime(repo / "train.py", (1_000_000_000, 1_000_000_000))  # stale stat info, same content
    index = (repo / ".git" / "index").read_bytes()
    (repo / "new.txt").write_text("untracked\n")
    capture(tmp_path / "run", repo, env)
    # git status would refresh (rewrite) the index; with optional locks off it leaves it alone,
    # so a user's `git commit` running at that moment never meets an index.lock of ours.
    assert (repo / ".git" / "index").read_bytes() == index
    assert not (repo / ".git" / "index.lock").exists()


def test_the_users_diff_settings_do_not_change_the_patch(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    for key, value in [
        ("diff.noprefix", "true"),
        ("color.ui", "always"),
        ("diff.external", "false"),
    ]:
        git(repo, env, "config", key, value)
    (repo / "train.py").write_text("lr = 0.5\n")
    capture(tmp_path / "run", repo, env)
    patch = (tmp_path / "run" / DIFF_FILE).read_text()
    assert "--- a/train.py\n+++ b/train.py\n" in patch and "\x1b[" not in patch
    git(repo, env, "apply", "-R", "--check", str(tmp_path / "run" / DIFF_FILE))


def test_detached_head_has_a_commit_and_no_branch(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    git(repo, env, "checkout", "-q", "--detach")
    run_dir = tmp_path / "run"
    result = capture(run_dir, repo, env)
    facts = record(run_dir)["git"]
    assert facts["commit"] == git(repo, env, "rev-parse", "HEAD").strip()
    assert (facts["branch"], facts["detached"], result.branch) == (None, True, None)


def test_unborn_branch_is_said_and_its_staged_files_diffed(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env, commit=False)
    run_dir = tmp_path / "empty"
    capture(run_dir, repo, env)
    facts = record(run_dir)["git"]
    assert (facts["commit"], facts["branch"], facts["note"]) == (None, "main", NO_COMMITS)
    assert facts["describe"] is None
    assert facts["dirty"] is False and facts["untracked"] == ["train.py"]

    git(repo, env, "add", "train.py")
    run_dir = tmp_path / "staged"
    result = capture(run_dir, repo, env)
    facts = record(run_dir)["git"]
    assert (facts["note"], facts["dirty"], facts["changed_files"]) == (NO_COMMITS, True, 1)
    assert facts["describe"] is None
    assert "+lr = 0.1" in (run_dir / DIFF_FILE).read_text()  # against the empty tree
    assert result.commit is None and result.note == NO_COMMITS


def test_a_directory_outside_any_repository_is_said_plainly(tmp_path: Path, env) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    run_dir = tmp_path / "run"
    result = capture(run_dir, plain, env)
    assert record(run_dir)["git"] == {"path": str(plain), "note": NOT_A_REPOSITORY}
    assert (result.note, result.commit, result.dirty) == (NOT_A_REPOSITORY, None, None)
    assert not (run_dir / DIFF_FILE).exists()


def test_a_repository_owned_by_another_user_is_said_plainly(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    # git's own switch for its ownership check (what another user's checkout looks like)
    result = capture(tmp_path / "run", repo, {**env, "GIT_TEST_ASSUME_DIFFERENT_OWNER": "1"})
    assert result.note == DUBIOUS_OWNERSHIP
    assert record(tmp_path / "run")["git"]["note"] == DUBIOUS_OWNERSHIP


def test_a_program_trial_records_the_programs_repository(tmp_path: Path, env) -> None:
    project = make_repo(tmp_path / "project", env)
    program = make_repo(tmp_path / "program", env)
    (program / "train.py").write_text("changed\n")
    result = capture(tmp_path / "run", project, env, repo_dir=program)
    assert result.commit == git(program, env, "rev-parse", "HEAD").strip()
    assert result.dirty is True
    assert record(tmp_path / "run")["git"]["path"] == str(program)


# -- credentials and secrets ------------------------------------------------------------------


def test_remote_url_credentials_never_reach_the_record(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    git(repo, env, "remote", "add", "backup", "https://backup.example/x.git")
    git(repo, env, "remote", "add", "origin", "https://user:TOKEN-sekr1t@host.example/x.git")
    (repo / "train.py").write_text("changed\n")  # a diff too: every file is checked
    run_dir = tmp_path / "run"
    result = capture(run_dir, repo, env)
    facts = record(run_dir)["git"]
    assert (facts["remote"], facts["remote_url"]) == ("origin", "https://host.example/x.git")
    assert result.remote_url == "https://host.example/x.git"
    assert "TOKEN-sekr1t" not in every_file_text(run_dir)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:TOKEN@host/x", "https://host/x"),
        ("https://TOKEN@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://x-access-token:gh_S3C@github.com:443/o/r", "https://github.com:443/o/r"),
        ("https://u:pa/ss@w@rd@host/x", "https://host/x"),  # a password with '/' and '@'
        ("https://host/x?private_token=T", "https://host/x"),
        ("https://host/path@v1", "https://host/path@v1"),  # an '@' in the path is no user
        ("ssh://git@host/o/r.git", "ssh://git@host/o/r.git"),
        ("ssh://git:PASS@host/o/r.git", "ssh://host/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
        ("file:///srv/git/r.git", "file:///srv/git/r.git"),
    ],
)
def test_strip_credentials_by_structure(url: str, shown: str) -> None:
    assert strip_credentials(url) == shown


def test_secret_arguments_are_redacted(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    argv = ["expctl", "run", "+hf_token=hf_S3CRETVALUE", "--api-key", "K3Y-VALUE", "optim.lr=1"]
    capture(tmp_path / "run", repo, env, argv=argv)
    shown = record(tmp_path / "run")["command"]["argv"]
    assert shown == ["expctl", "run", "+hf_token=********", "--api-key", "********", "optim.lr=1"]
    text = every_file_text(tmp_path / "run")
    assert "hf_S3CRETVALUE" not in text and "K3Y-VALUE" not in text


def test_a_remembered_secret_in_the_diff_is_hidden(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    remember("hf_PASSED-AS-OVERRIDE")  # what reading `+hf_token=...` does
    (repo / "train.py").write_text("token = 'hf_PASSED-AS-OVERRIDE'\n")
    capture(tmp_path / "run", repo, env)
    patch = (tmp_path / "run" / DIFF_FILE).read_text()
    assert "hf_PASSED-AS-OVERRIDE" not in patch and "********" in patch


# -- caps, switches, size ---------------------------------------------------------------------


def test_a_diff_over_the_cap_is_cut_at_a_line_and_said(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / "train.py").write_text("".join(f"line {i}\n" for i in range(2000)))
    full = git(repo, env, "diff", "HEAD").encode()
    run_dir = tmp_path / "run"
    capture(run_dir, repo, env, settings=ProvenanceSettings(max_diff_bytes=1000))
    patch = (run_dir / DIFF_FILE).read_bytes()
    assert 0 < len(patch) <= 1000 and patch.endswith(b"\n") and full.startswith(patch)
    assert record(run_dir)["git"]["diff"] == {
        "file": DIFF_FILE,
        "bytes": len(patch),
        "total_bytes": len(full),
        "max_bytes": 1000,
        "truncated": True,
    }


def test_a_zero_cap_records_the_diffs_size_but_writes_no_patch(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / "train.py").write_text("changed\n")
    run_dir = tmp_path / "run"
    result = capture(run_dir, repo, env, settings=ProvenanceSettings(max_diff_bytes=0))
    diff = record(run_dir)["git"]["diff"]
    assert (diff["file"], diff["bytes"], diff["truncated"]) == (None, 0, True)
    assert diff["total_bytes"] == len(git(repo, env, "diff", "HEAD").encode())
    assert not (run_dir / DIFF_FILE).exists() and DIFF_FILE not in result.files


@pytest.mark.parametrize("switch", ["git", "diff", "packages", "environment"])
def test_each_part_can_be_switched_off(tmp_path: Path, env, switch: str) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / "train.py").write_text("changed\n")
    settings = ProvenanceSettings.from_config({"provenance": {switch: False}})
    run_dir = tmp_path / "run"
    result = capture(run_dir, repo, env, settings=settings)
    data = record(run_dir)
    assert data["settings"][switch] is False
    written = {p.name for p in run_dir.iterdir()}
    if switch == "git":
        assert data["git"] == {"off": "provenance.git=false"} and result.commit is None
    if switch in ("git", "diff"):
        assert DIFF_FILE not in written
    else:
        assert DIFF_FILE in written
    if switch == "diff":
        assert data["git"]["diff"] == {"off": "provenance.diff=false"} and result.dirty is True
    assert (REQUIREMENTS_FILE in written) == (switch != "packages")
    if switch == "packages":
        assert data["packages"] == {"off": "provenance.packages=false"}
        assert data["environment"]["packages"]["omegaconf"]  # key versions are still said
    if switch == "environment":
        assert data["environment"] == {"off": "provenance.environment=false"}
    assert data["command"]["argv"] == ["expctl", "run", "optim.lr=0.1"]  # always recorded


def test_provenance_false_records_only_the_command(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / "train.py").write_text("changed\n")
    settings = ProvenanceSettings.from_config(OmegaConf.create({"provenance": False}))
    result = capture(tmp_path / "run", repo, env, settings=settings)
    assert [p.name for p in (tmp_path / "run").iterdir()] == [PROVENANCE_FILE]
    assert result.files == (PROVENANCE_FILE,)


def test_settings_from_config() -> None:
    assert ProvenanceSettings.from_config(OmegaConf.create({"lr": 1})) == ProvenanceSettings()
    assert ProvenanceSettings.from_config(None) == ProvenanceSettings()
    cfg = OmegaConf.create({"provenance": {"diff": False, "max_diff_bytes": 5000}})
    assert ProvenanceSettings.from_config(cfg) == ProvenanceSettings(
        diff=False, max_diff_bytes=5000
    )
    bad = {"provenance": {"dif": False, "git": "yes", "max_diff_bytes": -1}}
    with pytest.raises(ConfigError) as info:
        ProvenanceSettings.from_config(bad)
    message = str(info.value)
    assert "3 invalid provenance settings" in message
    assert "did you mean 'diff'?" in message
    assert "provenance.git: expected true or false" in message
    assert "provenance.max_diff_bytes" in message
    with pytest.raises(ConfigError):
        ProvenanceSettings.from_config({"provenance": "off"})


def test_per_run_bytes_beyond_the_diff_stay_under_a_megabyte(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    for i in range(3000):  # many untracked files with long names: listed, capped
        (repo / f"untracked-{i:05d}-{'n' * 150}.txt").write_text("x")
    run_dir = tmp_path / "run"
    capture(run_dir, repo, env)
    data = record(run_dir)
    assert data["git"]["untracked_files"] == 3000
    assert 0 < len(data["git"]["untracked"]) < 3000 and not data["git"]["untracked_listed_all"]
    beyond_diff = sum(p.stat().st_size for p in run_dir.iterdir() if p.name != DIFF_FILE)
    assert beyond_diff <= MB


# -- environment ------------------------------------------------------------------------------


def test_environment_records_slurm_gpus_and_versions(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_ARRAY_JOB_ID": "4240",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_JOB_NODELIST": "gpu[01-02]",
    }
    env = {**env, **slurm, "CUDA_VISIBLE_DEVICES": "1,3"}
    devices = {"device": "cuda:0", "count": 2, "names": ["NVIDIA H100", "NVIDIA H100"]}
    capture(tmp_path / "run", repo, env, device_info=devices)
    facts = record(tmp_path / "run")["environment"]
    assert facts["slurm"] == slurm
    assert facts["cuda_visible_devices"] == "1,3"
    assert facts["torch"]["devices"] == devices
    assert facts["python"]["executable"] == sys.executable
    assert facts["packages"]["omegaconf"] == importlib.metadata.version("omegaconf")
    assert facts["packages"]["hydra-core"] == importlib.metadata.version("hydra-core")
    command = record(tmp_path / "run")["command"]
    assert (command["cwd"], command["config_dir"]) == (str(repo), str(repo / "configs"))


def test_requirements_list_what_importlib_metadata_lists(tmp_path: Path, env) -> None:
    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions():  # sys.path order: the first one wins
        expected.setdefault(normalize(dist.metadata["Name"]), dist.version)
    assert installed_distributions() == expected
    repo = make_repo(tmp_path / "repo", env)
    capture(tmp_path / "run", repo, env)
    lines = (tmp_path / "run" / REQUIREMENTS_FILE).read_text().splitlines()
    assert lines == [f"{name}=={expected[name]}" for name in sorted(expected)]
    assert record(tmp_path / "run")["packages"] == {"file": REQUIREMENTS_FILE, "count": len(lines)}


def test_distributions_are_read_from_names_or_metadata_first_on_the_path_wins(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "Foo_Bar-1.0.dist-info").mkdir(parents=True)  # the name says it all
    odd = first / "odd-name-2.0.dist-info"  # not NAME-VERSION: its METADATA says
    odd.mkdir()
    (odd / "METADATA").write_text("Metadata-Version: 2.1\nName: Odd.Name\nVersion: 2.0\n")
    legacy = first / "legacy.egg-info"
    legacy.mkdir()
    (legacy / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: Legacy\nVersion: 0.3\n")
    (first / "broken.egg-info").mkdir()  # no metadata at all: skipped, as pip skips it
    (second / "foo_bar-9.9.dist-info").mkdir(parents=True)  # shadowed by the first
    found = installed_distributions([str(first), str(second), str(tmp_path / "missing")])
    assert found == {"foo-bar": "1.0", "odd-name": "2.0", "legacy": "0.3"}


# -- atomicity and the helper thread ----------------------------------------------------------


def test_only_the_three_files_are_left_no_temporaries(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / "train.py").write_text("changed\n")
    run_dir = tmp_path / "run"
    capture(run_dir, repo, env)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [PROVENANCE_FILE, DIFF_FILE, REQUIREMENTS_FILE]
    )


def test_wait_never_raises_when_git_is_missing(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    no_git = tmp_path / "bin"
    no_git.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    handle = start_capture(run_dir, argv=["expctl"], cwd=repo, env={**env, "PATH": str(no_git)})
    result = handle.wait()
    assert handle.done() and result.error is None and result.note == GIT_NOT_INSTALLED
    assert record(run_dir)["git"]["note"] == GIT_NOT_INSTALLED
    assert (run_dir / REQUIREMENTS_FILE).exists()


def test_wait_never_raises_when_the_run_dir_cannot_be_written(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    not_a_dir = tmp_path / "run"
    not_a_dir.write_text("a file where the run directory should be")
    with pytest.raises(WriteError):  # the synchronous call says what went wrong
        capture_provenance(not_a_dir, argv=["expctl"], cwd=repo, env=env)
    result = start_capture(not_a_dir, argv=["expctl"], cwd=repo, env=env).wait()
    assert result.error is not None and "provenance capture failed" in result.error
    assert result.files == ()


CRASHING_RUN = """
import sys
from pathlib import Path
from expctl.provenance import start_capture

handle = start_capture(Path(sys.argv[1]), argv=sys.argv, cwd=Path(sys.argv[2]))
try:
    raise RuntimeError("the training crashed at its first step")
finally:
    handle.wait()
"""


def test_a_crashed_run_still_has_its_provenance(tmp_path: Path, env) -> None:
    repo = make_repo(tmp_path / "repo", env)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(run_dir), str(repo)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "the training crashed" in proc.stderr
    assert record(run_dir)["git"]["commit"] == git(repo, env, "rev-parse", "HEAD").strip()
    assert (run_dir / REQUIREMENTS_FILE).exists()


# -- wired into real runs -----------------------------------------------------------------------


@pytest.fixture
def expctl_in(expctl_exe: list[str]):
    """Run the installed expctl in ``cwd`` with ``env`` (W&B disabled unless ``env`` says)."""

    def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        run_env = {"WANDB_MODE": "disabled", **env}
        run_env.pop("EXPCTL_RUNS_DIR", None)
        return subprocess.run(
            [*expctl_exe, *args], cwd=cwd, env=run_env, capture_output=True, text=True
        )

    return run


@pytest.mark.slow
def test_a_real_run_records_its_commit_diff_and_packages_and_a_resume_its_own(
    tmp_path: Path, env: dict[str, str], expctl_in
) -> None:
    from conftest import CONFIGS

    repo = make_repo(tmp_path / "project", env)
    shutil.copytree(CONFIGS, repo / "configs")
    git(repo, env, "add", "configs")
    git(repo, env, "commit", "-q", "-m", "configs")
    (repo / "train.py").write_text("lr = 0.2\n")  # a dirty tree
    done = expctl_in(["run", "trainer.epochs=1", "-q"], repo, env)
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip())
    record = json.loads((run_dir / PROVENANCE_FILE).read_text())
    assert record["git"]["commit"] == git(repo, env, "rev-parse", "HEAD").strip()
    assert record["git"]["dirty"] is True
    assert record["command"]["config_dir"] == str((repo / "configs").resolve())
    assert "lr = 0.2" in (run_dir / DIFF_FILE).read_text()
    assert "torch==" in (run_dir / REQUIREMENTS_FILE).read_text()
    git(repo, env, "commit", "-qam", "lr 0.2")
    again = expctl_in(["run", "--resume", str(run_dir), "trainer.epochs=2", "-q"], repo, env)
    assert again.returncode == 0, again.stderr
    resumed = json.loads((run_dir / "resumes" / "1" / PROVENANCE_FILE).read_text())
    assert resumed["git"]["commit"] == git(repo, env, "rev-parse", "HEAD").strip()
    assert json.loads((run_dir / PROVENANCE_FILE).read_text()) == record  # the first stays true


@pytest.mark.slow
def test_switches_reach_a_real_run_and_bad_input_leaves_no_run_dir(
    tmp_path: Path, env: dict[str, str], expctl_in
) -> None:
    from conftest import CONFIGS

    repo = make_repo(tmp_path / "project", env)
    shutil.copytree(CONFIGS, repo / "configs")
    (repo / "train.py").write_text("dirty\n")
    done = expctl_in(["run", "trainer.epochs=1", "-q", "provenance.diff=false"], repo, env)
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip())
    assert not (run_dir / DIFF_FILE).exists() and (run_dir / PROVENANCE_FILE).exists()
    bad = expctl_in(["run", "trainer.epochs=1", "loss._target_=numpy.savetxt"], repo, env)
    assert bad.returncode == 2, bad.stderr
    assert [p for p in (repo / "runs").rglob(PROVENANCE_FILE)] == [run_dir / PROVENANCE_FILE]


@pytest.mark.slow
def test_a_program_trial_records_the_programs_own_repository(
    tmp_path: Path, env: dict[str, str], expctl_in
) -> None:
    code = make_repo(tmp_path / "code", env)
    (code / "train.py").write_text(
        "import wandb\nrun = wandb.init()\nrun.log({'loss': float(run.config.lr)})\nrun.finish()\n"
    )
    git(code, env, "commit", "-qam", "program")
    work = tmp_path / "agent-cwd"  # not a repository: the agent runs here
    work.mkdir()
    (work / "sweep.yaml").write_text(
        f"program: {code / 'train.py'}\nmethod: grid\nmetric: {{name: loss, goal: minimize}}\n"
        "parameters:\n  lr: {values: [0.1]}\n"
    )
    run_env = {**env, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    created = expctl_in(["sweep", "create", "sweep.yaml"], work, run_env)
    assert created.returncode == 0, created.stderr
    agent = expctl_in(["sweep", "agent", created.stdout.strip()], work, run_env)
    assert agent.returncode == 0, agent.stderr
    (record_file,) = (work / "runs").rglob(PROVENANCE_FILE)
    record = json.loads(record_file.read_text())
    assert record["git"]["commit"] == git(code, env, "rev-parse", "HEAD").strip()


@pytest.mark.slow
def test_wandb_records_the_commit_the_provenance_names(
    tmp_path: Path, env: dict[str, str], expctl_in
) -> None:
    from conftest import CONFIGS

    from expctl.sweeps.wandb.metrics import TransactionLogReader

    repo = make_repo(tmp_path / "project", env)
    shutil.copytree(CONFIGS, repo / "configs")
    # W&B's own git lookup off: the commit it records can only come from expctl's provenance
    run_env = {
        **env,
        "WANDB_MODE": "offline",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DIR": str(tmp_path / "wandb"),
    }
    done = expctl_in(["run", "trainer.epochs=1", "-q"], repo, run_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((Path(done.stdout.strip()) / "summary.json").read_text())
    (log,) = Path(summary["wandb"]["sync_dirs"][0]).glob("run-*.wandb")
    runs = [
        r.run for r in TransactionLogReader(log).read_new() if r.WhichOneof("record_type") == "run"
    ]
    assert runs[-1].git.commit == git(repo, env, "rev-parse", "HEAD").strip()
