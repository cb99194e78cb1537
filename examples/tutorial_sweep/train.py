"""The tutorial's sweep exercise: an ordinary W&B sweep program (no expctl inside).

It reads ``wandb.config.lr``, ``batch_size`` and ``epochs``, trains a small softmax classifier
with mini-batch SGD on a synthetic dataset (numpy only, a few hundred milliseconds), and logs
``val_loss`` once per epoch. It runs unchanged under W&B's agent and under expctl's:

    wandb agent ENTITY/PROJECT/SWEEP_ID                       # with a W&B server
    expctl sweep agent "$(expctl sweep create configs/sweeps/tutorial_program.yaml)"
    python examples/tutorial_sweep/train.py                   # one run with the defaults
"""

import numpy as np
import wandb

DEFAULTS = {"lr": 0.01, "batch_size": 64, "epochs": 3, "seed": 0}


def make_data(seed: int, n: int = 1200, features: int = 16, classes: int = 4):
    """Gaussian blobs around random class centres: learnable, but not in one step."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(classes, features))
    labels = rng.integers(0, classes, size=n)
    x = centres[labels] + rng.normal(0.0, 1.5, size=(n, features))
    split = int(0.8 * n)
    return (x[:split], labels[:split]), (x[split:], labels[split:])


def cross_entropy(weights, bias, x, y):
    logits = x @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)  # numerically stable softmax
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(len(y)), y] + 1e-12).mean()
    return loss, probs


def train(config) -> None:
    (x_train, y_train), (x_val, y_val) = make_data(int(config.get("seed", 0)))
    classes = int(y_train.max()) + 1
    rng = np.random.default_rng(1)
    weights = np.zeros((x_train.shape[1], classes))
    bias = np.zeros(classes)
    lr, batch_size = float(config.lr), int(config.batch_size)
    for epoch in range(int(config.epochs)):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            _, probs = cross_entropy(weights, bias, x_train[idx], y_train[idx])
            probs[np.arange(len(idx)), y_train[idx]] -= 1.0  # d(loss)/d(logits)
            weights -= lr * x_train[idx].T @ probs / len(idx)
            bias -= lr * probs.mean(axis=0)
        val_loss, val_probs = cross_entropy(weights, bias, x_val, y_val)
        val_acc = float((val_probs.argmax(axis=1) == y_val).mean())
        wandb.log({"epoch": epoch, "val_loss": float(val_loss), "val_acc": val_acc})


def main() -> None:
    # Under a sweep agent the sweep's values replace these defaults in wandb.config.
    run = wandb.init(config=DEFAULTS)
    try:
        train(wandb.config)
    finally:
        run.finish()


if __name__ == "__main__":
    main()
