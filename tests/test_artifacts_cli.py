"""`expctl artifacts pull|list|push`: exit codes, stdout is data only, stderr is people."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from processes import read_terminal

from expctl.artifacts import ArtifactStore


@pytest.fixture
def model_dir(isolated: Path) -> Path:
    root = isolated / "ckpt"
    root.mkdir()
    (root / "best.pt").write_bytes(os.urandom(2000))
    (root / "last.pt").write_bytes(os.urandom(1000))
    return root


def push(cli, path: Path, *args: str):
    return cli("artifacts", "push", str(path), *args)


def test_push_prints_only_the_ref(cli, model_dir):
    result = push(cli, model_dir, "--name", "m", "--type", "model", "--alias", "best")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "m:v0\n"
    assert "published m:v0" in result.stderr and "best" in result.stderr

    again = push(cli, model_dir, "--name", "m")
    assert again.exit_code == 0 and again.stdout == "m:v0\n"
    assert "unchanged" in again.stderr


def test_push_a_single_file_with_metadata(cli, model_dir):
    result = push(cli, model_dir / "best.pt", "--name", "one", "--metadata", '{"val_acc": 0.9}')
    assert result.exit_code == 0, result.stderr
    version = ArtifactStore().resolve("one")
    assert [f.path for f in version.files] == ["best.pt"]
    assert version.metadata["val_acc"] == 0.9 and version.type == "dataset"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "../evil"], "invalid artifact name"),
        (["--name", "m", "--alias", "v2"], "looks like a version"),
        (["--name", "m", "--metadata", "[1]"], "must be a JSON object"),
        (["--name", "m", "--metadata", "{oops"], "not valid JSON"),
    ],
)
def test_push_bad_input_exits_2(cli, model_dir, args, message):
    result = push(cli, model_dir, *args)
    assert result.exit_code == 2
    assert message in result.stderr and "hint:" in result.stderr
    assert result.stdout == ""


def test_push_missing_path_exits_2(cli, isolated):
    result = push(cli, isolated / "nope", "--name", "m")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_pull_prints_only_the_path(cli, model_dir, isolated):
    push(cli, model_dir, "--name", "m", "--alias", "best")
    result = cli("artifacts", "pull", "m:best")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{isolated / 'artifacts' / 'm-v0'}\n"
    pulled = Path(result.stdout.strip())
    assert (pulled / "best.pt").read_bytes() == (model_dir / "best.pt").read_bytes()
    assert "pulled m:v0" in result.stderr

    again = cli("artifacts", "pull", "m:best")  # idempotent
    assert again.exit_code == 0 and again.stdout == result.stdout


def test_pull_root_force_and_copy(cli, model_dir, isolated):
    push(cli, model_dir, "--name", "m")
    (model_dir / "last.pt").write_bytes(b"changed")
    push(cli, model_dir, "--name", "m")
    root = isolated / "out"
    assert cli("artifacts", "pull", "m:v0", "--root", str(root)).exit_code == 0

    clash = cli("artifacts", "pull", "m:v1", "--root", str(root))
    assert clash.exit_code == 2 and "--force" in clash.stderr and clash.stdout == ""

    forced = cli("artifacts", "pull", "m:v1", "--root", str(root), "--force", "--copy")
    assert forced.exit_code == 0 and forced.stdout == f"{root}\n"
    assert (root / "last.pt").read_bytes() == b"changed"


@pytest.mark.parametrize(
    ("ref", "message", "hint"),
    [
        ("nope", "no artifact named 'nope'", "artifacts in"),
        ("m:prod", "no alias 'prod'", "latest=v0"),
        ("m:v9", "no version 'v9'", "versions: v0"),
        ("../m", "invalid W&B artifact reference", "ENTITY/PROJECT/NAME"),
        ("m:../x", "invalid alias", "letters, digits"),
    ],
)
def test_pull_unknown_or_bad_refs_exit_2_listing_what_exists(cli, model_dir, ref, message, hint):
    push(cli, model_dir, "--name", "m")
    result = cli("artifacts", "pull", ref)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and hint in result.stderr
    assert result.stdout == ""


def test_pull_type_mismatch_exits_2(cli, model_dir):
    push(cli, model_dir, "--name", "m", "--type", "model")
    result = cli("artifacts", "pull", "m", "--type", "dataset")
    assert result.exit_code == 2 and "not 'dataset'" in result.stderr


def test_pull_of_a_corrupted_store_exits_1_and_leaves_no_root(cli, model_dir, isolated):
    push(cli, model_dir, "--name", "m")
    store = ArtifactStore()
    entry = next(f for f in store.resolve("m").files if f.path == "last.pt")
    blob = store.blob_path(entry.sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"X" + blob.read_bytes()[1:])

    result = cli("artifacts", "pull", "m", "--root", str(isolated / "out"))
    assert result.exit_code == 1
    assert "'last.pt' is corrupted" in result.stderr and result.stdout == ""
    assert not (isolated / "out").exists()
    assert "Traceback" not in result.stderr


def test_store_option_and_environment_variable(cli, model_dir, isolated):
    assert push(cli, model_dir, "--name", "m", "--store", str(isolated / "s1")).exit_code == 0
    assert (isolated / "s1" / "names" / "m" / "v0.json").is_file()
    assert cli("artifacts", "pull", "m").exit_code == 2  # not in the default store

    env = {"EXPCTL_ARTIFACTS": str(isolated / "s1")}
    result = cli("artifacts", "list", env=env)
    assert result.exit_code == 0 and result.stdout.splitlines()[2].startswith("m:v0 ")


def test_list_aligned_when_piped_and_json(cli, model_dir):
    """Piped, the same aligned table as `runs list` (not tab-separated); JSON for scripts."""
    push(cli, model_dir, "--name", "m", "--type", "model", "--alias", "best")
    (model_dir / "last.pt").write_bytes(b"v1")
    push(cli, model_dir, "--name", "m")
    push(cli, model_dir / "best.pt", "--name", "d")

    plain = cli("artifacts", "list")
    assert plain.exit_code == 0
    assert "\t" not in plain.stdout
    header, rule, *rows = plain.stdout.splitlines()
    assert header.split() == ["ref", "type", "aliases", "metric", "size", "files", "created", "run"]
    assert set(rule) == {"-", " "}
    assert [r.split()[:3] for r in rows] == [
        ["d:v0", "dataset", "latest"],
        ["m:v0", "model", "best"],
        ["m:v1", "model", "latest"],
    ]
    columns = [header.index(name) for name in ("type", "aliases", "run")]
    for row in rows:  # aligned: every column starts where its heading does
        assert all(row[c - 1] == " " and row[c] != " " for c in columns), row
    assert rows[1].endswith("/".join(model_dir.parts[-2:]))  # creating source

    one = cli("artifacts", "list", "m", "--format", "json")
    data = json.loads(one.stdout)
    assert [v["ref"] for v in data] == ["m:v0", "m:v1"]
    assert data[0]["aliases"] == ["best"] and data[0]["size"] == 3000
    assert {f["path"] for f in data[0]["files"]} == {"best.pt", "last.pt"}


def test_list_empty_store_and_unknown_name(cli):
    empty = cli("artifacts", "list")
    assert empty.exit_code == 0 and empty.stdout == "" and "no artifacts" in empty.stderr
    assert cli("artifacts", "list", "--format", "json").stdout == "[]\n"
    unknown = cli("artifacts", "list", "m")
    assert unknown.exit_code == 2 and "no artifact named 'm'" in unknown.stderr


def test_list_bad_format_exits_2(cli):
    assert cli("artifacts", "list", "--format", "yaml").exit_code == 2


@pytest.mark.parametrize("command", ["pull", "list", "push"])
def test_help_ends_with_examples(cli, command):
    result = cli("artifacts", command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "expctl artifacts" in result.stdout
    assert "--store" in result.stdout


def test_installed_command_in_command_substitution(expctl_exe, model_dir, isolated):
    """CKPT_DIR=$(expctl artifacts push/pull ...) works: stdout holds the data and nothing else."""
    env = {**os.environ, "NO_COLOR": "1"}
    pushed = subprocess.run(
        [*expctl_exe, "artifacts", "push", str(model_dir), "--name", "m"],
        capture_output=True,
        text=True,
        env=env,
        cwd=isolated,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == "m:v0\n"
    pulled = subprocess.run(
        [*expctl_exe, "artifacts", "pull", pushed.stdout.strip()],
        capture_output=True,
        text=True,
        env=env,
        cwd=isolated,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout == f"{isolated / 'artifacts' / 'm-v0'}\n"


def test_terminal_table_and_progress_bar_render(capsys, model_dir, monkeypatch):
    """What a person sees on a terminal (CliRunner is never a TTY, so call the renderers)."""
    import io
    import sys

    from expctl.artifacts import publish_path
    from expctl.cli.artifacts import _progress_bar, version_table

    publish_path(model_dir, "m", type="model", aliases=["best"])
    table = "\n".join(version_table(ArtifactStore().versions("m")))
    assert "m:v0" in table and "best,latest" in table and "3.0 KB" in table

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _progress_bar(100 * 10**6, "m:v0") as advance:
        assert advance is not None
        advance(50 * 10**6)
    with _progress_bar(1000, "small") as none:
        assert none is None  # small transfers draw nothing
    assert "m:v0" in terminal.getvalue()


def test_filesystem_errors_exit_1_naming_the_place(cli, model_dir, isolated):
    (isolated / "a-file").write_text("not a directory")
    bad_store = push(cli, model_dir, "--name", "m", "--store", str(isolated / "a-file" / "s"))
    assert bad_store.exit_code == 1 and "could not store" in bad_store.stderr
    assert "unexpected" not in bad_store.stderr

    push(cli, model_dir, "--name", "m")
    bad_root = cli("artifacts", "pull", "m", "--root", str(isolated / "a-file" / "ckpt"))
    assert bad_root.exit_code == 1 and "could not pull into" in bad_root.stderr
    assert "unexpected" not in bad_root.stderr and bad_root.stdout == ""


# -- --force replaces an earlier pull, never anything else ---------------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("root", [".expctl/artifacts", ".expctl/artifacts/names", ".expctl", "."])
def test_pull_never_writes_into_or_over_the_store(cli, model_dir, isolated, root):
    assert push(cli, model_dir, "--name", "m").exit_code == 0
    (isolated / "runs" / "r1").mkdir(parents=True)
    (isolated / "runs" / "r1" / "summary.json").write_text("{}")
    before = _snapshot(isolated)
    for force in ([], ["--force"]):
        result = cli("artifacts", "pull", "m", "--root", root, *force)
        assert result.exit_code == 2, result.stderr
        assert "refusing" in result.stderr and "hint:" in result.stderr
        assert _snapshot(isolated) == before  # the store and runs/ are untouched
    assert cli("artifacts", "pull", "m").exit_code == 0  # the store still works


def test_force_replaces_only_an_earlier_pull(cli, model_dir, isolated):
    assert push(cli, model_dir, "--name", "m").exit_code == 0
    (model_dir / "best.pt").write_bytes(b"new weights")
    assert push(cli, model_dir, "--name", "m").exit_code == 0  # v1

    mine = isolated / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own work")
    refused = cli("artifacts", "pull", "m:v0", "--root", "mine", "--force")
    assert refused.exit_code == 2
    assert "not an earlier pull" in refused.stderr and "hint:" in refused.stderr
    assert (mine / "notes.txt").read_text() == "my own work"

    first = cli("artifacts", "pull", "m:v0", "--root", "ckpt_pull")
    assert first.exit_code == 0, first.stderr
    assert (isolated / "ckpt_pull" / ".expctl-pull.json").is_file()
    without_force = cli("artifacts", "pull", "m:v1", "--root", "ckpt_pull")
    assert without_force.exit_code == 2 and "--force" in without_force.stderr
    replaced = cli("artifacts", "pull", "m:v1", "--root", "ckpt_pull", "--force")
    assert replaced.exit_code == 0, replaced.stderr
    assert (isolated / "ckpt_pull" / "best.pt").read_bytes() == b"new weights"
    again = cli("artifacts", "pull", "m:v1", "--root", "ckpt_pull")
    assert again.exit_code == 0  # the same content again: nothing to do


def test_list_on_an_80_column_terminal_keeps_every_ref_whole(expctl_exe, model_dir, isolated):
    """On a real terminal 80 columns wide, long refs are never cut (two versions of a long name
    used to read the same, with no ellipsis); the table is the one a pipe gets."""
    import pty

    name = "digits-mlp-model-with-a-long-name"
    for i in range(2):
        (model_dir / "last.pt").write_bytes(os.urandom(100 + i))
        env = {**os.environ, "NO_COLOR": "1"}
        pushed = subprocess.run(
            [*expctl_exe, "artifacts", "push", str(model_dir), "--name", name, "--type", "model"],
            capture_output=True,
            text=True,
            env=env,
            cwd=isolated,
        )
        assert pushed.returncode == 0, pushed.stderr
    main, child = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80", "LINES": "24", "TERM": "xterm"}
    proc = subprocess.Popen(
        [*expctl_exe, "artifacts", "list"], stdout=child, stderr=child, cwd=isolated, env=env
    )
    os.close(child)
    output = read_terminal(main, 60)
    assert proc.wait(timeout=60) == 0
    screen = output.decode().replace("\r\n", "\n")
    assert f"{name}:v0" in screen and f"{name}:v1" in screen, screen
    piped = subprocess.run(
        [*expctl_exe, "artifacts", "list"], capture_output=True, text=True, cwd=isolated, env=env
    )
    assert screen.strip() == piped.stdout.strip()


def test_push_of_a_device_is_refused_at_once_with_a_hint(cli):
    """/dev/zero never ends: it is refused before a byte is read (not read forever)."""
    result = push(cli, Path("/dev/zero"), "--name", "zeros")
    assert result.exit_code == 2
    assert "/dev/zero is not a regular file or directory (a device)" in result.stderr
    assert "hint:" in result.stderr and result.stdout == ""
    assert not ArtifactStore().names()
