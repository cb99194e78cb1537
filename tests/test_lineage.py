"""`expctl artifacts show` (issue 21, lineage): who produced a version, what it was initialised
from (back to the start), and every run initialised from it; `run_artifacts` for `runs show`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from expctl.artifacts import ArtifactStore, publish
from expctl.runs.lineage import run_artifacts, version_lineage

TINY = ("trainer.epochs=1", "trainer.device=cpu", "trainer.num_threads=1")
MODEL = "digits-mlp-model"


def _run_dir(result) -> Path:
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def _expected_run(run_dir: Path) -> dict[str, Any]:
    """What lineage says of a real run: read back from its own record files."""
    summary = json.loads((run_dir / "summary.json").read_text())
    monitor = summary["monitor"]["metric"]
    final = {  # what says how good a run is, not bookkeeping
        k: v
        for k, v in summary["final_metrics"].items()
        if isinstance(v, int | float) and k not in ("step", "epoch", "lr", "samples_per_s")
    }
    keys = sorted(final, key=lambda k: (k != monitor, not k.startswith("val"), k))[:4]
    provenance = run_dir / "provenance.json"
    git = json.loads(provenance.read_text()).get("git", {}) if provenance.exists() else {}
    return {
        "run_dir": str(run_dir),
        "exists": True,
        "id": run_dir.name.rsplit("-", 1)[1],
        "name": summary["name"],
        "status": "completed",
        "started_at": summary["started_at"],
        "monitor": monitor,
        "metrics": {k: final[k] for k in keys},
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "init_from": summary["init_from"],
    }


@pytest.mark.slow
def test_three_real_runs_show_producer_ancestry_and_consumers(cli, project: Path):
    run1 = _run_dir(cli("run", *TINY))
    run2 = _run_dir(cli("run", *TINY, "seed=7"))  # other weights: a second version
    run3 = _run_dir(cli("run", *TINY, "--init-from", f"{MODEL}:v0"))
    store = ArtifactStore()
    assert [v.ref for v in store.versions(MODEL)] == [f"{MODEL}:v{i}" for i in range(3)]

    page = cli("artifacts", "show", f"{MODEL}:v2")
    assert page.exit_code == 0, page.stderr
    text = page.stdout
    produced = text.split("produced by:\n", 1)[1]
    assert produced.startswith(f"  {run3} (completed")
    ancestry = text.split("initialised from:\n", 1)[1].split("consumed by:", 1)[0]
    assert ancestry.startswith(f"  <- {MODEL}:v0 (file ")
    assert f"     {run1} (completed" in ancestry  # v0's producer
    commits = _expected_run(run3)["commit"], _expected_run(run1)["commit"]
    for commit in commits:
        assert (f"commit {commit[:12]}" if commit else "commit unknown") in text
    assert "consumed by:  0 runs" in text

    # JSON: exact
    shown = cli("artifacts", "show", f"{MODEL}:v2", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    v0, v2 = store.version(MODEL, 0), store.version(MODEL, 2)
    init = json.loads((run3 / "summary.json").read_text())["init_from"]
    assert init["version"] == v0.ref
    assert json.loads(shown.stdout) == {
        **json.loads(json.dumps(v2.summary())),
        "produced_by": _expected_run(run3),
        "initialised_from": [
            {
                "version": v0.ref,
                "file": init["file"],
                "sha256": init["sha256"],
                "ref": f"{MODEL}:v0",
                "in_store": True,
                "produced_by": _expected_run(run1),
                "stop": None,
            }
        ],
        "consumed_by": {"count": 0, "runs_root": str(project / "runs"), "runs": []},
        "notes": [],
    }

    # v0: produced by run 1, trained from scratch, consumed by run 3 (not by run 2)
    first = cli("artifacts", "show", f"{MODEL}:v0", "--format", "json")
    data = json.loads(first.stdout)
    assert data["produced_by"]["run_dir"] == str(run1) and data["initialised_from"] == []
    assert data["consumed_by"]["count"] == 1
    assert [r["run_dir"] for r in data["consumed_by"]["runs"]] == [str(run3)]
    assert str(run2) not in first.stdout
    page0 = cli("artifacts", "show", f"{MODEL}:v0").stdout
    assert f"consumed by:  1 run under {project / 'runs'}" in page0 and f"  {run3} (" in page0

    # runs show's part: what a run published and what it started from
    assert run_artifacts(run3).produced == [f"{MODEL}:v2"]
    assert run_artifacts(run3).consumed == [f"{MODEL}:v0"]
    assert (run_artifacts(run1).produced, run_artifacts(run1).consumed) == ([f"{MODEL}:v0"], [])


# -- hand-made run directories (real files, no training) -------------------------------------


def _fake_run(
    root: Path,
    n: int,
    *,
    init: dict[str, Any] | None = None,
    artifact: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    run_dir = root / "runs" / "m" / f"20260101-0000{n:02d}-r{n:04d}"
    run_dir.mkdir(parents=True)
    summary = {
        "status": "completed",
        "name": "m",
        "started_at": f"2026-01-01T00:00:{n:02d}+00:00",
        "init_from": init,
        "artifact": artifact,
        "monitor": {"metric": "val_loss", "mode": "min"},
        "final_metrics": {"val_loss": 0.5, "val_acc": 0.8},
        **(extra or {}),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _publish(root: Path, run_dir: Path | None, content: bytes) -> Any:
    source = root / f"w{content.hex()[:8]}.pt"
    source.write_bytes(content)
    meta = {"run_dir": str(run_dir)} if run_dir else {}
    return publish("m", [("w.pt", source)], type="model", metadata=meta)


def _init(version: Any, ref: str | None = None) -> dict[str, Any]:
    f = version.files[0]
    return {"ref": ref or version.ref, "version": version.ref, "file": f.path, "sha256": f.sha256}


def test_consumers_by_version_or_sha256_newest_first_and_capped(cli, isolated: Path):
    producer = _fake_run(isolated, 0, artifact="m:v0")
    v0 = _publish(isolated, producer, b"weights-0")
    consumers = [_fake_run(isolated, n, init=_init(v0, "m:best")) for n in range(1, 12)]
    # a .pt file pulled out of the store: no version, the same sha256
    pulled = {
        "ref": "ckpt/w.pt",
        "version": None,
        "file": "ckpt/w.pt",
        "sha256": v0.files[0].sha256,
    }
    consumers.append(_fake_run(isolated, 12, init=pulled))
    # names the version, but not as what it was initialised from: not a consumer
    _fake_run(isolated, 13, extra={"notes": ["compare with m:v0 later"]})
    _fake_run(isolated, 14, init={"version": "m:v00", "sha256": ["m:v0"]})  # hand-edited

    lineage = version_lineage(ArtifactStore(), "m:v0", isolated / "runs")
    assert [r.run_dir for r in lineage.consumers] == [str(p) for p in reversed(consumers)]

    page = cli("artifacts", "show", "m", "--runs-dir", str(isolated / "runs"))
    assert page.exit_code == 0, page.stderr
    lines = page.stdout.splitlines()
    at = lines.index(f"consumed by:  12 runs under {isolated / 'runs'} (--init-from)")
    assert lines[at + 1].startswith(f"  {consumers[-1]} (completed")
    assert lines[at + 11] == "  … and 2 more (--format json lists them all)"
    assert run_artifacts(consumers[-1]).consumed == ["ckpt/w.pt"]


def test_a_cycle_made_by_hand_stops_and_says_so(isolated: Path):
    run_a = _fake_run(isolated, 1)
    run_b = _fake_run(isolated, 2)
    v0 = _publish(isolated, run_a, b"a")
    v1 = _publish(isolated, run_b, b"b")
    # rewrite the records so that v0's run started from v1 and v1's run from v0
    for run_dir, parent in ((run_a, v1), (run_b, v0)):
        summary = json.loads((run_dir / "summary.json").read_text())
        (run_dir / "summary.json").write_text(json.dumps({**summary, "init_from": _init(parent)}))

    lineage = version_lineage(ArtifactStore(), "m:v0", isolated / "runs")
    assert [link.version for link in lineage.chain] == ["m:v1", "m:v0"]
    assert lineage.chain[0].producer and lineage.chain[0].producer.run_dir == str(run_b)
    assert lineage.chain[-1].stop == "cycle: m:v0 already shown"


def test_commit_from_provenance_and_hostile_files_refused(cli, isolated: Path):
    run_dir = _fake_run(isolated, 1)
    (run_dir / "provenance.json").write_text(
        json.dumps({"git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": True}})
    )
    _publish(isolated, run_dir, b"x")
    page = cli("artifacts", "show", "m:latest")
    assert page.exit_code == 0, page.stderr
    assert "  commit 0123456789ab (dirty)   val_loss=0.5 val_acc=0.8" in page.stdout

    # a FIFO as provenance.json and as a consumer's summary.json: refused, never blocks
    (run_dir / "provenance.json").unlink()
    os.mkfifo(run_dir / "provenance.json")
    fifo_run = isolated / "runs" / "m" / "20260101-000009-r0009"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "summary.json")
    page = cli("artifacts", "show", "m:v0")
    assert page.exit_code == 0, page.stderr
    assert "  commit unknown   val_loss=0.5" in page.stdout
    assert "provenance.json is a FIFO (named pipe), not a regular file" in page.stderr


def test_a_removed_producer_and_a_plain_push(cli, isolated: Path):
    _publish(isolated, isolated / "runs" / "m" / "20260101-000001-gone", b"x")
    page = cli("artifacts", "show", "m:v0").stdout
    assert "run directory no longer exists" in page
    _publish(isolated, None, b"y")
    page = cli("artifacts", "show", "m:v1").stdout
    assert "produced by:\n  no run recorded\n" in page
    assert "initialised from:\n  nothing (trained from scratch, or not recorded)\n" in page


@pytest.mark.parametrize(
    ("ref", "message", "hint"),
    [
        ("m:v7", "artifact 'm' has no version 'v7'", "versions: v0; aliases: latest=v0"),
        ("m:prod", "artifact 'm' has no alias 'prod'", "versions: v0; aliases: latest=v0"),
        ("mm", "no artifact named 'mm'", "did you mean m?"),
        ("../x", "invalid artifact name", "use 1-128 letters"),
    ],
)
def test_unknown_ref_is_exit_2_with_what_there_is(cli, isolated: Path, ref, message, hint):
    _publish(isolated, None, b"x")
    result = cli("artifacts", "show", ref)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr and f"hint: {hint}" in result.stderr


def test_a_long_chain_stops_at_the_depth_cap(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    from expctl.runs import lineage

    monkeypatch.setattr(lineage, "MAX_CHAIN", 3)
    previous = None
    for n in range(6):  # v5 <- v4 <- ... <- v0, each run started from the one before
        run_dir = _fake_run(isolated, n, init=_init(previous) if previous else None)
        previous = _publish(isolated, run_dir, f"w{n}".encode())
    chain = version_lineage(ArtifactStore(), "m:v5", isolated / "runs").chain
    assert [link.version for link in chain] == ["m:v4", "m:v3", "m:v2"]
    assert chain[-1].stop == "stopped after 3 steps"
    full = version_lineage(ArtifactStore(), "m:v2", isolated / "runs").chain
    assert [link.version for link in full] == ["m:v1", "m:v0"] and full[-1].stop is None


def test_the_installed_command_prints_only_json_on_stdout(expctl_exe, isolated: Path):
    import subprocess

    run_dir = _fake_run(isolated, 1, artifact="m:v0")
    os.mkfifo(run_dir / "provenance.json")  # a note for people: stderr, never stdout
    _publish(isolated, run_dir, b"x")
    done = subprocess.run(
        [*expctl_exe, "artifacts", "show", "m:v0", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ref"] == "m:v0" and data["produced_by"]["run_dir"] == str(run_dir)
    assert data["produced_by"]["commit"] is None
    assert data["notes"] == [
        f"{run_dir}: provenance.json is a FIFO (named pipe), not a regular file: not read"
    ]
