"""What git says about the code a run ran: commit, branch, describe, remote, dirty state, diff.

Only the ``git`` command is used (no library), run so that it can never prompt, never take the
index lock (``GIT_OPTIONAL_LOCKS=0``: a run must not make the user's own ``git commit`` fail)
and never hang a run (a timeout per call). Every way a directory can fail to be a usable
repository — git missing, not a repository, a repository owned by another user, no commit yet —
is a plain note in the result, never an exception.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from expctl.record.files import DIFF_FILE
from expctl.secrets import scrub

TIMEOUT_S = 10.0  # per git call: a slow NFS home must not hold a run's record forever
MAX_UNTRACKED_LISTED = 1000  # names listed in provenance.json (all are counted)
MAX_UNTRACKED_CHARS = 200_000  # keeps provenance.json small whatever the names
# The remote URL schemes whose user part may be a credential by itself (a token as user name:
# https://TOKEN@github.com/x); for ssh the user is an account name (git@host) and stays.
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")

NOT_A_REPOSITORY = "not a git repository"
GIT_NOT_INSTALLED = "git is not installed (no `git` on PATH)"
DUBIOUS_OWNERSHIP = (
    "git refuses this repository: it is owned by another user (dubious ownership); "
    "add it to git's safe.directory to record it"
)
NO_COMMITS = "no commits yet"


class GitError(Exception):
    """A git call failed in a way worth one line in provenance.json."""


@dataclass(frozen=True)
class DiffResult:
    patch: bytes  # what diff.patch gets (empty: nothing to write)
    total_bytes: int  # the whole diff's size (the patch may be cut to the cap)
    truncated: bool


def git_facts(
    repo_dir: Path, env: Mapping[str, str], *, with_diff: bool, max_diff_bytes: int
) -> tuple[dict[str, Any], DiffResult | None]:
    """The ``git`` section of provenance.json for ``repo_dir``, and the diff of its tracked
    files against HEAD when they are changed and ``with_diff``."""
    facts: dict[str, Any] = {"path": str(repo_dir)}
    exe = shutil.which("git", path=env.get("PATH", os.defpath))
    if exe is None:
        return {**facts, "note": GIT_NOT_INSTALLED}, None
    git = _Git(exe, repo_dir, env)
    # The three questions are independent: ask them at once (each is a fresh process).
    status = git.start("status", "--porcelain=v2", "--branch", "--untracked-files=normal")
    # `--dirty` is added from the status below: asking git would walk the work tree again.
    describe = git.start("describe", "--always", "--tags")
    remotes = git.start("config", "--get-regexp", r"^remote\..*\.url$")
    # what HEAD holds of the run's own directory (its top-level entries only: small)
    in_head = git.start("ls-tree", "--name-only", "HEAD", "--", ".")
    status_result, describe_result, remotes_result, in_head_result = git.finish_all(
        status, describe, remotes, in_head
    )
    status_rc, status_out, status_err = status_result
    describe_rc, describe_out, _ = describe_result
    remotes_rc, remotes_out, _ = remotes_result
    if status_rc != 0:
        return {**facts, "note": _failure_note(status_err, status_rc)}, None
    facts.update(parse_status(status_out))
    # the run's directory is in no commit (a project copied into another project's clone,
    # untracked or ignored there): the commit says nothing about the code that ran
    in_head_rc, in_head_out, _ = in_head_result
    facts["workdir_untracked"] = (
        facts["commit"] is not None and in_head_rc == 0 and not in_head_out.strip()
    )
    described = describe_out.strip() if describe_rc == 0 else ""  # none without a commit
    if described and facts["dirty"]:
        described += "-dirty"
    facts["describe"] = described or None
    facts.update(pick_remote(remotes_out if remotes_rc == 0 else ""))
    if facts["commit"] is None:
        facts["note"] = NO_COMMITS
    if not facts["dirty"]:
        return facts, None
    if not with_diff:
        facts["diff"] = {"off": "provenance.diff=false"}
        return facts, None
    try:
        diff = git.diff(facts["commit"] or git.empty_tree(), max_diff_bytes)
    except GitError as e:  # the commit and counts are still worth recording
        facts["diff"] = {"error": str(e)}
        return facts, None
    facts["diff"] = {
        "file": DIFF_FILE if diff.patch else None,  # a cap of 0 writes no file
        "bytes": len(diff.patch),
        "total_bytes": diff.total_bytes,
        "max_bytes": max_diff_bytes,
        "truncated": diff.truncated,
    }
    return facts, diff


def parse_status(text: str) -> dict[str, Any]:
    """Branch, commit, upstream and file counts from ``git status --porcelain=v2 --branch``."""
    commit = branch = upstream = None
    ahead = behind = None
    changed = 0
    untracked: list[str] = []
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif line.startswith("# branch.upstream "):
            upstream = line.split(" ", 2)[2]
        elif line.startswith("# branch.ab "):
            a, b = line.split(" ")[2:4]
            ahead, behind = int(a.lstrip("+")), int(b.lstrip("-"))
        elif line[:2] in ("1 ", "2 ", "u "):  # ordinary, renamed/copied, unmerged
            changed += 1
        elif line.startswith("? "):
            untracked.append(line[2:])
    listed, chars = [], 0
    for name in untracked[:MAX_UNTRACKED_LISTED]:
        chars += len(name)
        if chars > MAX_UNTRACKED_CHARS:
            break
        listed.append(scrub(name))
    return {
        "commit": commit,
        "branch": branch,
        "detached": commit is not None and branch is None,
        "upstream": upstream,
        "ahead": ahead,
        "behind": behind,
        # Dirty means what `git describe --dirty` means: tracked files differ from HEAD.
        # Untracked files are counted and named, but no diff can hold them.
        "dirty": changed > 0,
        "changed_files": changed,
        "untracked_files": len(untracked),
        "untracked": listed,
        "untracked_listed_all": len(listed) == len(untracked),
    }


def pick_remote(config_lines: str) -> dict[str, Any]:
    """``origin``'s URL (else the first remote's), with credentials removed."""
    remotes: dict[str, str] = {}
    for line in config_lines.splitlines():
        key, _, url = line.partition(" ")
        name = key[len("remote.") : -len(".url")]
        remotes.setdefault(name, url.strip())
    if not remotes:
        return {"remote": None, "remote_url": None}
    name = "origin" if "origin" in remotes else next(iter(remotes))
    return {"remote": name, "remote_url": strip_credentials(remotes[name])}


def strip_credentials(url: str) -> str:
    """A remote URL without anything that can be a credential, found by structure:
    ``https://user:TOKEN@host/x`` and ``https://TOKEN@host/x`` → ``https://host/x``;
    ``ssh://git:PASS@host/x`` → ``ssh://host/x``; ``ssh://git@host/x`` and scp-style
    ``git@host:x`` keep their (secret-free) user. A query string is dropped too."""
    if "://" not in url:
        user, at, rest = url.rpartition("@")  # scp-style user@host:path (or a local path)
        if at and ":" in user and "/" not in user:
            return rest  # `user:password@host:path` is no git syntax, but never keep it
        return url
    scheme, _, rest = url.partition("://")
    # The user part ends at the *last* '@' before the path, so a password holding '@' or '/'
    # is removed whole (urlsplit would end the host at a '/' inside the password).
    userinfo, at, host_and_path = rest.rpartition("@")
    if at and "/" not in userinfo.partition(":")[0] and "?" not in userinfo:
        has_password = ":" in userinfo
        if scheme.lower() in _SSH_SCHEMES and not has_password:
            rest = f"{userinfo}@{host_and_path}"
        else:
            rest = host_and_path
    parts = urlsplit(f"{scheme}://{rest}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _failure_note(stderr: str, rc: int) -> str:
    if "dubious ownership" in stderr or "unsafe repository" in stderr:  # git ≥ 2.36 / 2.35.2
        return DUBIOUS_OWNERSHIP
    if "not a git repository" in stderr:
        return NOT_A_REPOSITORY
    first = next((line for line in stderr.splitlines() if line.strip()), "")
    raise GitError(f"git status failed (exit {rc}): {scrub(first)}" if first else f"exit {rc}")


class _Git:
    """Runs git in one directory, never prompting, never locking, never waiting forever."""

    def __init__(self, exe: str, cwd: Path, env: Mapping[str, str]):
        self.exe = exe
        self.cwd = cwd
        self.env = {
            **env,
            "GIT_OPTIONAL_LOCKS": "0",  # no index refresh written: never block the user's git
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "LC_ALL": "C",  # messages in English: "not a git repository" is read from them
        }

    def command(self, *args: str) -> list[str]:
        return [self.exe, "-c", "core.quotepath=off", *args]

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        # Its own session: a Ctrl-C meant for the run must not kill git and lose the record.
        return subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def finish(self, proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            what = " ".join(cast(list[str], proc.args)[3:5])  # the subcommand
            raise GitError(f"git {what} did not answer within {TIMEOUT_S:g} s") from None
        return proc.returncode, _text(out), _text(err)

    def finish_all(self, *procs: subprocess.Popen[bytes]) -> list[tuple[int, str, str]]:
        try:
            return [self.finish(proc) for proc in procs]
        finally:
            for proc in procs:  # one timed out: reap the others too
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()

    def empty_tree(self) -> str:
        """The empty tree's id in this repository's hash (what an unborn branch is diffed to)."""
        proc = self.start("hash-object", "-t", "tree", "--stdin")
        rc, out, err = self.finish(proc)
        if rc != 0:
            raise GitError(f"git hash-object failed: {scrub(err.strip())}")
        return out.strip()

    def diff(self, base: str, max_bytes: int) -> DiffResult:
        """``git diff BASE`` of tracked files, read up to ``max_bytes`` (cut at a line end) and
        counted to the end; the user's diff settings (external tools, colours, prefixes) are
        overridden so the patch applies with ``git apply``."""
        args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv"]
        args += ["--src-prefix=a/", "--dst-prefix=b/", base, "--"]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                self.command(*args),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,  # a file: warnings per file cannot fill a pipe and stall the read
                start_new_session=True,
            )
            killer = threading.Timer(TIMEOUT_S, proc.kill)
            killer.start()
            try:
                kept, total = _read_capped(proc, max_bytes)
                rc = proc.wait()
            finally:
                killer.cancel()
            if rc != 0:
                err.seek(0)
                message = _text(err.read()).strip().splitlines()
                why = f"killed after {TIMEOUT_S:g} s" if rc < 0 else (message or [""])[0]
                raise GitError(f"git diff failed (exit {rc}): {scrub(why)}")
        truncated = total > len(kept)
        patch = _scrubbed(kept)
        if len(patch) > max_bytes:  # a scrubbed secret may be longer than the value it hid
            patch, truncated = _cut_at_line(patch, max_bytes), True
        return DiffResult(patch, total, truncated)


def _read_capped(proc: subprocess.Popen[bytes], max_bytes: int) -> tuple[bytes, int]:
    assert proc.stdout is not None
    kept = bytearray()
    total = 0
    with proc.stdout:
        while chunk := proc.stdout.read(1 << 16):
            total += len(chunk)
            if len(kept) <= max_bytes:
                kept += chunk[: max_bytes + 1 - len(kept)]
    data = bytes(kept)
    return (data if total <= max_bytes else _cut_at_line(data, max_bytes)), total


def _cut_at_line(data: bytes, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of ``data``, ending at a line end (a patch of whole lines)."""
    head = data[:max_bytes]
    end = head.rfind(b"\n")
    return head[: end + 1] if end >= 0 else b""


def _scrubbed(patch: bytes) -> bytes:
    """The patch with remembered secret values (a token the user also passed as an override)
    and URL passwords hidden: a patch that no longer applies beats a leaked secret."""
    text = patch.decode("utf-8", "surrogateescape")
    hidden = scrub(text)
    return patch if hidden == text else hidden.encode("utf-8", "surrogateescape")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
