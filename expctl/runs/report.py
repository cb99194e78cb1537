"""``expctl sweep report``: one self-contained HTML file that shows a sweep with no network.

The page holds the leaderboard, the optimisation history, parallel coordinates of the
parameters against the metric, parameter importance (Optuna's default evaluator on the W&B
parameter values) and the learning curves of the top-k trials, read from their run
directories (``metrics.jsonl``) — program trials as trainer trials. plotly.js is embedded once
(``include_plotlyjs``-style, no CDN), so the file opens offline, from a cluster's login node
copied to a laptop, or as a CI artifact. Every section that cannot be drawn says why.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.runs import report_figures
from expctl.runs.plot import PLOTLY_CONFIG, check_out_path, write_text
from expctl.runs.report_parallel import parallel_figure
from expctl.runs.sweep_importance import importance_caveat
from expctl.runs.sweep_results import SweepResults, Trial, load_sweep

PLOT_HEIGHT = "440px"
STATE_ORDER = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
MULTI_OBJECTIVE_NOTE = (
    "a multi-objective sweep has no single metric to rank trials by; see its Pareto front"
)


@dataclass
class Report:
    path: Path
    plots: list[str]  # the sections drawn as plots (their element ids)
    notes: list[str] = field(default_factory=list)  # sections not drawn, and why
    caveats: list[str] = field(default_factory=list)  # sections drawn on too little data
    size: int = 0  # bytes


def write_report(sweep_id: str, out: Path, *, storage: str | None = None, top_k: int = 5) -> Report:
    out = check_out_path(out, (".html", ".htm"))
    results = load_sweep(sweep_id, storage)
    page, plots, notes, caveats = render_report(results, top_k=top_k)
    write_text(out, page)
    return Report(out, plots, notes, caveats, out.stat().st_size)


def render_report(
    results: SweepResults, *, top_k: int = 5
) -> tuple[str, list[str], list[str], list[str]]:
    """The page, the ids of the plots it draws, notes on the sections it could not, and
    caveats on those it drew from too little data."""
    # The page's sections in page order, a few lines each.
    from plotly.offline import get_plotlyjs

    sections: list[str] = []
    plots: list[str] = []
    notes: list[str] = []
    caveats: list[str] = []

    def add(
        section_id: str,
        title: str,
        figure: Any,
        why_not: str | None,
        intro: str = "",
        caveat: str | None = None,
    ) -> None:
        if results.objectives and section_id != "pareto":  # they rank by one metric
            figure, why_not, intro, caveat = None, MULTI_OBJECTIVE_NOTE, "", None
        body = f"<p class='intro'>{_e(intro)}</p>" if intro else ""
        if caveat and figure is not None:
            caveats.append(f"{title}: {caveat}")
            body += f"<p class='caveat'>{_e(caveat)}</p>"
        if figure is None:
            notes.append(f"{title}: {why_not}")
            body += f"<p class='empty'>Not drawn: {_e(why_not or 'nothing to show')}.</p>"
        else:
            div_id = f"plot-{section_id}"
            body += figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=div_id,
                default_height=PLOT_HEIGHT,
                config=PLOTLY_CONFIG,
            )
            plots.append(div_id)
        sections.append(f"<section id='{section_id}'><h2>{_e(title)}</h2>{body}</section>")

    results, sampled = _drawn(results)
    if sampled:
        caveats.append(sampled)
        sections.append(f"<p class='caveat'>{_e(sampled)}.</p>")
    metric = results.metric or "value"
    ranked = results.ranked()
    sections.append(_leaderboard(results))
    if results.objectives:  # a multi-objective sweep: its front first (runs/report_pareto.py)
        from expctl.runs.report_pareto import pareto_figure

        add(
            "pareto",
            "Pareto front",
            *pareto_figure(results),
            intro="Every complete trial by its objectives; the Pareto-optimal ones (no other "
            "trial is at least as good in every objective) in red.",
        )
    add(
        "history",
        "Optimisation history",
        *report_figures.history(results),
        intro=(f"{metric} of every finished trial by trial number; the line is the best so far."),
    )
    add(
        "parallel",
        "Parallel coordinates",
        *parallel_figure(results, ranked),
        intro=(
            "Each line is a complete trial: its parameter values and its "
            + metric
            + " (the darkest line is the best). Parameters spanning 100× or more are on a "
            "log scale."
        ),
    )
    add(
        "importance",
        "Parameter importance",
        *report_figures.importance(results),
        intro=(
            "Optuna's importance evaluator on the W&B parameter values of the "
            f"{len(ranked)} complete trial{'' if len(ranked) == 1 else 's'}."
        ),
        caveat=importance_caveat(len(ranked)),
    )
    add(
        "curves",
        f"Learning curves of the top {top_k}",
        *report_figures.curves(results, ranked[:top_k]),
        intro=f"{metric} as logged by each run (metrics.jsonl in its run directory).",
    )

    status = results.status
    page = _PAGE.format(
        title=_e(f"Sweep {results.id}" + (f" {status.get('name')}" if status.get("name") else "")),
        header=_header(results),
        plotlyjs=get_plotlyjs(),
        sections="\n".join(sections),
        footer=_e(_footer()),
    )
    return page, plots, notes, caveats


# A page of every trial of a 100,000-trial sweep was 52 MB and took 45 s to write: past
# MAX_DRAWN trials the table and plots show the KEEP_BEST best and an even sample of the rest
# (the page says so; status and --format json still list every trial).
MAX_DRAWN = 5_000
KEEP_BEST = 1_000


def _drawn(results: SweepResults) -> tuple[SweepResults, str | None]:
    trials = results.trials
    if len(trials) <= MAX_DRAWN:
        return results, None
    best = {t.number for t in results.ranked()[:KEEP_BEST]}
    rest = [t for t in trials if t.number not in best]
    step = len(rest) / (MAX_DRAWN - len(best))
    sample = best | {rest[int(i * step)].number for i in range(MAX_DRAWN - len(best))}
    kept = [t for t in trials if t.number in sample]
    why = (
        f"drawn from {len(kept):,} of the sweep's {len(trials):,} trials: the best "
        f"{len(best):,} and an even sample of the rest"
    )
    return replace(results, trials=kept), why


# -- sections ------------------------------------------------------------------------------------


def _header(results: SweepResults) -> str:
    s = results.status
    metric = s.get("metric") or {}
    counts = ", ".join(f"{n} {state}" for state, n in sorted((s.get("counts") or {}).items()))
    planned = f" of {s['planned']} planned" if s.get("planned") is not None else ""
    facts = [
        ("method", s.get("method")),
        ("state", s.get("state_text") or s.get("state")),
        ("metric", f"{metric.get('name')} ({metric.get('goal')})" if metric else "none"),
        *_objectives_fact(results),
        ("trials", f"{s.get('done', 0)} done{planned}; {counts or 'none yet'}"),
        ("storage", s.get("storage")),
        ("created", s.get("created")),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(str(v))}</dd>" for k, v in facts if v is not None)
    best = s.get("best")
    best_html = ""
    if best:
        best_html = (
            f"<p class='best'>Best: trial {_e(str(best.get('number')))}, "
            f"{_e(str(metric.get('name')))} = <b>{_e(_num(best.get('value')))}</b>"
            f"<br><code>{_e(str(best.get('command') or ''))}</code></p>"
        )
    name = f" <span class='name'>{_e(str(s['name']))}</span>" if s.get("name") else ""
    return f"<h1>Sweep <code>{_e(results.id)}</code>{name}</h1><dl>{items}</dl>{best_html}"


def _objectives_fact(results: SweepResults) -> list[tuple[str, str]]:
    objectives = results.objectives or []
    if not objectives:
        return []
    names = ", ".join(f"{o['name']} ({o['goal']})" for o in objectives)
    front = len(results.status.get("front") or [])
    return [("objectives", f"{names}; {front} trial{'s' if front != 1 else ''} on the front")]


def _leaderboard(results: SweepResults) -> str:
    metric = results.metric or "value"
    sign = -1.0 if results.maximize else 1.0
    inf = float("inf")

    def order(t: Trial) -> tuple:
        value = sign * float(t.value) if isinstance(t.value, int | float) else inf
        return (STATE_ORDER.get(t.state, 5), value, t.number)

    ranked = {t.number: i for i, t in enumerate(results.ranked(), 1)}
    varying = results.varying()
    tags = _trial_tags(results.trials)
    rows = []
    for t in sorted(results.trials, key=order):
        note = "; ".join([*([t.message] if t.message and t.state != "complete" else []), *t.notes])
        rank = ranked.get(t.number)
        rows.append(
            "<tr>"
            f"<td>{rank or ''}</td><td>{t.number}</td>"
            f"<td class='state {_e(t.state)}'>{_e(t.state)}</td>"
            f"<td class='num'>{_e(_value_cell(t))}</td>"
            f"<td class='num'>{_e(_num(t.duration, 3))}</td>"
            f"<td><code>{_e(results.params_text(t, varying))}</code></td>"
            f"<td class='path'>{_e(str(t.run_dir or ''))}</td>"
            + (f"<td>{_e(', '.join(tags.get(t.number, ())))}</td>" if tags else "")
            + f"<td>{_e(note)}</td></tr>"
        )
    if not rows:
        return (
            "<section id='leaderboard'><h2>Leaderboard</h2>"
            "<p class='empty'>No trials yet.</p></section>"
        )
    columns = ("rank", "trial", "state", metric, "seconds", "parameters", "run dir")
    head = "".join(f"<th>{_e(h)}</th>" for h in (*columns, *(["tags"] if tags else []), "note"))
    return (
        "<section id='leaderboard'><h2>Leaderboard</h2>"
        f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _value_cell(t: Trial) -> str:
    """The metric's value, or each objective's (a ``*`` marks the Pareto front)."""
    if t.values:
        text = " ".join(f"{k}={_num(v)}" for k, v in t.values.items())
        return f"* {text}" if t.pareto else text
    return _num(t.value)


def _trial_tags(trials: list[Trial]) -> dict[int, tuple[str, ...]]:
    """Each trial's tags (``expctl runs tag``), or {} when no trial has any (no column)."""
    from expctl.runs.labels import read_labels

    tags = {t.number: read_labels(t.run_dir).tags for t in trials if t.run_dir is not None}
    return tags if any(tags.values()) else {}


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: Any, digits: int = 6) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "" if value is None else str(value)


def _footer() -> str:
    from expctl import __version__

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"Made by expctl {__version__} (expctl sweep report) at {now}. Works offline."


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 16px 24px; color: #222; }}
h1 {{ font-size: 1.5em; margin: 0.2em 0; }} h1 .name {{ color: #555; font-weight: normal; }}
h2 {{ font-size: 1.15em; margin: 1.4em 0 0.3em; border-bottom: 1px solid #ddd; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0.5em 0; }}
dt {{ color: #666; }} dd {{ margin: 0; }}
code {{ font-size: 0.9em; }}
.best {{ background: #f3f8ff; padding: 8px 12px; border-left: 3px solid #1f77b4; }}
.intro {{ color: #555; margin: 0.2em 0; }} .empty {{ color: #a00; }}
.caveat {{ color: #a00; font-weight: bold; margin: 0.2em 0; }}
.table-wrap {{ max-height: 420px; overflow: auto; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.85em; }}
th, td {{ padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }}
th {{ position: sticky; top: 0; background: #fafafa; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.path {{ color: #666; word-break: break-all; }}
td.state.complete {{ color: #080; }} td.state.pruned {{ color: #888; }}
td.state.fail {{ color: #a00; }} td.state.running {{ color: #a60; }}
footer {{ color: #888; font-size: 0.8em; margin-top: 2em; }}
</style>
<script type="text/javascript">window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script type="text/javascript">{plotlyjs}</script>
</head>
<body>
<header>{header}</header>
{sections}
<footer>{footer}</footer>
</body>
</html>
"""
