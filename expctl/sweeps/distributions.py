"""Every W&B distribution as an Optuna distribution in a *latent* space plus a transform.

Optuna samples the latent value; :func:`to_value` turns it into the value W&B would have drawn.
The latent spaces are chosen so that Optuna's RandomSampler reproduces W&B's distributions
exactly, and a model-based sampler (bayes) always works in a *bounded* space:

===========================  =====================================  ================================
W&B distribution             latent Optuna distribution             value
===========================  =====================================  ================================
categorical                  Categorical(values or indices)         the value
categorical (probabilities)  Float(0, 1) = u                        inverse CDF of the probabilities
int_uniform                  Int(min, max)                          the value (max inclusive)
uniform / q_uniform          Float(min, max)                        x / round(x/q)*q
log_uniform (exponents)      Float(e^min, e^max, log)               x (q_: round(x/q)*q)
log_uniform_values           Float(min, max, log)                   x (q_: round(x/q)*q)
inv_log_uniform              Float(e^-max, e^-min, log)             x  (W&B: exp(-U), U~U(min,max))
inv_log_uniform_values       Float(min, max, log)                   x  (W&B: same in values)
normal / q_normal            Float(ε, 1-ε) = u                      mu + sigma·Φ⁻¹(u)
log_normal / q_log_normal    Float(ε, 1-ε) = u                      exp(mu + sigma·Φ⁻¹(u))
beta / q_beta                Float(ε, 1-ε) = u                      Beta(a, b).ppf(u)
===========================  =====================================  ================================

Unbounded distributions (normal, log_normal) are therefore searched by bayes on their quantile
``u``: the model sees a bounded, uniform-prior space and the tails are reachable but rare, as under
W&B's own bayes (which models the CDF of each parameter). ε = 1e-9 cuts the normal at ±6σ.
Quantised values are ints when ``q`` is an int (W&B's rule).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from expctl.sweeps.spec import Parameter

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

EPS = 1e-9
_PRIMITIVE = (str, int, float, bool, type(None))


def latent_distribution(p: Parameter) -> BaseDistribution | None:
    """The Optuna distribution sampled for ``p`` (None for constants: nothing to sample)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    d = p.distribution
    if d == "constant":
        return None
    if d == "categorical":
        return CategoricalDistribution(_categorical_choices(p))
    if d in (
        "categorical_w_probabilities",
        "normal",
        "q_normal",
        "log_normal",
        "q_log_normal",
        "beta",
        "q_beta",
    ):
        return FloatDistribution(EPS, 1.0 - EPS)
    assert p.min is not None and p.max is not None
    if d == "int_uniform":
        return IntDistribution(int(p.min), int(p.max))
    if d in ("uniform", "q_uniform"):
        return FloatDistribution(float(p.min), float(p.max))
    if d in ("log_uniform", "q_log_uniform"):
        return FloatDistribution(math.exp(p.min), math.exp(p.max), log=True)
    if d in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
        return FloatDistribution(float(p.min), float(p.max), log=True)
    if d == "inv_log_uniform":
        return FloatDistribution(math.exp(-p.max), math.exp(-p.min), log=True)
    raise ValueError(f"unknown distribution {d!r}")


def _categorical_choices(p: Parameter) -> tuple[Any, ...]:
    """The values themselves when Optuna can store them (readable), else their indices."""
    values = p.values
    if all(isinstance(v, _PRIMITIVE) for v in values) and len(set(map(_key, values))) == len(
        values
    ):
        return tuple(values)
    return tuple(range(len(values)))


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def to_value(p: Parameter, latent: Any) -> Any:
    """The W&B value for latent sample ``latent`` (plain Python types, JSON-serialisable)."""
    d = p.distribution
    if d == "constant":
        return p.value
    if d == "categorical":
        choices = _categorical_choices(p)
        if choices is p.values or choices == p.values:
            return latent
        return p.values[int(latent)]
    if d == "categorical_w_probabilities":
        return p.values[_inverse_cdf_index(p.probabilities, float(latent))]
    if d == "int_uniform":
        return int(latent)
    x = float(latent)
    if d in ("normal", "q_normal", "log_normal", "q_log_normal"):
        from scipy.special import ndtri

        assert p.mu is not None and p.sigma is not None
        x = p.mu + p.sigma * float(ndtri(x))
        if d in ("log_normal", "q_log_normal"):
            x = math.exp(x)
    elif d in ("beta", "q_beta"):
        from scipy.stats import beta

        x = float(beta.ppf(x, p.a, p.b))
    if d.startswith("q_"):
        return quantize(x, p.q if p.q is not None else 1.0)
    return x


def quantize(x: float, q: float) -> int | float:
    """W&B's ``round(x / q) * q``, an int when ``q`` is an int."""
    value = round(x / q) * q
    if isinstance(q, int) and not isinstance(q, bool):
        return int(value)
    return float(value)


def _inverse_cdf_index(probabilities: tuple[float, ...], u: float) -> int:
    cumulative = 0.0
    for i, prob in enumerate(probabilities):
        cumulative += prob
        if u < cumulative:
            return i
    # rounding: u above the last cumulative sum → the last value with a non-zero probability
    return max(i for i, prob in enumerate(probabilities) if prob > 0)
