"""A Hydra ``@hydra.main`` program that logs to W&B: the shape most Hydra users' sweeps have.

Run as a W&B sweep program with the ``${args_no_hyphens}`` macro, so each sweep parameter arrives
as a Hydra override (``optim.lr=0.05``); see ``sweep.yaml`` beside this file:

    expctl sweep agent "$(expctl sweep create examples/hydra_program/sweep.yaml)"
    python examples/hydra_program/train.py optim.lr=0.05 model.hidden=32   # one run
"""

import hydra
import numpy as np
import wandb
from omegaconf import DictConfig, OmegaConf


def make_data(seed: int, n: int = 800):
    """A noisy 1-D regression problem that a one-hidden-layer tanh network can fit."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=(n, 1))
    y = np.sin(2.0 * x) + 0.1 * rng.normal(size=(n, 1))
    split = int(0.8 * n)
    return (x[:split], y[:split]), (x[split:], y[split:])


def train(cfg: DictConfig) -> None:
    (x, y), (x_val, y_val) = make_data(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = {
        "w1": rng.normal(0.0, 1.0, size=(1, cfg.model.hidden)),
        "b1": np.zeros(cfg.model.hidden),
        "w2": rng.normal(0.0, 1.0 / np.sqrt(cfg.model.hidden), size=(cfg.model.hidden, 1)),
        "b2": np.zeros(1),
    }
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    for epoch in range(cfg.epochs):
        for start in range(0, len(x), 32):
            xb, yb = x[start : start + 32], y[start : start + 32]
            hidden = np.tanh(xb @ params["w1"] + params["b1"])
            error = hidden @ params["w2"] + params["b2"] - yb  # d(mse/2)/d(prediction)
            d_hidden = (error @ params["w2"].T) * (1.0 - hidden**2)
            grads = {
                "w2": hidden.T @ error / len(xb),
                "b2": error.mean(axis=0),
                "w1": xb.T @ d_hidden / len(xb),
                "b1": d_hidden.mean(axis=0),
            }
            for k in params:
                velocity[k] = cfg.optim.momentum * velocity[k] - cfg.optim.lr * grads[k]
                params[k] += velocity[k]
        prediction = np.tanh(x_val @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
        wandb.log({"epoch": epoch, "val_loss": float(((prediction - y_val) ** 2).mean())})


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run = wandb.init(config=OmegaConf.to_container(cfg, resolve=True))
    try:
        train(cfg)
    finally:
        run.finish()


if __name__ == "__main__":
    main()
