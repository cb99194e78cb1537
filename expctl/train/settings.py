"""The trainer's view of the config: typed settings with defaults for optional sections.

Configs may lack ``seed``, ``checkpoint``, ``artifact``, ``wandb``, ``scheduler`` (the tutorial
config does). Every invalid value is reported at once, in one ConfigError.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from expctl.errors import ConfigError


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

    @classmethod
    def from_config(cfg_cls, cfg: DictConfig) -> TrainSettings:
        problems: list[tuple[str, str]] = []

        def get(key: str, default: Any = None) -> Any:
            return OmegaConf.select(cfg, key, default=default)

        def integer(key: str, default: int | None, minimum: int, nullable: bool = True) -> Any:
            value = get(key, default)
            if value is None and nullable:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                problems.append((key, f"must be an integer >= {minimum}, got {value!r}"))
                return default
            return value

        name = str(get("name", "run"))
        seed_value = get("seed")
        seed_was_set = seed_value is not None
        if seed_was_set and (isinstance(seed_value, bool) or not isinstance(seed_value, int)):
            problems.append(("seed", f"must be an integer, got {seed_value!r}"))
            seed_value = None
            seed_was_set = False
        # No seed in the config: pick one and record it, so the run can still be repeated.
        seed = int(seed_value) if seed_was_set else secrets.randbelow(2**31)

        epochs = integer("trainer.epochs", 20, 1)
        max_steps = integer("trainer.max_steps", None, 1)
        if epochs is None and max_steps is None:
            problems.append(("trainer.epochs", "set trainer.epochs or trainer.max_steps"))
        accumulate = integer("trainer.accumulate_grad_batches", 1, 1, nullable=False)
        log_every = integer("trainer.log_every_n_steps", 50, 1, nullable=False)
        grad_clip = get("trainer.grad_clip")
        if grad_clip is not None and (
            isinstance(grad_clip, bool) or not isinstance(grad_clip, int | float) or grad_clip <= 0
        ):
            problems.append(("trainer.grad_clip", f"must be a positive number, got {grad_clip!r}"))
            grad_clip = None

        monitor = str(get("checkpoint.monitor", "val_loss"))
        mode = str(get("checkpoint.mode", "min"))
        top_k = get("checkpoint.top_k", 3)
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            problems.append(("checkpoint.top_k", f"must be an integer, got {top_k!r}"))
            top_k = 3

        write_every_s = get("checkpoint.write_every_s", 30.0)
        if (
            isinstance(write_every_s, bool)
            or not isinstance(write_every_s, int | float)
            or (write_every_s < 0)
        ):
            problems.append(
                ("checkpoint.write_every_s", f"must be a number >= 0, got {write_every_s!r}")
            )
            write_every_s = 30.0

        # A config without an `artifact` section does not publish (the tutorial's case).
        publish = bool(get("artifact.publish", False)) if get("artifact") is not None else False
        artifact_name = str(get("artifact.name", f"{name}-model"))
        aliases = get("artifact.aliases", ["best"])
        if not OmegaConf.is_list(aliases) and not isinstance(aliases, list | tuple):
            problems.append(("artifact.aliases", "must be a list of alias names, e.g. [best]"))
            aliases = ["best"]
        artifact_aliases = tuple(str(a) for a in aliases)

        wandb = get("wandb")
        wandb_plain = OmegaConf.to_container(wandb, resolve=True) if wandb is not None else None
        if wandb_plain is not None and not isinstance(wandb_plain, dict):
            problems.append(("wandb", "must be a mapping (mode, project, entity, ...)"))
            wandb_plain = None

        if problems:
            if len(problems) == 1:
                key, msg = problems[0]
                raise ConfigError(msg, hint=f"fix {key} in the config or override it", where=key)
            lines = "\n".join(f"  {k}: {m}" for k, m in problems)
            raise ConfigError(
                f"{len(problems)} invalid trainer settings\n{lines}",
                hint="fix these keys in the config or override them on the command line",
            )
        return cfg_cls(
            name=name,
            seed=seed,
            seed_was_set=seed_was_set,
            device=get("trainer.device", "auto"),
            precision=get("trainer.precision", "auto"),
            num_threads=get("trainer.num_threads", "auto"),
            epochs=epochs,
            max_steps=max_steps,
            grad_clip=float(grad_clip) if grad_clip is not None else None,
            accumulate=accumulate,
            log_every=log_every,
            deterministic=bool(get("trainer.deterministic", False)),
            monitor=monitor,
            mode=mode,
            top_k=int(top_k),
            write_every_s=float(write_every_s),
            publish=publish,
            artifact_name=artifact_name,
            artifact_aliases=artifact_aliases,
            wandb=wandb_plain,  # type: ignore[arg-type]
        )
