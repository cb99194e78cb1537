"""Build the model, data, optimizer, scheduler and loss from the config's ``_target_`` nodes.

Everything goes through ``hydra.utils.instantiate`` so configs behave as under ``@hydra.main``
(``_args_``, ``_partial_``, nested targets, ``${..[0].out_features}``). What this module adds:

* the current directory is importable, so ``_target_: mymodels.Net`` finds ``./mymodels.py``;
* every ``_target_`` of every node to be built passes ``target_policy``'s allowlist before the
  first one is imported or called;
* Hydra's exceptions become one :class:`ConfigError` naming the config path that failed
  (``model._args_.0``) with a hint (a did-you-mean for targets, the accepted parameters for
  bad keyword arguments);
* ``_convert_="all"``: targets receive plain lists/dicts, so optimizer state holds no OmegaConf
  objects and checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from expctl.config.target_policy import allowed_patterns, check_targets
from expctl.errors import ConfigError, ExpctlError, did_you_mean_hint
from expctl.train.data import DatasetPair, TensorData

DEFAULT_LOSS = {"_target_": "torch.nn.CrossEntropyLoss"}
BUILT = ("data", "model", "optim", "scheduler", "loss")  # the nodes expctl instantiates


@dataclass
class Components:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: TensorData | DatasetPair


def build_components(cfg: DictConfig, device: torch.device) -> Components:
    """Data first (the model may depend on its shape), then model → optimizer → scheduler."""
    ensure_cwd_importable()
    check_all_targets(cfg)  # a refused loss target must not follow an already-built model
    data = build_data(cfg)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    loss_fn = build_loss(cfg)
    return Components(model, optimizer, scheduler, loss_fn, data)


def check_all_targets(cfg: DictConfig) -> None:
    """Every ``_target_`` of every node that will be built passes the allowlist, before any
    of them is imported or called (``target_policy``)."""
    allowed = allowed_patterns(cfg)
    for key in BUILT:
        node = OmegaConf.select(cfg, key, default=None)
        if node is not None:
            check_targets(node, key, allowed)


def ensure_cwd_importable() -> None:
    """Put the project directory first on sys.path, as ``python train.py`` would."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def build_data(cfg: DictConfig) -> TensorData | DatasetPair:
    node = _required_node(cfg, "data", "add `data: digits` to the defaults list")
    result = instantiate_at(cfg, "data")
    if isinstance(result, TensorData | DatasetPair):
        return result
    if isinstance(result, list | tuple) and len(result) == 2:
        return DatasetPair(
            train=result[0],
            val=result[1],
            batch_size=int(node.get("batch_size", 64)),
            num_workers=int(node.get("num_workers", 0)),
        )
    raise ConfigError(
        f"data._target_ returned {type(result).__name__}, expected a (train, val) pair",
        hint="return (train_dataset, val_dataset) or an expctl.train.data.TensorData",
        where="data",
    )


def build_model(cfg: DictConfig) -> torch.nn.Module:
    _required_node(cfg, "model", "add `model: small` to the defaults list")
    model = instantiate_at(cfg, "model")
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"model._target_ built a {type(model).__name__}, not a torch.nn.Module",
            hint="point model._target_ at an nn.Module class (or a function returning one)",
            where="model",
        )
    return model


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    _required_node(cfg, "optim", "add `optim: adam` to the defaults list")
    # Always partial: the parameters only exist now, so `_partial_: true` may be omitted.
    factory = instantiate_at(cfg, "optim", _partial_=True)
    return _call("optim", factory, model.parameters(), supplied="params")


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer) -> Any | None:
    if OmegaConf.select(cfg, "scheduler", default=None) is None:
        return None
    factory = instantiate_at(cfg, "scheduler", _partial_=True)
    return _call("scheduler", factory, optimizer, supplied="optimizer")


def build_loss(cfg: DictConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if OmegaConf.select(cfg, "loss", default=None) is None:
        from hydra.utils import instantiate

        return instantiate(DEFAULT_LOSS)
    loss = instantiate_at(cfg, "loss")
    if not callable(loss):
        raise ConfigError(
            f"loss._target_ built a {type(loss).__name__}, which is not callable",
            hint="use a loss module such as torch.nn.CrossEntropyLoss",
            where="loss",
        )
    return loss


def instantiate_at(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(cfg[key])`` with Hydra's errors turned into a ConfigError at the right path."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    node = cfg[key]
    check_targets(node, key, allowed_patterns(cfg))
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        raise _translate(cfg, key, e) from e
    except ConfigError:
        raise
    except Exception as e:  # e.g. an exception raised inside user code while building
        raise ConfigError(
            f"building {key} failed: {type(e).__name__}: {e}",
            hint=f"check the arguments under {key} (rerun with --debug for the traceback)",
            where=key,
        ) from e


def _call(key: str, factory: Any, *args: Any, supplied: str = "") -> Any:
    """Call a ``_partial_`` factory with what only the trainer has (``supplied``)."""
    try:
        return factory(*args)
    except TypeError as e:
        target = getattr(factory, "func", None) or getattr(factory, "_target_", None)
        raise _bad_arguments(
            _qualname(target) or key,
            _strip_qualifier(str(e)),
            key,
            getattr(factory, "keywords", None),
            _parameters_hint(target, skip={supplied}),
        ) from e
    except Exception as e:
        raise ConfigError(
            f"building {key} failed: {type(e).__name__}: {e}",
            hint=f"check the values under {key}",
            where=key,
        ) from e


def _required_node(cfg: DictConfig, key: str, hint: str) -> Any:
    node = OmegaConf.select(cfg, key, default=None)
    if node is None:
        raise ConfigError(f"the config has no {key!r} section", hint=hint, where=key)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(
            f"{key} must be a node with a _target_",
            hint=f"e.g. {key}._target_=package.module.Class",
            where=key,
        )
    return node


# -- error translation ------------------------------------------------------------------------


_LOCATE = re.compile(r"Error locating target '([^']+)'")
_CALL = re.compile(r"Error in call to target '([^']+)'")
_FULL_KEY = re.compile(r"full_key: (\S+)")


def _translate(cfg: DictConfig, key: str, e: Exception) -> ExpctlError:
    text = str(e)
    if "is blocklisted" in text:  # Hydra's own policy: its message spans several lines
        message = " ".join(line.strip() for line in text.split("full_key:")[0].splitlines())
        m = _FULL_KEY.search(text)
        return ConfigError(
            message.strip(),
            hint="configs are code: name a class or function that builds the object",
            where=_normalize_key(cfg, m.group(1)) if m else key,
        )
    m = _FULL_KEY.search(text)
    where = _normalize_key(cfg, m.group(1)) if m else key
    located = _LOCATE.search(text)
    if located:
        target = located.group(1)
        return ConfigError(
            f"cannot import _target_ {target!r}", hint=_import_hint(target), where=where
        )
    called = _CALL.search(text)
    if called:
        target = _locate_quietly(called.group(1))
        cause = e.__cause__
        if isinstance(cause, ExpctlError):
            return cause  # our own target (e.g. expctl.train.data.digits) already said it well
        detail = _strip_qualifier(str(cause)) if cause is not None else text.splitlines()[1]
        if isinstance(cause, TypeError):
            return _bad_arguments(
                _qualname(target) or called.group(1),
                detail,
                where,
                _arguments(cfg, where),
                _parameters_hint(target),
            )
        return ConfigError(
            f"building {called.group(1)} failed: {type(cause).__name__}: {detail}",
            hint=f"check the values under {where}",
            where=where,
        )
    first = text.splitlines()[0] if text else type(e).__name__
    return ConfigError(first, hint=f"check the node at {where}", where=where)


def _normalize_key(cfg: DictConfig, full_key: str) -> str:
    """Hydra writes list items as ``_args_0``; rewrite to the dotted path ``_args_.0``."""
    node: Any = cfg
    parts: list[str] = []
    for segment in full_key.split("."):
        if isinstance(node, DictConfig) and segment in node:
            parts.append(segment)
            node = node._get_node(segment)
            continue
        m = re.fullmatch(r"(.*?)(\d+)", segment)
        if m and isinstance(node, DictConfig) and m.group(1) in node:
            child = node._get_node(m.group(1))
            if isinstance(child, ListConfig) and int(m.group(2)) < len(child):
                parts += [m.group(1), m.group(2)]
                node = child._get_node(int(m.group(2)))
                continue
        if isinstance(node, ListConfig) and segment.isdigit():
            parts.append(segment)
            node = node._get_node(int(segment))
            continue
        return full_key  # unknown shape: keep Hydra's spelling
    return ".".join(parts)


def _import_hint(target: str) -> str:
    module_name, _, attr = target.rpartition(".")
    if module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            pass
        else:
            names = [n for n in dir(module) if not n.startswith("_")]
            guess = did_you_mean_hint(attr, names, shown=lambda c: f"{module_name}.{c}")
            if guess:
                return guess.rstrip()
            return f"{module_name} has no attribute {attr!r}"
    top = target.split(".")[0]
    return (
        f"module {top!r} is not importable: install it, or put {top}.py in the project "
        f"directory ({os.getcwd()})"
    )


def _parameters_hint(target: Any, skip: set[str] | None = None) -> str:
    if target is None:
        return "check the keyword arguments in the config"
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return "check the keyword arguments against the target's documentation"
    names = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self"
        and p.name not in (skip or set())
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return f"{_qualname(target)} accepts: {', '.join(names) or '(no keyword arguments)'}"


def _locate_quietly(path: str) -> Any:
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception:
        return None


def _qualname(target: Any) -> str:
    if target is None:
        return ""
    module = getattr(target, "__module__", "") or ""
    name = str(getattr(target, "__qualname__", None) or getattr(target, "__name__", ""))
    public = module.split(".")
    # torch.nn.modules.linear.Linear → torch.nn.Linear when that is how it is exported
    for i in range(1, len(public) + 1):
        prefix = ".".join(public[:i])
        try:
            if getattr(importlib.import_module(prefix), name, None) is target:
                return f"{prefix}.{name}"
        except ImportError:
            break
    return f"{module}.{name}" if module else name


_TEXT_HINT = (
    "give a number (e.g. 0.001 or 1e-3); `key=abc` on the command line is the text 'abc', "
    "and an interpolation such as ${learning_rate} passes on whatever that key holds"
)


# Python's and torch's words for a str used where arithmetic, a comparison or a size goes
_NUMBER_GOT_TEXT = re.compile(
    r"not supported between instances of .*'str'|unsupported operand type\(s\).*'str'"
    r"|must be (?:a )?real number, not str|'str' object cannot be interpreted as an integer"
    r"|(?:element|argument) of type str"
)


def _bad_arguments(
    name: str, detail: str, where: str, arguments: Any, parameters_hint: str
) -> ConfigError:
    """A target called with arguments it refused (a TypeError): text where a number goes named
    with its key and value, else Python's message and the target's parameters."""
    text = _text_for_a_number(detail, where, arguments)
    return ConfigError(
        f"bad arguments for {name}: {text or detail}",
        hint=_TEXT_HINT if text else parameters_hint,
        where=where,
    )


def _text_for_a_number(detail: str, key: str, arguments: Any) -> str | None:
    """A TypeError that compared or added a str where a number goes (``'<=' not supported
    between instances of 'float' and 'str'``): name the arguments that hold text, with their
    values — Python's message names neither."""
    if not _NUMBER_GOT_TEXT.search(detail) or not isinstance(arguments, dict):
        return None
    from expctl.secrets import is_secret_path

    texts = [
        f"{key}.{name}={value!r}"
        for name, value in arguments.items()
        if isinstance(value, str)
        and not str(name).startswith("_")
        and not is_secret_path(f"{key}.{name}")  # a token is never the number, nor printed
    ]
    if not texts:
        return None
    if len(texts) == 1:
        return f"{texts[0]} is text where a number goes ({detail})"
    return f"text where a number goes: one of {', '.join(texts)} ({detail})"


def _arguments(cfg: DictConfig, key: str) -> dict[Any, Any] | None:
    try:
        node = OmegaConf.select(cfg, key, default=None)
        arguments = OmegaConf.to_container(node, resolve=True) if node is not None else None
    except Exception:  # an interpolation that does not resolve: the plain message then
        return None
    return arguments if isinstance(arguments, dict) else None


def _strip_qualifier(message: str) -> str:
    # "Linear.__init__() got an unexpected keyword argument 'x'" → "unexpected keyword argument 'x'"
    return re.sub(r"^[\w.]+\(\) (got an )?", "", message.strip().strip('"'))
