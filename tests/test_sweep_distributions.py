"""Every W&B distribution, sampled the way the agent samples it, has W&B's support and shape.

Samples go through Optuna's RandomSampler on the latent distribution and then through
``to_value`` — exactly the agent's path. Shapes are checked with scipy's KS test (continuous) or
chi-square (discrete) on a few thousand draws with a fixed seed and a generous alpha; quantised
variants are compared with a reference sample of W&B's own formula (two-sample KS).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from expctl.sweeps.distributions import latent_distribution, to_value
from expctl.sweeps.spec import Parameter, parse_spec

N = 3000
ALPHA = 1e-3


def parameter(body: dict[str, Any]) -> Parameter:
    return parse_spec({"method": "random", "parameters": {"p": body}}).parameter("p")


def draw(p: Parameter, n: int = N, seed: int = 0) -> list[Any]:
    import optuna

    sampler = optuna.samplers.RandomSampler(seed=seed)
    dist = latent_distribution(p)
    if dist is None:
        return [to_value(p, None) for _ in range(n)]
    # RandomSampler.sample_independent only uses its RNG: no study or trial needed
    return [to_value(p, sampler.sample_independent(None, None, "p", dist)) for _ in range(n)]


CONTINUOUS = [
    (
        {"distribution": "uniform", "min": -2.0, "max": 3.0},
        lambda x: x,
        stats.uniform(-2.0, 5.0).cdf,
    ),
    (
        {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
        np.log,
        stats.uniform(-9.2, 6.9).cdf,
    ),
    (
        {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        np.log,
        stats.uniform(math.log(1e-4), math.log(1e-1) - math.log(1e-4)).cdf,
    ),
    (
        {"distribution": "inv_log_uniform", "min": 1.0, "max": 4.0},
        lambda x: -np.log(x),
        stats.uniform(1.0, 3.0).cdf,
    ),
    (
        {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 10.0},
        lambda x: -np.log(x),
        stats.uniform(-math.log(10.0), math.log(10.0) - math.log(0.01)).cdf,
    ),
    ({"distribution": "normal", "mu": 3.0, "sigma": 2.0}, lambda x: x, stats.norm(3.0, 2.0).cdf),
    ({"distribution": "normal"}, lambda x: x, stats.norm(0.0, 1.0).cdf),
    ({"distribution": "log_normal", "mu": -1.0, "sigma": 0.5}, np.log, stats.norm(-1.0, 0.5).cdf),
    ({"distribution": "beta", "a": 2.0, "b": 5.0}, lambda x: x, stats.beta(2.0, 5.0).cdf),
    ({"distribution": "beta"}, lambda x: x, stats.beta(1.0, 1.0).cdf),
]


@pytest.mark.parametrize(
    ("body", "transform", "cdf"),
    CONTINUOUS,
    ids=[c[0]["distribution"] + str(i) for i, c in enumerate(CONTINUOUS)],
)
def test_continuous_distributions_have_wandb_shape(body, transform, cdf) -> None:
    p = parameter(body)
    values = np.array(draw(p), dtype=float)
    assert np.all(np.isfinite(values))
    result = stats.kstest(transform(values), cdf)
    assert result.pvalue > ALPHA, (body, result)


@pytest.mark.parametrize(
    ("body", "low", "high"),
    [
        ({"distribution": "uniform", "min": -2.0, "max": 3.0}, -2.0, 3.0),
        ({"distribution": "log_uniform", "min": -9.2, "max": -2.3}, math.exp(-9.2), math.exp(-2.3)),
        ({"distribution": "inv_log_uniform", "min": 1.0, "max": 4.0}, math.exp(-4), math.exp(-1)),
        ({"distribution": "inv_log_uniform_values", "min": 0.01, "max": 10.0}, 0.01, 10.0),
        ({"distribution": "beta", "a": 2.0, "b": 5.0}, 0.0, 1.0),
        ({"distribution": "log_normal"}, 0.0, math.inf),
    ],
)
def test_values_stay_in_support(body, low, high) -> None:
    values = draw(parameter(body), n=1000)
    assert all(low * (1 - 1e-12) <= v <= high * (1 + 1e-12) for v in values)


def wandb_reference(body: dict[str, Any], n: int, seed: int = 12345) -> np.ndarray:
    """W&B's own formula (wandb/sweeps params.py ppf) on an independent uniform sample."""
    u = np.random.default_rng(seed).uniform(size=n)
    d, q = body["distribution"], body.get("q", 1.0)
    if d == "q_uniform":
        x = stats.uniform.ppf(u, body["min"], body["max"] - body["min"])
    elif d == "q_log_uniform":
        x = np.exp(stats.uniform.ppf(u, body["min"], body["max"] - body["min"]))
    elif d == "q_log_uniform_values":
        lo, hi = math.log(body["min"]), math.log(body["max"])
        x = np.exp(stats.uniform.ppf(u, lo, hi - lo))
    elif d == "q_normal":
        x = stats.norm.ppf(u, body.get("mu", 0.0), body.get("sigma", 1.0))
    elif d == "q_log_normal":
        x = stats.lognorm.ppf(u, s=body.get("sigma", 1.0), scale=math.exp(body.get("mu", 0.0)))
    else:
        x = stats.beta.ppf(u, body.get("a", 1.0), body.get("b", 1.0))
    return np.round(x / q) * q


QUANTISED = [
    {"distribution": "q_uniform", "min": 0.0, "max": 10.0, "q": 2},
    {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    {"distribution": "q_log_uniform", "min": 0.0, "max": 5.0, "q": 1},
    {"distribution": "q_log_uniform_values", "min": 1.0, "max": 1000.0, "q": 10},
    {"distribution": "q_normal", "mu": 0.0, "sigma": 5.0, "q": 1},
    {"distribution": "q_log_normal", "mu": 1.0, "sigma": 0.5, "q": 0.5},
    {"distribution": "q_beta", "a": 2.0, "b": 2.0, "q": 0.1},
]


@pytest.mark.parametrize("body", QUANTISED, ids=[b["distribution"] for b in QUANTISED])
def test_quantised_distributions_match_wandb(body) -> None:
    p = parameter(body)
    values = draw(p)
    q = body["q"]
    if isinstance(q, int):
        assert all(type(v) is int and v % q == 0 for v in values)
    else:
        assert all(isinstance(v, float) and abs(v / q - round(v / q)) < 1e-9 for v in values)
    result = stats.ks_2samp(np.array(values, dtype=float), wandb_reference(body, N))
    assert result.pvalue > ALPHA, (body, result)


def test_int_uniform_is_uniform_on_inclusive_range() -> None:
    values = draw(parameter({"min": 1, "max": 6}))
    assert all(type(v) is int for v in values)
    counts = np.bincount(values, minlength=7)[1:]
    assert counts.min() > 0 and len(counts) == 6
    assert stats.chisquare(counts).pvalue > ALPHA


def test_categorical_is_uniform_and_keeps_types() -> None:
    values = draw(parameter({"values": ["a", 2, 0.5, None, [1, 2]]}))
    keys = [repr(v) for v in values]
    counts = [keys.count(repr(v)) for v in ["a", 2, 0.5, None, [1, 2]]]
    assert sum(counts) == N
    assert stats.chisquare(counts).pvalue > ALPHA
    assert [1, 2] in values  # non-primitive values round-trip through their index


def test_categorical_with_probabilities() -> None:
    probabilities = [0.1, 0.2, 0.0, 0.7]
    values = draw(parameter({"values": ["a", "b", "c", "d"], "probabilities": probabilities}))
    counts = [values.count(v) for v in "abcd"]
    assert counts[2] == 0
    expected = [p * N for p in probabilities if p > 0]
    assert stats.chisquare([c for c in counts if c], expected).pvalue > ALPHA


def test_constant() -> None:
    p = parameter({"value": {"nested": [1, 2]}})
    assert latent_distribution(p) is None
    assert draw(p, n=3) == [{"nested": [1, 2]}] * 3


def test_unbounded_distributions_have_bounded_latent_spaces() -> None:
    """bayes models normal/log_normal/beta on their quantile in (0, 1): always bounded."""
    for body in (
        {"distribution": "normal", "mu": 0, "sigma": 1e6},
        {"distribution": "log_normal"},
        {"distribution": "q_normal"},
        {"distribution": "beta"},
    ):
        dist = latent_distribution(parameter(body))
        assert dist is not None and 0.0 < dist.low < dist.high < 1.0
        assert math.isfinite(to_value(parameter(body), dist.low))
        assert math.isfinite(to_value(parameter(body), dist.high))
