"""The trainer's view of the config: typed settings with defaults for optional sections.

Configs may lack ``seed``, ``checkpoint``, ``artifact``, ``wandb``, ``scheduler`` (the tutorial
config does). Every invalid value is reported at once, in one ConfigError.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from expctl.errors import Problems

# The metrics the trainer logs (metrics.jsonl, W&B, checkpoint.monitor, a sweep's metric.name);
# here, not in loop.py, so `sweep create` can check a metric name without importing torch.
LOGGED_METRICS = frozenset(
    {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch", "samples_per_s"}
)


@dataclass(frozen=True)
class TrainSettings:
    name: str
    seed: int
    seed_was_set: bool
    device: Any
    precision: Any
    num_threads: Any
    epochs: int | None
    max_steps: int | None
    grad_clip: float | None
    accumulate: int
    log_every: int
    deterministic: bool
    monitor: str
    mode: str
    top_k: int
    write_every_s: float
    publish: bool
    artifact_name: str
    artifact_aliases: tuple[str, ...]  # moved to the published version (`latest` always is)
    wandb: dict[str, Any] | None
    # the chosen trackers, in order: {backend: settings} (expctl.trackers); W&B's settings are
    # `wandb` merged with logger.wandb. No `logger` node: {"wandb": wandb}.
    loggers: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrainSettings:
        """Read and check every setting; all invalid values in one ConfigError."""
        read = _Reader(cfg)
        name = str(read.get("name", "run"))
        seed, seed_was_set = read.seed()
        epochs = read.integer("trainer.epochs", 20, 1)
        max_steps = read.integer("trainer.max_steps", None, 1)
        if epochs is None and max_steps is None:
            read.problems.add("trainer.epochs", "set trainer.epochs or trainer.max_steps")
        wandb = read.wandb()
        settings = cls(
            name=name,
            seed=seed,
            seed_was_set=seed_was_set,
            device=read.get("trainer.device", "auto"),
            precision=read.get("trainer.precision", "auto"),
            num_threads=read.get("trainer.num_threads", "auto"),
            epochs=epochs,
            max_steps=max_steps,
            grad_clip=read.positive_number("trainer.grad_clip"),
            accumulate=read.integer("trainer.accumulate_grad_batches", 1, 1, nullable=False),
            log_every=read.integer("trainer.log_every_n_steps", 50, 1, nullable=False),
            deterministic=bool(read.get("trainer.deterministic", False)),
            monitor=str(read.get("checkpoint.monitor", "val_loss")),
            mode=str(read.get("checkpoint.mode", "min")),
            top_k=read.integer("checkpoint.top_k", 3, 0, nullable=False),
            write_every_s=read.non_negative("checkpoint.write_every_s", 30.0),
            # A config without an `artifact` section does not publish (the tutorial's case).
            publish=bool(read.get("artifact.publish", False))
            if read.get("artifact") is not None
            else False,
            artifact_name=str(read.get("artifact.name", f"{name}-model")),
            artifact_aliases=read.aliases(),
            wandb=wandb,
            loggers=read.loggers(wandb),
        )
        read.problems.raise_config_error(
            "invalid trainer settings",
            hint="fix these keys in the config or override them on the command line",
        )
        return settings

    # -- the budget: trainer.epochs and/or trainer.max_steps, whichever ends first -------------

    def spent(self, step: int, epoch: int) -> bool:
        """Whether a run at ``step`` with ``epoch`` epochs done has spent its budget."""
        if self.max_steps is not None and step >= self.max_steps:
            return True
        return self.epochs is not None and epoch >= self.epochs

    def budget(self) -> str:
        parts = []
        if self.epochs is not None:
            parts.append(f"{self.epochs} epochs")
        if self.max_steps is not None:
            parts.append(f"{self.max_steps} steps")
        return " / ".join(parts)

    def total_steps(self, batches_per_epoch: int) -> int | None:
        per_epoch = -(-batches_per_epoch // self.accumulate)
        by_epochs = per_epoch * self.epochs if self.epochs is not None else None
        candidates = [n for n in (by_epochs, self.max_steps) if n is not None]
        return min(candidates) if candidates else None

    def plain_config(self, cfg: DictConfig) -> dict[str, Any]:
        """``cfg`` as the record keeps it (config.yaml, checkpoints, W&B, artifacts): resolved
        plain values, secrets redacted, and the seed this run actually used."""
        from expctl.secrets import redact

        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        assert isinstance(plain, dict)
        if not self.seed_was_set:
            plain["seed"] = self.seed
        return redact(plain)


class _Reader:
    """Typed reads of optional config keys; every bad value goes to ``problems``."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.problems = Problems()

    def get(self, key: str, default: Any = None) -> Any:
        return OmegaConf.select(self.cfg, key, default=default)

    def integer(self, key: str, default: int | None, minimum: int, nullable: bool = True) -> Any:
        value = self.get(key, default)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.add(key, f"must be an integer >= {minimum}, got {value!r}")
            return default
        return value

    def positive_number(self, key: str) -> float | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.problems.add(key, f"must be a positive number, got {value!r}")
            return None
        return float(value)

    def non_negative(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.problems.add(key, f"must be a number >= 0, got {value!r}")
            return default
        return float(value)

    def seed(self) -> tuple[int, bool]:
        """The configured seed, or a fresh one (recorded, so the run can still be repeated)."""
        value = self.get("seed")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.problems.add("seed", f"must be an integer, got {value!r}")
            value = None
        if value is None:
            return secrets.randbelow(2**31), False
        return int(value), True

    def aliases(self) -> tuple[str, ...]:
        aliases = self.get("artifact.aliases", ["best"])
        if not OmegaConf.is_list(aliases) and not isinstance(aliases, list | tuple):
            self.problems.add("artifact.aliases", "must be a list of alias names, e.g. [best]")
            return ("best",)
        return tuple(str(a) for a in aliases)

    def wandb(self) -> dict[str, Any] | None:
        node = self.get("wandb")
        plain = OmegaConf.to_container(node, resolve=True) if node is not None else None
        if plain is not None and not isinstance(plain, dict):
            self.problems.add("wandb", "must be a mapping (mode, project, entity, ...)")
            return None
        return plain  # type: ignore[return-value]

    def loggers(self, wandb: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        from expctl.trackers import BACKENDS

        node = self.get("logger")
        if node is None:  # a config from before the logger group: W&B with its `wandb` node
            return {"wandb": dict(wandb or {})}
        plain = OmegaConf.to_container(node, resolve=True)
        if not isinstance(plain, dict):
            self.problems.add(
                "logger", f"must be a mapping of logger names ({', '.join(BACKENDS)}) to settings"
            )
            return {"wandb": dict(wandb or {})}
        chosen: dict[str, dict[str, Any]] = {}
        for key, value in plain.items():
            name = str(key)
            if name not in BACKENDS:
                self.problems.add(
                    f"logger.{name}", f"unknown logger; use one of {', '.join(BACKENDS)}"
                )
            elif value is not None and not isinstance(value, dict):
                self.problems.add(f"logger.{name}", "must be a mapping of the logger's settings")
            else:
                chosen[name] = dict(value or {})
        if "wandb" in chosen:
            chosen["wandb"] = {**(wandb or {}), **chosen["wandb"]}
        return chosen


def with_labels(
    settings: TrainSettings, labels: tuple[Sequence[str], str | None] | None
) -> TrainSettings:
    """``settings`` whose trackers' tags include the run's labels (``expctl run --tag``, ``runs
    tag`` before a resume) and whose notes are the run's notes when it has any."""
    if not labels:
        return settings
    tags, notes = labels

    def labelled(node: dict[str, Any]) -> dict[str, Any]:
        node = dict(node)
        node["tags"] = list(dict.fromkeys([*(node.get("tags") or []), *tags]))
        if notes:
            node["notes"] = notes
        return node

    loggers = {name: labelled(node) for name, node in settings.loggers.items()}
    wandb = labelled(settings.wandb) if settings.wandb is not None else None
    return dataclasses.replace(settings, wandb=wandb, loggers=loggers)
