"""docs/tutorial.md (and README's runnable examples) run as written, in order, in a temp project.

The conventions a writer of docs/tutorial.md or README.md relies on:

- A fenced ```bash block runs. In docs/tutorial.md every bash block runs; in README.md only a
  bash block whose fence is on the line right after ``<!-- runnable -->``.
- Any other fence (```sh, ```console, ```python, ```yaml, ...) is shown and never run: use ```sh
  for commands that need a cluster, a database server or the network (sbatch, postgresql://...,
  ``wandb sync`` without ``--dry-run``).
- A ```text block right after a bash block (only blank lines between) is the output the reader is
  shown: trimmed real output. Lines ``<!-- expect: SUBSTRING -->`` right after that text block
  name its key lines: each SUBSTRING must occur in the shown text *and* in what the block really
  printed (stdout and stderr together). Pick lines that do not change from run to run (no ids,
  times, timings or sampled values).
- ``<!-- file: PATH -->`` on the line before a fenced block says the block is an excerpt of PATH
  (relative to the repository): its lines are lines of PATH, in the same order (blank lines and
  lines that are only ``…``, marking a cut, do not count).
- All bash blocks of one document run in ONE bash process with ``set -eo pipefail``, the way a
  reader types them into one terminal: ``cd`` and shell variables carry over from block to block,
  and a command that fails stops the run there. A block that shows a failure says so in shell:
  ``expctl config show --check || echo "exit code: $?"`` (and expects ``exit code: 2``).

The project directory is a temp dir holding what a fresh clone has beside the code (``configs/``
and ``examples/``), with the installed ``expctl`` on PATH. W&B runs offline (``WANDB_MODE``; the
tutorial works the same with no W&B login), its cache/config/data directories point into the temp
dir, and ``WANDB_DIR`` is left unset on purpose: the tutorial shows that each run's offline W&B run
lives inside its run directory, which ``WANDB_DIR`` would move. ``EXPCTL_*``/``WANDB_*`` variables of
the calling shell are dropped, and training runs on the CPU (``CUDA_VISIBLE_DEVICES=""``), as in
the doc. Set ``EXPCTL_TEST_TUTORIAL_OUT=DIR`` to keep every block's output
(``DIR/tutorial/L<line>.log``, start times in ``DIR/tutorial/times``) for refreshing the doc's
text blocks. Running the documents is marked slow (the tutorial trains ~25 small models: its
blocks took 121-159 s, this file 142-175 s, on 2 cores shared with other jobs); checking their
structure is not.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"
README = REPO / "README.md"
RUNNABLE_MARK = "<!-- runnable -->"
EXPECT = re.compile(r"^<!--\s*expect:\s?(.*?)\s*-->\s*$")
FILE_MARK = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")
FENCE = re.compile(r"^(```+)\s*([\w+-]*)")
RUN_TIMEOUT_S = 900


@dataclass
class Block:
    """One fenced block of a Markdown document."""

    info: str  # the fence's language: bash, text, sh, yaml, ...
    line: int  # 1-based line of the opening fence
    body: str
    before: str = ""  # the line right before the opening fence
    shown: str | None = None  # bash: the text block that follows it
    expect: list[str] = field(default_factory=list)  # bash: its <!-- expect: --> lines

    @property
    def label(self) -> str:
        first = next((s for s in self.body.splitlines() if s.strip()), "")
        return f"L{self.line}: {first.strip()[:60]}"


def parse_markdown(text: str) -> list[Block]:
    """Every fenced block, with each bash block's shown output and expected lines attached."""
    lines = text.splitlines()
    items: list[Block | str] = []  # blocks, and the non-blank lines between them
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                items.append(lines[i].strip())
            i += 1
            continue
        fence, start = m.group(1), i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: the ``` fence opened here is never closed")
        before = lines[start - 1].strip() if start else ""
        items.append(Block(m.group(2), start + 1, "\n".join(body) + "\n", before))
        i += 1
    attached: set[int] = set()  # the items that are expect lines of a bash block
    for k, item in enumerate(items):
        if not isinstance(item, Block) or item.info != "bash":
            continue
        after = items[k + 1] if k + 1 < len(items) else None
        if isinstance(after, Block) and after.info == "text":
            item.shown = after.body
            for j in range(k + 2, len(items)):
                extra = items[j]
                m = EXPECT.match(extra) if isinstance(extra, str) else None
                if not m:
                    break
                item.expect.append(m.group(1))
                attached.add(j)
    for j, item in enumerate(items):
        if isinstance(item, str) and EXPECT.match(item) and j not in attached:
            raise ValueError(f"{item!r} does not follow the text block of a bash block")
    return [item for item in items if isinstance(item, Block)]


def runnable(blocks: list[Block], marked_only: bool) -> list[Block]:
    return [
        b for b in blocks if b.info == "bash" and (not marked_only or b.before == RUNNABLE_MARK)
    ]


def doc_problems(blocks: list[Block], repo: Path = REPO) -> list[str]:
    """What is wrong with a document before anything runs: expected lines it does not show,
    file excerpts that are not in their file."""
    problems = []
    for b in blocks:
        if b.info == "bash" and b.expect and b.shown is None:
            problems.append(f"L{b.line}: expect lines but no text block")
        for want in b.expect:
            if not want:
                problems.append(f"L{b.line}: an empty <!-- expect: -->")
            elif b.shown is not None and want not in b.shown:
                problems.append(f"L{b.line}: expects {want!r}, which its text block does not show")
        m = FILE_MARK.match(b.before)
        if m:
            path = repo / m.group(1)
            if not path.is_file():
                problems.append(f"L{b.line}: <!-- file: {m.group(1)} --> does not exist")
            elif not _is_excerpt(b.body, path.read_text()):
                problems.append(f"L{b.line}: the block is not an excerpt of {m.group(1)}")
    return problems


def _is_excerpt(excerpt: str, whole: str) -> bool:
    """Every line of ``excerpt`` is a line of ``whole``, in the same order; blank lines and
    lines that are only ``…`` (what was cut) do not count."""
    remaining = iter(line.rstrip() for line in whole.splitlines())
    return all(
        any(line.rstrip() == other for other in remaining)
        for line in excerpt.splitlines()
        if line.strip() not in ("", "…")
    )


# -- running a document's bash blocks as one shell session -----------------------------------


@dataclass
class Session:
    """The outcome of running a document's bash blocks in one bash process."""

    blocks: list[Block]
    logs: Path  # L<line>.log per block that started
    returncode: int
    failed_at: int | None  # index of the block that stopped the run (None: all completed)

    def output(self, block: Block) -> str:
        path = self.logs / f"L{block.line}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def shell_script(blocks: list[Block], logs: Path) -> str:
    """One bash script: each block runs in the current shell with its output in its own log."""
    parts = ["set -eo pipefail", f"__logs={_quote(str(logs))}"]
    for index, block in enumerate(blocks):
        parts.append(
            f'echo {index} > "$__logs/current"; echo "L{block.line} $EPOCHREALTIME" >> "$__logs/times"'
        )
        parts.append(f'{{\n{block.body}}} > "$__logs/L{block.line}.log" 2>&1 < /dev/null')
    parts.append('echo done > "$__logs/current"; echo "end $EPOCHREALTIME" >> "$__logs/times"')
    return "\n".join(parts) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def tutorial_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCTL_", "WANDB_"))}
    for name in ("cache", "config", "data"):
        (home / f"wandb-{name}").mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        WANDB_MODE="offline",
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        WANDB_DATA_DIR=str(home / "wandb-data"),
        WANDB_DISABLE_GIT="true",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",  # the reader's terminal shows stdout and stderr as they come
        CUDA_VISIBLE_DEVICES="",  # the doc's numbers are a CPU's (a GPU rounds differently)
    )
    return env


def run_session(blocks: list[Block], project: Path, logs: Path, env: dict[str, str]) -> Session:
    logs.mkdir(parents=True, exist_ok=True)
    script = logs / "session.sh"
    script.write_text(shell_script(blocks, logs))
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", str(script)],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that a timeout can stop background agents too
    )
    try:
        proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # anything a block left in the background
    current = (logs / "current").read_text().strip() if (logs / "current").exists() else "0"
    failed_at = None if current == "done" else int(current)
    return Session(blocks, logs, proc.returncode, failed_at)


def clone_like(root: Path) -> Path:
    """What a fresh clone has beside the package: the example configs and examples/."""
    project = root / "clone"
    project.mkdir()
    for name in ("configs", "examples"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    return project


def check_block(session: Session, index: int) -> None:
    block = session.blocks[index]
    if session.failed_at is not None and index > session.failed_at:
        stopped = session.blocks[session.failed_at]
        pytest.skip(f"not reached: the run stopped at {stopped.label}")
    out = session.output(block)
    if session.failed_at == index:
        pytest.fail(
            f"{block.label} exited {session.returncode}"
            + (" (timed out)" if session.returncode == -signal.SIGKILL else "")
            + f"\n--- block ---\n{block.body}--- output (last 4000 chars) ---\n{out[-4000:]}"
        )
    missing = [want for want in block.expect if want not in out]
    assert not missing, (
        f"{block.label}: the doc shows {missing} but the commands printed:\n{out[-4000:]}"
    )


def _keep_logs(session: Session, name: str) -> None:
    keep = os.environ.get("EXPCTL_TEST_TUTORIAL_OUT")
    if keep:
        shutil.copytree(session.logs, Path(keep) / name, dirs_exist_ok=True)


# -- the documents ---------------------------------------------------------------------------

TUTORIAL_BLOCKS = parse_markdown(TUTORIAL.read_text())
TUTORIAL_RUN = runnable(TUTORIAL_BLOCKS, marked_only=False)
README_BLOCKS = parse_markdown(README.read_text())
README_RUN = runnable(README_BLOCKS, marked_only=True)


def test_tutorial_and_readme_are_well_formed() -> None:
    assert TUTORIAL_RUN, "docs/tutorial.md has no bash block"
    assert doc_problems(TUTORIAL_BLOCKS) == []
    assert doc_problems(README_BLOCKS) == []


@pytest.fixture(scope="module")
def tutorial_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("tutorial")
    session = run_session(TUTORIAL_RUN, clone_like(root), root / "logs", tutorial_env(root))
    _keep_logs(session, "tutorial")
    return session


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(TUTORIAL_RUN)), ids=[b.label for b in TUTORIAL_RUN])
def test_tutorial_block(tutorial_session: Session, index: int) -> None:
    check_block(tutorial_session, index)


@pytest.fixture(scope="module")
def readme_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("readme")
    session = run_session(README_RUN, clone_like(root), root / "logs", tutorial_env(root))
    _keep_logs(session, "readme")
    return session


@pytest.mark.slow
@pytest.mark.parametrize(
    "index",
    list(range(len(README_RUN))) or [None],
    ids=[b.label for b in README_RUN] or ["none marked"],
)
def test_readme_runnable_block(request: pytest.FixtureRequest, index: int | None) -> None:
    if index is None:  # say so rather than pass silently
        pytest.skip(f"README.md marks no bash block {RUNNABLE_MARK} yet")
    check_block(request.getfixturevalue("readme_session"), index)


# -- the conventions themselves --------------------------------------------------------------

SAMPLE = """\
# Doc

```bash
echo one
```

```text
one
```
<!-- expect: one -->

```sh
sbatch never-run.sbatch
```

<!-- runnable -->
```bash
echo two >&2 && echo "exit code: 2"
```
```text
two
exit code: 2
```

<!-- expect: two -->
<!-- expect: exit code: 2 -->

<!-- file: pyproject.toml -->
```toml
[project]
name = "expctl"
```
"""


def test_bash_blocks_run_other_fences_do_not() -> None:
    blocks = parse_markdown(SAMPLE)
    assert [b.info for b in blocks] == ["bash", "text", "sh", "bash", "text", "toml"]
    assert [b.body for b in runnable(blocks, marked_only=False)] == [
        "echo one\n",
        'echo two >&2 && echo "exit code: 2"\n',
    ]
    # README: only the block right after the marker
    assert [b.line for b in runnable(blocks, marked_only=True)] == [17]


def test_text_and_expect_lines_attach_to_the_bash_block_before_them() -> None:
    first, _, _, second, _, _ = parse_markdown(SAMPLE)
    assert (first.shown, first.expect) == ("one\n", ["one"])
    assert second.expect == ["two", "exit code: 2"]
    assert doc_problems(parse_markdown(SAMPLE)) == []


def test_doc_problems_name_what_the_doc_gets_wrong() -> None:
    wrong = SAMPLE.replace("<!-- expect: one -->", "<!-- expect: three -->").replace(
        'name = "expctl"', 'name = "other"'
    )
    assert doc_problems(parse_markdown(wrong)) == [
        "L3: expects 'three', which its text block does not show",
        "L29: the block is not an excerpt of pyproject.toml",
    ]
    with pytest.raises(ValueError, match="does not follow"):
        parse_markdown("<!-- expect: stray -->\n")
    with pytest.raises(ValueError, match="never closed"):
        parse_markdown("```bash\necho\n")


def test_blocks_share_one_shell_and_a_failure_stops_the_run(tmp_path: Path) -> None:
    doc = """\
```bash
cd sub && X=kept
```
```bash
echo "$X in $(basename "$PWD")"
false || echo "exit code: $?"
```
```bash
false
echo unreachable
```
```bash
echo never
```
"""
    blocks = runnable(parse_markdown(doc), marked_only=False)
    (tmp_path / "sub").mkdir()
    session = run_session(blocks, tmp_path, tmp_path / "logs", tutorial_env(tmp_path))
    assert session.output(blocks[1]) == "kept in sub\nexit code: 1\n"
    assert (session.failed_at, session.returncode) == (2, 1)
    assert session.output(blocks[2]) == ""
    assert session.output(blocks[3]) == ""
