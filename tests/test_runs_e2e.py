"""`expctl runs` and `expctl sweep report|best` on real records.

One module-wide workspace is built with the real tools, in subprocesses as a user would: two
`expctl run` trainings with different learning rates, a random sweep of expctl's trainer (4
trials over uniform, int_uniform, categorical and log_uniform_values) and a grid sweep of the
tutorial's W&B program (4 trials). Damaged records are made by damaging copies of real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "wandb", "optuna")
TINY = ["trainer.epochs=2", "data=synthetic", "data.num_samples=256"]

RANDOM_SWEEP = """
name: four
method: random
metric: {name: val_loss, goal: minimize}
parameters:
  optim.lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
  optim.weight_decay: {distribution: uniform, min: 0.0, max: 0.01}
  data.batch_size: {distribution: int_uniform, min: 16, max: 64}
  model: {values: [small, large]}
  trainer.epochs: {value: 2}
  data: {value: synthetic}
  data.num_samples: {value: 256}
"""

PROGRAM_GRID = f"""
program: {REPO / "examples" / "tutorial_sweep" / "train.py"}
name: tutorial-grid
method: grid
metric: {{name: val_loss, goal: minimize}}
parameters:
  lr: {{values: [0.1, 0.01]}}
  batch_size: {{distribution: int_uniform, min: 63, max: 64}}
  epochs: {{value: 3}}
"""


def _exe() -> list[str]:
    exe = shutil.which("expctl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "expctl"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCTL_", "WANDB_"))}
    env.update(
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        WANDB_DISABLE_GIT="true",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def _expctl(cwd: Path, *args: str, **env: str) -> str:
    proc = subprocess.run(
        [*_exe(), *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"expctl {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@dataclass
class World:
    root: Path  # the project directory the records were made in
    runs: Path
    storage: Path
    store: Path  # artifact store
    run_a: Path  # optim.lr=0.01, 2 epochs
    run_b: Path  # optim.lr=0.001, 3 epochs
    sweep: str  # random sweep of the trainer
    program_sweep: str  # grid sweep of the tutorial program


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("records")
    shutil.copytree(REPO / "configs", root / "configs")
    run_a = Path(_expctl(root, "run", *TINY, "optim.lr=0.01", "-q"))
    run_b = Path(_expctl(root, "run", *TINY, "optim.lr=0.001", "trainer.epochs=3", "-q"))
    (root / "random.yaml").write_text(RANDOM_SWEEP)
    sweep = _expctl(root, "sweep", "create", "random.yaml")
    _expctl(root, "sweep", "agent", sweep, "--count", "4")
    (root / "program.yaml").write_text(PROGRAM_GRID)
    program_sweep = _expctl(root, "sweep", "create", "program.yaml")
    _expctl(root, "sweep", "agent", program_sweep, WANDB_MODE="offline")
    return World(
        root=root,
        runs=root / "runs",
        storage=root / ".expctl" / "sweeps.journal",
        store=root / ".expctl" / "artifacts",
        run_a=run_a,
        run_b=run_b,
        sweep=sweep,
        program_sweep=program_sweep,
    )


@pytest.fixture
def app():
    from expctl.cli.main import app

    return app


@pytest.fixture
def ex(app, world):
    """Invoke the CLI in-process; the world's runs dir and storage are passed explicitly."""
    from typer.testing import CliRunner

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def _list(ex, world: World, *args: str) -> list[dict]:
    result = ex("runs", "list", "--runs-dir", str(world.runs), "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _id(path: Path) -> str:
    return path.name.rsplit("-", 1)[-1]


# -- runs list -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_list_shows_every_run_with_its_overrides_and_metric(ex, world):
    rows = _list(ex, world)
    assert len(rows) == 2 + 4 + 4  # plain runs, trainer trials, program trials
    assert all(r["status"] == "completed" for r in rows)
    by_id = {r["id"]: r for r in rows}
    a = by_id[_id(world.run_a)]
    summary = json.loads((world.run_a / "summary.json").read_text())
    assert a["overrides"] == [*TINY, "optim.lr=0.01"]
    assert a["params"]["optim.lr"] == 0.01
    assert a["final"] == summary["final_metrics"]["val_loss"]
    assert a["monitor"] == {"metric": "val_loss", "mode": "min"}
    assert a["device"] == "cpu" and a["duration_s"] > 0
    program = [r for r in rows if r["kind"] == "program"]
    assert {r["sweep"]["id"] for r in program} == {world.program_sweep}
    assert sorted(r["params"]["lr"] for r in program) == [0.01, 0.01, 0.1, 0.1]
    # newest first by default
    assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)

    table = ex("runs", "list", "--runs-dir", str(world.runs))
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:9] == [
        "id",
        "name",
        "status",
        "started",
        "duration",
        "device",
        "metric",
        "final",
        "best",
    ]
    assert len(lines) == 2 + len(rows)
    assert any(_id(world.run_b) in line and "optim.lr=0.001" in line for line in lines)

    csv_out = ex("runs", "list", "--runs-dir", str(world.runs), "--format", "csv").stdout
    import csv
    import io

    parsed = list(csv.DictReader(io.StringIO(csv_out)))
    assert len(parsed) == len(rows)
    assert {p["run_dir"] for p in parsed} == {r["run_dir"] for r in rows}


@pytest.mark.slow
def test_filters_where_sort_and_limit(ex, world):
    (b,) = _list(ex, world, "--where", "optim.lr<0.005", "--where", "trainer.epochs=3")
    assert b["id"] == _id(world.run_b)  # an override, then a key of the resolved config
    # a config-group choice (an override): the random sweep drew each of its 4 trials' models
    by_model = {
        model: {r["run_dir"] for r in _list(ex, world, "--where", f"model={model}")}
        for model in ("small", "large")
    }
    trials = [r for r in _list(ex, world, "--where", "kind=trainer") if r.get("sweep")]
    assert len(trials) == 4 and by_model["small"] | by_model["large"] == {
        r["run_dir"] for r in trials
    }
    for model, run_dirs in by_model.items():
        drew = {r["run_dir"] for r in trials if f"model={model}" in r["overrides"]}
        assert run_dirs == drew, model
    program = _list(ex, world, "--where", "lr=0.1", "--where", "kind=program")
    assert len(program) == 2 and all(r["params"]["lr"] == 0.1 for r in program)
    small_batch = _list(ex, world, "--where", "config.data.batch_size<=64", "--where", "kind~tr*")
    assert len(small_batch) == 6  # every trainer run (default 64, sweep: 16..64)
    (best,) = _list(ex, world, "--sort", "val_loss", "--limit", "1")
    every = [r["final_metrics"]["val_loss"] for r in _list(ex, world)]
    assert best["final_metrics"]["val_loss"] == min(every)
    worst = _list(ex, world, "--sort", "-val_loss")
    assert [r["final_metrics"]["val_loss"] for r in worst] == sorted(every, reverse=True)
    assert len(_list(ex, world, "--status", "completed,failed")) == 10
    assert _list(ex, world, "--status", "crashed") == []
    named = _list(ex, world, "--name", "tutorial-*")
    assert len(named) == 4 and all(r["kind"] == "program" for r in named)


@pytest.mark.slow
def test_list_by_sweep_uses_the_sweep_storage(ex, world):
    trials = _list(ex, world, "--sweep", world.sweep, "--storage", str(world.storage))
    assert len(trials) == 4 and all(r["kind"] == "trainer" for r in trials)
    status = ex("sweep", "status", world.sweep, "--storage", str(world.storage), "--format", "json")
    dirs = {t["run_dir"] for t in json.loads(status.stdout)["trials"]}
    assert {r["run_dir"] for r in trials} == dirs
    assert sorted(r["sweep"]["trial"] for r in trials) == [0, 1, 2, 3]
    assert {r["sweep"]["id"] for r in trials} == {world.sweep}
    program = _list(ex, world, "--sweep", world.program_sweep, "--storage", str(world.storage))
    assert len(program) == 4 and all(r["kind"] == "program" for r in program)


@pytest.mark.slow
def test_bad_list_arguments_are_exit_2_with_a_hint(ex, world):
    runs = ("runs", "list", "--runs-dir", str(world.runs))
    unknown = ex(*runs, "--where", "optim.lrr<0.1")
    assert unknown.exit_code == 2
    assert "optim.lrr" in unknown.stderr and "did you mean optim.lr" in unknown.stderr
    assert "val_loss" in unknown.stderr  # the keys that exist are listed
    sort = ex(*runs, "--sort", "val_los")
    assert sort.exit_code == 2 and "val_loss" in sort.stderr
    syntax = ex(*runs, "--where", "optim.lr")
    assert syntax.exit_code == 2 and "KEY OP VALUE" in syntax.stderr
    not_a_number = ex(*runs, "--where", "optim.lr<small")
    assert not_a_number.exit_code == 2 and "needs a number" in not_a_number.stderr
    status = ex(*runs, "--status", "complete")
    assert status.exit_code == 2 and "did you mean 'completed'" in status.stderr
    typo = world.sweep[:-1] + ("x" if world.sweep[-1] != "x" else "y")  # never the real id
    sweep = ex(*runs, "--sweep", typo, "--storage", str(world.storage))
    assert sweep.exit_code == 2 and world.sweep in sweep.stderr  # did-you-mean / known ids
    assert not unknown.stdout and not sweep.stdout


# -- runs show -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_show_by_prefix_latest_and_path(ex, world):
    run_id = _id(world.run_a)
    shown = ex("runs", "show", run_id[:4], "--runs-dir", str(world.runs))
    assert shown.exit_code == 0, shown.stderr
    text = shown.stdout
    assert str(world.run_a) in text and re.search(r"^status\s+completed$", text, re.M)
    assert "config:" in text and "lr: 0.01" in text and "metrics.jsonl (2 rows):" in text
    data = json.loads(
        ex(
            "runs", "show", str(world.run_a), "--runs-dir", "/nonexistent", "--format", "json"
        ).stdout
    )
    assert data["config"]["optim"]["lr"] == 0.01
    assert [r["epoch"] for r in data["metrics"]] == [1, 2]
    assert data["summary"]["status"] == "completed" and data["notes"] == []
    latest = json.loads(
        ex("runs", "show", "latest", "--runs-dir", str(world.runs), "--format", "json").stdout
    )
    # the stamp, then the record's sub-second start: the random id decides nothing (two runs
    # often start in the same second)
    newest = max(
        (p for p in world.runs.glob("*/*") if p.is_dir()),
        key=lambda p: (
            p.name.rsplit("-", 1)[0],
            json.loads((p / "summary.json").read_text()).get("started_at") or "",
        ),
    )
    assert latest["run"]["run_dir"] == str(newest)


@pytest.mark.slow
def test_unknown_run_is_exit_2_with_did_you_mean(ex, world):
    run_id = _id(world.run_a)
    typo = run_id[:-1] + ("0" if run_id[-1] != "0" else "1")
    missing = ex("runs", "show", typo, "--runs-dir", str(world.runs))
    assert missing.exit_code == 2
    assert f"no run {typo!r}" in missing.stderr and f"did you mean {run_id}" in missing.stderr
    nothing = ex("runs", "show", "latest", "--runs-dir", str(world.root / "empty"))
    assert nothing.exit_code == 2 and "no runs under" in nothing.stderr
    not_run = ex("runs", "show", str(world.root / "configs"), "--runs-dir", str(world.runs))
    assert not_run.exit_code == 2 and "not a run directory" in not_run.stderr


# -- runs compare ------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_shows_only_differing_config_and_a_sparkline(ex, world):
    a, b = _id(world.run_a), _id(world.run_b)
    result = ex("runs", "compare", a, b, "--runs-dir", str(world.runs), "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"] == {"optim.lr": [0.01, 0.001], "trainer.epochs": [2, 3]}
    assert data["metric"] == "val_loss" and data["x"] == "epoch"
    sa, sb = data["series"]
    assert [p["epoch"] for p in sa["points"]] == [1, 2] and len(sb["points"]) == 3
    assert len(sa["sparkline"]) == 2 and set(sa["sparkline"] + sb["sparkline"]) <= set("▁▂▃▄▅▆▇█")
    summary_a = json.loads((world.run_a / "summary.json").read_text())
    assert data["final_metrics"]["val_loss"][0] == summary_a["final_metrics"]["val_loss"]

    table = ex("runs", "compare", a, b, "--runs-dir", str(world.runs), "--metric", "val_acc")
    assert table.exit_code == 0, table.stderr
    assert "config (keys that differ):" in table.stdout and "optim.lr" in table.stdout
    assert "data.num_samples" not in table.stdout
    assert "val_acc by epoch:" in table.stdout
    assert re.search(rf"{a}\s+[▁▂▃▄▅▆▇█]{{2}}\s", table.stdout)


@pytest.mark.slow
def test_compare_unknown_metric_lists_metrics(ex, world):
    a, b = _id(world.run_a), _id(world.run_b)
    bad = ex("runs", "compare", a, b, "--runs-dir", str(world.runs), "--metric", "val_accuracy")
    assert bad.exit_code == 2
    assert "no metric 'val_accuracy'" in bad.stderr and "val_acc" in bad.stderr
    assert "train_loss" in bad.stderr  # the metrics that exist


# -- runs plot -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_plot_png_and_html_print_only_the_path(ex, world, isolated):
    a, b = _id(world.run_a), _id(world.run_b)
    png = ex("runs", "plot", a, b, "--runs-dir", str(world.runs), "--out", "curves.png")
    assert png.exit_code == 0, png.stderr
    assert png.stdout == "curves.png\n"
    assert (isolated / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html_out = isolated / "plots" / "curves.html"
    html_out.parent.mkdir()
    result = ex(
        "runs",
        "plot",
        a,
        b,
        "--runs-dir",
        str(world.runs),
        "--metric",
        "val_acc",
        "--x",
        "epoch",
        "--out",
        str(html_out),
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(html_out)
    page = html_out.read_text()
    assert "Plotly.newPlot" in page and '"val_acc"' in page
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is embedded, not fetched


@pytest.mark.slow
def test_plot_bad_out_or_metric_is_exit_2(ex, world):
    a = _id(world.run_a)
    missing_dir = ex("runs", "plot", a, "--runs-dir", str(world.runs), "--out", "no/such/c.png")
    assert missing_dir.exit_code == 2 and "does not exist" in missing_dir.stderr
    kind = ex("runs", "plot", a, "--runs-dir", str(world.runs), "--out", "c.jpeg")
    assert kind.exit_code == 2 and ".png" in kind.stderr
    metric = ex("runs", "plot", a, "--runs-dir", str(world.runs), "--metric", "accuracy")
    assert metric.exit_code == 2 and "val_acc" in metric.stderr
    assert not Path("c.png").exists() and not missing_dir.stdout


# -- damaged records -----------------------------------------------------------------------------


def _copy(world: World, root: Path, new_id: str, source: Path | None = None) -> Path:
    source = source or world.run_a
    target = root / "damaged" / f"{source.name.rsplit('-', 1)[0]}-{new_id}"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("wandb", "checkpoints"))
    return target


@pytest.mark.slow
def test_damaged_records_are_listed_with_a_note_never_a_crash(ex, world, isolated):
    from expctl.rundir import holding_run_dir

    root = isolated / "runs"
    _copy(world, root, "aaaaa1")  # intact
    torn = _copy(world, root, "aaaaa2")
    text = (torn / "summary.json").read_text()
    (torn / "summary.json").write_text(text[: len(text) // 2])  # a SIGKILL mid-write
    empty = _copy(world, root, "aaaaa3")
    (empty / "summary.json").write_bytes(b"")
    rows = _copy(world, root, "aaaaa4")
    lines = (rows / "metrics.jsonl").read_text().splitlines()
    (rows / "metrics.jsonl").write_text(lines[0][:17] + "\n" + lines[1] + "\n" + '{"step": 9, "va')
    crashed = _copy(world, root, "aaaaa5")
    summary = json.loads((crashed / "summary.json").read_text())
    (crashed / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    alive = _copy(world, root, "aaaaa6", world.run_b)
    (alive / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    garbage = _copy(world, root, "aaaaa7")
    (garbage / "summary.json").write_bytes(b"\xff\xfe[1, 2")
    (garbage / "config.yaml").write_text("a: [unclosed\n")

    with holding_run_dir(alive):  # a live writer: `running`, not crashed
        listed = ex("runs", "list", "--runs-dir", str(root), "--format", "json")
        table = ex("runs", "list", "--runs-dir", str(root))
    assert listed.exit_code == 0, listed.stderr
    assert table.exit_code == 0, table.stderr
    by_id = {r["id"]: r for r in json.loads(listed.stdout)}
    assert len(by_id) == 7
    assert by_id["aaaaa1"]["status"] == "completed" and by_id["aaaaa1"]["notes"] == []
    for damaged in ("aaaaa2", "aaaaa3", "aaaaa7"):
        assert by_id[damaged]["status"] == "crashed"
        assert "summary.json" in by_id[damaged]["notes"][0]
    assert by_id["aaaaa5"]["status"] == "crashed" and "no process" in by_id["aaaaa5"]["notes"][0]
    assert by_id["aaaaa6"]["status"] == "running"
    assert "truncated or damaged" in table.stdout

    shown = ex("runs", "show", "aaaaa4", "--runs-dir", str(root), "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [r["step"] for r in data["metrics"]] == [8]  # the good row between two bad ones
    assert any("2 damaged lines" in n for n in data["notes"])
    for run in ("aaaaa2", "aaaaa7"):
        result = ex("runs", "show", run, "--runs-dir", str(root))
        assert result.exit_code == 0, result.stderr
        assert "damaged" in result.stdout
    compared = ex("runs", "compare", "aaaaa4", "aaaaa7", "aaaaa1", "--runs-dir", str(root))
    assert compared.exit_code == 0, compared.stderr
    assert "note: run aaaaa4" in compared.stderr
    assert "config.yaml is not valid YAML" in compared.stderr
    plotted = ex("runs", "plot", "aaaaa4", "aaaaa2", "--runs-dir", str(root), "--out", "d.png")
    assert plotted.exit_code == 0, plotted.stderr


# -- start-up cost -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["runs", "--help"],
        ["runs", "list"],
        ["runs", "list", "--where", "optim.lr<1", "--sort", "val_loss", "--format", "csv"],
        ["runs", "show", "latest"],
        ["runs", "compare", "latest", "latest~1"],
        ["runs", "plot", "latest", "--out", "{tmp}/c.png"],
        ["sweep", "report", "--help"],
        ["sweep", "best", "--help"],
    ],
)
def test_runs_commands_do_not_import_heavy_libraries(world, isolated, args):
    args = [a.replace("{tmp}", str(isolated)) for a in args]
    code = (
        "import sys; sys.argv = ['expctl', *sys.argv[1:]]\n"
        "from expctl.cli.entry import main\n"  # the console script's own entry point
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        f"heavy = [x for x in {HEAVY!r} if x in sys.modules]\n"
        "sys.stderr.write(f'EXIT={code} HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=_env(EXPCTL_RUNS_DIR=str(world.runs)),
        cwd=isolated,
    )
    assert "HEAVY=" in proc.stderr, proc.stderr
    assert proc.stderr.rsplit("EXIT=", 1)[1].split()[0] in ("0", "None"), proc.stderr
    assert proc.stderr.rsplit("HEAVY=", 1)[1].strip() == "", proc.stderr


# -- sweep report --------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: the network is off
    "--virtual-time-budget=15000",  # run the page's scripts to completion
]
PLOTS = ("plot-history", "plot-parallel", "plot-importance", "plot-curves")
# After load, the page lists every resource it fetched (the report itself has no such code).
PROBE = (
    "<script>window.addEventListener('load', function () { setTimeout(function () {"
    "var p = document.createElement('pre'); p.id = 'expctl-fetched';"
    "p.textContent = JSON.stringify(performance.getEntriesByType('resource')"
    ".map(function (e) { return e.name; })); document.body.appendChild(p); }, 300); });"
    "</script></body>"
)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("EXPCTL_REQUIRE_CHROMIUM"):
        pytest.fail("EXPCTL_REQUIRE_CHROMIUM is set but chromium is not installed")
    pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")


def _render(page: Path, tmp: Path) -> str:
    """The DOM after the page's scripts ran, in headless Chromium with the network off."""
    probed = tmp / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", PROBE, 1))
    profile = tmp / "chromium-profile"
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _markup(page: str) -> str:
    """The HTML without the bodies of its inline scripts (plotly.js quotes URLs in strings)."""
    return re.sub(r"(<script\b[^>]*>).*?(</script>)", r"\1\2", page, flags=re.S | re.I)


def _check_offline_page(page: str, dom: str) -> None:
    external = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
    assert not external.search(_markup(page)), external.search(_markup(page))
    assert not external.search(_markup(dom))
    fetched = json.loads(re.search(r'<pre id="expctl-fetched">(.*?)</pre>', dom, re.S).group(1))
    assert [u for u in fetched if not u.startswith(("file:", "data:", "blob:"))] == []


def _plots_rendered(dom: str) -> dict[str, int]:
    """For each plot div, how many of plotly's rendered SVG roots it holds."""
    counts = {}
    for plot in PLOTS:
        start = dom.index(f'id="{plot}"')
        end = min(
            [
                dom.find(f'id="{p}"', start + 1)
                for p in PLOTS
                if dom.find(f'id="{p}"', start + 1) > 0
            ]
            + [len(dom)]
        )
        counts[plot] = dom[start:end].count('class="main-svg"')
    return counts


@pytest.mark.slow
def test_sweep_report_renders_every_plot_offline_in_chromium(ex, world, isolated):
    out = isolated / "report.html"
    result = ex("sweep", "report", world.sweep, "--storage", str(world.storage), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "4 plots" in result.stderr and "not drawn" not in result.stderr
    page = out.read_text()
    assert out.stat().st_size <= 10 * 10**6
    assert world.sweep in page and "Leaderboard" in page
    for trial in json.loads(
        ex(
            "sweep", "status", world.sweep, "--storage", str(world.storage), "--format", "json"
        ).stdout
    )["trials"]:
        assert trial["run_dir"] in page
    dom = _render(out, isolated)
    assert all(n >= 1 for n in _plots_rendered(dom).values()), _plots_rendered(dom)
    _check_offline_page(page, dom)


@pytest.mark.slow
def test_sweep_report_of_program_trials(ex, world, isolated):
    out = isolated / "program.html"
    result = ex(
        "sweep", "report", world.program_sweep, "--storage", str(world.storage), "-o", str(out)
    )
    assert result.exit_code == 0, result.stderr
    assert "4 plots" in result.stderr
    dom = _render(out, isolated)
    assert all(n >= 1 for n in _plots_rendered(dom).values()), _plots_rendered(dom)
    # the learning curves come from the trials' metrics.jsonl (what the program logged)
    assert "#1 trial" in dom and "batch_size=" in dom


@pytest.mark.slow
def test_sweep_report_bad_input_is_exit_2(ex, world):
    missing = ex(
        "sweep", "report", world.sweep, "--storage", str(world.storage), "--out", "x/r.html"
    )
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    unknown = ex("sweep", "report", "nosuchid", "--storage", str(world.storage), "--out", "r.html")
    assert unknown.exit_code == 2 and world.sweep in unknown.stderr
    assert not Path("r.html").exists()


# -- sweep best ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_best_top_n_and_publish(ex, world, isolated):
    storage, store = str(world.storage), str(isolated / "store")
    status = json.loads(
        ex("sweep", "status", world.sweep, "--storage", storage, "-f", "json").stdout
    )
    done = sorted(
        (t for t in status["trials"] if t["state"] == "complete"), key=lambda t: t["value"]
    )
    best = ex("sweep", "best", world.sweep, "--storage", storage, "--top", "3", "-f", "json")
    assert best.exit_code == 0, best.stderr
    rows = json.loads(best.stdout)
    assert [r["number"] for r in rows] == [t["number"] for t in done[:3]]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["run_dir"] == done[0]["run_dir"] and rows[0]["value"] == done[0]["value"]
    overrides = yaml.safe_load((Path(rows[0]["run_dir"]) / "overrides.yaml").read_text())
    assert rows[0]["overrides"] == overrides

    published = ex(
        "sweep",
        "best",
        world.sweep,
        "--storage",
        storage,
        "--top",
        "3",
        "--publish",
        "digits-best",
        "--store",
        store,
    )
    assert published.exit_code == 0, published.stderr
    assert "pull the best with: expctl artifacts pull digits-best:best" in published.stderr
    listing = json.loads(
        ex("artifacts", "list", "digits-best", "--store", store, "-f", "json").stdout
    )
    aliases = {a: v["version"] for v in listing for a in v["aliases"]}
    assert {"best", "top-1", "top-2", "top-3", "latest"} <= set(aliases)
    assert aliases["best"] == aliases["top-1"] == aliases["latest"]

    pulled = ex("artifacts", "pull", "digits-best:best", "--store", store, "--root", "pulled")
    assert pulled.exit_code == 0, pulled.stderr
    best_ckpt = Path(rows[0]["run_dir"]) / rows[0]["best_checkpoint"]
    copy = Path(pulled.stdout.strip()) / best_ckpt.name
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(copy) == digest(best_ckpt)  # NAME:best is the sweep's best model

    fewer = ex(
        "sweep",
        "best",
        world.sweep,
        "--storage",
        storage,
        "--top",
        "1",
        "--publish",
        "digits-best",
        "--store",
        store,
    )
    assert fewer.exit_code == 0, fewer.stderr
    listing = json.loads(
        ex("artifacts", "list", "digits-best", "--store", store, "-f", "json").stdout
    )
    aliases = {a for v in listing for a in v["aliases"]}
    assert "top-2" not in aliases and "top-3" not in aliases and "best" in aliases


@pytest.mark.slow
def test_sweep_best_of_program_trials_and_bad_input(ex, world, isolated):
    storage = str(world.storage)
    table = ex("sweep", "best", world.program_sweep, "--storage", storage, "--top", "2")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["rank", "trial", "val_loss"]
    assert "lr=" in table.stdout and "batch_size=" in table.stdout
    nothing = ex(
        "sweep",
        "best",
        world.program_sweep,
        "--storage",
        storage,
        "--publish",
        "p",
        "--store",
        str(isolated / "store"),
    )
    assert nothing.exit_code == 2 and "no checkpoints" in nothing.stderr
    unknown = ex("sweep", "best", world.sweep.upper(), "--storage", storage)
    assert unknown.exit_code == 2 and world.sweep in unknown.stderr


# -- Optuna's own tools read expctl sweeps -------------------------------------------------------


def _optuna_mismatches(world: World, sweep_id: str, spec_file: str) -> list[str]:
    """Where a trial's Optuna params (what optuna-dashboard and Optuna's own tools show)
    differ from its W&B values (what `expctl sweep status` shows and the trial ran with)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from expctl.sweeps.service import sweep_status

    parameters = yaml.safe_load((world.root / spec_file).read_text())["parameters"]
    swept = {
        n: p.get("distribution", "categorical") for n, p in parameters.items() if "value" not in p
    }
    wandb_values = {
        t["number"]: t["params"] for t in sweep_status(sweep_id, str(world.storage))["trials"]
    }
    study = optuna.load_study(
        study_name=sweep_id, storage=JournalStorage(JournalFileBackend(str(world.storage)))
    )
    assert len(study.trials) == 4
    problems = []
    for trial in study.trials:
        for name, distribution in swept.items():
            shown = trial.params.get(name, "(missing)")
            wanted = wandb_values[trial.number][name]
            if shown != wanted:
                problems.append(
                    f"trial {trial.number} {distribution} {name}: Optuna has {shown!r}, "
                    f"the W&B value is {wanted!r}"
                )
    return problems


def test_trainer_trials_record_their_sweep_and_overrides(world):
    """summary.json says which sweep trial a run is, and what made it differ (as W&B's run
    page shows the sweep and the config)."""
    from expctl.sweeps.service import sweep_status

    trials = sweep_status(world.sweep, str(world.storage))["trials"]
    assert len(trials) == 4
    for trial in trials:
        summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
        assert summary["sweep"] == {"id": world.sweep, "trial": trial["number"]}
        recorded = yaml.safe_load((Path(trial["run_dir"]) / "overrides.yaml").read_text())
        assert summary["overrides"] == recorded
        assert {o.split("=", 1)[0] for o in recorded} >= set(trial["params"])
    plain = json.loads((world.run_a / "summary.json").read_text())
    assert plain["sweep"] is None
    assert plain["overrides"] == [*TINY, "optim.lr=0.01"]


@pytest.mark.slow
def test_optuna_reads_wandb_values_of_a_random_sweep(world):
    """uniform, int_uniform, categorical, log_uniform_values under method: random."""
    assert _optuna_mismatches(world, world.sweep, "random.yaml") == []


@pytest.mark.slow
def test_optuna_reads_wandb_values_of_a_grid_sweep(world):
    """categorical and int_uniform under method: grid (optuna-dashboard shows trial.params)."""
    assert _optuna_mismatches(world, world.program_sweep, "program.yaml") == []


# -- provenance read back (issue 21) -------------------------------------------------------------


@pytest.mark.slow
def test_provenance_in_list_show_and_compare_of_real_runs(ex, world):
    """The world is no git repository: `runs show` says so in its provenance block, the host
    is a --where key and a column, two runs made here differ in nothing of code or
    environment, and program trials are found by their program's commit prefix."""
    import socket

    host = socket.gethostname()
    trainer = _list(ex, world, "--where", f"env.host={host}", "--where", "kind=trainer")
    assert {world.run_a, world.run_b} <= {Path(r["run_dir"]) for r in trainer}
    assert all(r["columns"]["env.host"] == host for r in trainer)
    shown = ex("runs", "show", str(world.run_a), "--runs-dir", str(world.runs))
    assert shown.exit_code == 0, shown.stderr
    block = shown.stdout.split("\nprovenance:\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^  commit\s+not a git repository$", block, re.M)
    assert re.search(rf"^  host\s+{re.escape(host)}$", block, re.M)
    compared = ex("runs", "compare", str(world.run_a), str(world.run_b), "--format", "json")
    assert compared.exit_code == 0, compared.stderr
    assert json.loads(compared.stdout)["provenance"] == {
        "facts": {},
        "packages": {},
        "missing": [],
    }
    # program trials record the program's repository: this one's commit, by its prefix
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    programs = _list(ex, world, "--where", f"git.commit={head[:7]}")
    assert len(programs) == 4 and {r["kind"] for r in programs} == {"program"}
