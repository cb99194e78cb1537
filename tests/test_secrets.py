"""One redaction rule (expctl.secrets), applied wherever a value is shown or stored."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from expctl.secrets import (
    REDACTED,
    is_secret_key,
    redact,
    redact_argv,
    redact_override,
    redact_url,
)

REDACTED_KEYS = [
    "password",
    "db.password",
    "dbpassword",
    "passwd",
    "secret",
    "client_secret",
    "clientsecret",
    "token",
    "hf_token",
    "accesstoken",
    "auth_token",
    "api_key",
    "apikey",
    "wandb_api_key",
    "access_key",
    "secret_key",
    "private_key",
    "credentials",
    "AWS_SECRET_ACCESS_KEY",
    "apiKey",
]
SHOWN_KEYS = [
    "new_key",
    "key_dim",
    "monkey",
    "max_tokens",
    "num_tokens",
    "tokenizer",
    "tokens_per_batch",
    "lr",
]


@pytest.mark.parametrize("key", REDACTED_KEYS)
def test_credential_keys_are_redacted(key: str) -> None:
    leaf = key.rsplit(".", 1)[-1]
    assert is_secret_key(leaf)
    assert redact({"a": {leaf: "hunter22"}}) == {"a": {leaf: REDACTED}}
    assert redact_override(f"+{key}=hunter22") == f"+{key}={REDACTED}"


@pytest.mark.parametrize("key", SHOWN_KEYS)
def test_hyperparameters_that_merely_look_alike_are_shown(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: 128}) == {key: 128}
    assert redact_override(f"+{key}=128") == f"+{key}=128"


def test_everything_under_a_secret_key_is_redacted() -> None:
    plain = {"secrets": {"hf": "x1", "gh": ["y1", {"deep": "z1"}]}, "lr": 0.1}
    assert redact(plain) == {
        "secrets": {"hf": REDACTED, "gh": [REDACTED, {"deep": REDACTED}]},
        "lr": 0.1,
    }
    assert redact("x1", "secrets.hf") == REDACTED  # a value selected from inside one
    assert redact_override("+secrets.gh=abc") == f"+secrets.gh={REDACTED}"


def test_url_passwords_are_redacted_in_any_value() -> None:
    assert redact_url("postgresql://u:PASS@h/db") == "postgresql://u:***@h/db"
    assert redact({"storage": "postgresql://u:PASS@h:5432/db"}) == {
        "storage": "postgresql://u:***@h:5432/db"
    }
    assert redact_url("http://host:8080/path") == "http://host:8080/path"  # a port, not a password
    assert redact_override("db=postgresql://me:pw123@h/x") == "db=postgresql://me:***@h/x"
    assert redact_argv(["run", "+x.password=p4ssw0rd"]) == ["run", f"+x.password={REDACTED}"]


# -- through the real commands ----------------------------------------------------------------


def _no_secret_below(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_secret_overrides_never_reach_the_record_or_the_wandb_run(project: Path, expctl_exe):
    proc = subprocess.run(
        [
            *expctl_exe,
            "run",
            "trainer.epochs=1",
            "+ov_api_key=XYZ-SECRET-1",
            "+secrets.gh=GH-SECRET-2",
            "+db_url=postgresql://u:PG-SECRET-3@h/db",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip())
    wandb_dir = project.parent / "wandb"
    for secret in ("XYZ-SECRET-1", "GH-SECRET-2", "PG-SECRET-3"):
        assert _no_secret_below(run_dir, secret) == []
        assert _no_secret_below(wandb_dir, secret) == []  # what `wandb sync` would upload
        assert secret not in proc.stderr
    overrides = (run_dir / "overrides.yaml").read_text()
    assert f"+secrets.gh={REDACTED}" in overrides and f"+ov_api_key={REDACTED}" in overrides
    assert list(wandb_dir.rglob("*.wandb")), "the offline W&B run exists (so the check means it)"


@pytest.mark.parametrize(
    "args",
    [
        ["hf_token=SECRET-VALUE-4"],  # unknown key: the hint used to echo `+hf_token=VALUE`
        ["+hf_token=[SECRET-VALUE-4"],  # a parse error quoting the override
        ["--set", "+hf_token=SECRET-VALUE-4", "nope.key=1"],
    ],
)
def test_error_messages_and_debug_tracebacks_do_not_echo_secrets(cli, project, args):
    for debug in ([], ["--debug"]):
        result = cli(*debug, "config", "show", *args)
        assert result.exit_code == 2
        assert "SECRET-VALUE-4" not in result.stderr + result.stdout
        assert "hint:" in result.stderr


SECRET_SWEEP = """
program: train.py
method: grid
metric: {name: val_loss, goal: minimize}
parameters:
  api_token: {values: [TOKEN-SECRET-5]}
  lr: {values: [0.1]}
"""
PROGRAM = """
import wandb
run = wandb.init()
run.log({"val_loss": float(run.config.lr)})
run.finish()
"""


def _run_sweep(cli, isolated: Path, sweep_yaml: str):
    """Create the sweep, run one agent through it; what each command printed."""
    (isolated / "sweep.yaml").write_text(sweep_yaml)
    (isolated / "train.py").write_text(PROGRAM)
    created = cli("sweep", "create", "sweep.yaml")
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    agent = cli("sweep", "agent", sweep_id)
    assert agent.exit_code == 0, agent.stderr
    status = cli("sweep", "status", sweep_id, "--format", "json")
    table = cli("sweep", "status", sweep_id)
    return created, agent, status, table


@pytest.mark.slow
def test_sweep_parameters_named_like_secrets_are_never_printed(cli, isolated: Path):
    created, agent, status, table = _run_sweep(cli, isolated, SECRET_SWEEP)
    data = json.loads(status.stdout)
    assert data["best"]["params"]["api_token"] == REDACTED
    assert f"--api_token={REDACTED}" in data["best"]["command"]
    for output in (created.stderr, agent.stderr, status.stdout, table.stdout):
        assert "TOKEN-SECRET-5" not in output


# -- round 3: redaction by structure, not by text ----------------------------------------------


def test_dict_and_list_overrides_are_redacted_by_their_structure() -> None:
    assert (
        redact_override("+db={password: S, host: h}")
        == f"+db={{password: '{REDACTED}', host: 'h'}}"
    )
    assert redact_override("+c={secrets: {a: XX, b: [1, 2]}, n: 3}") == (
        f"+c={{secrets: {{a: '{REDACTED}', b: ['{REDACTED}', '{REDACTED}']}}, n: 3}}"
    )
    assert redact_override("+c=[{api_token: XYZW}, 1]") == f"+c=[{{api_token: '{REDACTED}'}}, 1]"
    # nothing secret inside: the override is kept exactly as written
    assert redact_override("+m={depth: 3, act: relu}") == "+m={depth: 3, act: relu}"
    # not Hydra's grammar (an unclosed brace, a Python repr): each secret pair still hidden
    assert "S3CRET" not in redact_override("+db={password: S3CRET, host: h")
    assert "S3CRET" not in redact_override("--opts={'client_secret': 'S3CRET'}")
    assert "S3CRET" not in redact_override("+db={secrets: {a: S3CRET, b: 1}, x: {")


def test_url_passwords_holding_at_slash_or_colon_are_hidden_whole() -> None:
    for url in (
        "postgresql://u:SEC@RET99@h/db",
        "postgresql://u:SEC/RET99@h/db",
        "postgresql://u:SEC:RET99@h:5432/db",
    ):
        shown = redact_url(f"storage {url} here")
        assert "SEC" not in shown and "RET99" not in shown, shown
        assert shown.endswith("@h/db here") or shown.endswith("@h:5432/db here")
    assert redact_url("https://a.org/p?mail=me@b.org") == "https://a.org/p?mail=me@b.org"
    assert redact_url("http://host:8080/a@b") == "http://host:8080/a@b"  # port and path


def test_secret_options_on_a_program_command_line_are_hidden() -> None:
    argv = [
        "python",
        "t.py",
        "--api_key=AK-1",
        "--hf-token",
        "TK-2",
        "--lr",
        "0.1",
        "--token",
        "-v",
    ]
    assert redact_argv(argv) == [
        "python",
        "t.py",
        f"--api_key={REDACTED}",
        "--hf-token",
        REDACTED,
        "--lr",
        "0.1",
        "--token",
        "-v",
    ]


DICT_SECRET = "DICT-SECRET-6"


@pytest.mark.slow
def test_a_dict_valued_override_keeps_its_secret_out_of_every_record(project: Path, expctl_exe):
    proc = subprocess.run(
        [*expctl_exe, "run", "trainer.epochs=1", f"+db={{password: {DICT_SECRET}, host: h}}", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip())
    assert _no_secret_below(run_dir, DICT_SECRET) == []
    assert _no_secret_below(project.parent / "wandb", DICT_SECRET) == []
    assert list((project.parent / "wandb").rglob("*.wandb")), "the W&B run exists"
    assert f"password: ''{REDACTED}''" in (run_dir / "overrides.yaml").read_text()
    assert DICT_SECRET not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["config", "show", f"+db={{password: {DICT_SECRET}, host: h"],  # a parse error
        ["run", f"+db={{password: {DICT_SECRET}, host: h}}", "trainer.device=${db.password}"],
        ["config", "show", "--check", f"+db={{password: {DICT_SECRET}}}", "nope=1"],
    ],
)
def test_errors_never_echo_a_secret_inside_a_dict_override(project: Path, expctl_exe, args):
    for debug in ([], ["--debug"]):
        proc = subprocess.run(
            [*expctl_exe, *debug, *args], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2, proc.stderr
        assert DICT_SECRET not in proc.stdout + proc.stderr
        assert "hint:" in proc.stderr
    assert not (project / "runs").exists() or not any((project / "runs").rglob("summary.json"))


def test_a_secret_from_a_config_file_is_not_echoed_by_validation(project: Path, expctl_exe):
    (project / "configs" / "db").mkdir()
    (project / "configs" / "db" / "prod.yaml").write_text(f"password: {DICT_SECRET}\nhost: h\n")
    for debug in ([], ["--debug"]):
        proc = subprocess.run(
            [*expctl_exe, *debug, "run", "+db=prod", "trainer.device=${db.password}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert "unknown device" in proc.stderr
        assert DICT_SECRET not in proc.stdout + proc.stderr


NESTED_SECRET_SWEEP = """
program: train.py
method: grid
metric: {name: val_loss, goal: minimize}
parameters:
  opts: {value: {client_secret: CLIENT-SECRET-8}}
  db_url: {value: "postgresql://u:URL-SEC@RET-9@h/db"}
  lr: {values: [0.1]}
command: [python, train.py, --api_key=CMD-SECRET-10, "${args}"]
"""


@pytest.mark.slow
def test_sweep_values_nested_or_in_urls_or_commands_are_never_shown(cli, isolated: Path):
    created, agent, status, table = _run_sweep(cli, isolated, NESTED_SECRET_SWEEP)
    summaries = [p.read_text() for p in (isolated / "runs").rglob("summary.json")]
    assert summaries, "the trial left its record"
    for output in (created.stderr, agent.stderr, status.stdout, table.stdout, *summaries):
        for secret in ("CLIENT-SECRET-8", "URL-SEC", "RET-9", "CMD-SECRET-10"):
            assert secret not in output, (secret, output)


def test_a_storage_error_quoting_part_of_a_url_password_is_scrubbed(isolated: Path, expctl_exe):
    pytest.importorskip("psycopg2")
    # libpq reads `u:SEC@RET...@host` as password `SEC`, host `RET...@host`, and quotes the host
    url = "postgresql://u:PWPART1@PWPART2@nohost.invalid/db"
    proc = subprocess.run(
        [*expctl_exe, "sweep", "list", "--storage", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "error:" in proc.stderr
    assert "PWPART1" not in proc.stderr and "PWPART2" not in proc.stderr, proc.stderr
