"""How close is expctl's training loop to a minimal hand-written PyTorch loop?

Same model (a digits MLP: default 64-256-256-10, the one in the project's perf notes; the example
config's 64-128-10 with ``--hidden 128``), data, batch size, device (CPU) and one thread:

* ``plain``: the physical limit for this work — pre-shuffle the tensors once per epoch, slice
  batches, forward/backward/step, sync the summed loss every 50 steps, validate at each epoch end
  (expctl validates each epoch too, so the work is the same);
* ``expctl``: ``expctl.train.train(cfg)`` with W&B **offline** logging at the default interval,
  metrics.jsonl, top-3 + last.pt checkpoints. Its rate comes from the loop's own clock
  (``summary.json`` ``timings.loop_s``); W&B init and process start are excluded here and
  reported separately as the time to the first step;
* ``lightning`` (``--lightning``, when importable): ``Trainer(barebones=True)``, its fastest mode.

Runs alternate (plain, expctl, plain, ...) so machine noise hits both alike; the ratio is
median(expctl) / median(plain), with the spread of the per-pair ratios. Steps per CPU-second of
this process are printed too: on a shared machine wall-clock rates swing 2× between runs while
CPU time swings less (it excludes wandb's helper process, which the wall-clock ratio includes).

    python benchmarks/trainer_overhead.py                # ~1 min on 2 shared cores
    python benchmarks/trainer_overhead.py --hidden 128 --repeats 11 --first-step-runs 0
    PYTHONPATH=/tmp/lightning_pkgs python benchmarks/trainer_overhead.py --lightning
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
Rate = tuple[float, float]  # (steps per wall-clock second, steps per CPU second)


def mlp(hidden: list[int]) -> Any:
    import torch

    layers: list[torch.nn.Module] = []
    width = 64
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


def plain_loop(hidden: list[int], epochs: int, batch_size: int, seed: int) -> Rate:
    """The minimal loop: training + per-epoch validation, a host sync every 50 steps."""
    import torch

    from expctl.train.data import digits

    torch.manual_seed(seed)
    data = digits(batch_size=batch_size)
    model = mlp(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y, vx, vy = data.train_x, data.train_y, data.val_x, data.val_y
    steps = 0
    running = torch.zeros(())
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        xs, ys = x[perm], y[perm]
        for i in range(0, len(xs), batch_size):
            loss = loss_fn(model(xs[i : i + batch_size]), ys[i : i + batch_size])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.detach()
            steps += 1
            if steps % 50 == 0:
                running.item()  # the host sync, as often as expctl logs
        with torch.no_grad():
            model.eval()
            val = sum(
                loss_fn(model(vx[i : i + batch_size]), vy[i : i + batch_size])
                for i in range(0, len(vx), batch_size)
            )
            float(val)
            model.train()
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def expctl_loop(configs: Path, epochs: int, batch_size: int, seed: int, work: Path) -> Rate:
    """expctl's loop (offline W&B, record, checkpoints), timed by its own clock."""
    from expctl.config import ConfigSource, compose_config
    from expctl.train import train

    overrides = (
        "model=bench",
        f"trainer.epochs={epochs}",
        f"data.batch_size={batch_size}",
        f"seed={seed}",
        "trainer.num_threads=1",
        "artifact.publish=false",
        "wandb.mode=offline",
    )
    cfg = compose_config(ConfigSource(configs, "config", overrides))
    result = train(cfg, run_dir=Path(tempfile.mkdtemp(dir=work)))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    timings, steps = summary["timings"], summary["step"]
    return steps / timings["loop_s"], steps / timings["loop_cpu_s"]


def lightning_loop(
    hidden: list[int], epochs: int, batch_size: int, seed: int, work: Path
) -> float | None:
    """Steps/s of Lightning's fastest mode (``barebones=True``), fit time only."""
    try:
        import lightning as L
    except ImportError:
        return None
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from expctl.train.data import digits

    data = digits(batch_size=batch_size)

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(hidden)
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
    train_data = TensorDataset(data.train_x, data.train_y)
    val_data = TensorDataset(data.val_x, data.val_y)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        barebones=True,
        default_root_dir=str(work),
    )
    start = time.perf_counter()
    trainer.fit(
        Module(),
        DataLoader(train_data, batch_size=batch_size, shuffle=True),
        DataLoader(val_data, batch_size=batch_size),
    )
    return trainer.global_step / (time.perf_counter() - start)


def time_to_first_step(runs: int, configs: Path, work: Path) -> list[dict[str, float]]:
    """`expctl run` in a fresh process: process start → first optimizer step."""
    exe = Path(sys.executable).parent / "expctl"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "expctl"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(work), "WANDB_SILENT": "true"}
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [*command, "run", "trainer.epochs=1", "trainer.num_threads=1", "-q",
             "--config-dir", str(configs), "--runs-dir", str(work / "runs"),
             "artifact.publish=false"],
            capture_output=True, text=True, env=env, cwd=work, check=True,
        )  # fmt: skip
        summary = json.loads((Path(out.stdout.strip()) / "summary.json").read_text())
        results.append(summary["timings"])
    return results


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    if len(ordered) < 3:
        return ", ".join(f"{v:.2f}" for v in ordered)
    p10 = ordered[max(0, round(0.1 * (len(ordered) - 1)))]
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"p10–p90 {p10:.2f}–{p90:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", default="256,256", help="hidden widths (default 256,256)")
    parser.add_argument("--first-step-runs", type=int, default=3)
    parser.add_argument("--lightning", action="store_true", help="also time Lightning")
    args = parser.parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]

    import torch

    torch.set_num_threads(1)  # both loops; expctl sets it too (trainer.num_threads=1)
    work = Path(tempfile.mkdtemp(prefix="expctl-bench-"))
    configs = work / "configs"
    shutil.copytree(REPO / "configs", configs)
    write_model_config(configs, hidden)
    os.environ.update(WANDB_DIR=str(work), WANDB_SILENT="true", WANDB_CONSOLE="off")
    os.environ.pop("WANDB_MODE", None)
    # warm-up: imports, the first wandb.init, allocators
    plain_loop(hidden, 2, args.batch_size, 0)
    expctl_loop(configs, 2, args.batch_size, 0, work)

    plain: list[Rate] = []
    ours: list[Rate] = []
    light: list[float] = []
    for rep in range(args.repeats):
        for name in ("plain", "expctl") if rep % 2 == 0 else ("expctl", "plain"):
            if name == "plain":
                plain.append(plain_loop(hidden, args.epochs, args.batch_size, rep))
            else:
                ours.append(expctl_loop(configs, args.epochs, args.batch_size, rep, work))
        if args.lightning:
            value = lightning_loop(hidden, args.epochs, args.batch_size, rep, work)
            if value is not None:
                light.append(value)
        print(f"  repeat {rep + 1}: plain {plain[-1][0]:.0f} steps/s, "
              f"expctl {ours[-1][0]:.0f} steps/s", file=sys.stderr)  # fmt: skip

    shape = "-".join(str(w) for w in [64, *hidden, 10])
    print(f"digits MLP {shape}, batch {args.batch_size}, {args.epochs} epochs, cpu, 1 thread, "
          f"{args.repeats} interleaved repeats")  # fmt: skip
    for label, index in (("wall clock", 0), ("CPU time  ", 1)):
        base = statistics.median(p[index] for p in plain)
        mine = statistics.median(o[index] for o in ours)
        ratios = [o[index] / p[index] for o, p in zip(ours, plain, strict=True)]
        print(f"{label}  plain loop {base:6.0f} steps/s   expctl (W&B offline, checkpoints) "
              f"{mine:6.0f} steps/s   ratio {mine / base:.2f} (per-pair {spread(ratios)})")  # fmt: skip
    if light:
        base = statistics.median(p[0] for p in plain)
        print(f"wall clock  lightning barebones {statistics.median(light):6.0f} steps/s   "
              f"ratio {statistics.median(light) / base:.2f}")  # fmt: skip
    elif args.lightning:
        print("lightning: not importable, skipped")

    if args.first_step_runs:
        timings = time_to_first_step(args.first_step_runs, configs, work)
        process = [t["process_start_to_first_step_s"] for t in timings]
        call = [t["train_call_to_first_step_s"] for t in timings]
        print(f"`expctl run` process start → first step: median {statistics.median(process):.2f} s"
              f" ({', '.join(f'{v:.2f}' for v in process)}); of which train() → first step "
              f"{statistics.median(call):.2f} s")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
