"""`expctl run` tells the truth: a resume trains what its record says, a bad --init-from leaves
nothing behind, `latest` is one run everywhere, W&B's summary holds the values expctl reports.
Real training on CPU, real run directories, real offline W&B runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FAST = ("trainer.device=cpu", "-q")


@pytest.fixture
def course(isolated: Path) -> Path:
    """The course example's configs (``trainer.epochs: ${epochs}``) as ./configs."""
    shutil.copytree(REPO / "examples" / "course" / "configs", isolated / "configs")
    return isolated


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def run_dirs() -> set[Path]:
    return {p.resolve() for p in Path("runs").glob("*/*")}


def shown_latest(cli, ref: str = "latest") -> Path:
    shown = cli("runs", "show", ref, "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    return Path(json.loads(shown.stdout)["run"]["run_dir"]).resolve()


# -- 19.3: a bad --init-from is refused before a run directory exists -------------------------


def test_a_bad_init_from_exits_2_and_leaves_no_run_behind(course: Path, cli):
    first = cli("run", "epochs=1", "learning_rate=0.01", *FAST)
    assert first.exit_code == 0, first.stderr
    published = cli("artifacts", "list", "--format", "json")
    assert "course-model:v0" in published.stdout  # the refs below are typos of a real one
    before = run_dirs()
    for ref in ("course-model:bset", "cours-model:best", "course-model:v99", "nowhere/run"):
        refused = cli("run", "epochs=1", "learning_rate=0.01", "--init-from", ref, *FAST)
        assert refused.exit_code == 2, (ref, refused.stderr)
        assert "hint:" in refused.stderr, ref
        assert run_dirs() == before, f"--init-from {ref} left a run directory behind"
    assert shown_latest(cli) == Path(first.stdout.strip()).resolve()
    good = cli("run", "epochs=1", "learning_rate=0.01", "--init-from", "course-model:best", *FAST)
    assert good.exit_code == 0, good.stderr


# -- 19.3 / 19.13: one run-reference grammar, one `latest` ------------------------------------


def _same_second(older: Path, newer: Path) -> tuple[Path, Path]:
    """Give two real runs one start stamp, the older one the larger id (as a SLURM array's
    runs started within one second may get): only their records can tell their order."""
    stamp = newer.name.split("-")[0] + "-" + newer.name.split("-")[1]
    moved_older = older.parent / f"{stamp}-ffffff"
    moved_newer = newer.parent / f"{stamp}-000000"
    older.rename(moved_older)
    newer.rename(moved_newer)
    return moved_older, moved_newer


def test_latest_is_the_same_run_for_runs_show_and_run_resume(project: Path, cli):
    older = cli("run", "trainer.epochs=1", *FAST)
    newer = cli("run", "trainer.epochs=1", *FAST)
    assert older.exit_code == 0 and newer.exit_code == 0, older.stderr + newer.stderr
    older_dir, newer_dir = _same_second(Path(older.stdout.strip()), Path(newer.stdout.strip()))
    assert shown_latest(cli) == newer_dir.resolve()
    resumed = cli("run", "--resume", "latest", "trainer.epochs=2", *FAST)
    assert resumed.exit_code == 0, resumed.stderr
    assert Path(resumed.stdout.strip()).resolve() == newer_dir.resolve()
    assert summary(newer_dir)["final_metrics"]["epoch"] == 2
    assert summary(older_dir)["final_metrics"]["epoch"] == 1


def test_resume_reads_latest_n_and_id_prefixes_as_runs_show_does(project: Path, cli):
    first = cli("run", "trainer.epochs=1", *FAST)
    second = cli("run", "trainer.epochs=1", *FAST)
    assert first.exit_code == 0 and second.exit_code == 0, first.stderr + second.stderr
    first_dir, second_dir = Path(first.stdout.strip()), Path(second.stdout.strip())
    assert shown_latest(cli, "latest~1") == first_dir.resolve()
    back = cli("run", "--resume", "latest~1", "trainer.epochs=2", *FAST)
    assert back.exit_code == 0, back.stderr
    assert Path(back.stdout.strip()).resolve() == first_dir.resolve()
    prefix = second_dir.name.rsplit("-", 1)[-1][:4]
    assert shown_latest(cli, prefix) == second_dir.resolve()
    by_id = cli("run", "--resume", prefix, "trainer.epochs=2", *FAST)
    assert by_id.exit_code == 0, by_id.stderr
    assert Path(by_id.stdout.strip()).resolve() == second_dir.resolve()
    unknown = cli("run", "--resume", "zzzz", "trainer.epochs=2", *FAST)
    assert unknown.exit_code == 2 and "no run 'zzzz'" in unknown.stderr


# -- 19.2: W&B's summary says what summary.json says ------------------------------------------


def wandb_summary(sync_dir: Path) -> dict:
    """The final summary of an offline W&B run, read back from its transaction log."""
    from expctl.sweeps.wandb.metrics import TransactionLogReader

    (log,) = sync_dir.glob("run-*.wandb")
    found: dict = {}
    for record in TransactionLogReader(log).read_new():
        if record.WhichOneof("record_type") != "summary":
            continue
        for item in record.summary.update:
            found[".".join(item.nested_key) or item.key] = json.loads(item.value_json)
        for item in record.summary.remove:
            found.pop(".".join(item.nested_key) or item.key, None)
    return found


def test_the_wandb_summary_keeps_final_values_and_adds_the_best(project: Path, cli):
    result = cli("run", "trainer.epochs=3", "optim.lr=0.05", *FAST)
    assert result.exit_code == 0, result.stderr
    record = summary(Path(result.stdout.strip()))
    (sync_dir,) = record["wandb"]["sync_dirs"]
    logged = wandb_summary(Path(sync_dir))
    final, best = record["final_metrics"], record["best_metrics"]
    for key in ("val_loss", "val_acc", "train_loss", "train_acc"):
        assert logged[key] == pytest.approx(final[key]), (key, logged.get(key))  # last value
        assert logged[f"best/{key}"] == pytest.approx(best[key]), key
    assert logged["best/epoch"] == best["epoch"]


# -- 19.1: a resume applies overrides as a fresh run would ------------------------------------


def test_resume_changes_what_a_top_level_value_interpolates(course: Path, cli):
    first = cli("run", "epochs=1", "learning_rate=0.01", *FAST)
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    again = cli("run", "--resume", "latest", "epochs=3", *FAST)
    assert again.exit_code == 0, again.stderr
    record = summary(run_dir)
    assert record["final_metrics"]["epoch"] == 3  # trained what config.yaml says
    saved = config(run_dir)
    assert saved["epochs"] == 3 and saved["trainer"]["epochs"] == 3
    overrides = yaml.safe_load((run_dir / "overrides.yaml").read_text())
    assert overrides[-1] == "epochs=3" and "epochs=1" in overrides  # composes to the same
    # the second attempt's W&B run: the best over both attempts, the final value of this one
    logged = wandb_summary(Path(record["wandb"]["sync_dirs"][-1]))
    assert logged["val_loss"] == pytest.approx(record["final_metrics"]["val_loss"])
    assert logged["best/val_loss"] == pytest.approx(record["best_metrics"]["val_loss"])


def test_resume_of_an_interrupted_run_trains_the_budget_it_records(course: Path, expctl_exe):
    import signal
    import subprocess
    import time

    runs = Path("runs")
    started = subprocess.Popen(
        [*expctl_exe, "run", "epochs=400", "learning_rate=0.01", "trainer.device=cpu", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # interrupted once an epoch was validated (and its last.pt saved)
    while not any(
        "val_loss" in line
        for p in runs.glob("*/*/metrics.jsonl")
        for line in p.read_text().splitlines()
    ):
        assert started.poll() is None, started.communicate()
        time.sleep(0.05)
    started.send_signal(signal.SIGTERM)
    out, err = started.communicate(timeout=120)
    assert started.returncode == 143, err
    run_dir = Path(out.strip())
    reached = max(
        int(json.loads(line).get("epoch", 0))
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    )
    wanted = reached + 2
    resumed = subprocess.run(
        [*expctl_exe, "run", "--resume", "latest", f"epochs={wanted}", "trainer.device=cpu", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert summary(run_dir)["final_metrics"]["epoch"] == wanted  # not 400
    saved = config(run_dir)
    assert saved["epochs"] == wanted and saved["trainer"]["epochs"] == wanted


def test_resume_of_a_finished_run_names_the_key_the_user_wrote(course: Path, cli):
    first = cli("run", "epochs=2", "learning_rate=0.01", *FAST)
    assert first.exit_code == 0, first.stderr
    refused = cli("run", "--resume", "latest", "epochs=1", *FAST)
    assert refused.exit_code == 2, refused.stderr
    assert "(epochs sets trainer.epochs)" in refused.stderr
    assert "has trained 2 epochs" in refused.stderr
    assert "hint: to train longer, resume with a larger budget: epochs=N" in refused.stderr
    unknown = cli("run", "--resume", "latest", "epochz=5", *FAST)
    assert unknown.exit_code == 2 and "epochz" in unknown.stderr
    assert config(Path(first.stdout.strip()))["trainer"]["epochs"] == 2  # nothing recorded


def test_resume_changes_only_what_the_new_overrides_change(project: Path, cli):
    """Values that differ between any two composes (``${now:}``) or that the config files
    changed since the run started keep what the run recorded."""
    configs = project / "configs" / "config.yaml"
    configs.write_text(configs.read_text() + "\nstamp: ${now:%H%M%S%f}\nnote: first\n")
    first = cli("run", "trainer.epochs=1", *FAST)
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    recorded = config(run_dir)
    configs.write_text(configs.read_text().replace("note: first", "note: edited later"))
    again = cli("run", "--resume", "latest", "trainer.epochs=2", *FAST)
    assert again.exit_code == 0, again.stderr
    resumed = config(run_dir)
    assert resumed["trainer"]["epochs"] == 2
    assert resumed["stamp"] == recorded["stamp"] and resumed["note"] == "first"
    assert {k: v for k, v in resumed.items() if k != "trainer"} == {
        k: v for k, v in recorded.items() if k != "trainer"
    }


def test_resume_refuses_a_value_last_pt_would_silently_override(course: Path, cli):
    first = cli("run", "epochs=1", "learning_rate=0.01", *FAST)
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    refused = cli("run", "--resume", "latest", "epochs=2", "learning_rate=0.05", *FAST)
    assert refused.exit_code == 2, refused.stderr
    assert "learning_rate=0.05 changes optim.lr (0.01 → 0.05)" in refused.stderr
    assert f"--init-from {run_dir.resolve()}" in refused.stderr
    saved = config(run_dir)
    assert saved["learning_rate"] == 0.01 and saved["trainer"]["epochs"] == 1  # nothing recorded
    assert summary(run_dir)["final_metrics"]["epoch"] == 1


def test_resume_with_config_files_that_changed_since_keeps_the_record(course: Path, cli):
    first = cli("run", "epochs=1", "learning_rate=0.01", *FAST)
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip())
    configs = course / "configs" / "config.yaml"
    configs.write_text(configs.read_text().replace("dropout: 0.2", "dropout: 0.3"))
    again = cli("run", "--resume", "latest", "epochs=2", "trainer.device=cpu")
    assert again.exit_code == 0, again.stderr
    assert "no longer composes to what the run recorded (dropout: 0.2 → 0.3" in again.stderr
    saved = config(run_dir)
    assert saved["dropout"] == 0.2 and saved["model"]["_args_"][2]["p"] == 0.2
    assert saved["trainer"]["epochs"] == 2
    # an override whose effect those files decide differently from the record is refused
    configs.write_text(
        configs.read_text().replace("log_every_n_steps: 10", "log_every_n_steps: ${epochs}")
    )
    refused = cli("run", "--resume", "latest", "epochs=3", *FAST)
    assert refused.exit_code == 2, refused.stderr
    assert "it changes trainer.log_every_n_steps, which the run recorded as 10" in refused.stderr
    assert config(run_dir)["trainer"]["epochs"] == 2
