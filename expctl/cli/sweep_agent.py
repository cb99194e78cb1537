"""`expctl sweep agent` — run a sweep's trials here, or submit agents to SLURM.

A local sweep's agent claims trials from the sweep storage and runs them (expctl's trainer, or
the sweep's ``program``); a W&B-hosted sweep (ENTITY/PROJECT/ID) is run with W&B's agent
protocol. ``--slurm N`` submits N agents as one job array instead. Progress goes to stderr; the
only stdout is the SLURM job id.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from expctl.cli.common import (
    ConfigDirOpt,
    ConfigNameOpt,
    SetOpt,
    err,
    examples,
    handle_errors,
    out,
)
from expctl.cli.sweep_options import StorageOpt

if TYPE_CHECKING:
    from expctl.sweeps.agent import AgentOptions
    from expctl.sweeps.service import AgentTarget


def register(app: typer.Typer) -> None:
    app.command("agent", epilog=AGENT_EPILOG)(handle_errors(agent))


AgentSweepArg = Annotated[
    str,
    typer.Argument(
        help="The sweep id printed by `sweep create`, or ENTITY/PROJECT/ID of a sweep on "
        "W&B's server (`sweep create --backend wandb`)."
    ),
]
CountOpt = Annotated[
    int | None, typer.Option("--count", "-n", min=1, help="Run at most N trials, then exit.")
]
StaleAfterOpt = Annotated[
    float,
    typer.Option(
        "--stale-after",
        min=0.5,
        help="Seconds without a heartbeat after which another agent's trial is considered "
        "dead and re-run.",
    ),
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="When nothing is left to claim, wait for other agents' running trials "
        "(re-running any whose agent dies) instead of exiting.",
    ),
]
TrialTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--trial-timeout",
        help="Seconds of wall time per trial; a trial past it is stopped and failed (a "
        "`program:` trial is killed; a trainer trial stops at its next step).",
        show_default=False,
    ),
]
SlurmOpt = Annotated[
    int | None,
    typer.Option(
        "--slurm",
        metavar="N",
        help="Submit N agents as a SLURM job array (sbatch) instead of running one here; "
        "prints the job id (one per array: N past the cluster's MaxArraySize takes several).",
        show_default=False,
    ),
]
SlurmThrottleOpt = Annotated[
    int | None,
    typer.Option(
        "--slurm-throttle",
        metavar="K",
        help="With --slurm: at most K agents run at once (sbatch --array=...%K; several "
        "arrays run one after another).",
        show_default=False,
    ),
]
SlurmOptOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--slurm-opt",
        help="An sbatch option for --slurm, KEY=VALUE (repeatable): partition=gpu, "
        "time=4:00:00, gres=gpu:1, cpus-per-task=4.",
        show_default=False,
    ),
]
ObjectiveOpt = Annotated[
    str | None,
    typer.Option(
        "--objective",
        hidden=True,
        help="MODULE:FUNCTION objective(ctx) to run instead of expctl's trainer.",
    ),
]


AGENT_EPILOG = examples(
    "expctl sweep agent $SWEEP_ID --count 5 --trial-timeout 3600",
    "sbatch --array=0-7 --wrap 'expctl sweep agent $SWEEP_ID --stale-after 120'",
    "expctl sweep agent my-team/digits/k3v9x2ab --count 10   # a sweep on W&B's server",
    "expctl sweep agent $SWEEP_ID --slurm 8 --slurm-opt partition=gpu --slurm-opt time=4:00:00",
    "expctl sweep agent $SWEEP_ID --slurm 5000 --slurm-throttle 64",
)


def agent(
    sweep_id: AgentSweepArg,
    count: CountOpt = None,
    storage: StorageOpt = None,
    stale_after: StaleAfterOpt = 60.0,
    wait: WaitOpt = True,
    config_dir: ConfigDirOpt = None,
    config_name: ConfigNameOpt = "config",
    sets: SetOpt = None,
    trial_timeout: TrialTimeoutOpt = None,
    slurm: SlurmOpt = None,
    slurm_throttle: SlurmThrottleOpt = None,
    slurm_opt: SlurmOptOpt = None,
    objective: ObjectiveOpt = None,
) -> None:
    """Run trials until --count, run_cap, metric.target, the grid's end, or `sweep stop`.

    On a W&B-hosted sweep (ENTITY/PROJECT/ID) W&B's server picks the trials and W&B's agent
    protocol runs them: sweeps without `program` train expctl's trainer with the values from
    wandb.config, logging into the trial's W&B run; sweeps with `program` are run by W&B's
    agent itself, exactly as `wandb agent ENTITY/PROJECT/ID` does (--trial-timeout is refused
    there). --storage, --stale-after and --wait apply to local sweeps only.

    With --slurm N the agents run on SLURM instead: N of them as a job array (each with the
    other options given here), split into several arrays where N is more than the cluster's
    MaxArraySize; prints the job id of each array, one per line.
    """
    from expctl.sweeps.agent import AgentOptions
    from expctl.sweeps.service import run_sweep_agent

    options = AgentOptions(
        count=count, stale_after=stale_after, wait=wait, trial_timeout=trial_timeout
    )
    if slurm is not None:
        _submit_on_slurm(
            sweep_id, slurm, slurm_throttle, options, slurm_opt or [], storage, sets or []
        )
        return
    if slurm_throttle is not None or slurm_opt:
        from expctl.errors import UsageError

        flag = "--slurm-throttle" if slurm_throttle is not None else "--slurm-opt"
        raise UsageError(
            f"{flag} applies to agents submitted with --slurm N",
            hint=f"e.g. expctl sweep agent {sweep_id} --slurm 8 {flag} ...",
        )
    summary = run_sweep_agent(
        sweep_id,
        options,
        storage=storage,
        config_dir=config_dir,
        config_name=config_name,
        overrides=tuple(sets or ()),
        objective=objective,
        on_start=_announce_agent,
        on_event=lambda line: err(f"  {line}"),
    )
    if summary is None:  # W&B's server keeps the tally
        err("agent done")
        return
    counts = (
        ", ".join(
            f"{summary.count(s)} {s}" for s in ("complete", "pruned", "failed") if summary.count(s)
        )
        or "no trials"
    )
    err(f"agent done: {counts}; {summary.reason}")
    failed, succeeded = summary.count("failed"), summary.count("complete") + summary.count("pruned")
    if failed and not succeeded:
        # W&B's agent exits 0 whatever its runs did; a script (or a SLURM array) must be able
        # to tell an agent whose every trial failed from one that searched
        from expctl.errors import RuntimeFailure

        last = next(t for t in reversed(summary.trials) if t.status == "failed")
        raise RuntimeFailure(
            f"every trial this agent ran failed ({failed}); last: trial {last.number}: "
            f"{last.message}",
            hint=f"see why in the note column of `expctl sweep status {sweep_id}` and in each "
            "trial's run dir, fix it, then start the agent again",
        )


def _submit_on_slurm(
    sweep_id: str,
    tasks: int,
    throttle: int | None,
    options: AgentOptions,
    slurm_options: list[str],
    storage: str | None,
    sets: list[str],
) -> None:
    from expctl.sweeps.service import submit_slurm_agents

    args: list[str] = []
    if options.count is not None:
        args += ["--count", str(options.count)]
    args += ["--stale-after", f"{options.stale_after:g}"]
    if not options.wait:
        args.append("--no-wait")
    if options.trial_timeout is not None:
        args += ["--trial-timeout", f"{options.trial_timeout:g}"]
    for override in sets:
        args += ["--set", override]
    arrays = submit_slurm_agents(
        sweep_id,
        tasks,
        options,
        slurm_options=slurm_options,
        storage=storage,
        agent_args=args,
        throttle=throttle,
    )
    at_once = f", at most {throttle} at once" if throttle is not None else ""
    if len(arrays) == 1:
        err(f"submitted {tasks} agents of sweep {sweep_id} as SLURM job {arrays[0].job}{at_once}")
    else:
        err(
            f"submitted {tasks} agents of sweep {sweep_id} as {len(arrays)} SLURM job arrays "
            f"(the cluster's MaxArraySize){at_once}:"
        )
        for a in arrays:
            after = f", after {a.after} ends" if a.after else ""
            err(f"  job {a.job}: agents {a.first}-{a.first + a.size - 1}{after}")
    jobs = ",".join(a.job for a in arrays)
    err(f"  follow them with: squeue -j {jobs}; expctl sweep status {sweep_id}")
    for a in arrays:
        out(a.job)


def _freeze_what_lives_on() -> None:
    """The agent's modules and its sweep's replay live as long as it does: out of the garbage
    collector's scans from here on (:func:`expctl.cli.entry.freeze_what_lives_on`). Looked up,
    not imported: importing the console script's module would install its signal handlers in
    a program that runs the app in-process."""
    entry = sys.modules.get("expctl.cli.entry")
    if entry is not None:
        entry.freeze_what_lives_on()


def _announce_agent(target: AgentTarget) -> None:
    ref = target.sweep_ref
    if target.backend == "local":
        err(f"agent for sweep {ref} (stop with Ctrl-C: the running trial is re-queued)")
        _freeze_what_lives_on()
    elif target.program:
        err(
            f"W&B sweep {ref} runs `program: {target.program}`: W&B's agent runs it, "
            f"exactly as `wandb agent {ref}` would"
        )
    else:
        err(f"agent for W&B sweep {ref} (W&B's server picks the trials)")
