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

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

REDACTED = "********"
URL_PASSWORD = "***"
_CONTAINS = ("password", "passwd", "passphrase", "secret", "credential")
_ENDS_WITH = ("token", "apikey", "accesskey", "secretkey", "privatekey")
_SEPARATORS = re.compile(r"[_\-.\s]+")
# scheme://REST, REST up to whitespace or a quote: its credentials are found by structure in
# _split_userinfo, not by a pattern, so a password holding a raw '@', '/' or ':' is hidden whole.
_URL = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'\"<>`]+)")
# `key: value` inside an override's {...}/[...] that Hydra's parser cannot read (for messages)
# a key (bare or quoted, as in a Python repr of a dict) and its `:`/`=`
_SECRET_KEY_AT = re.compile(r"(?P<q>['\"]?)(?P<key>[A-Za-z_][\w.\-]*)(?P=q)\s*[:=]\s*")
_INLINE_PAIR = re.compile(
    r"(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>\s*[:=]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,{}\[\]\s]+)"
)
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
    """``scheme://user:PASS@host`` → ``scheme://user:***@host`` (anywhere in ``text``).

    The password is everything between the user's ``:`` and the *last* ``@`` of the URL, so
    ``postgresql://u:SEC@RET/99@h/db`` loses all of ``SEC@RET/99`` (libpq would read it
    otherwise, but a half-hidden password is a shown one)."""

    def hide(m: re.Match[str]) -> str:
        parts = _split_userinfo(m.group("rest"))
        if parts is None:
            return m.group(0)
        user, _, host = parts
        return f"{m.group('scheme')}{user}:{URL_PASSWORD}@{host}"

    return _URL.sub(hide, text)


def _split_userinfo(rest: str) -> tuple[str, str, str] | None:
    """``user:password@host...`` → (user, password, host...), or None when ``rest`` has no
    password. ``host:8080/a@b`` is a port and a path, not credentials."""
    userinfo, at, host = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (at and colon and password) or "/" in user or "?" in user:
        return None
    port, slash, _ = password.partition("/")
    if slash and port.isdigit():
        return None
    return user, password, host


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
    """``+db.password=hunter2`` → ``+db.password=********``; a dict or list value is redacted by
    its structure (``+db={password: S, host: h}`` → ``+db={password: '********', host: h}``);
    URL passwords in any value too."""
    key, sep, value = override.partition("=")
    if sep and is_secret_path(key):
        return f"{key}={REDACTED}"
    if sep and value.lstrip()[:1] in ("{", "["):
        return redact_url(f"{key}={_redact_structured(key, value)}")
    return redact_url(override)


def _redact_structured(key: str, value: str) -> str:
    """A ``{...}``/``[...]`` override value with its secret leaves hidden: parsed with Hydra's
    grammar when it can be (and written back in it), else each ``secret_key: value`` pair."""
    parsed = _parse_override_value(key, value)
    if parsed is _UNPARSED:
        return _hide_inline_pairs(value)
    hidden = redact(parsed, _path_key(key))
    return value if hidden == parsed else _hydra_text(hidden)


def _hide_inline_pairs(text: str) -> str:
    """Text that is no valid override: hide the value after each ``secret_key:`` — a scalar, or
    a whole ``{...}``/``[...]`` up to its closing bracket (or the end of the text)."""
    out, pos = [], 0
    for m in _SECRET_KEY_AT.finditer(text):
        if m.start() < pos or not is_secret_key(m.group("key")):
            continue
        start = m.end()
        end = _value_end(text, start)
        out.append(text[pos:start] + f"'{REDACTED}'")
        pos = end
    return "".join(out) + text[pos:]


def _value_end(text: str, start: int) -> int:
    """Where the value starting at ``start`` ends: its closing bracket, or the next , } ]."""
    if text[start : start + 1] in ("{", "["):
        depth = 0
        for i in range(start, len(text)):
            depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(text[i], 0)
            if depth == 0:
                return i + 1
        return len(text)
    m = _INLINE_PAIR.match(f"k:{text[start:]}")
    return start + (len(m.group("value")) if m else 0)


_UNPARSED = object()


def _parse_override_value(key: str, value: str) -> Any:
    """The Python value of a dict/list override (Hydra's grammar), or ``_UNPARSED``."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_override(f"k={value}").value()
    except Exception:  # not Hydra's grammar (or Hydra missing): the caller falls back to text
        return _UNPARSED
    return parsed if isinstance(parsed, dict | list) else _UNPARSED


def _path_key(key: str) -> str:
    return ".".join(_path_segments(key))


def _hydra_text(value: Any) -> str:
    """``value`` written in Hydra's override grammar (strings single-quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_hydra_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_hydra_text(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def redact_overrides(overrides: Iterable[str]) -> list[str]:
    return [redact_override(o) for o in overrides]


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    """Sweep parameters by dotted name, with those named like secrets hidden (for display)."""
    return {name: redact(value, name) for name, value in params.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secrets hidden: secret overrides (``+hf_token=x``), secret options
    (``--api_key=x``, ``--api-key x``) and remembered secret values (what wandb records as the
    run's arguments, what a program trial's record says it ran)."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            shown.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        if arg.startswith("-") and len(arg) > 1 and not arg.lstrip("-")[:1].isdigit():
            option, sep, _ = arg.partition("=")
            if is_secret_key(option.lstrip("-")):
                shown.append(f"{option}={REDACTED}" if sep else arg)
                hide_next = not sep
                continue
        shown.append(scrub(redact_override(arg)))
    return shown


# -- remembered values: scrubbed from every message ------------------------------------------


def remember(value: Any) -> None:
    """Note a secret value so :func:`scrub` hides it wherever it is echoed."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= _MIN_REMEMBERED:
            _remembered.add(text)


def remember_overrides(overrides: Iterable[str]) -> None:
    """Remember the values of secret overrides (``+hf_token=abc``), of secret keys inside a
    dict/list override (``+db={password: abc}``) and URL passwords."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and is_secret_path(key):
            remember(value.strip("'\""))
        elif sep and value.lstrip()[:1] in ("{", "["):
            parsed = _parse_override_value(key, value)
            if parsed is _UNPARSED:
                for m in _SECRET_KEY_AT.finditer(value):
                    if is_secret_key(m.group("key")):
                        hidden = value[m.end() : _value_end(value, m.end())]
                        for piece in re.split(r"[\s,:{}\[\]]+", hidden):
                            remember(piece.strip("'\""))
            else:
                remember_config(parsed, _path_key(key))
        _remember_url_passwords(override)


def remember_argv(argv: Iterable[str]) -> None:
    """Remember what a command line holds that is secret: overrides, the value after a secret
    option (``--api-key X``), URLs' passwords (libpq's errors quote the URL's parts)."""
    args = list(argv)
    remember_overrides(args)
    for option, value in itertools.pairwise(args):
        if option.startswith("-") and "=" not in option and is_secret_key(option.lstrip("-")):
            remember(value)


def remember_environment(environ: dict[str, str]) -> None:
    """Remember the values of secret-named variables (``EXPCTL_DB_PASSWORD``) and URLs'
    passwords in any of them (``EXPCTL_STORAGE=postgresql://u:PASS@h/db``)."""
    remember_overrides(f"{name}={value}" for name, value in environ.items())


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
    """A URL's password, and each piece of it between ``@ / :`` (a client that splits the URL
    at another ``@`` quotes such a piece as a host name or a user)."""
    for m in _URL.finditer(text):
        parts = _split_userinfo(m.group("rest"))
        if parts is not None:
            password = parts[1]
            remember(password)
            for piece in re.split(r"[@/:]", password):
                remember(piece)


def scrub(text: str) -> str:
    """``text`` with every remembered secret value and URL password replaced."""
    for value in sorted(_remembered, key=len, reverse=True):  # longest first: no partial leftovers
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_url(text)


def forget_all() -> None:
    """Forget remembered values (tests; a long-lived process between unrelated jobs)."""
    _remembered.clear()
