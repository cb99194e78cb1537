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


@pytest.mark.slow
def test_sweep_parameters_named_like_secrets_are_never_printed(cli, isolated: Path):
    (isolated / "sweep.yaml").write_text(SECRET_SWEEP)
    (isolated / "train.py").write_text(PROGRAM)
    created = cli("sweep", "create", "sweep.yaml")
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    agent = cli("sweep", "agent", sweep_id)
    assert agent.exit_code == 0, agent.stderr
    status = cli("sweep", "status", sweep_id, "--format", "json")
    table = cli("sweep", "status", sweep_id)
    data = json.loads(status.stdout)
    assert data["best"]["params"]["api_token"] == REDACTED
    assert f"--api_token={REDACTED}" in data["best"]["command"]
    for output in (created.stderr, agent.stderr, status.stdout, table.stdout):
        assert "TOKEN-SECRET-5" not in output
