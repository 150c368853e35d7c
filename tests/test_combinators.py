"""Generic tests for the combinators, driven by one table of combinator instances.

Each row builds a combinator (often nested) and gives an independent float64
oracle for its log density / mass, built from scipy.stats / statsmodels / quadrature,
never from likelax. The same checks as for the families run over every row:
oracle, float32 and 16-bit, normalisation, check_grads (order 2), jit ≡ eager, vmap
over stacked hyperparameters, no retrace, loss convention, sampling, cdf, where-mask
isolation, NaN propagation, invalid hyperparameters, passing through plain `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logit
from jax.test_util import check_grads
from scipy import integrate, special, stats
from statsmodels.discrete.count_model import (
    ZeroInflatedNegativeBinomialP,
    ZeroInflatedPoisson,
)

import likelax as llx

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)


@dataclasses.dataclass(frozen=True)
class Row:
    """One combinator instance with its independent oracle.

    - `make`: builds the noise model (float64 hyperparameters).
    - `logp`: `(x, x_hat) -> log density/mass`, float64 numpy, independent of likelax.
    - `data`: `rng -> (x, x_hat)` valid observations and model outputs.
    - `mass`: `(noise, x_hat row) -> total probability` by quadrature / summation
      (plus atoms), which must be 1.
    - `cdf`: oracle `(x, x_hat) -> P(X <= x)`, or None when the model has no cdf.
    - `sample`: whether `sample` exists (checked against `cdf` by KS / chi-square).
    - `discrete`: a mass on the integers.
    - `stack`: builds a second instance with the same structure and other
      hyperparameter values (for vmap and retracing), None when there are none.
    - `tier`: "light" rows run the oracle, normalisation, loss, cdf and NaN checks;
      "core" rows also gradients (order 1), transformations, sampling, masks and
      invalid hyperparameters; "full" rows check gradients to order 2 (the suite
      must stay fast: every row x test is a compilation).
    - `atoms`: point masses of a continuous model (censoring points, inflated zero).
    """

    id: str
    make: Callable[[], Any]
    logp: Callable[[np.ndarray, np.ndarray], np.ndarray]
    data: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    mass: Callable[[Any, np.ndarray], float]
    cdf: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    stack: Callable[[], Any] | None
    tier: str = "core"
    sample: bool = True
    discrete: bool = False
    atoms: tuple[float, ...] = ()


def _softplus(t):
    return np.logaddexp(t, 0.0)


def _quad(noise, xh, lo, hi, atoms=(), split=(0.0,)):
    """∫ exp(-nll) over (lo, hi) (split at `split`) plus exp(-nll) at the atoms."""
    f = jax.jit(lambda t: jnp.exp(-noise.nll(t, xh)))
    pts = [lo, *[s for s in split if lo < s < hi], hi]
    total = 0.0
    for a, b in itertools.pairwise(pts):
        total += integrate.quad(
            lambda t: float(f(t)), a, b, epsabs=1e-13, epsrel=1e-12, limit=500
        )[0]
    for a in atoms:
        total += float(f(a))
    return total


def _sum(noise, xh, lo, hi):
    ks = jnp.arange(lo, hi + 1, dtype=jnp.float64)
    return float(jnp.sum(jnp.exp(-noise.nll(ks, xh))))


def _lse(*terms):
    return special.logsumexp(np.stack(np.broadcast_arrays(*terms)), axis=0)


# ------------------------------------------------------------------ the rows

W3 = np.array([0.2, 0.5, 0.3])


def _mix3(third=None):
    third = llx.Cauchy(0.5) if third is None else third
    return llx.mixture([llx.Gaussian(1.0), llx.Laplace(2.0), third], W3)


def _mix3_b():
    comps = [llx.Gaussian(0.5), llx.Laplace(1.0), llx.Cauchy(1.5)]
    return llx.mixture(comps, [0.6, 0.1, 0.3])


def _mix3_logp(x, xh, third=None):
    third = stats.cauchy(xh, 0.5) if third is None else third
    return _lse(
        np.log(W3[0]) + stats.norm(xh, 1.0).logpdf(x),
        np.log(W3[1]) + stats.laplace(xh, 2.0).logpdf(x),
        np.log(W3[2]) + third.logpdf(x),
    )


def _mix3_cdf(x, xh, third=None):
    third = stats.cauchy(xh, 0.5) if third is None else third
    return (
        W3[0] * stats.norm(xh, 1.0).cdf(x)
        + W3[1] * stats.laplace(xh, 2.0).cdf(x)
        + W3[2] * third.cdf(x)
    )


def _real_data(rng):
    xh = rng.normal(0.0, 2.0, 12)
    return xh + rng.standard_t(3.0, 12) * 2.0, xh


S_STACK = np.array([0.5, 1.0, 3.0])
W_STACK = np.array([0.5, 0.3, 0.2])


def _stacked():
    return llx.mixture(llx.Gaussian(S_STACK), W_STACK)


def _stacked_logp(x, xh):
    return _lse(
        *[
            np.log(w) + stats.norm(xh, s).logpdf(x)
            for w, s in zip(W_STACK, S_STACK, strict=True)
        ]
    )


def _stacked_cdf(x, xh):
    return sum(w * stats.norm(xh, s).cdf(x) for w, s in zip(W_STACK, S_STACK, strict=True))


K_BIG = 34  # beyond the unrolled range: scanned in chunks
S_BIG = np.geomspace(0.3, 30.0, K_BIG)
W_BIG = np.arange(1.0, K_BIG + 1) / np.arange(1.0, K_BIG + 1).sum()


def _big():
    return llx.mixture(llx.Cauchy(S_BIG), W_BIG)


def _big_logp(x, xh):
    return _lse(
        *[
            np.log(w) + stats.cauchy(xh, s).logpdf(x)
            for w, s in zip(W_BIG, S_BIG, strict=True)
        ]
    )


def _big_cdf(x, xh):
    return sum(w * stats.cauchy(xh, s).cdf(x) for w, s in zip(W_BIG, S_BIG, strict=True))


S_TEN = np.linspace(0.2, 5.0, 10)


def _laplace_ten():
    return llx.mixture(llx.Laplace(S_TEN))


def _laplace_ten_logp(x, xh):
    return _lse(*[np.log(0.1) + stats.laplace(xh, s).logpdf(x) for s in S_TEN])


def _laplace_ten_cdf(x, xh):
    return sum(0.1 * stats.laplace(xh, s).cdf(x) for s in S_TEN)


def _normal_gamma():
    return llx.mixture([llx.Gaussian(1.5), llx.Gamma(3.0)], [0.4, 0.6])


def _normal_gamma_logp(x, xh):
    k = 3.0
    gam = np.where(x > 0, stats.gamma(k, scale=np.exp(xh) / k).logpdf(np.abs(x)), -np.inf)
    return _lse(np.log(0.4) + stats.norm(xh, 1.5).logpdf(x), np.log(0.6) + gam)


def _normal_gamma_cdf(x, xh):
    k = 3.0
    return 0.4 * stats.norm(xh, 1.5).cdf(x) + 0.6 * stats.gamma(
        k, scale=np.exp(xh) / k
    ).cdf(x)


def _normal_gamma_data(rng):
    xh = rng.uniform(0.0, 1.5, 12)
    return rng.normal(1.0, 2.0, 12), xh


PI = 0.3


def _zip():
    return llx.zero_inflated(llx.Poisson(), PI)


def _zip_logp(x, xh):
    model = ZeroInflatedPoisson(
        x, np.ones((len(x), 1)), exog_infl=np.ones((len(x), 1)), offset=xh
    )
    return model.loglikeobs(np.array([special.logit(PI), 0.0]))


def _zip_cdf(x, xh):
    return PI * (x >= 0) + (1 - PI) * stats.poisson(np.exp(xh)).cdf(x)


def _count_data(rng):
    xh = rng.normal(0.5, 0.7, 12)
    x = rng.poisson(np.exp(xh)) * (rng.uniform(size=12) > 0.3)
    return x.astype(float), xh


R_NB = 2.5


def _zinb():
    return llx.zero_inflated(llx.NegativeBinomial(R_NB), 0.2)


def _zinb_logp(x, xh):
    model = ZeroInflatedNegativeBinomialP(
        x, np.ones((len(x), 1)), exog_infl=np.ones((len(x), 1)), offset=xh, p=2
    )
    return model.loglikeobs(np.array([special.logit(0.2), 0.0, 1.0 / R_NB]))


def _zinb_cdf(x, xh):
    mu = np.exp(xh)
    return 0.2 * (x >= 0) + 0.8 * stats.nbinom(R_NB, R_NB / (R_NB + mu)).cdf(x)


def _zi_gamma():
    return llx.zero_inflated(llx.Gamma(2.0), 0.25)


def _zi_gamma_logp(x, xh):
    gam = stats.gamma(2.0, scale=np.exp(xh) / 2.0).logpdf(np.where(x > 0, x, 1.0))
    return np.where(x == 0, np.log(0.25), np.log(0.75) + gam)


def _zi_gamma_cdf(x, xh):
    return 0.25 * (x >= 0) + 0.75 * stats.gamma(2.0, scale=np.exp(xh) / 2.0).cdf(x)


def _zi_gamma_data(rng):
    xh = rng.normal(0.0, 0.5, 12)
    x = rng.gamma(2.0, np.exp(xh) / 2.0) * (rng.uniform(size=12) > 0.3)
    return x, xh


def _poisson_identity():
    return llx.reparam(llx.Poisson(), jnp.log)


def _rate_data(rng):
    mu = rng.uniform(0.2, 6.0, 12)
    return rng.poisson(mu).astype(float), mu


def _bern_prob():
    return llx.reparam(llx.Bernoulli(), logit)


def _prob_data(rng):
    p = rng.uniform(0.05, 0.95, 12)
    return (rng.uniform(size=12) < p).astype(float), p


def _gauss_exp():
    return llx.reparam(llx.Gaussian(0.8), jnp.exp)


def _het(noise):
    return llx.heteroscedastic(noise)


def _het_data(rng):
    loc = rng.normal(0.0, 2.0, 12)
    raw = rng.normal(0.0, 1.5, 12)
    x = loc + _softplus(raw) * rng.standard_t(5.0, 12)
    return x, np.stack([loc, raw], axis=-1)


def _het_logp(dist):
    return lambda x, xh: dist(xh[..., 0], _softplus(xh[..., 1])).logpdf(x)


def _het_cdf(dist):
    return lambda x, xh: dist(xh[..., 0], _softplus(xh[..., 1])).cdf(x)


def _lognormal():
    return llx.transform(llx.Gaussian(0.7), jnp.log)


def _positive_data(rng):
    xh = rng.normal(0.0, 1.0, 12)
    return np.exp(xh + 0.7 * rng.normal(size=12)), xh


def _arcsinh(v):
    return jnp.arcsinh(v)  # not the known `jnp.arcsinh`: autodiff log-Jacobian


def _johnson():
    return llx.transform(llx.Gaussian(0.6), _arcsinh, inverse=jnp.sinh)


def _johnson_logp(x, xh):
    return stats.johnsonsu(-xh / 0.6, 1 / 0.6).logpdf(x)


def _johnson_cdf(x, xh):
    return stats.johnsonsu(-xh / 0.6, 1 / 0.6).cdf(x)


LO, HI = -1.0, 2.0


def _tobit():
    return llx.censored(llx.Gaussian(1.5), lower=LO, upper=HI)


def _tobit_logp(x, xh):
    d = stats.norm(xh, 1.5)
    inside = np.where(x == LO, d.logcdf(LO), np.where(x == HI, d.logsf(HI), d.logpdf(x)))
    return np.where((x < LO) | (x > HI), -np.inf, inside)


def _tobit_cdf(x, xh):
    return np.where(x >= HI, 1.0, stats.norm(xh, 1.5).cdf(x))


def _tobit_data(rng):
    xh = rng.normal(0.5, 1.5, 12)
    return np.clip(xh + 1.5 * rng.normal(size=12), LO, HI), xh


def _censored_poisson():
    return llx.censored(llx.Poisson(), upper=4.0)


def _censored_poisson_logp(x, xh):
    d = stats.poisson(np.exp(xh))
    return np.where(x > 4.0, -np.inf, np.where(x == 4.0, d.logsf(3.0), d.logpmf(x)))


def _censored_poisson_cdf(x, xh):
    return np.where(x >= 4.0, 1.0, stats.poisson(np.exp(xh)).cdf(x))


def _censored_count_data(rng):
    xh = rng.normal(0.8, 0.5, 12)
    return np.minimum(rng.poisson(np.exp(xh)), 4).astype(float), xh


def _logcosh(r):
    return jnp.logaddexp(r, -r) - jnp.log(2.0)


@functools.cache
def _from_logcosh():
    return llx.from_loss(_logcosh, 0.7)


def _switch():
    return llx.switch([llx.Gaussian(1.0), llx.Laplace(1.0), llx.Cauchy(0.8)], 2)


def _switch_b():
    return llx.switch([llx.Gaussian(2.0), llx.Laplace(0.5), llx.Cauchy(1.3)], 2)


def _mix_transformed():
    """A mixture of transformed models: log-normal and log-Laplace."""
    return llx.mixture(
        [
            llx.transform(llx.Gaussian(0.5), jnp.log),
            llx.transform(llx.Laplace(0.3), jnp.log),
        ],
        [0.7, 0.3],
    )


def _mix_transformed_logp(x, xh):
    lx = np.log(x)
    return _lse(
        np.log(0.7) + stats.norm(xh, 0.5).logpdf(lx) - lx,
        np.log(0.3) + stats.laplace(xh, 0.3).logpdf(lx) - lx,
    )


def _mix_transformed_cdf(x, xh):
    lx = np.log(x)
    return 0.7 * stats.norm(xh, 0.5).cdf(lx) + 0.3 * stats.laplace(xh, 0.3).cdf(lx)


def _censored_het():
    """A censored heteroscedastic model (Tobit with a predicted scale)."""
    return llx.censored(llx.heteroscedastic(llx.Gaussian()), lower=0.0)


def _censored_het_logp(x, xh):
    d = stats.norm(xh[..., 0], _softplus(xh[..., 1]))
    return np.where(x == 0.0, d.logcdf(0.0), d.logpdf(x))


def _censored_het_cdf(x, xh):
    return stats.norm(xh[..., 0], _softplus(xh[..., 1])).cdf(x) * (x >= 0)


def _censored_het_data(rng):
    x, xh = _het_data(rng)
    return np.maximum(x, 0.0), xh


def _het_mass(noise, xh):
    return _quad(noise, xh, -np.inf, np.inf, split=(float(xh[0]),))


ROWS = [
    Row(
        "mixture-gauss-laplace-cauchy",
        _mix3,
        _mix3_logp,
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        _mix3_cdf,
        _mix3_b,
        tier="full",
    ),
    Row(
        "mixture-gauss-laplace-t",
        lambda: _mix3(llx.StudentT(4.0, 0.5)),
        lambda x, xh: _mix3_logp(x, xh, stats.t(4.0, xh, 0.5)),
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        lambda x, xh: _mix3_cdf(x, xh, stats.t(4.0, xh, 0.5)),
        None,
        tier="light",
    ),
    Row(
        "mixture-stacked-gauss",
        _stacked,
        _stacked_logp,
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        _stacked_cdf,
        lambda: llx.mixture(llx.Gaussian([2.0, 0.3, 1.0]), [0.1, 0.1, 0.8]),
        tier="core",
    ),
    Row(
        "mixture-stacked-cauchy-k34",
        _big,
        _big_logp,
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        _big_cdf,
        lambda: llx.mixture(llx.Cauchy(S_BIG[::-1]), W_BIG[::-1]),
        tier="light",
    ),
    Row(
        "mixture-stacked-laplace-k10",
        _laplace_ten,
        _laplace_ten_logp,
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        _laplace_ten_cdf,
        lambda: llx.mixture(llx.Laplace(S_TEN[::-1] * 2), np.arange(1.0, 11.0)),
        tier="core",
    ),
    Row(
        "mixture-normal-gamma",
        _normal_gamma,
        _normal_gamma_logp,
        _normal_gamma_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf),
        _normal_gamma_cdf,
        lambda: llx.mixture([llx.Gaussian(0.5), llx.Gamma(1.5)], [0.9, 0.1]),
        tier="core",
    ),
    Row(
        "mixture-of-transformed",
        _mix_transformed,
        _mix_transformed_logp,
        _positive_data,
        lambda n, xh: _quad(n, xh, 0.0, np.inf, split=(float(np.exp(xh)),)),
        _mix_transformed_cdf,
        lambda: llx.mixture(
            [
                llx.transform(llx.Gaussian(1.5), jnp.log),
                llx.transform(llx.Laplace(0.8), jnp.log),
            ],
            [0.2, 0.8],
        ),
        tier="core",
    ),
    Row(
        "zero-inflated-poisson",
        _zip,
        _zip_logp,
        _count_data,
        lambda n, xh: _sum(n, xh, 0, 80),
        _zip_cdf,
        lambda: llx.zero_inflated(llx.Poisson(), 0.05),
        discrete=True,
        tier="full",
    ),
    Row(
        "zero-inflated-negbin",
        _zinb,
        _zinb_logp,
        _count_data,
        lambda n, xh: _sum(n, xh, 0, 400),
        _zinb_cdf,
        lambda: llx.zero_inflated(llx.NegativeBinomial(0.7), 0.6),
        discrete=True,
        tier="light",
    ),
    Row(
        "zero-inflated-gamma",
        _zi_gamma,
        _zi_gamma_logp,
        _zi_gamma_data,
        lambda n, xh: _quad(n, xh, 0.0, np.inf, atoms=(0.0,), split=(1.0,)),
        _zi_gamma_cdf,
        lambda: llx.zero_inflated(llx.Gamma(0.7), 0.6),
        atoms=(0.0,),
        tier="core",
    ),
    Row(
        "reparam-poisson-identity",
        _poisson_identity,
        lambda x, mu: stats.poisson(mu).logpmf(x),
        _rate_data,
        lambda n, xh: _sum(n, xh, 0, 80),
        lambda x, mu: stats.poisson(mu).cdf(x),
        None,
        discrete=True,
        tier="full",
    ),
    Row(
        "reparam-bernoulli-probability",
        _bern_prob,
        lambda x, p: stats.bernoulli(p).logpmf(x),
        _prob_data,
        lambda n, xh: _sum(n, xh, 0, 1),
        lambda x, p: stats.bernoulli(p).cdf(x),
        None,
        discrete=True,
        tier="light",
    ),
    Row(
        "reparam-gaussian-exp",
        _gauss_exp,
        lambda x, z: stats.norm(np.exp(z), 0.8).logpdf(x),
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(np.exp(xh)),)),
        lambda x, z: stats.norm(np.exp(z), 0.8).cdf(x),
        lambda: llx.reparam(llx.Gaussian(2.0), jnp.exp),
        tier="light",
    ),
    Row(
        "heteroscedastic-gaussian",
        lambda: _het(llx.Gaussian()),
        _het_logp(lambda m, s: stats.norm(m, s)),
        _het_data,
        _het_mass,
        _het_cdf(lambda m, s: stats.norm(m, s)),
        lambda: _het(llx.Gaussian(2.0)),
        tier="full",
    ),
    Row(
        "heteroscedastic-studentt",
        lambda: _het(llx.StudentT(3.5)),
        _het_logp(lambda m, s: stats.t(3.5, m, s)),
        _het_data,
        _het_mass,
        _het_cdf(lambda m, s: stats.t(3.5, m, s)),
        lambda: _het(llx.StudentT(9.0)),
        tier="light",
    ),
    Row(
        "heteroscedastic-laplace",
        lambda: _het(llx.Laplace()),
        _het_logp(lambda m, s: stats.laplace(m, s)),
        _het_data,
        _het_mass,
        _het_cdf(lambda m, s: stats.laplace(m, s)),
        lambda: _het(llx.Laplace(0.5)),
        tier="light",
    ),
    Row(
        "transform-lognormal",
        _lognormal,
        lambda x, xh: stats.lognorm(0.7, scale=np.exp(xh)).logpdf(x),
        _positive_data,
        lambda n, xh: _quad(n, xh, 0.0, np.inf, split=(float(np.exp(xh)),)),
        lambda x, xh: stats.lognorm(0.7, scale=np.exp(xh)).cdf(x),
        lambda: llx.transform(llx.Gaussian(1.3), jnp.log),
        tier="core",
    ),
    Row(
        "transform-johnson-su-autodiff",
        _johnson,
        _johnson_logp,
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(np.sinh(xh)),)),
        _johnson_cdf,
        lambda: llx.transform(llx.Gaussian(1.1), _arcsinh, inverse=jnp.sinh),
        tier="full",
    ),
    Row(
        "censored-tobit-gaussian",
        _tobit,
        _tobit_logp,
        _tobit_data,
        lambda n, xh: _quad(n, xh, LO, HI, atoms=(LO, HI)),
        _tobit_cdf,
        lambda: llx.censored(llx.Gaussian(0.4), lower=LO, upper=HI),
        atoms=(LO, HI),
        tier="full",
    ),
    Row(
        "censored-poisson",
        _censored_poisson,
        _censored_poisson_logp,
        _censored_count_data,
        lambda n, xh: _sum(n, xh, 0, 4),
        _censored_poisson_cdf,
        lambda: llx.censored(llx.Poisson(), upper=3.0),
        discrete=True,
        tier="light",
    ),
    Row(
        "censored-heteroscedastic",
        _censored_het,
        _censored_het_logp,
        _censored_het_data,
        lambda n, xh: _quad(
            n, xh, 0.0, np.inf, atoms=(0.0,), split=(max(float(xh[0]), 1.0),)
        ),
        _censored_het_cdf,
        lambda: llx.censored(llx.heteroscedastic(llx.Gaussian(3.0)), lower=0.0),
        atoms=(0.0,),
        tier="core",
    ),
    Row(
        "from-loss-logcosh",
        _from_logcosh,
        lambda x, xh: stats.hypsecant(xh, 0.7).logpdf(x),
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        None,
        lambda: eqx.tree_at(
            lambda n: n.scale, _from_logcosh(), jnp.asarray(2.5, jnp.float64)
        ),
        sample=False,
        tier="core",
    ),
    Row(
        "switch-cauchy",
        _switch,
        lambda x, xh: stats.cauchy(xh, 0.8).logpdf(x),
        _real_data,
        lambda n, xh: _quad(n, xh, -np.inf, np.inf, split=(float(xh),)),
        lambda x, xh: stats.cauchy(xh, 0.8).cdf(x),
        _switch_b,
        tier="core",
    ),
]
IDS = [r.id for r in ROWS]
parametrize = pytest.mark.parametrize("row", ROWS, ids=IDS)
CORE = [r for r in ROWS if r.tier != "light"]
core = pytest.mark.parametrize("row", CORE, ids=[r.id for r in CORE])
STACKABLE = [r for r in CORE if r.stack is not None]
stackable = pytest.mark.parametrize("row", STACKABLE, ids=[r.id for r in STACKABLE])


def _learnable(noise) -> list[str]:
    """Hyperparameter paths that can be differentiated (not integer-valued)."""
    return [
        p for p, d in noise._hyperparameter_paths().items() if d.unconstrain is not None
    ]


def _resolve(noise, path):
    for part in path.split("."):
        noise = noise[int(part)] if part.isdigit() else getattr(noise, part)
    return noise


# ------------------------------------------------------------------ the tests


@parametrize
def test_nll_matches_oracle_float64(row):
    noise = row.make()
    for seed in range(2):
        x, xh = row.data(np.random.default_rng(seed))
        got = np.asarray(noise.nll(x, xh))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, -row.logp(x, xh), rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(noise.log_prob(x, xh)), -got)


def _low_precision(row, dtype, rtol):
    noise = row.make()
    x, xh = row.data(np.random.default_rng(0))
    x_lo, xh_lo = jnp.asarray(x, dtype), jnp.asarray(xh, dtype)
    got = noise.nll(x_lo, xh_lo)
    assert got.dtype == jnp.dtype(dtype)
    ref = -row.logp(np.asarray(x_lo, np.float64), np.asarray(xh_lo, np.float64))
    err = np.abs(np.asarray(got, np.float64) - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() <= rtol


@parametrize
def test_nll_float32(row):
    _low_precision(row, np.float32, 1e-5)


@core
@pytest.mark.parametrize("dtype,rtol", [(jnp.float16, 2e-3), (jnp.bfloat16, 1.6e-2)])
def test_nll_16_bit_computed_in_float32(row, dtype, rtol):
    _low_precision(row, dtype, rtol)


@parametrize
def test_normalised(row):
    noise = row.make()
    _, xh = row.data(np.random.default_rng(3))
    for v in xh[:2]:
        assert row.mass(noise, v) == pytest.approx(1.0, abs=1e-8)


@core
def test_gradients_finite_differences(row):
    """check_grads (fwd and rev; order 2 for the "full" rows) wrt x_hat and every
    learnable hyperparameter."""
    noise = row.make()
    x, xh = row.data(np.random.default_rng(5))
    if row.id.startswith("censored"):  # keep away from the kinks at the bounds
        inside = (x > -1.0) & (x < 2.0) & (x != 0.0)
        x = np.where(inside, x, 0.7)
    x, xh = x[:4], xh[:4]
    paths = _learnable(noise)

    @jax.jit
    def f(a, *params):
        m = eqx.tree_at(lambda n: [_resolve(n, p) for p in paths], noise, list(params))
        return m.nll(x, a)

    params = [jnp.asarray(_resolve(noise, p)) for p in paths]
    check_grads(
        f,
        (jnp.asarray(xh), *params),
        order=2 if row.tier == "full" else 1,
        modes=("fwd", "rev"),
        eps=1e-5,
        atol=1e-5,
        rtol=1e-5,
    )


@core
def test_jit_equals_eager_through_plain_jit(row):
    """The noise model passes through plain `jax.jit` as an argument (its static
    fields are hashable); jit ≡ eager for values (and gradients, "full" rows)."""
    noise = row.make()
    x, xh = row.data(np.random.default_rng(7))
    eager = noise.nll(x, xh)
    jitted = jax.jit(lambda n, a, b: n.nll(a, b))(noise, x, xh)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-12)
    if row.tier != "full":
        return
    params, static = eqx.partition(noise, eqx.is_inexact_array)
    g = jax.grad(lambda p, b: eqx.combine(p, static).nll(x, b).sum(), argnums=(0, 1))
    g_eager = g(params, jnp.asarray(xh))
    g_jit = jax.jit(g)(params, jnp.asarray(xh))
    for a, b in zip(jax.tree.leaves(g_jit), jax.tree.leaves(g_eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@stackable
def test_vmap_over_stacked_models_equals_loop(row):
    instances = [row.make(), row.stack()]
    x, xh = row.data(np.random.default_rng(9))
    params, static = eqx.partition(instances, eqx.is_array)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    batched = jax.vmap(lambda p: eqx.combine(p, static[0]).nll(x, xh))(stacked)
    loop = jnp.stack([n.nll(x, xh) for n in instances])
    np.testing.assert_allclose(batched, loop, rtol=1e-12, atol=1e-12)
    assert not np.allclose(loop[0], loop[1])


@stackable
def test_new_hyperparameters_do_not_retrace(row):
    x, xh = row.data(np.random.default_rng(11))

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(noise, a, b):
        return noise.nll(a, b).sum()

    values = [float(f(n, x, xh)) for n in (row.make(), row.stack())]
    assert values[0] != values[1]


@parametrize
def test_loss_drops_only_x_hat_free_terms(row):
    noise = row.make()
    x, xh = row.data(np.random.default_rng(13))
    _, other = row.data(np.random.default_rng(99))
    # compiled (the eager/jit agreement is tested separately): op-by-op dispatch of
    # a mixture of 34 components is most of this test's time otherwise
    gap = jax.jit(lambda b: noise.nll(x, b) - noise.loss(x, b))
    np.testing.assert_allclose(gap(xh), gap(other), rtol=1e-10, atol=1e-10)
    g_nll = jax.jit(jax.grad(lambda b: noise.nll(x, b).sum()))(jnp.asarray(xh))
    g_loss = jax.jit(jax.grad(lambda b: noise.loss(x, b).sum()))(jnp.asarray(xh))
    np.testing.assert_allclose(g_loss, g_nll, rtol=1e-10, atol=1e-12)


def _chi_square_p(draws, pmf, hi):
    ks = np.arange(0, hi + 1)
    expected = pmf(ks) * len(draws)
    observed = np.array([(draws == k).sum() for k in ks], dtype=float)
    obs_m, exp_m, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            obs_m.append(acc_o)
            exp_m.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 and exp_m:
        obs_m[-1] += acc_o
        exp_m[-1] += acc_e
    obs_m, exp_m = np.array(obs_m), np.array(exp_m)
    exp_m *= obs_m.sum() / exp_m.sum()
    return stats.chisquare(obs_m, exp_m).pvalue


@core
def test_sample_follows_the_distribution(row, getkey):
    noise = row.make()
    _, xh = row.data(np.random.default_rng(23))
    v = xh[0]
    if not row.sample:
        with pytest.raises(NotImplementedError, match="sample"):
            noise.sample(getkey(), v, (10,))
        return
    n = 4000
    draws = np.asarray(jax.jit(lambda m, k, a: m.sample(k, a, (n,)))(noise, getkey(), v))
    assert draws.shape == (n,)
    at = lambda t: np.broadcast_to(v, np.shape(t) + np.shape(v))
    if row.discrete:
        pmf = lambda k: np.exp(row.logp(k.astype(float), at(k)))
        p = _chi_square_p(draws, pmf, int(draws.max()) + 5)
        assert p > 1e-3, f"{row.id}: p = {p}"
        return
    assert row.cdf is not None
    # atoms: their frequencies are binomial; the rest follows the conditional cdf
    at_atom = np.zeros(n, bool)
    masses = []
    for a in row.atoms:
        mass = float(np.exp(row.logp(np.array([a]), at(np.array([a])))[0]))
        hits = draws == a
        at_atom |= hits
        masses.append((a, mass))
        assert stats.binomtest(int(hits.sum()), n, mass).pvalue > 1e-3
    total = sum(m for _, m in masses)

    def conditional_cdf(t):
        below = sum(m * (t >= a) for a, m in masses)
        return (row.cdf(t, at(t)) - below) / (1 - total)

    p = stats.kstest(draws[~at_atom], conditional_cdf).pvalue
    assert p > 1e-3, f"{row.id}: p = {p}"
    batch = np.asarray(noise.sample(getkey(), xh, (3,)))
    assert batch.shape == (3, *xh.shape[: len(xh.shape) - noise._x_hat_event_ndim])


@parametrize
def test_cdf_and_tails(row):
    noise = row.make()
    x, xh = row.data(np.random.default_rng(29))
    if row.cdf is None:
        with pytest.raises(NotImplementedError, match="cdf"):
            noise.cdf(x, xh)
        return
    want = row.cdf(x, xh)
    np.testing.assert_allclose(noise.cdf(x, xh), want, rtol=1e-9, atol=1e-13)
    # the oracle's logs from its cdf are accurate only away from 0 and 1
    ok_cdf, ok_sf = want > 1e-6, want < 1 - 1e-6
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(
            np.asarray(noise.log_cdf(x, xh))[ok_cdf],
            np.log(want[ok_cdf]),
            rtol=1e-8,
            atol=1e-11,
        )
        np.testing.assert_allclose(
            np.asarray(noise.log_sf(x, xh))[ok_sf],
            np.log1p(-want[ok_sf]),
            rtol=1e-8,
            atol=1e-11,
        )
    np.testing.assert_allclose(np.exp(noise.log_cdf(x, xh)), want, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(-np.expm1(noise.log_sf(x, xh)), want, rtol=1e-9, atol=1e-13)


@core
def test_where_mask_isolates_nan(row):
    noise = row.make()
    x, xh = row.data(np.random.default_rng(31))
    xh = jnp.asarray(xh).at[0].set(jnp.nan)
    x = jnp.asarray(x).at[1].set(jnp.nan)
    mask = jnp.ones(x.shape, bool).at[0].set(False).at[1].set(False)

    params, static = eqx.partition(noise, eqx.is_inexact_array)

    def total(b, p):
        return eqx.combine(p, static).nll(x, b, where=mask).sum()

    value, (g_xh, g_n) = jax.value_and_grad(total, argnums=(0, 1))(xh, params)
    ref = jnp.sum(noise.nll(x, xh)[2:])
    np.testing.assert_allclose(value, ref, rtol=1e-12)
    assert np.all(np.asarray(g_xh)[:2] == 0)
    assert np.all(np.isfinite(g_xh))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g_n))


@parametrize
def test_nan_propagates(row):
    noise = row.make()
    x, xh = row.data(np.random.default_rng(37))
    xh = np.asarray(xh, np.float64).copy()
    xh[0] = np.nan
    x = np.asarray(x, np.float64).copy()
    x[1] = np.nan
    out = np.asarray(noise.nll(x, xh))
    assert np.isnan(out[0]) and np.isnan(out[1]) and np.all(np.isfinite(out[2:]))


_INVALID = {
    "> 0": -1.0,
    "in the open interval (0, 1)": 1.5,
    "a real number (not NaN)": float("nan"),
}


@core
def test_invalid_hyperparameters(row):
    """Every (nested) hyperparameter: runtime error naming the field under jit (and
    under grad and vmap for the "full" rows) with checks on; NaN, never a finite
    value, with checks off, and no callback left in the program."""
    noise = row.make()
    x, xh = row.data(np.random.default_rng(0))
    params, static = eqx.partition(noise, eqx.is_inexact_array)
    f = jax.jit(lambda p: eqx.combine(p, static).nll(x, xh).sum())
    g = jax.grad(f)  # grad(jit): jit(grad) drops the check (see the report)
    v = jax.jit(jax.vmap(lambda p: eqx.combine(p, static).nll(x, xh).sum(), axis_size=2))
    checked = 0
    for path, domain in noise._hyperparameter_paths().items():
        if domain.description not in _INVALID:
            continue
        field = path.split(".")[-1]
        old = jnp.asarray(_resolve(noise, path))
        bad = jnp.full_like(old, _INVALID[domain.description])
        broken = eqx.partition(
            eqx.tree_at(lambda n, p=path: _resolve(n, p), noise, bad), eqx.is_inexact_array
        )[0]
        transforms = (f, g, lambda p: v(jax.tree.map(lambda a: jnp.stack([a, a]), p)))
        every = checked == 0 and row.tier == "full"  # grad and vmap: "full" rows
        for transform in transforms if every else (f,):
            with pytest.raises(RUNTIME_ERRORS, match=f"`{field}` must be"):
                jax.block_until_ready(transform(broken))
        checked += 1
        with llx.checks("off"):
            off = jax.jit(lambda p: eqx.combine(p, static).nll(x, xh).sum())
            assert np.isnan(off(broken))
    with llx.checks("off"):
        assert "callback" not in f.lower(params).as_text()
