"""How close is expctl's training loop to a minimal hand-written PyTorch loop?

Same model (a digits MLP: default 64-256-256-10, the one in the project's perf notes; the example
config's 64-128-10 with ``--hidden 128``), data, batch size, seed, device (CPU) and one thread:

* ``plain``: the physical limit for this work — pre-shuffle the tensors once per epoch, slice
  batches, forward/backward/step, sync the summed loss every 50 steps, validate at each epoch end
  (expctl validates each epoch too, so the work is the same). No accuracy, no record, no W&B;
* ``expctl``: ``expctl.train.train(cfg)`` with everything a user gets: W&B **offline** at the
  default interval (started in the background), train/val accuracy, metrics.jsonl, top-3 +
  last.pt checkpoints, summary.json;
* ``lightning`` (``--lightning``, when importable): ``Trainer(barebones=True)``, its fastest mode
  (whole fit, as a reference).

What is compared (like with like):

* **loop** (the goal, ≥ 0.95): steps/s over the same epochs of both runs, from the end of
  epoch ``--skip`` to the end of the last epoch, each epoch's validation and end-of-epoch work
  included. The first epochs are skipped on both sides: there expctl's W&B is still starting
  (it overlaps the first steps instead of delaying them; its cost is in *whole run*);
  if W&B was not up by then, the output says so. Timestamps come from an epoch-end callback
  (expctl) and the same point of the plain loop;
* **whole run**: ``train()`` call → return against the plain loop's build + fit: one-off costs
  included (building, W&B start and finish, the final checkpoint files);
* **end of run**: from the last epoch's end (its callback) to ``train()`` returning — the final
  ``last.pt`` and top-k files, W&B's checkpoint artifact and finish, publishing to the local
  artifact store (``artifact.publish``, on as in the example config; ``--no-publish``), the
  summary, the provenance join — in milliseconds and as a share of the whole ``train()`` call.
  The goal: ≤ 10 % of a 1-second run (``--epochs 12 --skip 4`` makes runs of about 1 s here).
  ``--fresh N`` adds the same figure for N runs each in a new process (as ``expctl run`` or a
  SLURM task gets it: there W&B is still starting when a short run ends, and the end waits);

Runs alternate (plain, expctl, expctl, plain, ...) so machine noise hits both alike; ratios are
of medians, with the spread of the per-pair ratios. CPU-time rates are printed too (this
process, all its threads — wandb's service process is not counted): on a shared machine
wall-clock rates swing 2× between runs while CPU time swings less.

    python benchmarks/trainer_overhead.py                # ~1.5 min on 2 shared cores
    python benchmarks/trainer_overhead.py --hidden 128 --repeats 11
    python benchmarks/trainer_overhead.py --epochs 12 --skip 4 --repeats 5 --fresh 5  # ~1 s runs
    python benchmarks/trainer_overhead.py --epochs 12 --skip 4 --wandb disabled --logger csv
    python benchmarks/trainer_overhead.py --device cuda --precision bf16 --hidden 4096,4096
    PYTHONPATH=/tmp/lightning_pkgs python benchmarks/trainer_overhead.py --lightning

Time from `expctl run` to its first step: benchmarks/first_step.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
Clock = tuple[float, float]  # (wall, process CPU) seconds


def clock() -> Clock:
    return time.perf_counter(), time.process_time()


@dataclass
class Timed:
    """One run: clocks at the start, at each epoch end and at the end, and the steps done."""

    start: Clock
    epochs: list[Clock]
    end: Clock
    steps_per_epoch: int
    wandb_up_at: int | None = None  # first epoch end with W&B up (expctl with W&B only)

    def loop_rate(self, skip: int, index: int) -> float:
        """Steps per second (wall: index 0, CPU: 1) from the end of epoch ``skip`` on."""
        first, last = self.epochs[skip - 1], self.epochs[-1]
        steps = (len(self.epochs) - skip) * self.steps_per_epoch
        return steps / (last[index] - first[index])

    def total(self, index: int) -> float:
        return self.end[index] - self.start[index]

    def end_of_run(self, index: int = 0) -> float:
        """Seconds (wall: index 0, CPU: 1) from the last epoch's end to the return."""
        return self.end[index] - self.epochs[-1][index]


def mlp(hidden: list[int], features: int = 64) -> Any:
    import torch

    layers: list[torch.nn.Module] = []
    width = features
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))


def write_model_config(configs: Path, hidden: list[int]) -> None:
    """The same MLP as the ``model=bench`` option of a copy of the example configs."""
    lines = ["_target_: torch.nn.Sequential", "_args_:"]
    width = "${data.num_features}"
    for h in hidden:
        lines += [
            "  - _target_: torch.nn.Linear",
            f"    in_features: {width}",
            f"    out_features: {h}",
            "  - _target_: torch.nn.ReLU",
        ]
        width = str(h)
    lines += [
        "  - _target_: torch.nn.Linear",
        f"    in_features: {width}",
        "    out_features: ${data.num_classes}",
    ]
    (configs / "model" / "bench.yaml").write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Setup:
    hidden: list[int]
    epochs: int
    batch_size: int
    device: str
    precision: str  # 32 | bf16
    samples: int = 0  # > 0: synthetic data of this many samples (else the digits)
    features: int = 64  # synthetic data's input width
    ddp: bool = False  # the plain loop's model in DistributedDataParallel (1 process)

    def data(self) -> Any:
        """The same data for both loops (expctl.train.data builds the config's too)."""
        from expctl.train.data import digits, synthetic

        if self.samples:
            return synthetic(self.samples, batch_size=self.batch_size, num_features=self.features)
        return digits(batch_size=self.batch_size)

    def overrides(self) -> tuple[str, ...]:
        if not self.samples:
            return ()
        return ("data=synthetic", f"data.num_samples={self.samples}",
                f"data.num_features={self.features}")  # fmt: skip

    def shrunk(self, epochs: int) -> Setup:
        return dataclasses.replace(self, epochs=epochs)


def plain_loop(setup: Setup, seed: int) -> Timed:
    """The minimal loop: training + per-epoch validation, a host sync every 50 steps."""
    import torch

    start = clock()
    torch.manual_seed(seed)
    device = torch.device(setup.device)
    data = setup.data()
    model = mlp(setup.hidden, setup.features).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    if setup.ddp:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index or 0] if device.type == "cuda" else None
        )
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = data.train_x.to(device), data.train_y.to(device)
    vx, vy = data.val_x.to(device), data.val_y.to(device)
    bs = setup.batch_size
    autocast = _autocast(setup)
    steps, epochs = 0, []
    running = torch.zeros((), device=device)
    for _ in range(setup.epochs):
        perm = torch.randperm(len(x), device=device)
        xs, ys = x[perm], y[perm]
        for i in range(0, len(xs), bs):
            with autocast():
                loss = loss_fn(model(xs[i : i + bs]), ys[i : i + bs])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.detach()
            steps += 1
            if steps % 50 == 0:
                running.item()  # the host sync, as often as expctl logs
        with torch.no_grad(), autocast():
            model.eval()
            val = sum(loss_fn(model(vx[i : i + bs]), vy[i : i + bs]) for i in range(0, len(vx), bs))
            float(val)
            model.train()
        epochs.append(clock())
    return Timed(start, epochs, clock(), steps // setup.epochs)


def _autocast(setup: Setup) -> Callable[[], Any]:
    import torch

    if setup.precision == "bf16":
        device_type = torch.device(setup.device).type
        return lambda: torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext


@dataclass(frozen=True)
class Tracking:
    """What expctl's runs log to and publish (the example config's defaults, or as asked)."""

    wandb: str = "offline"  # offline | disabled
    logger: str = "wandb"  # the logger config group: wandb | csv | tensorboard | ...
    publish: bool = True  # artifact.publish (into a store under the benchmark's temp dir)

    def overrides(self) -> tuple[str, ...]:
        return (f"wandb.mode={self.wandb}", f"logger={self.logger}",
                f"artifact.publish={str(self.publish).lower()}")  # fmt: skip

    def label(self) -> str:
        others = "" if self.logger == "wandb" else f", logger={self.logger}"
        published = ", published" if self.publish else ""
        return f"expctl (W&B {self.wandb}{others}, record, ckpts{published})"


def expctl_overrides(setup: Setup, seed: int, tracking: Tracking) -> tuple[str, ...]:
    return (
        *setup.overrides(),
        "model=bench",
        f"trainer.epochs={setup.epochs}",
        f"data.batch_size={setup.batch_size}",
        f"seed={seed}",
        "trainer.num_threads=1",
        f"trainer.device={setup.device}",
        f"trainer.precision={setup.precision}",
        *tracking.overrides(),
    )


def expctl_loop(configs: Path, setup: Setup, seed: int, work: Path, tracking: Tracking) -> Timed:
    """expctl's train(): every record, tracking as asked; clocks from an epoch callback."""
    from expctl.config import ConfigSource, compose_config
    from expctl.train import train

    overrides = expctl_overrides(setup, seed, tracking)
    cfg = compose_config(ConfigSource(configs, "config", overrides))
    run_dir = Path(tempfile.mkdtemp(dir=work))
    epochs: list[Clock] = []
    up: list[int] = []

    def at_epoch_end(epoch: int, metrics: dict[str, float]) -> bool:
        epochs.append(clock())
        # W&B has opened its run once its log file exists (the run dir holds W&B's files)
        if not up and any(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
            up.append(epoch)
        return False

    start = clock()
    result = train(cfg, run_dir=run_dir, callbacks=[at_epoch_end])
    end = clock()
    steps = int(result.final_metrics["step"])
    return Timed(start, epochs, end, steps // setup.epochs, up[0] if up else None)


FRESH_RUN = """
import json, sys, time
from pathlib import Path
from expctl.config import ConfigSource, compose_config
from expctl.train import train
configs, run_dir, *overrides = sys.argv[1:]
cfg = compose_config(ConfigSource(Path(configs), "config", tuple(overrides)))
ends = []
def at_epoch_end(epoch, metrics):
    ends.append(time.perf_counter())
    return False
start = time.perf_counter()
train(cfg, run_dir=Path(run_dir), callbacks=[at_epoch_end])
stop = time.perf_counter()
print(json.dumps({"train_s": stop - start, "end_s": stop - ends[-1]}))
"""


def fresh_runs(configs: Path, setup: Setup, work: Path, tracking: Tracking, n: int) -> None:
    """The end of a run in a new process each time (as ``expctl run`` or a SLURM task gets it:
    W&B starts while the run trains, and the end waits for whatever of it is left)."""
    import json
    import subprocess

    ends, totals = [], []
    for seed in range(n):
        overrides = expctl_overrides(setup.shrunk(setup.epochs), seed, tracking)
        run_dir = tempfile.mkdtemp(dir=work)
        out = subprocess.run(
            [sys.executable, "-c", FRESH_RUN, str(configs), run_dir, *overrides],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout  # fmt: skip
        timed = json.loads(out.strip().splitlines()[-1])
        ends.append(timed["end_s"])
        totals.append(timed["train_s"])
    print(f"end of run, fresh process  {1000 * statistics.median(ends):.0f} ms = "
          f"{100 * statistics.median(e / t for e, t in zip(ends, totals, strict=True)):.1f} % of "
          f"train() (per-run {', '.join(f'{1000 * e:.0f}' for e in sorted(ends))} ms; train() "
          f"{statistics.median(totals):.2f} s; {n} processes)")  # fmt: skip


def lightning_fit(setup: Setup, seed: int, work: Path) -> float | None:
    """Steps/s of Lightning's fastest mode (``barebones=True``), fit time only."""
    try:
        import lightning as L
    except ImportError:
        return None
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from expctl.train.data import digits

    data = digits(batch_size=setup.batch_size)

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(setup.hidden)
            self.loss = torch.nn.CrossEntropyLoss()

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            return self.loss(self.net(x), y)

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.loss(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    L.seed_everything(seed, verbose=False)
    trainer = L.Trainer(
        max_epochs=setup.epochs,
        accelerator="cpu",
        devices=1,
        barebones=True,
        default_root_dir=str(work),
    )
    start = time.perf_counter()
    trainer.fit(
        Module(),
        DataLoader(
            TensorDataset(data.train_x, data.train_y), batch_size=setup.batch_size, shuffle=True
        ),
        DataLoader(TensorDataset(data.val_x, data.val_y), batch_size=setup.batch_size),
    )
    return trainer.global_step / (time.perf_counter() - start)


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    if len(ordered) < 3:
        return ", ".join(f"{v:.2f}" for v in ordered)
    p10 = ordered[max(0, round(0.1 * (len(ordered) - 1)))]
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"p10–p90 {p10:.2f}–{p90:.2f}"


@contextlib.contextmanager
def example_project(hidden: list[int]) -> Iterator[tuple[Path, Path]]:
    work = Path(tempfile.mkdtemp(prefix="expctl-bench-"))
    configs = work / "configs"
    shutil.copytree(REPO / "configs", configs)
    write_model_config(configs, hidden)
    os.environ.update(
        WANDB_SILENT="true", WANDB_CONSOLE="off", EXPCTL_ARTIFACTS=str(work / "store")
    )
    for name in ("WANDB_MODE", "WANDB_DIR"):  # W&B's files go into each run's directory
        os.environ.pop(name, None)
    try:
        yield configs, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(plain: list[Timed], ours: list[Timed], skip: int, label: str) -> None:
    """The loop and whole-run rows: medians, ratio, per-pair spread."""
    for what, index in (("wall clock", 0), ("CPU time  ", 1)):
        base = [p.loop_rate(skip, index) for p in plain]
        mine = [o.loop_rate(skip, index) for o in ours]
        ratios = [m / b for m, b in zip(mine, base, strict=True)]
        ratio = statistics.median(mine) / statistics.median(base)
        print(f"loop, {what}  plain {statistics.median(base):6.0f} steps/s   {label} "
              f"{statistics.median(mine):6.0f} steps/s   ratio {ratio:.2f} "
              f"(per-pair {spread(ratios)})")  # fmt: skip
    base_total = [p.total(0) for p in plain]
    mine_total = [o.total(0) for o in ours]
    ratios = [b / m for m, b in zip(mine_total, base_total, strict=True)]
    print(f"whole run, wall  plain build+fit {statistics.median(base_total):.3f} s   {label} "
          f"train() {statistics.median(mine_total):.3f} s   speed ratio "
          f"{statistics.median(base_total) / statistics.median(mine_total):.2f} "
          f"(per-pair {spread(ratios)})")  # fmt: skip
    ends = [o.end_of_run() for o in ours]
    shares = [o.end_of_run() / o.total(0) for o in ours]
    cpu = statistics.median(o.end_of_run(1) for o in ours)
    print(f"end of run, wall  last epoch's end → train() return {1000 * statistics.median(ends):.0f} ms"
          f" = {100 * statistics.median(shares):.1f} % of train() "
          f"(per-run {', '.join(f'{1000 * e:.0f}' for e in sorted(ends))} ms; "
          f"train() {statistics.median(mine_total):.2f} s); CPU {1000 * cpu:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip", type=int, default=10, help="epochs before the loop row counts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", default="256,256", help="hidden widths (default 256,256)")
    parser.add_argument("--samples", type=int, default=0, help="synthetic data (default: digits)")
    parser.add_argument("--features", type=int, default=64, help="synthetic data's input width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--wandb", default="offline", choices=["offline", "disabled"])
    parser.add_argument(
        "--logger", default="wandb", help="the logger group (csv, tensorboard, ...)"
    )
    parser.add_argument("--no-publish", action="store_true", help="artifact.publish=false")
    parser.add_argument("--fresh", type=int, default=0,
                        help="also N runs each in a new process: the end of run there")  # fmt: skip
    parser.add_argument("--ddp", action="store_true",
                        help="instead of expctl: the plain loop in DDP, 1 process (nccl on CUDA)")  # fmt: skip
    parser.add_argument("--lightning", action="store_true", help="also time Lightning")
    args = parser.parse_args()
    assert 0 < args.skip < args.epochs, "--skip must be below --epochs"
    hidden = [int(h) for h in args.hidden.split(",")]
    features = args.features if args.samples else 64
    setup = Setup(hidden, args.epochs, args.batch_size, args.device, args.precision,
                  args.samples, features)  # fmt: skip
    tracking = Tracking(args.wandb, args.logger, not args.no_publish)
    label = "plain in DDP (1 process)" if args.ddp else tracking.label()

    import torch

    torch.set_num_threads(1)  # both loops; expctl sets it too (trainer.num_threads=1)
    with example_project(hidden) as (configs, work), ddp_group(args.ddp, args.device):

        def other(run_setup: Setup, seed: int) -> Timed:
            if args.ddp:
                return plain_loop(dataclasses.replace(run_setup, ddp=True), seed)
            return expctl_loop(configs, run_setup, seed, work, tracking)

        plain_loop(setup.shrunk(2), 0)  # warm-up: imports, the first wandb.init, allocators
        other(setup.shrunk(2), 0)
        plain: list[Timed] = []
        ours: list[Timed] = []
        light: list[float] = []
        for rep in range(args.repeats):
            for name in ("plain", "other") if rep % 2 == 0 else ("other", "plain"):
                (plain if name == "plain" else ours).append(
                    plain_loop(setup, rep) if name == "plain" else other(setup, rep)
                )
            if args.lightning:
                value = lightning_fit(setup, rep, work)
                if value is not None:
                    light.append(value)
            print(f"  repeat {rep + 1}: plain {plain[-1].loop_rate(args.skip, 0):.0f} steps/s, "
                  f"{label} {ours[-1].loop_rate(args.skip, 0):.0f} steps/s", file=sys.stderr)  # fmt: skip

    shape = "-".join(str(w) for w in [features, *hidden, 10])
    data = f"synthetic {args.samples}x{features}" if args.samples else "digits"
    print(f"{data} MLP {shape}, batch {args.batch_size}, {args.epochs} epochs, {args.device}, "
          f"precision {args.precision}, 1 thread, {args.repeats} interleaved repeats; loop rows: "
          f"epochs {args.skip + 1}-{args.epochs} of both, validation included")  # fmt: skip
    late = [o.wandb_up_at for o in ours]
    uses_wandb = args.wandb != "disabled" and "wandb" in args.logger
    if not args.ddp and uses_wandb and any(u is None or u > args.skip for u in late):
        print(f"note: W&B had opened its run only by epoch {late}: raise --skip")
    report(plain, ours, args.skip, label)
    if args.fresh and not args.ddp:
        with example_project(hidden) as (configs, work):
            fresh_runs(configs, setup, work, tracking, args.fresh)
    if light:
        base = statistics.median(p.total(0) for p in plain)
        steps = plain[0].steps_per_epoch * args.epochs
        print(f"whole fit  lightning barebones {statistics.median(light):6.0f} steps/s   "
              f"plain {steps / base:6.0f} steps/s (incl. build)")  # fmt: skip
    elif args.lightning:
        print("lightning: not importable, skipped")


@contextlib.contextmanager
def ddp_group(wanted: bool, device: str) -> Iterator[None]:
    """A one-process torch.distributed group (nccl on CUDA, gloo on CPU) for ``--ddp``."""
    if not wanted:
        yield
        return
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
