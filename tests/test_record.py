"""The run record's one home (issue 22, item 2): `expctl/record/`.

(a) its file names are spelled only there; (b) one tolerant reader, so the trainer's resume
and `runs *` read a damaged record the same way; (c) one NaN policy from the writer through
`runs` and `--format json`; (d) one run-reference resolver for `run --resume`, `runs show` and
what `artifacts show`'s lineage names.
"""

from __future__ import annotations

import ast
import json
import math
import re
import time
from pathlib import Path

import pytest

from expctl.record.files import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST_CHECKPOINT_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    SUMMARY_FILE,
)
from expctl.record.read import read_metrics, read_overrides, read_summary
from expctl.record.write import RunRecord

EXPCTL = Path(__file__).resolve().parents[1] / "expctl"

# -- (a) file names have one home ----------------------------------------------------------------

# A string literal that is, or ends a path with, one of the record's file names.
_RECORD_NAME = re.compile(
    r"(?:^|[/*])(config\.yaml|overrides\.yaml|summary\.json|metrics\.jsonl|provenance\.json"
    r"|diff\.patch|requirements\.txt|last\.pt|labels\.json|\.labels\.lock)$"
)
# Names too common to match everywhere: flagged only where they build a path (`x / "name"`,
# `x + "name"`, `Path("name")`). ("checkpoints" is also a summary.json key and a tracker label.)
_PATH_PARTS = {"checkpoints", "resumes", ".lock"}
# Literals that are genuinely something else, each with why.
ALLOWED = {
    # the artifact store's own per-name lock, not a run directory's
    ("expctl/artifacts/store.py", ".lock"),
    # Optuna's symlink lock beside a journal file (its name is Optuna's choice)
    ("expctl/sweeps/storage/__init__.py", ".lock"),
    ("expctl/sweeps/storage/journal_lock.py", ".lock"),
}


def _builds_a_path(parent: ast.AST) -> bool:
    if isinstance(parent, ast.BinOp):
        return isinstance(parent.op, ast.Div | ast.Add)
    if isinstance(parent, ast.Call):
        func = parent.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in ("Path", "joinpath")
    return False


def record_name_literals(root: Path = EXPCTL) -> list[str]:
    """``path:line: 'literal'`` for each record file name spelled outside expctl/record/."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel.startswith("expctl/record/"):
            continue
        for parent in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for node in ast.iter_child_nodes(parent):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                value = node.value
                hit = bool(_RECORD_NAME.search(value)) or (
                    value in _PATH_PARTS and _builds_a_path(parent)
                )
                if hit and (rel, value) not in ALLOWED:
                    found.append(f"{rel}:{node.lineno}: {value!r}")
    return found


def test_record_file_names_are_spelled_only_in_expctl_record():
    assert record_name_literals() == [], "use the names of expctl/record/files.py"


def test_the_lint_sees_a_literal(tmp_path: Path):
    pkg = tmp_path / "expctl" / "runs"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text(
        'from pathlib import Path\nA = Path("r") / "summary.json"\nB = Path("checkpoints")\n'
        'C = f"{A}/metrics.jsonl"\nD = "no summary.json here, just words"\n'
    )
    assert record_name_literals(tmp_path / "expctl") == [
        "expctl/runs/x.py:2: 'summary.json'",
        "expctl/runs/x.py:3: 'checkpoints'",
        "expctl/runs/x.py:4: '/metrics.jsonl'",
    ]


# -- helpers: run directories made by the real writer --------------------------------------------


def write_run(
    root: Path, name: str = "exp", *, started_at: str | None = None, rows: int = 3, **summary
) -> Path:
    """A run directory as the trainer leaves it, written through :class:`RunRecord`."""
    from expctl.config import dump_yaml
    from expctl.rundir import create_run_dir

    run_dir = create_run_dir(name, root)
    record = RunRecord(run_dir, dump_config=dump_yaml)
    record.write_config({"optim": {"lr": 0.1}, "trainer": {"epochs": 1}})
    record.write_overrides(["optim.lr=0.1"])
    for step in range(1, rows + 1):
        record.append_metrics({"step": step, "epoch": step, "val_loss": 1.0 / step})
    record.close()
    (record.checkpoint_dir / LAST_CHECKPOINT_FILE).write_bytes(b"not read by these tests")
    record.write_summary(
        {
            "name": name,
            "status": "completed",
            "started_at": started_at or time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
            "monitor": {"metric": "val_loss", "mode": "min"},
            "final_metrics": {"val_loss": 1.0 / rows},
            **summary,
        }
    )
    return run_dir


# -- (b) one tolerant reader ---------------------------------------------------------------------


def test_a_damaged_record_reads_the_same_for_the_trainer_and_for_runs(isolated: Path):
    from expctl.runs.records import load_run
    from expctl.train.resume import _recorded_overrides

    run_dir = write_run(isolated / "runs", rows=4)
    lines = (run_dir / METRICS_FILE).read_text().splitlines(keepends=True)
    # a garbage line in the middle (a disk error), and a torn last line (a hard kill)
    damaged = [lines[0], "\x00\x00garbage\n", *lines[1:], '{"step": 5, "val_lo']
    (run_dir / METRICS_FILE).write_text("".join(damaged))
    text = (run_dir / SUMMARY_FILE).read_text()
    (run_dir / SUMMARY_FILE).write_text(text[: len(text) // 2])  # torn
    (run_dir / OVERRIDES_FILE).write_text("- [unclosed\n")

    rows, notes = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # rows after the bad line are kept
    assert notes == ["metrics.jsonl: 2 damaged lines skipped (line 2, 6)"]
    summary, note = read_summary(run_dir)
    assert summary is None and note and "truncated or damaged" in note
    assert read_overrides(run_dir) == (
        [],
        "overrides.yaml is not valid YAML (ParserError): damaged",
    )

    # runs: the same reader, the notes on the run
    info = load_run(run_dir)
    assert info.status == "crashed" and note in info.notes
    assert info.overrides == [] and any("overrides.yaml" in n for n in info.notes)
    # the trainer's resume: the same overrides, the same rows kept (up to the checkpoint's step)
    assert _recorded_overrides(run_dir) == []
    RunRecord(run_dir).drop_metrics_after(3)
    assert read_metrics(run_dir) == ([r for r in rows if r["step"] <= 3], [])


def test_resume_reads_a_torn_summary_as_runs_does(project: Path, cli):
    """A run whose summary.json was torn (killed while it was replaced by hand, a full disk)
    still resumes: the trainer reads it through the one tolerant reader, as `runs` does."""
    first = cli("run", "trainer.epochs=1", "trainer.num_threads=1", "-q")
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    text = (run_dir / SUMMARY_FILE).read_text()
    (run_dir / SUMMARY_FILE).write_text(text[: len(text) // 2])
    shown = cli("runs", "show", "latest", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    assert any("truncated or damaged" in n for n in json.loads(shown.stdout)["notes"])

    again = cli("run", "--resume", "latest", "trainer.epochs=2", "trainer.num_threads=1", "-q")
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()) == run_dir
    summary, note = read_summary(run_dir)
    assert note is None and summary and summary["status"] == "completed"
    assert summary["final_metrics"]["epoch"] == 2


# -- (c) one NaN policy --------------------------------------------------------------------------


def _strict(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"{token} written: JSON has no NaN/inf")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_round_trip_as_null_through_runs_and_format_json(isolated, cli):
    from expctl.cli.output import json_text
    from expctl.runs.records import load_run

    root = isolated / "runs"
    run_dir = write_run(root, rows=1, best_metrics={"val_loss": math.inf})
    record = RunRecord(run_dir)
    record.append_metrics({"step": 2, "val_loss": math.nan, "grad_norm": -math.inf})
    record.close()
    summary = {**read_summary(run_dir)[0], "final_metrics": {"val_loss": math.nan}}  # type: ignore[dict-item]
    record.write_summary(summary)

    # on disk: strict JSON, null where the number was not finite
    on_disk = _strict((run_dir / SUMMARY_FILE).read_text())
    assert on_disk["final_metrics"] == {"val_loss": None}  # type: ignore[index]
    assert on_disk["best_metrics"] == {"val_loss": None}  # type: ignore[index]
    lines = (run_dir / METRICS_FILE).read_text().splitlines()
    assert _strict(lines[-1]) == {"step": 2, "val_loss": None, "grad_norm": None}

    # read back: None through the reader and runs
    assert read_metrics(run_dir)[0][-1] == {"step": 2, "val_loss": None, "grad_norm": None}
    info = load_run(run_dir)
    assert info.final_value is None and info.best_value is None

    # --format json: the same nulls, strict JSON
    shown = cli("runs", "show", str(run_dir), "--runs-dir", str(root), "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    page = _strict(shown.stdout)
    assert page["run"]["final"] is None and page["run"]["best"] is None  # type: ignore[index]
    assert page["metrics"][-1] == {"step": 2, "val_loss": None, "grad_norm": None}  # type: ignore[index]
    listed = cli("runs", "list", "--runs-dir", str(root), "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    assert _strict(listed.stdout)[0]["final"] is None  # type: ignore[index]
    # a NaN held in memory (never a record's) is shown, as text, in strict JSON
    assert _strict(json_text({"x": math.nan, "y": [math.inf, -math.inf]})) == {
        "x": "nan",
        "y": ["inf", "-inf"],
    }


# -- (d) one run-reference resolver --------------------------------------------------------------


@pytest.fixture
def three_runs(isolated: Path) -> tuple[Path, list[Path]]:
    """Three runs started within one second: only their records' sub-second start orders them
    (the random ids would not)."""
    root = isolated / "runs"
    second = time.strftime("%Y-%m-%dT%H:%M:%S")
    runs = [write_run(root, "exp", started_at=f"{second}.{ms:03d}+00:00") for ms in (100, 200, 300)]
    stamps = {p.name.rsplit("-", 1)[0] for p in runs}
    if len(stamps) > 1:  # the clock crossed a second: make them one second again
        stamp = min(stamps)
        runs = [p.rename(p.with_name(f"{stamp}-{p.name.rsplit('-', 1)[1]}")) for p in runs]
    return root, runs


def test_every_command_resolves_a_reference_to_the_same_run(three_runs, cli):
    from expctl.artifacts import ArtifactStore, publish
    from expctl.record.refs import resolve_run
    from expctl.runs.lineage import version_lineage
    from expctl.train.resume import find_resume_dir

    root, (oldest, middle, newest) = three_runs
    refs = {
        "latest": newest,
        "latest~1": middle,
        "latest~2": oldest,
        middle.name.rsplit("-", 1)[1][:5]: middle,  # an id prefix
        str(oldest): oldest,  # a path
        f"{newest.parent.name}/{newest.name}": newest,
    }
    for ref, expected in refs.items():
        assert resolve_run(ref, root) == expected.absolute(), ref
        assert find_resume_dir(ref, root) == expected.resolve(), ref  # run --resume
        shown = cli("runs", "show", ref, "--runs-dir", str(root), "--format", "json")
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["run"]["run_dir"] == str(expected.absolute()), ref

    # artifacts show: the producer of a version is the run the references name
    weights = root / "w.pt"
    weights.write_bytes(b"weights")
    store = ArtifactStore()
    version = publish(
        "m", [("w.pt", weights)], type="model", metadata={"run_dir": str(middle)}, store=store
    )
    lineage = version_lineage(store, version.ref, root)
    assert lineage.producer is not None
    assert Path(lineage.producer.run_dir) == resolve_run("latest~1", root)


def test_a_reference_reads_the_same_in_a_real_expctl_process(three_runs, expctl_exe):
    import subprocess

    root, runs = three_runs
    result = subprocess.run(
        [*expctl_exe, "runs", "show", "latest~1", "--runs-dir", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run"]["run_dir"] == str(runs[1].absolute())


def test_record_files_are_where_the_writer_puts_them(isolated: Path):
    run_dir = write_run(isolated / "runs")
    names = {p.name for p in run_dir.iterdir()}
    assert {CONFIG_FILE, OVERRIDES_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_DIR} <= names
