"""Run one trial of a W&B sweep `program:` unmodified, as W&B's agent does, with no server.

The agent runs one :class:`ProgramTrial` per trial. It

1. writes W&B's sweep files: ``$WANDB_DIR/wandb/sweep-<sweep>/config-<run>.yaml``
   (``wandb_version: 1`` + ``{name: {value: v}}``) and, if the command uses ``${args_json_file}``,
   ``config-<run>.json``;
2. starts the command (``build_command``: W&B's macros, argv without a shell) in its own process
   group, guarded so that the whole group dies with the agent (``child_process``),
   stdout/stderr to ``trial_dir/stdout.log`` and ``trial_dir/stderr.log``, with W&B's
   environment protocol: ``WANDB_SWEEP_ID``, ``WANDB_RUN_ID``, ``WANDB_SWEEP_PARAM_PATH``,
   ``WANDB_DIR``, ``WANDB_MODE=offline``, ``WANDB_PROJECT``/``WANDB_ENTITY`` when given, and
   ``WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL`` (wandb-core otherwise writes the run log every
   15 s or per 32 KiB, so per-epoch values would arrive too late for early termination).
   Verified with wandb 0.31: an *offline* ``wandb.init()`` reads WANDB_SWEEP_PARAM_PATH
   (``wandb_setup._WandbSetup.config``) and the sweep values override the program's own
   ``config=`` defaults, exactly as under W&B's agent — no server, no other mechanism needed;
3. polls the run's transaction log (``wandb.metrics``) every ``poll_interval`` seconds for the
   metric the program logs with ``wandb.log``, and acts on ``should_stop``, ``on_metric`` and
   ``timeout``;
4. returns a ``ProgramResult``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.fsutil import atomic_write_text
from expctl.status import ProgramStatus
from expctl.sweeps.program.child_process import GroupGuard, dies_with_agent, end_group, kill_grace
from expctl.sweeps.program.macros import (
    KNOWN_MACROS,
    build_command,
    plain_value,
    sweep_file,
    wandb_params,
)
from expctl.sweeps.wandb.metrics import RunLogWatcher, file_identity, run_logs

__all__ = [
    "KNOWN_MACROS",
    "ProgramResult",
    "ProgramTrial",
    "build_command",
    "wandb_params",
    "write_sweep_param_file",
]

Status = ProgramStatus

SAME_SIGNAL_WINDOW_S = 1.0  # a child dying of a signal this close to ours got the same one
STDERR_TAIL_LINES = 15
FLUSH_INTERVAL_VAR = "WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL"  # settings.x_transaction_log_...


@dataclass
class ProgramResult:
    """What became of one program trial.

    status: completed (exit 0 and the metric was logged) | failed (non-zero exit, metric never
    logged or not a number, command could not start) | interrupted (``should_stop`` asked) |
    stopped (``on_metric`` asked: a hyperband prune) | timeout. exit_code: the child's return code
    (negative = killed by that signal, Python's convention; None if it never started).
    """

    status: Status
    exit_code: int | None
    value: float | None
    history: list[float]
    message: str
    stdout_path: Path
    stderr_path: Path
    wandb_run_dir: Path | None
    duration: float
    command: list[str] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)  # what wandb.log logged


def write_sweep_param_file(path: Path, params: Mapping[str, Any]) -> None:
    """W&B's ``config-<run>.yaml`` (same layout as ``wandb.sdk.lib.config_util``)."""
    import yaml

    text = "wandb_version: 1"
    if params:  # an empty mapping after the version line is a YAML error for wandb
        body = {name: {"value": plain_value(v)} for name, v in params.items()}
        text += "\n\n" + yaml.safe_dump(
            body, default_flow_style=False, sort_keys=False, allow_unicode=True
        )
    atomic_write_text(path, text, fsync=False)  # read by the child on this machine


@dataclass
class ProgramTrial:
    """One trial of a sweep's program for one set of parameters: :meth:`run` it to collect
    ``metric``.

    Contract for the agent (the fields):

    - ``params``: the trial's values by expctl's flat dotted names. Pass the sweep's raw
      ``parameters`` mapping as ``parameters_spec`` so names from nested ``parameters:`` blocks
      are re-nested as W&B does (``wandb.config.optim.lr``, ``--optim={'lr': 0.1}``); without it
      every name is one literal W&B parameter (``--optim.lr=0.1``), W&B's reading of flat dotted
      names. ``run_id``: unique per attempt is best (a re-run may reuse it: older run dirs of the
      same id are ignored). ``trial_dir`` is created; stdout.log/stderr.log go there.
    - Environment: ``os.environ`` + ``env`` + the W&B protocol variables. ``WANDB_DIR`` is kept if
      set in ``env`` or the agent's environment, else it is ``trial_dir``. ``WANDB_MODE`` is
      ``offline`` unless ``env`` sets it: an inherited mode is ignored on purpose, because
      ``disabled`` writes no log to read the metric from, and ``online`` asks W&B's server for a
      sweep it has never heard of. ``WANDB_SERVICE`` is dropped so the child never attaches to
      the agent's own wandb service (W&B's agent does the same).
    - ``cwd``: the child's working directory (default: the agent's, as W&B's agent; a relative
      ``program`` is resolved from there).
    - ``on_metric(index, value)`` is called once per value of ``metric`` logged, in log order,
      ``index`` counting from 0 (W&B's hyperband bands index these values, not ``_step``). Values
      seen while the child runs arrive within ``poll_interval``; the rest right after it exits.
      Returning True while the child runs stops it: SIGTERM to its process group, SIGKILL after
      ``kill_grace``; status ``stopped`` (value = last value seen).
    - ``should_stop()`` is polled every ``poll_interval``; a signal number (e.g. the SIGTERM the
      agent received) is forwarded to the child's process group, SIGKILL follows after
      ``kill_grace`` (default ``$WANDB_AGENT_KILL_DELAY`` or 30 s); status ``interrupted`` — the
      agent should re-queue the trial and exit 128+signum.
    - ``timeout`` (seconds of wall time): SIGTERM, SIGKILL after the grace; status ``timeout``.
    - Never raises for anything the program does; raises ``UsageError`` for a bad command
      (unknown macro, unset ``${envvar:NAME}``) before starting anything.
    """

    program: str
    command: list[str] | None
    params: Mapping[str, Any]
    metric: str
    sweep_id: str
    run_id: str
    trial_dir: Path
    env: Mapping[str, str] | None = None
    timeout: float | None = None
    on_metric: Callable[[int, float], bool] | None = None
    should_stop: Callable[[], int | None] | None = None
    cwd: Path | None = None
    parameters_spec: Mapping[str, Any] | None = None
    project: str | None = None
    entity: str | None = None
    kill_grace: float | None = None
    poll_interval: float = 0.5

    def run(self) -> ProgramResult:
        self._started = time.monotonic()
        self.trial_dir = Path(self.trial_dir)
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        self._stdout = self.trial_dir / "stdout.log"
        self._stderr = self.trial_dir / "stderr.log"
        self._watcher: RunLogWatcher | None = None
        env, argv = self._prepare()
        self._argv = argv
        grace = kill_grace(self.kill_grace, env)
        wandb_dir = Path(env["WANDB_DIR"])
        older_logs = {  # an earlier attempt's log; a rerun within the same second moves on
            p: file_identity(p) for p in run_logs(wandb_dir, self.run_id)
        }
        with open(self._stdout, "ab") as out, open(self._stderr, "ab") as err:
            try:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=dies_with_agent(),
                )
            except OSError as e:
                return self._result("failed", None, f"could not start {argv[0]!r}: {e}")
        # the program's grandchildren die with the agent too, even by SIGKILL (child_process)
        guard = GroupGuard(child.pid)
        self._watcher = RunLogWatcher(
            wandb_dir, self.run_id, self.metric, older_logs, self.on_metric
        )
        deadline = None if self.timeout is None else self._started + self.timeout
        try:
            stop_reason = _supervise(
                child, self._watcher, self.should_stop, deadline, grace, self.poll_interval
            )
        except BaseException as e:
            # a callback raised, or the agent got Ctrl-C (the child, in its own session, did
            # not): never leave the program running behind us
            end_group(
                child, signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM, grace
            )
            raise
        finally:
            guard.release()
        self._watcher.poll(child_running=False)
        return self._judge(child.returncode, stop_reason, wandb_dir)

    def _prepare(self) -> tuple[dict[str, str], list[str]]:
        """The child's environment (W&B's protocol) and command line; W&B's param file."""
        env = _child_env(
            self.env,
            self.sweep_id,
            self.run_id,
            self.trial_dir,
            self.project,
            self.entity,
            self.poll_interval,
        )
        wandb_dir = Path(env["WANDB_DIR"])
        run_params = wandb_params(self.params, self.parameters_spec)
        param_path = sweep_file(wandb_dir, self.sweep_id, self.run_id, "yaml")
        write_sweep_param_file(param_path, run_params)
        env["WANDB_SWEEP_PARAM_PATH"] = str(param_path)
        argv = build_command(
            self.command,
            self.program,
            run_params,
            sweep_id=self.sweep_id,
            run_id=self.run_id,
            wandb_dir=wandb_dir,
            environ=env,
        )
        return env, argv

    def _judge(
        self, code: int, stop_reason: tuple[Status, str] | None, wandb_dir: Path
    ) -> ProgramResult:
        """How the trial ended: stopped by us, the exit code, what the run log says."""
        assert self._watcher is not None
        watcher, tracker = self._watcher, self._watcher.tracker
        if stop_reason:
            status, message = stop_reason
            if status == "timeout":
                message = f"killed after the trial timeout of {self.timeout:g} s"
            return self._result(status, code, message, tracker.final)
        if code != 0:
            message = f"program exited with code {code}" + _stderr_tail(self._stderr)
            return self._result("failed", code, message, tracker.final)
        if watcher.error:
            return self._result("failed", code, watcher.error)
        if watcher.run_dir is None:
            return self._result(
                "failed",
                code,
                f"the program exited 0 but no wandb run {self.run_id!r} appeared under "
                f"{wandb_dir / 'wandb'} (does it call wandb.init(), without dir= or "
                f"mode='disabled'?)",
            )
        if tracker.final is None:
            return self._result("failed", code, tracker.missing_message())
        return self._result("completed", code, "completed", tracker.final)

    def _result(
        self, status: Status, exit_code: int | None, message: str, value: float | None = None
    ) -> ProgramResult:
        watcher = self._watcher
        return ProgramResult(
            status,
            exit_code,
            value,
            list(watcher.tracker.history) if watcher else [],
            message,
            self._stdout,
            self._stderr,
            watcher.run_dir if watcher else None,
            time.monotonic() - self._started,
            self._argv if hasattr(self, "_argv") else [],
            list(watcher.tracker.rows) if watcher else [],
        )


def _supervise(
    child: subprocess.Popen,
    watcher: RunLogWatcher,
    should_stop: Callable[[], int | None] | None,
    deadline: float | None,
    grace: float,
    poll_interval: float,
) -> tuple[Status, str] | None:
    """Wait for the child, polling metrics and stop requests; why it was stopped, if it was."""
    while True:
        try:
            child.wait(timeout=poll_interval)
            return _stopped_with_us(child, should_stop)
        except subprocess.TimeoutExpired:
            pass
        if watcher.poll(child_running=True):
            end_group(child, signal.SIGTERM, grace)
            return ("stopped", "stopped early by the pruner (on_metric)")
        if should_stop is not None and (signum := should_stop()):
            end_group(child, signum, grace)
            return ("interrupted", f"interrupted by {signal.Signals(signum).name}")
        if deadline is not None and time.monotonic() > deadline:
            end_group(child, signal.SIGTERM, grace)
            return ("timeout", "killed after the trial timeout")


def _stopped_with_us(
    child: subprocess.Popen, should_stop: Callable[[], int | None] | None
) -> tuple[Status, str] | None:
    """A child that died of SIGINT/SIGTERM while the agent got one too was stopped *with* it
    (SLURM and a terminal's Ctrl-C signal the whole job or process group, and the child may
    die first): that is an interruption to re-queue, not a failed trial."""
    died_of_signal = child.returncode in (-signal.SIGINT, -signal.SIGTERM, 130, 143)
    if not died_of_signal or should_stop is None:
        return None
    deadline = time.monotonic() + SAME_SIGNAL_WINDOW_S
    while (signum := should_stop()) is None and time.monotonic() < deadline:
        time.sleep(0.02)  # our own handler runs at the next bytecode: give it that moment
    if signum is None:
        return None
    return ("interrupted", f"interrupted by {signal.Signals(signum).name}")


def _child_env(
    env: Mapping[str, str] | None,
    sweep_id: str,
    run_id: str,
    trial_dir: Path,
    project: str | None,
    entity: str | None,
    poll_interval: float,
) -> dict[str, str]:
    child = dict(os.environ)
    child.pop("WANDB_SERVICE", None)
    child.pop("WANDB_MODE", None)
    child.update(env or {})
    child.setdefault("WANDB_MODE", "offline")
    # wandb-core flushes the run's .wandb file every 15 s (or per 32 KiB): too late to see
    # per-epoch values while the program runs, so ask for a flush every poll.
    child.setdefault(FLUSH_INTERVAL_VAR, f"{max(poll_interval, 0.2):g}")
    child.setdefault("WANDB_DIR", str(trial_dir.resolve()))
    child["WANDB_DIR"] = str(Path(child["WANDB_DIR"]).resolve())  # the child may chdir
    child["WANDB_SWEEP_ID"] = sweep_id
    child["WANDB_RUN_ID"] = run_id
    if project:
        child["WANDB_PROJECT"] = project
    if entity:
        child["WANDB_ENTITY"] = entity
    return child


def _stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return ("; stderr ends with:\n" + "\n".join("  " + line for line in tail)) if tail else ""
