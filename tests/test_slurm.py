"""The SLURM examples under a real SLURM scheduler: `sbatch`, job arrays, `scancel`, `scontrol`.

.ci/start-slurm starts a one-node cluster on loopback (Debian's slurm-wlm + munge, 2 CPUs here);
the scripts in examples/slurm are submitted unmodified. Only sbatch's own command-line options
(array size, CPUs, output files, a time limit) and the submitting environment differ from what a
user types; jobs inherit that environment (`--export=ALL`, sbatch's default).

What SLURM does, and what the tests do to the scripts:
- `scancel --signal=TERM --batch JOB` (and `--signal=B:TERM@N` before the time limit) sends
  SIGTERM to the batch shell only; the job keeps running until the script exits.
- `scancel JOB` and `scontrol requeue JOB` send SIGTERM to every process of the job, then SIGKILL
  after KillWait (30 s); a requeued job goes back to PENDING, held ~2 minutes (reason BeginTime;
  the tests release it with `scontrol update StartTime=now`), and restarts with
  SLURM_RESTART_COUNT=1.
- A batch script that exits 143 is recorded as JobState=FAILED, ExitCode=143:0 (exit code 143,
  no signal; CANCELLED, 143:0 after `scancel`); one that exits 0 as COMPLETED, 0:0. A requeued
  job's record shows its last attempt only, with Restarts=N.

Without a reachable SLURM controller the tests are skipped; CI sets EXPCTL_REQUIRE_SLURM=1 so
a missing cluster fails instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "examples" / "slurm"
TUTORIAL_PROGRAM = REPO / "examples" / "tutorial_sweep" / "train.py"
# Compared between a resumed and an uninterrupted run: everything but wall-clock throughput.
EXACT = ("step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
# States of a job that has ended (COMPLETING is not one: its processes are still being reaped).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


@functools.cache
def slurm_problem() -> str | None:
    """Why no SLURM cluster can run jobs here, or None when one can (asked once per session)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "no sbatch/scontrol on PATH"
    try:
        # `scontrol ping` answers at once; sinfo retries for ~10 s when no controller is up
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        if "UP" not in ping.stdout:
            answer = (ping.stdout + ping.stderr).strip().splitlines()
            return f"`scontrol ping`: {answer[0] if answer else ping.returncode}"
        nodes = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"scontrol/sinfo did not answer: {e}"
    unusable = ("down", "drain", "fail", "maint", "unk", "future", "reboot", "power", "inval")
    if not any(not s.startswith(unusable) for s in nodes.stdout.split()):
        return f"no node can run jobs (sinfo: {nodes.stdout.split() or nodes.stderr.strip()})"
    return None


class Slurm:
    """sbatch/scontrol/scancel for one test; every job it submitted is cancelled at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        bindir = str(Path(sys.executable).parent)  # the scripts call `expctl` from PATH
        self.env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]}
        self.jobs: list[str] = []

    def sbatch(self, script: Path, *args: str, options: tuple[str, ...] = (), **env: str) -> str:
        proc = subprocess.run(
            ["sbatch", "--parsable", f"--chdir={self.workdir}", *options, str(script), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, f"sbatch failed: {proc.stderr}"
        job = proc.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def jobs_info(self, job: str) -> list[dict[str, str]]:
        """`scontrol show job -o JOB`: one record per job (per task of an array job)."""
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, f"scontrol show job {job}: {proc.stderr}"
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in proc.stdout.splitlines() if line]

    def info(self, job: str) -> dict[str, str]:
        [record] = self.jobs_info(job)
        return record

    def scontrol(self, *args: str) -> None:
        proc = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"scontrol {' '.join(args)}: {proc.stderr}"

    def scancel(self, *args: str) -> None:
        proc = subprocess.run(["scancel", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"scancel {' '.join(args)}: {proc.stderr}"

    def signal_array_task(self, job: str, signal: str = "TERM") -> subprocess.Popen:
        """`scancel --signal=SIG --batch JOB`, in the background: see check_signalled."""
        return subprocess.Popen(
            ["scancel", "--verbose", f"--signal={signal}", "--batch", job],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def check_signalled(proc: subprocess.Popen) -> None:
        # SLURM 22.05 delivers the signal to a task of an array that still has pending tasks
        # but answers "Job can not be altered now"; scancel retries after 5 s (signalling again
        # if the task still runs) and, the task having ended meanwhile, exits 229 with "already
        # completing or completed" (printed with --verbose). That is success here: what the job
        # did with the signal is checked on its record.
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 or "already completing or completed" in err, err

    def wait_ended(self, job: str, timeout: float) -> list[dict[str, str]]:
        """Wait until the job (every task of an array) has ended; its records."""
        records = wait_for(
            lambda: (r := self.jobs_info(job)) and all(x["JobState"] in ENDED for x in r) and r,
            timeout,
            f"job {job} to end",
            lambda: self.describe(job),
        )
        return records

    def describe(self, job: str) -> str:
        keys = ("JobId", "ArrayTaskId", "JobState", "Reason", "Restarts", "ExitCode")
        lines = [" ".join(f"{k}={r[k]}" for k in keys if k in r) for r in self.jobs_info(job)]
        outputs = sorted(self.workdir.glob("slurm-*.out"))
        tails = [f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-15:]) for p in outputs]
        return "\n".join(lines + tails)

    def cancel_all(self) -> None:
        if self.jobs:
            subprocess.run(["scancel", *self.jobs], capture_output=True, timeout=30)


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
    interval: float = 0.2,
):
    """Poll until predicate() is truthy (and return it); fail with explain() after timeout."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(interval)
    return value


@pytest.fixture
def slurm(isolated: Path) -> Iterator[Slurm]:
    problem = slurm_problem()
    if problem:
        if os.environ.get("EXPCTL_REQUIRE_SLURM"):
            pytest.fail(f"EXPCTL_REQUIRE_SLURM is set but SLURM cannot run jobs: {problem}")
        pytest.skip(f"no SLURM cluster ({problem}): start one with `bash .ci/start-slurm`")
    cluster = Slurm(isolated)
    try:
        yield cluster
    finally:
        cluster.cancel_all()


# -- sweep_array.sbatch: four array tasks, one grid, one task preempted mid-trial ------------------

GRID = {"lr": [0.01, 0.03, 0.1, 0.3], "batch_size": [32, 64, 128]}  # 12 points
# Epochs of the tutorial program cost ~1 ms each: 1500 make a trial last ~2.5 s, long enough to
# signal a task while its trial surely still runs.
EPOCHS = 1500


def test_sweep_array_runs_each_grid_point_once_and_a_preempted_task_s_trial_is_rerun(
    slurm: Slurm, isolated: Path
) -> None:
    spec = {
        "program": str(TUTORIAL_PROGRAM),
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            **{name: {"values": values} for name, values in GRID.items()},
            "epochs": {"value": EPOCHS},
        },
    }
    (isolated / "sweep.yaml").write_text(yaml.safe_dump(spec))
    storage = str(isolated / "shared" / "sweeps.journal")
    env = {**slurm.env, "EXPCTL_STORAGE": storage}
    expctl = [sys.executable, "-m", "expctl"]
    created = subprocess.run(
        [*expctl, "sweep", "create", "sweep.yaml"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    sweep_id = created.stdout.strip()

    def status() -> dict:
        proc = subprocess.run(
            [*expctl, "sweep", "status", sweep_id, "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    array = slurm.sbatch(
        SLURM / "sweep_array.sbatch",
        options=(
            "--array=0-3",
            "--cpus-per-task=1",  # 2 tasks at a time on the 2-CPU node
            "--time=10",
            f"--output={isolated}/slurm-%A_%a.out",
        ),
        SWEEP_ID=sweep_id,
        EXPCTL_STORAGE=storage,
        # 4 tasks x 6: room for the 12 points and the re-run one even if the preempted task ran
        # only that, so some agent finds the grid done and marks the sweep finished
        TRIALS_PER_TASK="6",
    )

    def task_of_a_fresh_trial() -> tuple[dict, str] | None:
        """A trial that started < 1 s ago and the id of the array task whose agent runs it."""
        for trial in status()["trials"]:
            if trial["state"] != "running" or (trial["duration"] or 0) > 1.0:
                continue
            pid = (trial["agent"] or "").rpartition(":")[2]
            try:  # the agent runs on this machine (one-node cluster); SLURM set its environment
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            variables = dict(v.decode().partition("=")[::2] for v in environ if b"=" in v)
            if variables.get("SLURM_ARRAY_JOB_ID") == array:
                return trial, variables["SLURM_ARRAY_TASK_ID"]
        return None

    victim, task = wait_for(
        task_of_a_fresh_trial, 90, "an array task to start a trial", lambda: slurm.describe(array)
    )
    # What SLURM does at --signal=B:TERM@60 before the time limit: SIGTERM to the batch shell.
    signalled = slurm.signal_array_task(f"{array}_{task}")

    records = slurm.wait_ended(array, 150)
    slurm.check_signalled(signalled)
    by_task = {r["ArrayTaskId"]: r for r in records}
    assert sorted(by_task) == ["0", "1", "2", "3"], records
    output = (isolated / f"slurm-{array}_{task}.out").read_text()
    assert "preempted: the running trial was re-queued in the sweep" in output, output
    # The script exits with the agent's 143; SLURM records a non-zero exit as FAILED, 143:0.
    assert (by_task[task]["JobState"], by_task[task]["ExitCode"]) == ("FAILED", "143:0"), output
    for other, record in by_task.items():
        if other != task:
            assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), slurm.describe(
                array
            )

    final = status()
    assert final["state"] == "finished", final
    assert final["counts"] == {"complete": 12, "fail": 1}, final["counts"]
    [failed] = [t for t in final["trials"] if t["state"] == "fail"]
    assert failed["number"] == victim["number"] and failed["params"] == victim["params"]
    assert "interrupted" in (failed["message"] or ""), failed
    complete = [t for t in final["trials"] if t["state"] == "complete"]
    points = sorted((t["params"]["lr"], t["params"]["batch_size"]) for t in complete)
    assert points == sorted((lr, bs) for lr in GRID["lr"] for bs in GRID["batch_size"])
    [rerun] = [t for t in complete if t["retry_of"] is not None]
    assert rerun["retry_of"] == victim["number"] and rerun["params"] == victim["params"]
    assert rerun["agent"] != victim["agent"]  # another task ran it
    assert all(t["epochs"] == EPOCHS for t in complete)
    # each trial's provenance names the array job and the task that ran it
    tasks = set()
    for trial in complete:
        slurm_ids = provenance(Path(trial["run_dir"]))["environment"]["slurm"]
        assert slurm_ids["SLURM_ARRAY_JOB_ID"] == array, slurm_ids
        tasks.add(slurm_ids["SLURM_ARRAY_TASK_ID"])
    assert tasks <= {"0", "1", "2", "3"} and len(tasks) >= 2, tasks


# -- train.sbatch: one run survives a requeue and resumes where it stopped -------------------------

TRAIN_EPOCHS = 100  # ~5 s of training on one CPU
TRAIN_ARGS = (
    f"trainer.epochs={TRAIN_EPOCHS}",
    "trainer.device=cpu",
    "data=synthetic",
    "data.num_samples=4096",
    "artifact.publish=false",
)


class TrainJobs:
    """train.sbatch jobs of one test, submitted from the project directory."""

    def __init__(self, slurm: Slurm, project: Path):
        self.slurm, self.project = slurm, project
        self.names: dict[str, str] = {}

    def submit(self, name: str, **env: str) -> str:
        options = (
            "--cpus-per-task=1",
            "--time=10",
            "--open-mode=append",  # the output keeps both attempts of a requeued job
            f"--output={self.project}/slurm-{name}-%j.out",
        )
        job = self.slurm.sbatch(SLURM / "train.sbatch", *TRAIN_ARGS, options=options, **env)
        self.names[job] = name
        return job

    def output(self, job: str) -> str:
        return (self.project / f"slurm-{self.names[job]}-{job}.out").read_text()

    def run_dirs(self, job: str) -> list[Path]:
        runs = self.project / "runs" / f"slurm-{job}"  # the script's per-job runs dir
        return sorted(p.parent for p in runs.glob("*/*/config.yaml"))

    def wait_training(self, job: str) -> None:
        def trained_an_epoch() -> bool:
            return any(
                (d / "metrics.jsonl").is_file() and (d / "metrics.jsonl").read_text().strip()
                for d in self.run_dirs(job)
            )

        wait_for(trained_an_epoch, 90, f"job {job}'s first epoch", lambda: self.describe(job))

    def release(self, job: str) -> None:
        """Once SLURM has put the requeued job back to PENDING, skip its hold (BeginTime)."""

        def requeued() -> bool:
            info = self.slurm.info(job)
            return info["JobState"] == "PENDING" and info["Restarts"] == "1"

        wait_for(requeued, 60, f"job {job} to be requeued", lambda: self.describe(job))
        # Not at once: slurmd refuses a restart whose credential is from the same second as
        # the revocation of the last attempt's ("Job credential revoked": the job FAILS with
        # exit 1 and no output). The usual ~2-minute hold exists for that; 2 s are enough.
        time.sleep(2)
        self.slurm.scontrol("update", f"jobid={job}", "StartTime=now")

    def describe(self, job: str) -> str:
        return self.slurm.describe(job)

    def assert_resumed(self, job: str, reference: str) -> None:
        """The job restarted once, resumed its run and ended as the uninterrupted reference."""
        log = self.output(job)
        info = self.slurm.info(job)
        assert (info["JobState"], info["ExitCode"], info["Restarts"]) == (
            "COMPLETED",
            "0:0",
            "1",
        ), log
        # the first attempt saved last.pt and exited 143; the restart resumed that run
        assert "interrupted: last.pt saved" in log, log
        assert "requeued (restart 1): resuming the latest run" in log, log
        [run_dir] = self.run_dirs(job)  # the same run continued, no second run dir
        record = summary(run_dir)
        [ref_dir] = self.run_dirs(reference)
        expected = summary(ref_dir)
        assert expected["status"] == "completed", self.output(reference)
        assert expected["final_metrics"]["epoch"] == TRAIN_EPOCHS
        assert record["status"] == "completed", log
        assert 0 < record["resumed_from_step"] < expected["step"], record
        assert exact(record["final_metrics"]) == exact(expected["final_metrics"]), log
        # the record names the SLURM job, for the first attempt and for the resume
        assert provenance(run_dir)["environment"]["slurm"]["SLURM_JOB_ID"] == job
        resumed = provenance(run_dir / "resumes" / "1")["environment"]["slurm"]
        assert resumed["SLURM_JOB_ID"] == job and resumed["SLURM_JOB_NODELIST"], resumed


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def provenance(run_dir: Path) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())


def exact(metrics: dict) -> dict:
    return {k: metrics[k] for k in EXACT}


@pytest.fixture
def train_jobs(slurm: Slurm, project: Path) -> TrainJobs:
    return TrainJobs(slurm, project)


def test_train_script_requeues_itself_after_a_signal_to_its_batch_shell(
    train_jobs: TrainJobs, slurm: Slurm
) -> None:
    """--signal=B:TERM@120 before the time limit (or `scancel --signal=TERM --batch`): only the
    batch shell gets SIGTERM, the job keeps running, and the script requeues it."""
    job = train_jobs.submit("signalled")
    reference = train_jobs.submit("reference")  # runs beside it, uninterrupted
    train_jobs.wait_training(job)
    slurm.scancel("--signal=TERM", "--batch", job)
    train_jobs.release(job)
    slurm.wait_ended(job, 120)
    slurm.wait_ended(reference, 60)
    assert f"requeued job {job}" in train_jobs.output(job)
    train_jobs.assert_resumed(job, reference)


@pytest.mark.parametrize(
    "wandb_mode",
    [
        "disabled",
        "offline",  # the job-wide SIGTERM also stops W&B's service process: training goes on
    ],
)
def test_train_script_resumes_after_scontrol_requeue(
    train_jobs: TrainJobs, slurm: Slurm, wandb_mode: str
) -> None:
    """`scontrol requeue` (as preemption with PreemptMode=REQUEUE): SIGTERM to every process of
    the job, then SLURM requeues it itself; the script must not requeue it a second time."""
    job = train_jobs.submit("requeued", WANDB_MODE=wandb_mode)
    reference = train_jobs.submit("reference", WANDB_MODE=wandb_mode)
    train_jobs.wait_training(job)
    slurm.scontrol("requeue", job)
    train_jobs.release(job)
    slurm.wait_ended(job, 120)
    slurm.wait_ended(reference, 60)
    assert "requeued job" not in train_jobs.output(job)
    train_jobs.assert_resumed(job, reference)


def test_train_script_leaves_a_cancelled_job_cancelled(train_jobs: TrainJobs, slurm: Slurm) -> None:
    """`scancel JOB`: SIGTERM to every process; the user wants the job gone, so the script must
    not requeue it (it used to: a cancelled training job came back two minutes later)."""
    # expctl exits 143 (which is what makes the script consider a requeue at all)
    job = train_jobs.submit("cancelled", WANDB_MODE="offline")
    train_jobs.wait_training(job)
    slurm.scancel(job)

    def ended_or_requeued() -> dict[str, str] | None:
        info = slurm.info(job)
        return info if info["JobState"] in ENDED or info["Restarts"] != "0" else None

    info = wait_for(ended_or_requeued, 60, f"job {job} to end", lambda: slurm.describe(job))
    log = train_jobs.output(job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("CANCELLED", "143:0", "0"), (
        log
    )
    assert "interrupted: last.pt saved" in log and "requeued job" not in log, log
    [run_dir] = train_jobs.run_dirs(job)
    assert summary(run_dir)["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").is_file()


# -- expctl sweep agent --slurm N: expctl submits the agent array itself ---------------------------


def test_agents_submitted_with_slurm_run_every_grid_point_once(
    slurm: Slurm, isolated: Path
) -> None:
    spec = {
        "program": str(TUTORIAL_PROGRAM),
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            "lr": {"values": [0.01, 0.1, 0.3]},
            "batch_size": {"values": [32, 64]},
            "epochs": {"value": 2},
        },
    }
    (isolated / "sweep.yaml").write_text(yaml.safe_dump(spec))
    env = {**slurm.env, "EXPCTL_STORAGE": str(isolated / "shared" / "sweeps.journal")}
    expctl = [sys.executable, "-m", "expctl"]
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, cwd=isolated)
    sweep_id = run([*expctl, "sweep", "create", "sweep.yaml"]).stdout.strip()
    submitted = run(
        [
            *expctl,
            "sweep",
            "agent",
            sweep_id,
            "--slurm",
            "3",
            "--count",
            "4",
            "--slurm-opt",
            "cpus-per-task=1",
            "--slurm-opt",
            "time=10",
        ]
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    assert job.isdigit() and f"SLURM job {job}" in submitted.stderr
    slurm.jobs.append(job)
    records = slurm.wait_ended(job, 150)
    assert len(records) == 3 and {r["ExitCode"] for r in records} == {"0:0"}, slurm.describe(job)
    status = json.loads(run([*expctl, "sweep", "status", sweep_id, "--format", "json"]).stdout)
    points = sorted((t["params"]["lr"], t["params"]["batch_size"]) for t in status["trials"])
    assert status["counts"] == {"complete": 6}
    assert points == sorted((lr, bs) for lr in (0.01, 0.1, 0.3) for bs in (32, 64))
    (script,) = (isolated / ".expctl" / "slurm").glob(f"agents-{sweep_id}-*.sbatch")
    assert "sweeps.journal" not in script.read_text()  # the storage URL travels in the env


def test_slurm_options_are_checked_before_anything_is_submitted(cli, isolated: Path) -> None:
    (isolated / "sweep.yaml").write_text(
        "program: t.py\nmethod: grid\nparameters: {x: {values: [1]}}\n"
    )
    sweep_id = cli("sweep", "create", "sweep.yaml").stdout.strip()
    bad = cli("sweep", "agent", sweep_id, "--slurm", "2", "--slurm-opt", "array=0-9")
    assert bad.exit_code == 2 and "set by expctl" in bad.stderr
    unknown = cli("sweep", "agent", "nosuchid", "--slurm", "2")
    assert unknown.exit_code == 2 and "no sweep 'nosuchid'" in unknown.stderr


def _submit_from(workdir: Path, slurm: Slurm, isolated: Path) -> subprocess.CompletedProcess:
    """`sweep agent --slurm 1` of a one-point sweep, submitted from ``workdir``."""
    spec = {
        "program": str(TUTORIAL_PROGRAM),
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"value": 0.1}, "epochs": {"value": 1}},
    }
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(spec))
    env = {**slurm.env, "EXPCTL_STORAGE": str(isolated / "shared" / "sweeps.journal")}
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, cwd=workdir)
    expctl = [sys.executable, "-m", "expctl"]
    sweep_id = run([*expctl, "sweep", "create", "sweep.yaml"]).stdout.strip()
    return run([*expctl, "sweep", "agent", sweep_id, "--slurm", "1", "--slurm-opt", "time=10"])


def test_a_newline_in_the_working_directory_is_refused_not_run_on_the_node(
    slurm: Slurm, isolated: Path
) -> None:
    """sbatch reads `#SBATCH --output=...` itself: a newline there would end the directive and
    make the rest of the directory name a command of the batch script."""
    workdir = isolated / "runs\n$(touch PWNED)"
    workdir.mkdir()
    submitted = _submit_from(workdir, slurm, isolated)
    if submitted.returncode == 0:
        slurm.jobs.append(submitted.stdout.strip())
    assert submitted.returncode == 2, submitted.stderr
    lines = submitted.stderr.strip().splitlines()
    assert lines[0].startswith("error: cannot submit agents: the working directory"), lines
    assert "contains a newline" in lines[0] and lines[1].startswith("hint: ")
    assert submitted.stdout == "" and not (workdir / ".expctl" / "slurm").exists()
    assert not list(isolated.rglob("PWNED"))


def test_a_working_directory_with_spaces_dollars_and_percent_signs_is_quoted(
    slurm: Slurm, isolated: Path
) -> None:
    workdir = isolated / "my runs $(touch PWNED) 100%"
    workdir.mkdir()
    submitted = _submit_from(workdir, slurm, isolated)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    slurm.jobs.append(job)
    (script,) = (workdir / ".expctl" / "slurm").glob("agents-*.sbatch")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    [record] = slurm.wait_ended(job, 150)
    assert record["ExitCode"] == "0:0", slurm.describe(job)
    # the output landed where the script says, with the directory's name as it is
    (output,) = (workdir / ".expctl" / "slurm").glob(f"agents-*-{job}_0.out")
    assert "agent done" in output.read_text()
    assert not list(isolated.rglob("PWNED"))


# -- --slurm N past the cluster's MaxArraySize: several arrays, one sweep --------------------------


def array_limit_here() -> int:
    """How many tasks an array holds on the test cluster (.ci/start-slurm sets MaxArraySize=4)."""
    from expctl.sweeps.slurm import array_limit

    limit = array_limit()
    if limit > 8:  # a cluster not started by .ci/start-slurm: N = limit + 2 would be too many
        message = f"MaxArraySize={limit}: the split tests want a small one (.ci/start-slurm)"
        if os.environ.get("EXPCTL_REQUIRE_SLURM"):
            pytest.fail(message)
        pytest.skip(message)
    return limit


def test_agents_past_max_array_size_span_arrays_and_a_preempted_trial_reruns_in_the_next(
    slurm: Slurm, isolated: Path
) -> None:
    """`--slurm N` for N = MaxArraySize + 2 submits two arrays with one throttle: the first
    array's tasks are agents 0..MaxArraySize-1, the second's the next two (EXPCTL_SLURM_TASK is
    global), and the second starts once the first has ended (`--slurm-throttle 1`: one agent at
    a time, so which agent claims what is certain). A task of the first array is signalled
    mid-trial (`scancel --signal=TERM --batch`, what `--signal=B:TERM@60` does): its trial is
    re-queued once and re-run by an agent of the second array. `sweep status` names the SLURM
    job of each live agent."""
    limit = array_limit_here()
    lrs = [round(0.01 * (i + 1), 2) for i in range(limit)]  # one point per agent of array one
    spec = {
        "program": str(TUTORIAL_PROGRAM),
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"values": lrs}, "epochs": {"value": EPOCHS}},
    }
    (isolated / "sweep.yaml").write_text(yaml.safe_dump(spec))
    env = {**slurm.env, "EXPCTL_STORAGE": str(isolated / "shared" / "sweeps.journal")}
    expctl = [sys.executable, "-m", "expctl"]
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, cwd=isolated)
    sweep_id = run([*expctl, "sweep", "create", "sweep.yaml"]).stdout.strip()

    def status(*args: str) -> subprocess.CompletedProcess:
        proc = run([*expctl, "sweep", "status", sweep_id, *args])
        assert proc.returncode == 0, proc.stderr
        return proc

    def status_json() -> dict:
        return json.loads(status("--format", "json").stdout)

    # --count 1: each agent runs one trial, so the re-queued trial (queued after every grid
    # point) is left to the second array: the first array's agents take the grid's points
    agents = limit + 2
    submitted = run(
        [
            *expctl,
            "sweep",
            "agent",
            sweep_id,
            "--slurm",
            str(agents),
            "--slurm-throttle",
            "1",
            "--count",
            "1",
            "--slurm-opt",
            "cpus-per-task=1",
            "--slurm-opt",
            "time=10",
        ]
    )
    assert submitted.returncode == 0, submitted.stderr
    first, second = submitted.stdout.split()  # one job id per array, in order
    slurm.jobs += [first, second]
    assert f"agents 0-{limit - 1}\n" in submitted.stderr, submitted.stderr
    assert f"agents {limit}-{limit + 1}, after {first} ends" in submitted.stderr
    assert {r["ArrayTaskThrottle"] for r in slurm.jobs_info(second)} == {"1"}

    def first_array_trial() -> tuple[dict, str] | None:
        """A trial that started < 1 s ago in the first array, and its agent's SLURM job."""
        current = status_json()
        for trial in current["trials"]:
            if trial["state"] != "running" or (trial["duration"] or 0) > 1.0:
                continue
            job = (current["agents"].get(trial["agent"]) or {}).get("slurm") or {}
            if job.get("job", "").startswith(f"{first}_"):
                return trial, job["job"]
        return None

    victim, victim_job = wait_for(
        first_array_trial,
        90,
        "a task of the first array to start a trial",
        lambda: slurm.describe(first),
    )
    signalled = slurm.signal_array_task(victim_job)

    def agents_line() -> str | None:
        """`sweep status`'s agents line once it names a live agent's SLURM job (the agents
        run one after another, so there is always one but for the moments between two)."""
        lines = status().stdout.splitlines()
        line = next(x for x in lines if x.startswith("agents:"))
        return line if "SLURM jobs" in line else None

    line = wait_for(agents_line, 60, "status to show a live agent's SLURM job")
    assert re.search(rf"agents: \d+ alive \(.+\); SLURM jobs ({first}|{second})_", line), line

    records = slurm.wait_ended(first, 150) + slurm.wait_ended(second, 150)
    slurm.check_signalled(signalled)
    by_job = {f"{r['ArrayJobId']}_{r['ArrayTaskId']}": r for r in records}
    expected_jobs = {f"{first}_{i}" for i in range(limit)} | {f"{second}_0", f"{second}_1"}
    assert set(by_job) == expected_jobs, slurm.describe(first) + slurm.describe(second)
    assert (by_job[victim_job]["JobState"], by_job[victim_job]["ExitCode"]) == ("FAILED", "143:0")
    for job, record in by_job.items():
        if job != victim_job:
            assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), job
    # the second array started once the first had ended (afterany): never two agents at once
    ended = max(by_job[f"{first}_{i}"]["EndTime"] for i in range(limit))
    assert min(by_job[f"{second}_{i}"]["StartTime"] for i in (0, 1)) >= ended

    final = status_json()
    assert final["state"] == "finished", final
    assert final["counts"] == {"complete": limit, "fail": 1}, final["counts"]
    [failed] = [t for t in final["trials"] if t["state"] == "fail"]
    assert failed["number"] == victim["number"] and "interrupted" in (failed["message"] or "")
    complete = [t for t in final["trials"] if t["state"] == "complete"]
    assert sorted(t["params"]["lr"] for t in complete) == lrs  # every point once
    [rerun] = [t for t in complete if t["retry_of"] is not None]
    assert rerun["retry_of"] == victim["number"] and rerun["params"] == victim["params"]
    # re-run across arrays: by the second array's first task, agent number MaxArraySize
    rerun_job = final["agents"][rerun["agent"]]["slurm"]
    assert (rerun_job["job"], rerun_job["task"]) == (f"{second}_0", limit), rerun_job
    # every agent recorded its job; their numbers run 0..N-1 across the two arrays
    numbered = {a["slurm"]["task"]: a["slurm"]["job"] for a in final["agents"].values()}
    assert numbered == {
        **{i: f"{first}_{i}" for i in range(limit)},
        limit: f"{second}_0",
        limit + 1: f"{second}_1",
    }


def test_too_many_agents_for_the_cluster_s_arrays_is_refused_before_any_is_submitted(
    slurm: Slurm, isolated: Path
) -> None:
    from expctl.sweeps.slurm import MAX_ARRAYS

    limit = array_limit_here()
    (isolated / "sweep.yaml").write_text(
        "program: t.py\nmethod: grid\nparameters: {x: {values: [1]}}\n"
    )
    env = {**slurm.env, "EXPCTL_STORAGE": str(isolated / "sweeps.journal")}
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, cwd=isolated)
    expctl = [sys.executable, "-m", "expctl"]
    sweep_id = run([*expctl, "sweep", "create", "sweep.yaml"]).stdout.strip()
    tasks = limit * MAX_ARRAYS + 1
    refused = run([*expctl, "sweep", "agent", sweep_id, "--slurm", str(tasks)])
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 2, refused.stderr
    assert f"needs {MAX_ARRAYS + 1} job arrays" in lines[0] and f"at most {limit} tasks" in lines[0]
    assert lines[1].startswith("hint: ") and refused.stdout == ""
    assert not (isolated / ".expctl" / "slurm").exists()  # no script, nothing submitted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--slurm", "0"), "--slurm 0: the number of agents must be 1 or more"),
        (("--slurm", "-3"), "--slurm -3: the number of agents must be 1 or more"),
        (("--slurm", "4", "--slurm-throttle", "0"), "--slurm-throttle 0: the number of agents"),
        (("--slurm-throttle", "2"), "--slurm-throttle applies to agents submitted with --slurm"),
        (("--slurm-opt", "time=1"), "--slurm-opt applies to agents submitted with --slurm"),
    ],
)
def test_bad_agent_counts_and_throttles_are_one_line_and_a_hint(
    cli, isolated: Path, args: tuple[str, ...], message: str
) -> None:
    (isolated / "sweep.yaml").write_text(
        "program: t.py\nmethod: grid\nparameters: {x: {values: [1]}}\n"
    )
    sweep_id = cli("sweep", "create", "sweep.yaml").stdout.strip()
    bad = cli("sweep", "agent", sweep_id, *args)
    lines = bad.stderr.strip().splitlines()
    assert bad.exit_code == 2 and len(lines) == 2, bad.stderr
    assert lines[0].startswith(f"error: {message}"), lines
    assert lines[1].startswith("hint: ") and bad.stdout == ""
    assert not (isolated / ".expctl" / "slurm").exists()  # nothing written, nothing submitted


def test_array_limit_splitting_and_job_names() -> None:
    from expctl.sweeps.slurm import job_ranges, parse_array_limit, slurm_job, split_tasks

    config = "AccountingStorageType   = (null)\nMaxArraySize            = 1001\n"
    assert parse_array_limit(config) == 1001
    # SchedulerParameters' max_array_tasks caps an array's size below MaxArraySize
    capped = config + "SchedulerParameters     = bf_interval=30,max_array_tasks=200\n"
    assert parse_array_limit(capped) == 200
    assert parse_array_limit("ClusterName = x\n") == 1001  # SLURM's default
    assert split_tasks(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert split_tasks(4, 4) == [(0, 4)] and split_tasks(1, 1001) == [(0, 1)]
    assert job_ranges(["7_0", "7_1", "7_3", "12", "9_5"]) == "7_[0-1,3], 9_5, 12"
    array_task = {"SLURM_JOB_ID": "15", "SLURM_ARRAY_JOB_ID": "9", "SLURM_ARRAY_TASK_ID": "5"}
    assert slurm_job({**array_task, "EXPCTL_SLURM_TASK": "1005"}) == {
        "job": "9_5",
        "job_id": "15",
        "task": 1005,
    }
    assert slurm_job({"SLURM_JOB_ID": "15"}) == {"job": "15", "job_id": "15", "task": None}
    assert slurm_job({}) is None
