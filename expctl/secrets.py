"""What counts as a secret, and hiding it wherever a value is shown or stored.

One rule (README, "Secrets"): a key is a credential when, ignoring case and the separators
``_ - .``, it **contains** ``password``, ``passwd``, ``passphrase``, ``secret`` or ``credential``,
or it **ends with** ``token``, ``apikey``, ``accesskey``, ``secretkey`` or ``privatekey``. Every
value under such a key is a secret too (``secrets: {hf: ...}``), and so is the password part of
any URL (``postgresql://u:PASS@h/db`` → ``postgresql://u:***@h/db``). So ``dbpassword``,
``clientsecret`` and ``hf_token`` are hidden while ``max_tokens``, ``tokenizer``, ``new_key`` and
``monkey`` — hyperparameters — stay visible (a redacted config.yaml could not be resumed).

Applied to config.yaml, overrides.yaml, summary.json, what wandb is given (config and argv),
artifact metadata, sweep output and every message the CLI prints: values of secret overrides and
config leaves are :func:`remember`\\ ed when they are read, and :func:`scrub` removes them from any
text (error messages, hints, ``--debug`` tracebacks). Standard library only: imported everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

REDACTED = "********"
URL_PASSWORD = "***"
_CONTAINS = ("password", "passwd", "passphrase", "secret", "credential")
_ENDS_WITH = ("token", "apikey", "accesskey", "secretkey", "privatekey")
_SEPARATORS = re.compile(r"[_\-.\s]+")
# scheme://user:password@host — the password ends at the last '@' before the host part
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)@")
_MIN_REMEMBERED = 4  # shorter values would scrub ordinary words out of every message

_remembered: set[str] = set()


def is_secret_key(key: object) -> bool:
    """True for one key name that holds a credential (see the module docstring)."""
    compact = _SEPARATORS.sub("", str(key)).lower()
    if not compact:
        return False
    return any(part in compact for part in _CONTAINS) or compact.endswith(_ENDS_WITH)


def is_secret_path(path: str) -> bool:
    """True when any segment of a dotted path (``db.password``, ``+secrets.gh``) is secret."""
    return any(is_secret_key(segment) for segment in _path_segments(path))


def _path_segments(path: str) -> list[str]:
    key = str(path).lstrip("+~").split("@", 1)[0]  # `+a.b`, `~a`, `group@pkg`
    return [s for s in re.split(r"[./]", key) if s]


def redact_url(text: str) -> str:
    """``scheme://user:PASS@host`` → ``scheme://user:***@host`` (anywhere in ``text``)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{URL_PASSWORD}@", text)


def redact(node: Any, path: str = "", *, inside_secret: bool = False) -> Any:
    """A copy of a plain value (dicts, lists, scalars) with every secret replaced.

    ``path`` is the dotted key of ``node`` itself (``config show --select secrets.hf``), so a
    value selected from inside a secret map stays hidden.
    """
    secret = inside_secret or (bool(path) and is_secret_path(path))
    if isinstance(node, dict):
        return {
            k: redact(v, f"{path}.{k}" if path else str(k), inside_secret=secret)
            for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return [redact(v, path, inside_secret=secret) for v in node]
    if secret and node not in (None, "", "???"):
        return REDACTED
    if isinstance(node, str):
        return redact_url(node)
    return node


def is_redacted(value: Any) -> bool:
    """Whether a stored value was hidden by :func:`redact` (so a resume must be given it)."""
    return value == REDACTED or (isinstance(value, str) and f":{URL_PASSWORD}@" in value)


def redact_override(override: str) -> str:
    """``+db.password=hunter2`` → ``+db.password=********``; URL passwords in any value too."""
    key, sep, _ = override.partition("=")
    if sep and is_secret_path(key):
        return f"{key}={REDACTED}"
    return redact_url(override)


def redact_overrides(overrides: Iterable[str]) -> list[str]:
    return [redact_override(o) for o in overrides]


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    """Sweep parameters by dotted name, with those named like secrets hidden (for display)."""
    return {name: redact(value, name) for name, value in params.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secret overrides and remembered secret values hidden (what wandb
    records as the run's arguments)."""
    return [scrub(redact_override(arg)) for arg in argv]


# -- remembered values: scrubbed from every message ------------------------------------------


def remember(value: Any) -> None:
    """Note a secret value so :func:`scrub` hides it wherever it is echoed."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= _MIN_REMEMBERED:
            _remembered.add(text)


def remember_overrides(overrides: Iterable[str]) -> None:
    """Remember the values of secret overrides (``+hf_token=abc``) and URL passwords."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and is_secret_path(key):
            remember(value.strip("'\""))
        _remember_url_passwords(override)


def remember_config(node: Any, path: str = "", *, inside_secret: bool = False) -> None:
    """Remember every secret leaf of a plain config (and URL passwords in any string)."""
    secret = inside_secret or (bool(path) and is_secret_path(path))
    if isinstance(node, dict):
        for k, v in node.items():
            remember_config(v, f"{path}.{k}" if path else str(k), inside_secret=secret)
    elif isinstance(node, list | tuple):
        for v in node:
            remember_config(v, path, inside_secret=secret)
    elif secret and node not in (None, "", "???"):
        remember(node)
    elif isinstance(node, str):
        _remember_url_passwords(node)


def _remember_url_passwords(text: str) -> None:
    for m in _URL_CREDENTIALS.finditer(text):
        remember(m.group("pw"))


def scrub(text: str) -> str:
    """``text`` with every remembered secret value and URL password replaced."""
    for value in sorted(_remembered, key=len, reverse=True):  # longest first: no partial leftovers
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_url(text)


def forget_all() -> None:
    """Forget remembered values (tests; a long-lived process between unrelated jobs)."""
    _remembered.clear()
