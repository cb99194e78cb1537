"""Per-trial overhead of program mode (`ProgramTrial.run`), side by side with bare wandb.

    python benchmarks/program_overhead.py [--reps 7]

Measured in one run, interleaved (the machine is shared and noisy), medians over ``--reps``:

- bare wandb:  ``python -c 'import wandb; wandb.init(mode="offline").finish()'`` (the floor any
  W&B sweep program pays per trial, with or without an agent);
- program, bare subprocess: a tiny sweep program (wandb.init, log val_loss 3 times, finish) run
  with plain ``subprocess.run`` and W&B's sweep environment written by hand;
- program via ProgramTrial.run(): the same program as an expctl trial (param file, macros, process
  group, log polling, metric read).

Overhead = time the agent adds outside the user's program: (a) trial wall − the program's own wall
time (it prints time.time() as its first and last statements; so (a) includes interpreter start),
and (b) trial wall − the bare subprocess wall of the same program (expctl's machinery alone).
W&B's own agent, for scale, polls its server every 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROGRAM = """
    import time
    start = time.time()
    import wandb
    run = wandb.init(config={"lr": 0.1})
    for epoch in range(3):
        run.log({"val_loss": run.config.lr / (epoch + 1)})
    run.finish()
    print(f"SELF {start} {time.time()}")
"""
BARE = 'import wandb; wandb.init(mode="offline").finish()'


def self_time(stdout: str) -> float:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("SELF "))
    start, end = map(float, line.split()[1:])
    return end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    from expctl.sweeps.program.runner import ProgramTrial, write_sweep_param_file

    root = Path(tempfile.mkdtemp(prefix="expctl-bench-"))
    program = root / "prog.py"
    program.write_text(textwrap.dedent(PROGRAM))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(root),
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        WANDB_DISABLE_GIT="true",
    )
    os.environ.clear()
    os.environ.update(env)

    bare, plain, plain_self, trial, trial_self = [], [], [], [], []
    for rep in range(args.reps + 1):  # rep 0 warms the page cache and is dropped
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", BARE], env=env, check=True)
        bare_s = time.perf_counter() - t

        run_id = f"plain{rep}"
        param_path = root / "wandb" / "sweep-bench" / f"config-{run_id}.yaml"
        write_sweep_param_file(param_path, {"lr": 0.1})
        plain_env = {
            **env,
            "WANDB_SWEEP_ID": "bench",
            "WANDB_RUN_ID": run_id,
            "WANDB_SWEEP_PARAM_PATH": str(param_path),
        }
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(program), "--lr=0.1"],
            env=plain_env,
            check=True,
            capture_output=True,
            text=True,
        )
        plain_s = time.perf_counter() - t

        t = time.perf_counter()
        result = ProgramTrial(
            str(program),
            None,
            {"lr": 0.1},
            metric="val_loss",
            sweep_id="bench",
            run_id=f"trial{rep}",
            trial_dir=root / f"trial{rep}",
        ).run()
        trial_s = time.perf_counter() - t
        assert result.status == "completed", result.message
        assert result.history == [0.1, 0.05, 0.1 / 3], result.history
        if rep:
            bare.append(bare_s)
            plain.append(plain_s)
            plain_self.append(self_time(done.stdout))
            trial.append(trial_s)
            trial_self.append(self_time(result.stdout_path.read_text()))

    med = statistics.median
    over_self = [w - s for w, s in zip(trial, trial_self, strict=True)]
    plain_over_self = [w - s for w, s in zip(plain, plain_self, strict=True)]
    print(f"program-mode overhead per trial, {args.reps} reps, medians (2 shared cores):")
    print(f"  bare wandb one-liner (baseline)      {med(bare):7.3f} s   1.00x")
    print(
        f"  program, bare subprocess              {med(plain):7.3f} s   "
        f"{med(plain) / med(bare):.2f}x"
    )
    print(
        f"  program via ProgramTrial.run()       {med(trial):7.3f} s   "
        f"{med(trial) / med(bare):.2f}x"
    )
    print(f"  ... the program's own wall time       {med(trial_self):7.3f} s")
    print(
        f"overhead (a) trial wall - program's own time: {med(over_self) * 1000:6.0f} ms "
        f"(bare subprocess: {med(plain_over_self) * 1000:.0f} ms; both include python start)"
    )
    print(
        f"overhead (b) trial wall - bare subprocess wall: {(med(trial) - med(plain)) * 1000:6.0f}"
        f" ms per trial  ({med(trial) / med(plain):.2f}x the bare subprocess)"
    )


if __name__ == "__main__":
    main()
