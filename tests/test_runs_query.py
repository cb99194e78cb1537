"""Pure logic of `expctl runs`: the --where grammar, sorting, overrides, sparklines, flattening."""

from __future__ import annotations

from pathlib import Path

import pytest

from expctl.errors import UsageError
from expctl.runs.compare import flatten, metric_series, sparkline
from expctl.runs.overrides import dedupe_overrides, parse_scalar
from expctl.runs.query import RunView, apply_where, parse_condition, sort_views
from expctl.runs.records import RunInfo


def _run(run_id: str, **kw) -> RunInfo:
    base = {
        "path": Path("/nonexistent") / run_id,
        "id": run_id,
        "dirname": f"20260101-000000-{run_id}",
        "name": "exp",
        "status": "completed",
        "kind": "trainer",
        "started_at": None,
        "ended_at": None,
        "duration_s": 1.0,
        "device": "cpu",
        "monitor": "val_loss",
        "mode": "min",
    }
    base.update(kw)
    return RunInfo(**base)


@pytest.mark.parametrize(
    ("text", "key", "op", "value"),
    [
        ("optim.lr<0.01", "optim.lr", "<", 0.01),
        ("optim.lr <= 1e-3", "optim.lr", "<=", 1e-3),
        ("model=large", "model", "=", "large"),
        ("model==large", "model", "==", "large"),
        ("status!=failed", "status", "!=", "failed"),
        ("name~digits-*", "name", "~", "digits-*"),
        ("name!~*probe", "name", "!~", "*probe"),
        ("trainer.epochs>=10", "trainer.epochs", ">=", 10),
        ("flag=true", "flag", "=", True),
        ("note='a b'", "note", "=", "a b"),
        ("x=null", "x", "=", None),
    ],
)
def test_where_grammar(text, key, op, value):
    c = parse_condition(text)
    assert (c.key, c.op, c.value) == (key, op, value)


@pytest.mark.parametrize("text", ["optim.lr", "<0.1", "optim.lr<", "lr<small", "a>b"])
def test_where_errors_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_condition(text)


def test_where_matches_fields_metrics_overrides_and_prefixes():
    a = _run(
        "a",
        final_metrics={"val_loss": 0.5},
        best_metrics={"val_loss": 0.4},
        params={"optim.lr": 0.01, "model": "large"},
    )
    b = _run(
        "b",
        final_metrics={"val_loss": 0.9},
        params={"optim.lr": 0.001, "model": "small"},
        status="failed",
    )
    views = [RunView(a), RunView(b)]

    def ids(*conditions: str) -> list[str]:
        return [v.run.id for v in apply_where(views, [parse_condition(c) for c in conditions])]

    assert ids("optim.lr<0.005") == ["b"]
    assert ids("val_loss<0.6") == ["a"]
    assert ids("best.val_loss<0.45") == ["a"]  # b has no best value: never matches
    assert ids("final.val_loss>0.1", "status=completed") == ["a"]
    assert ids("model~l*") == ["a"] and ids("model!~l*") == ["b"]
    assert ids("optim.lr=1e-3") == ["b"]  # numbers compare by value
    assert ids("param.model=small") == ["b"]
    assert ids("status!=completed") == ["b"]
    with pytest.raises(UsageError, match=r"no run has 'optim\.lrr'") as raised:
        ids("optim.lrr<1")
    assert "did you mean optim.lr" in (raised.value.hint or "")


def test_sort_ascending_descending_and_missing_last():
    runs = [
        _run("a", final_metrics={"val_loss": 0.5}),
        _run("b", final_metrics={"val_loss": 0.1}),
        _run("c", final_metrics={}),
        _run("d", final_metrics={"val_loss": 0.3}),
    ]
    views = [RunView(r) for r in runs]
    assert [v.run.id for v in sort_views(views, "val_loss")] == ["b", "d", "a", "c"]
    assert [v.run.id for v in sort_views(views, "-val_loss")] == ["a", "d", "b", "c"]


def test_overrides_are_deduplicated_last_wins():
    given = ["trainer.epochs=2", "optim.lr=0.1", "+new=x", "trainer.epochs=5", "~scheduler"]
    kept, values = dedupe_overrides(given)
    assert kept == ["trainer.epochs=5", "optim.lr=0.1", "+new=x", "~scheduler"]
    assert values == {"trainer.epochs": 5, "optim.lr": 0.1, "new": "x", "scheduler": None}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-2", -2),
        ("1e-3", 1e-3),
        (".5", 0.5),
        ("true", True),
        ("adam", "adam"),
        ("'1'", "1"),
        ("[1,2]", "[1,2]"),
        ("null", None),
        ("inf", float("inf")),
    ],
)
def test_parse_scalar(text, value):
    assert parse_scalar(text) == value


def test_sparkline_shares_a_scale_and_fits_a_width():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, 1.0]) == "▅▅"
    assert sparkline([5, 6], lo=0, hi=10) == "▅▅"
    assert len(sparkline(list(range(1000)), width=40)) == 40
    assert sparkline([]) == ""


def test_metric_series_per_epoch_takes_the_last_row_of_each_epoch():
    rows = [
        {"step": 50, "epoch": 1, "train_loss": 2.0},
        {"step": 100, "epoch": 1, "train_loss": 1.5, "val_loss": 1.4},
        {"step": 150, "epoch": 2, "train_loss": 1.2},
        {"step": 200, "epoch": 2, "train_loss": 1.0, "val_loss": float("nan")},
    ]
    assert metric_series(rows, "train_loss", "epoch") == [(1.0, 1.5), (2.0, 1.0)]
    assert metric_series(rows, "val_loss", "step") == [(100.0, 1.4)]  # NaN dropped


def test_flatten():
    node = {"a": {"b": 1, "c": [1, 2]}, "m": {"_args_": [{"x": 1}, {"y": None}]}, "e": {}}
    assert flatten(node) == {
        "a.b": 1,
        "a.c": [1, 2],
        "m._args_.0.x": 1,
        "m._args_.1.y": None,
        "e": {},
    }


def test_runs_started_in_the_same_second_keep_their_start_order(tmp_path: Path) -> None:
    """Multirun trials share a directory stamp: newest first (and `latest`) must still follow
    the order they started in, not their random ids."""
    import json

    from expctl.record.refs import resolve_run

    root = tmp_path / "runs"
    for trial, run_id in enumerate(["zz9999", "aa0000", "mm5555"]):
        run_dir = root / "exp" / f"20260101-000000-{run_id}"
        run_dir.mkdir(parents=True)
        summary = {
            "status": "completed",
            "name": "exp",
            "started_at": f"2026-01-01T00:00:00.{100 * trial:03d}+00:00",
            "sweep": {"id": "s", "trial": trial},
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
    runs = [_run(i, sweep={"id": "s", "trial": t}) for t, i in enumerate(["zz9999", "aa0000"])]
    assert [v.run.id for v in sort_views([RunView(r) for r in runs], None)] == ["aa0000", "zz9999"]
    assert resolve_run("latest", root).name.endswith("mm5555")
    assert resolve_run("latest~2", root).name.endswith("zz9999")
