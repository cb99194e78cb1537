"""The course's training script, W&B style: nothing of expctl in it but the bundled data.

``wandb.init`` records the hyperparameters, ``wandb.log`` the per-step loss/accuracy and the
per-epoch ``val_loss``, ``wandb.log_artifact`` the trained model. Under a sweep agent (``wandb
agent`` or ``expctl sweep agent``) the sweep's values replace the defaults in ``wandb.config``.

    python train.py                                       # one run with the defaults below
    expctl sweep agent "$(expctl sweep create sweep_program.yaml)" --count 2
"""

from importlib import resources
from pathlib import Path

import numpy as np
import torch
import wandb
from torch import nn

DEFAULTS = {"learning_rate": 0.01, "batch_size": 64, "dropout": 0.2, "epochs": 5, "seed": 0}


def load_digits(seed: int):
    """The 1797 8x8 handwritten digits that ship inside expctl (no download), split 80/20."""
    with resources.files("expctl.data").joinpath("digits.npz").open("rb") as fh:
        archive = np.load(fh)
        x = torch.from_numpy(archive["images"].astype(np.float32) / 16.0)
        y = torch.from_numpy(archive["labels"].astype(np.int64))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    split = int(0.8 * len(x))
    train, val = order[:split], order[split:]
    return (x[train], y[train]), (x[val], y[val])


def main() -> None:
    run = wandb.init(project="course", config=DEFAULTS)
    config = wandb.config
    try:
        torch.manual_seed(config.seed)
        (x, y), (x_val, y_val) = load_digits(config.seed)
        model = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(128, 10)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(config.epochs):
            model.train()
            for batch in torch.randperm(len(x)).split(config.batch_size):
                logits = model(x[batch])
                loss = loss_fn(logits, y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                accuracy = (logits.argmax(1) == y[batch]).float().mean()
                wandb.log({"loss": loss.item(), "accuracy": accuracy.item()})
            model.eval()
            with torch.no_grad():
                logits = model(x_val)
                val_loss = loss_fn(logits, y_val).item()
                val_acc = (logits.argmax(1) == y_val).float().mean().item()
            wandb.log({"epoch": epoch, "val_loss": val_loss, "val_acc": val_acc})
        path = Path(run.dir) / "model.pt"
        torch.save(model.state_dict(), path)
        artifact = wandb.Artifact("course-model", type="model", metadata={"val_loss": val_loss})
        artifact.add_file(str(path))
        run.log_artifact(artifact)
    finally:
        run.finish()


if __name__ == "__main__":
    main()
