r"""The fifteen families written by hand and through the peer libraries.

Every candidate is `f(x_hat, p, x) -> sum of nll` with `p` a dict of
hyperparameters (the likelax constructor's argument names). Hand-written forms:

- `natural`: the formula as a user writes it, per element, e.g.
  `0.5 * ((x - m) / s) ** 2 + log(s) + ½ log 2π`;
- `hoisted`: the same nll with every scalar-hyperparameter expression computed once
  and, where the nll is linear in a per-element statistic, the sum taken before the
  scalar factor (`0.5 * sum(r²) * exp(-2 log s) + N (log s + ½ log 2π)`);
- `safe` variants for Student-t and Cauchy: `log1p(t²)` overflows for huge
  residuals (t² = inf in float32 beyond 1.8e19); the safe form switches to
  `2 log1p(t)` above 1/eps, still one transcendental per element.

Peers are used the way their users write them: `-dist(params).log_prob(x).sum()`.
`oracle(x, m, p)` is the per-element nll from scipy (float64), used by `--check`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _harness import try_import
from jax.scipy.special import erf, gammaln, i0, i0e
from scipy import integrate, special, stats

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_2PI = math.log(2 * math.pi)
LOG_PI = math.log(math.pi)

# ----------------------------------------------------------------- peer modules

optax, _optax_err = try_import("optax")
jss, _jss_err = try_import("jax.scipy.stats")
nd, _numpyro_err = try_import("numpyro.distributions")
fd, _flowjax_err = try_import("flowjax.distributions")
_tfp, _tfp_err = try_import("tensorflow_probability.substrates.jax")
tfd = _tfp.distributions if _tfp is not None else None
distrax, _distrax_err = try_import("distrax")

PEER_STATUS: dict[str, str | None] = {
    "optax": _optax_err,
    "jax.scipy": _jss_err,
    "numpyro": _numpyro_err,
    "flowjax": _flowjax_err,
    "tfp": _tfp_err,
    "distrax": _distrax_err,
}
PEERS = ("optax", "jax.scipy", "numpyro", "flowjax", "tfp", "distrax")


@dataclasses.dataclass
class Family:
    name: str  # likelax class name
    hyper: dict[str, float]  # constructor arguments (float hyperparameters)
    data: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]  # (x, m)
    hand: dict[str, Callable[..., Any]]
    peers: dict[str, Callable[..., Any]]
    oracle: Callable[[np.ndarray, np.ndarray, dict[str, float]], np.ndarray]
    diff: bool = True  # hyperparameters are differentiated
    unsafe: tuple[str, ...] = ()  # hand forms that overflow at huge residuals
    huge: tuple[float, float] | None = None  # (x, m) where the naive forms overflow
    notes: str = ""

    def params(self, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
        return {k: jnp.asarray(v, dtype) for k, v in self.hyper.items()}

    def peer_candidates(self) -> dict[str, Callable[..., Any]]:
        return {k: f for k, f in self.peers.items() if PEER_STATUS[k] is None}


def _n(x: jax.Array) -> int:
    return x.shape[0]


def log1p_sq(t: jax.Array) -> jax.Array:
    """log1p(t²) for t ≥ 0 without overflow, one transcendental per element.

    Above 1/eps, log1p(t²) and 2·log1p(t) differ by ≈ 2/t, below half an ulp of
    the result; the unselected `t * t` may be inf but gets a zero cotangent.
    """
    big = t > 1.0 / jnp.finfo(t.dtype).eps
    return jnp.log1p(jnp.where(big, t, t * t)) * jnp.where(big, 2.0, 1.0)


def _sigmoid_np(m):
    return special.expit(m)


# ------------------------------------------------------------------ locations


def _loc_data(scale: float):
    def data(rng, n):
        m = rng.normal(size=n)
        x = m + scale * rng.standard_t(5, size=n)
        return x.astype(np.float32), m.astype(np.float32)

    return data


def _gauss_natural(m, p, x):
    s = p["scale"]
    return jnp.sum(0.5 * ((x - m) / s) ** 2 + jnp.log(s) + HALF_LOG_2PI)


def _gauss_hoisted(m, p, x):
    ls = jnp.log(p["scale"])
    r = x - m
    return 0.5 * jnp.sum(r * r) * jnp.exp(-2 * ls) + _n(x) * (ls + HALF_LOG_2PI)


GAUSSIAN = Family(
    "Gaussian",
    {"scale": 1.3},
    _loc_data(1.3),
    hand={"natural": _gauss_natural, "hoisted": _gauss_hoisted},
    peers={
        "optax": lambda m, p, x: jnp.sum(
            optax.l2_loss(m / p["scale"], x / p["scale"])
            + jnp.log(p["scale"])
            + HALF_LOG_2PI
        ),
        "jax.scipy": lambda m, p, x: -jnp.sum(jss.norm.logpdf(x, m, p["scale"])),
        "numpyro": lambda m, p, x: -jnp.sum(nd.Normal(m, p["scale"]).log_prob(x)),
        "flowjax": lambda m, p, x: -fd.Normal(m, p["scale"]).log_prob(x),
        "tfp": lambda m, p, x: -jnp.sum(tfd.Normal(m, p["scale"]).log_prob(x)),
        "distrax": lambda m, p, x: -jnp.sum(distrax.Normal(m, p["scale"]).log_prob(x)),
    },
    oracle=lambda x, m, p: -stats.norm.logpdf(x, m, p["scale"]),
)


def _laplace_natural(m, p, x):
    b = p["scale"]
    return jnp.sum(jnp.abs(x - m) / b + jnp.log(2 * b))


def _laplace_hoisted(m, p, x):
    lb = jnp.log(p["scale"])
    return jnp.sum(jnp.abs(x - m)) * jnp.exp(-lb) + _n(x) * (lb + math.log(2))


LAPLACE = Family(
    "Laplace",
    {"scale": 0.8},
    _loc_data(0.8),
    hand={"natural": _laplace_natural, "hoisted": _laplace_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: -jnp.sum(jss.laplace.logpdf(x, m, p["scale"])),
        "numpyro": lambda m, p, x: -jnp.sum(nd.Laplace(m, p["scale"]).log_prob(x)),
        "flowjax": lambda m, p, x: -fd.Laplace(m, p["scale"]).log_prob(x),
        "tfp": lambda m, p, x: -jnp.sum(tfd.Laplace(m, p["scale"]).log_prob(x)),
        "distrax": lambda m, p, x: -jnp.sum(distrax.Laplace(m, p["scale"]).log_prob(x)),
    },
    oracle=lambda x, m, p: -stats.laplace.logpdf(x, m, p["scale"]),
)


def _t_const(df, s):
    return (
        jnp.log(s)
        + 0.5 * jnp.log(df)
        + 0.5 * LOG_PI
        + gammaln(df / 2)
        - gammaln((df + 1) / 2)
    )


def _t_natural(m, p, x):
    df, s = p["df"], p["scale"]
    z = (x - m) / s
    return jnp.sum((df + 1) / 2 * jnp.log1p(z * z / df) + _t_const(df, s))


def _t_natural_safe(m, p, x):
    df, s = p["df"], p["scale"]
    t = jnp.abs(x - m) / (s * jnp.sqrt(df))
    return jnp.sum((df + 1) / 2 * log1p_sq(t) + _t_const(df, s))


def _t_hoisted(m, p, x):
    df, s = p["df"], p["scale"]
    a = jnp.exp(-2 * jnp.log(s) - jnp.log(df))  # 1 / (df s²)
    r = x - m
    return (df + 1) / 2 * jnp.sum(jnp.log1p(r * r * a)) + _n(x) * _t_const(df, s)


def _t_hoisted_safe(m, p, x):
    df, s = p["df"], p["scale"]
    a = jnp.exp(-jnp.log(s) - 0.5 * jnp.log(df))  # 1 / (s √df)
    return (df + 1) / 2 * jnp.sum(log1p_sq(jnp.abs(x - m) * a)) + _n(x) * _t_const(df, s)


STUDENT_T = Family(
    "StudentT",
    {"df": 4.0, "scale": 1.2},
    _loc_data(1.2),
    hand={
        "natural": _t_natural,
        "natural (safe)": _t_natural_safe,
        "hoisted": _t_hoisted,
        "hoisted (safe)": _t_hoisted_safe,
    },
    peers={
        "jax.scipy": lambda m, p, x: -jnp.sum(jss.t.logpdf(x, p["df"], m, p["scale"])),
        "numpyro": lambda m, p, x: (
            -jnp.sum(nd.StudentT(p["df"], m, p["scale"]).log_prob(x))
        ),
        "flowjax": lambda m, p, x: -fd.StudentT(p["df"], m, p["scale"]).log_prob(x),
        "tfp": lambda m, p, x: -jnp.sum(tfd.StudentT(p["df"], m, p["scale"]).log_prob(x)),
    },
    oracle=lambda x, m, p: -stats.t.logpdf(x, p["df"], m, p["scale"]),
    unsafe=("natural", "hoisted"),
    huge=(1e25, 0.0),
)


def _cauchy_natural(m, p, x):
    s = p["scale"]
    z = (x - m) / s
    return jnp.sum(jnp.log1p(z * z) + jnp.log(s) + LOG_PI)


def _cauchy_natural_safe(m, p, x):
    s = p["scale"]
    return jnp.sum(log1p_sq(jnp.abs(x - m) / s) + jnp.log(s) + LOG_PI)


def _cauchy_hoisted(m, p, x):
    ls = jnp.log(p["scale"])
    r = x - m
    return jnp.sum(jnp.log1p(r * r * jnp.exp(-2 * ls))) + _n(x) * (ls + LOG_PI)


def _cauchy_hoisted_safe(m, p, x):
    ls = jnp.log(p["scale"])
    return jnp.sum(log1p_sq(jnp.abs(x - m) * jnp.exp(-ls))) + _n(x) * (ls + LOG_PI)


CAUCHY = Family(
    "Cauchy",
    {"scale": 0.9},
    _loc_data(0.9),
    hand={
        "natural": _cauchy_natural,
        "natural (safe)": _cauchy_natural_safe,
        "hoisted": _cauchy_hoisted,
        "hoisted (safe)": _cauchy_hoisted_safe,
    },
    peers={
        "jax.scipy": lambda m, p, x: -jnp.sum(jss.cauchy.logpdf(x, m, p["scale"])),
        "numpyro": lambda m, p, x: -jnp.sum(nd.Cauchy(m, p["scale"]).log_prob(x)),
        "flowjax": lambda m, p, x: -fd.Cauchy(m, p["scale"]).log_prob(x),
        "tfp": lambda m, p, x: -jnp.sum(tfd.Cauchy(m, p["scale"]).log_prob(x)),
    },
    oracle=lambda x, m, p: -stats.cauchy.logpdf(x, m, p["scale"]),
    unsafe=("natural", "hoisted"),
    huge=(1e25, 0.0),
)


def _huber_log_z(d):
    """log ∫ exp(-ρ_δ(z)) dz = log(√(2π) erf(δ/√2) + 2 exp(-δ²/2) / δ)."""
    return jnp.log(
        math.sqrt(2 * math.pi) * erf(d / math.sqrt(2)) + 2 * jnp.exp(-0.5 * d * d) / d
    )


def _huber_natural(m, p, x):
    d, s = p["delta"], p["scale"]
    z = jnp.abs((x - m) / s)
    rho = jnp.where(z <= d, 0.5 * z * z, d * (z - 0.5 * d))
    return jnp.sum(rho + jnp.log(s) + _huber_log_z(d))


def _huber_hoisted(m, p, x):
    d, ls = p["delta"], jnp.log(p["scale"])
    z = jnp.abs(x - m) * jnp.exp(-ls)
    rho = jnp.where(z <= d, 0.5 * z * z, d * z - 0.5 * d * d)
    return jnp.sum(rho) + _n(x) * (ls + _huber_log_z(d))


def _huber_oracle(x, m, p):
    d, s = p["delta"], p["scale"]

    def rho(z):
        a = abs(z)
        return 0.5 * a * a if a <= d else d * (a - 0.5 * d)

    z_norm = (
        2 * integrate.quad(lambda z: math.exp(-rho(z)), 0, d, epsabs=0, epsrel=1e-13)[0]
    )
    z_norm += (
        2
        * integrate.quad(lambda z: math.exp(-rho(z)), d, np.inf, epsabs=0, epsrel=1e-13)[0]
    )
    a = np.abs((x - m) / s)
    return np.where(a <= d, 0.5 * a * a, d * (a - 0.5 * d)) + math.log(s) + math.log(z_norm)


HUBER = Family(
    "Huber",
    {"delta": 1.345, "scale": 1.1},
    _loc_data(1.1),
    hand={"natural": _huber_natural, "hoisted": _huber_hoisted},
    peers={
        "optax": lambda m, p, x: jnp.sum(
            optax.huber_loss(m / p["scale"], x / p["scale"], delta=p["delta"])
            + jnp.log(p["scale"])
            + _huber_log_z(p["delta"])
        ),
    },
    oracle=_huber_oracle,
    notes="no peer has the normalised Huber density; optax.huber_loss + the constant",
)


def _gn_const(beta, s):
    return jnp.log(2 * s) + gammaln(1 / beta) - jnp.log(beta)


def _gn_natural(m, p, x):
    b, s = p["power"], p["scale"]
    return jnp.sum(jnp.abs((x - m) / s) ** b + _gn_const(b, s))


def _gn_hoisted(m, p, x):
    b, s = p["power"], p["scale"]
    return jnp.sum(jnp.abs(x - m) ** b) * jnp.exp(-b * jnp.log(s)) + _n(x) * _gn_const(b, s)


# |r|**b lowers to one scalar `pow` call per element on XLA:CPU (~7x slower than
# exp(b log|r|)): the exp-log forms are the fast hand-written ones.
def _gn_natural_exp_log(m, p, x):
    b, s = p["power"], p["scale"]
    return jnp.sum(jnp.exp(b * jnp.log(jnp.abs((x - m) / s))) + _gn_const(b, s))


def _gn_hoisted_exp_log(m, p, x):
    b, s = p["power"], p["scale"]
    power_sum = jnp.sum(jnp.exp(b * jnp.log(jnp.abs(x - m))))
    return power_sum * jnp.exp(-b * jnp.log(s)) + _n(x) * _gn_const(b, s)


GENERALIZED_NORMAL = Family(
    "GeneralizedNormal",
    {"power": 1.5, "scale": 1.2},
    _loc_data(1.2),
    hand={
        "natural": _gn_natural,
        "hoisted": _gn_hoisted,
        "natural (exp-log)": _gn_natural_exp_log,
        "hoisted (exp-log)": _gn_hoisted_exp_log,
    },
    peers={
        "jax.scipy": lambda m, p, x: (
            -jnp.sum(
                jss.gennorm.logpdf((x - m) / p["scale"], p["power"]) - jnp.log(p["scale"])
            )
        ),
        "tfp": lambda m, p, x: (
            -jnp.sum(tfd.GeneralizedNormal(m, p["scale"], p["power"]).log_prob(x))
        ),
    },
    oracle=lambda x, m, p: -stats.gennorm.logpdf(x, p["power"], m, p["scale"]),
)


def _al_natural(m, p, x):
    tau, s = p["quantile"], p["scale"]
    u = (x - m) / s
    return jnp.sum(u * (tau - (u < 0)) + jnp.log(s) - jnp.log(tau) - jnp.log1p(-tau))


def _al_hoisted(m, p, x):
    tau, ls = p["quantile"], jnp.log(p["scale"])
    r = x - m
    pin = jnp.sum(jnp.maximum(tau * r, (tau - 1) * r))
    return pin * jnp.exp(-ls) + _n(x) * (ls - jnp.log(tau) - jnp.log1p(-tau))


def _al_oracle(x, m, p):
    tau, s = p["quantile"], p["scale"]
    kappa = math.sqrt(tau / (1 - tau))
    return -stats.laplace_asymmetric.logpdf(x, kappa, m, s / math.sqrt(tau * (1 - tau)))


ASYMMETRIC_LAPLACE = Family(
    "AsymmetricLaplace",
    {"quantile": 0.3, "scale": 0.7},
    _loc_data(0.7),
    hand={"natural": _al_natural, "hoisted": _al_hoisted},
    peers={
        "numpyro": lambda m, p, x: (
            -jnp.sum(nd.AsymmetricLaplaceQuantile(m, p["scale"], p["quantile"]).log_prob(x))
        ),
    },
    oracle=_al_oracle,
)

# -------------------------------------------------------- binary, categorical


def _bern_data(rng, n):
    m = rng.normal(0, 2, size=n)
    x = (rng.random(n) < _sigmoid_np(m)).astype(np.float32)
    return x, m.astype(np.float32)


def _bern_natural(m, p, x):
    return jnp.sum(jax.nn.softplus(m) - x * m)


def _bern_hoisted(m, p, x):
    # softplus(m) - x m  ==  log1p(exp(-|m|)) + max(m, 0) - x m
    return jnp.sum(jnp.log1p(jnp.exp(-jnp.abs(m))) + jnp.maximum(m, 0) - x * m)


BERNOULLI = Family(
    "Bernoulli",
    {},
    _bern_data,
    hand={"natural": _bern_natural, "hoisted": _bern_hoisted},
    peers={
        "optax": lambda m, p, x: jnp.sum(optax.sigmoid_binary_cross_entropy(m, x)),
        "jax.scipy": lambda m, p, x: -jnp.sum(jss.bernoulli.logpmf(x, jax.nn.sigmoid(m))),
        "numpyro": lambda m, p, x: -jnp.sum(nd.BernoulliLogits(m).log_prob(x)),
        "tfp": lambda m, p, x: -jnp.sum(tfd.Bernoulli(logits=m).log_prob(x)),
        "distrax": lambda m, p, x: -jnp.sum(distrax.Bernoulli(logits=m).log_prob(x)),
    },
    oracle=lambda x, m, p: -stats.bernoulli.logpmf(x, _sigmoid_np(m)),
    diff=False,
)

BINOMIAL_N = 20.0


def _binom_data(rng, n):
    m = rng.normal(0, 1.5, size=n)
    x = rng.binomial(int(BINOMIAL_N), _sigmoid_np(m)).astype(np.float32)
    return x, m.astype(np.float32)


def _binom_natural(m, p, x):
    n = p["total_count"]
    log_choose = gammaln(n + 1) - gammaln(x + 1) - gammaln(n - x + 1)
    return jnp.sum(n * jax.nn.softplus(m) - x * m - log_choose)


def _binom_hoisted(m, p, x):
    n = p["total_count"]
    per = n * jax.nn.softplus(m) - x * m + gammaln(x + 1) + gammaln(n - x + 1)
    return jnp.sum(per) - _n(x) * gammaln(n + 1)


BINOMIAL = Family(
    "Binomial",
    {"total_count": BINOMIAL_N},
    _binom_data,
    hand={"natural": _binom_natural, "hoisted": _binom_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: (
            -jnp.sum(jss.binom.logpmf(x, p["total_count"], jax.nn.sigmoid(m)))
        ),
        "numpyro": lambda m, p, x: (
            -jnp.sum(nd.BinomialLogits(m, total_count=p["total_count"]).log_prob(x))
        ),
        "tfp": lambda m, p, x: (
            -jnp.sum(tfd.Binomial(total_count=p["total_count"], logits=m).log_prob(x))
        ),
    },
    oracle=lambda x, m, p: -stats.binom.logpmf(x, p["total_count"], _sigmoid_np(m)),
    diff=False,
)

N_CLASSES = 10


def _cat_data(rng, n):
    m = rng.normal(0, 2, size=(n, N_CLASSES)).astype(np.float32)
    x = rng.integers(0, N_CLASSES, size=n).astype(np.int32)
    return x, m


def _cat_natural(m, p, x):
    picked = jnp.take_along_axis(m, x[:, None], axis=-1)[:, 0]
    return jnp.sum(jax.nn.logsumexp(m, axis=-1) - picked)


def _cat_hoisted(m, p, x):
    mx = jax.lax.stop_gradient(jnp.max(m, axis=-1, keepdims=True))
    lse = jnp.log(jnp.sum(jnp.exp(m - mx), axis=-1)) + mx[:, 0]
    onehot = jnp.arange(m.shape[-1]) == x[:, None]
    return jnp.sum(lse) - jnp.sum(jnp.where(onehot, m, 0.0))


def _cat_oracle(x, m, p):
    return special.logsumexp(m, axis=-1) - np.take_along_axis(m, x[:, None], -1)[:, 0]


CATEGORICAL = Family(
    "Categorical",
    {},
    _cat_data,
    hand={"natural": _cat_natural, "hoisted": _cat_hoisted},
    peers={
        "optax": lambda m, p, x: jnp.sum(
            optax.softmax_cross_entropy_with_integer_labels(m, x)
        ),
        "numpyro": lambda m, p, x: -jnp.sum(nd.CategoricalLogits(m).log_prob(x)),
        "tfp": lambda m, p, x: -jnp.sum(tfd.Categorical(logits=m).log_prob(x)),
        "distrax": lambda m, p, x: -jnp.sum(distrax.Categorical(logits=m).log_prob(x)),
    },
    oracle=_cat_oracle,
    diff=False,
    notes=f"K = {N_CLASSES} classes; x_hat has shape (N, K)",
)

# ------------------------------------------------------------------- counts


def _poisson_data(rng, n):
    m = rng.normal(1.0, 0.7, size=n)
    x = rng.poisson(np.exp(m)).astype(np.float32)
    return x, m.astype(np.float32)


def _poisson_natural(m, p, x):
    return jnp.sum(jnp.exp(m) - x * m + gammaln(x + 1))


def _poisson_hoisted(m, p, x):
    return jnp.sum(jnp.exp(m)) - jnp.sum(x * m) + jnp.sum(gammaln(x + 1))


POISSON = Family(
    "Poisson",
    {},
    _poisson_data,
    hand={"natural": _poisson_natural, "hoisted": _poisson_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: -jnp.sum(jss.poisson.logpmf(x, jnp.exp(m))),
        "numpyro": lambda m, p, x: -jnp.sum(nd.Poisson(jnp.exp(m)).log_prob(x)),
        "tfp": lambda m, p, x: -jnp.sum(tfd.Poisson(log_rate=m).log_prob(x)),
    },
    oracle=lambda x, m, p: -stats.poisson.logpmf(x, np.exp(m)),
    diff=False,
)


def _nb_data(r: float):
    def data(rng, n):
        m = rng.normal(1.0, 0.7, size=n)
        mu = np.exp(m)
        x = rng.negative_binomial(r, r / (r + mu)).astype(np.float32)
        return x, m.astype(np.float32)

    return data


def _nb_natural(m, p, x):
    r = p["concentration"]
    mu = jnp.exp(m)
    lp = (
        gammaln(x + r)
        - gammaln(r)
        - gammaln(x + 1)
        + r * jnp.log(r / (r + mu))
        + x * jnp.log(mu / (r + mu))
    )
    return -jnp.sum(lp)


def _nb_hoisted(m, p, x):
    r = p["concentration"]
    lr = jnp.log(r)
    per = gammaln(x + 1) - gammaln(x + r) - x * m + (r + x) * jnp.logaddexp(lr, m)
    return jnp.sum(per) + _n(x) * (gammaln(r) - r * lr)


NB_R = 3.5

NEGATIVE_BINOMIAL = Family(
    "NegativeBinomial",
    {"concentration": NB_R},
    _nb_data(NB_R),
    hand={"natural": _nb_natural, "hoisted": _nb_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: (
            -jnp.sum(
                jss.nbinom.logpmf(
                    x,
                    p["concentration"],
                    p["concentration"] / (p["concentration"] + jnp.exp(m)),
                )
            )
        ),
        "numpyro": lambda m, p, x: (
            -jnp.sum(nd.NegativeBinomial2(jnp.exp(m), p["concentration"]).log_prob(x))
        ),
        "tfp": lambda m, p, x: (
            -jnp.sum(
                tfd.NegativeBinomial(
                    total_count=p["concentration"],
                    logits=m - jnp.log(p["concentration"]),
                    require_integer_total_count=False,
                ).log_prob(x)
            )
        ),
    },
    oracle=lambda x, m, p: (
        -stats.nbinom.logpmf(
            x, p["concentration"], p["concentration"] / (p["concentration"] + np.exp(m))
        )
    ),
)

# ------------------------------------------------ positive, unit interval, circle


def _gamma_data(k: float):
    def data(rng, n):
        m = rng.normal(0.5, 0.5, size=n)
        x = rng.gamma(k, np.exp(m) / k).astype(np.float32)
        return np.maximum(x, 1e-6).astype(np.float32), m.astype(np.float32)

    return data


def _gamma_natural(m, p, x):
    k = p["concentration"]
    theta = jnp.exp(m) / k
    return jnp.sum(gammaln(k) + k * jnp.log(theta) - (k - 1) * jnp.log(x) + x / theta)


def _gamma_hoisted(m, p, x):
    k = p["concentration"]
    per = k * m - (k - 1) * jnp.log(x) + k * x * jnp.exp(-m)
    return jnp.sum(per) + _n(x) * (gammaln(k) - k * jnp.log(k))


GAMMA_K = 2.5

GAMMA = Family(
    "Gamma",
    {"concentration": GAMMA_K},
    _gamma_data(GAMMA_K),
    hand={"natural": _gamma_natural, "hoisted": _gamma_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: (
            -jnp.sum(
                jss.gamma.logpdf(
                    x, p["concentration"], scale=jnp.exp(m) / p["concentration"]
                )
            )
        ),
        "numpyro": lambda m, p, x: (
            -jnp.sum(
                nd.Gamma(p["concentration"], p["concentration"] * jnp.exp(-m)).log_prob(x)
            )
        ),
        "flowjax": lambda m, p, x: (
            -fd.Gamma(p["concentration"], jnp.exp(m) / p["concentration"]).log_prob(x)
        ),
        "tfp": lambda m, p, x: (
            -jnp.sum(
                tfd.Gamma(
                    concentration=p["concentration"],
                    log_rate=jnp.log(p["concentration"]) - m,
                ).log_prob(x)
            )
        ),
        "distrax": lambda m, p, x: (
            -jnp.sum(
                distrax.Gamma(
                    p["concentration"], p["concentration"] * jnp.exp(-m)
                ).log_prob(x)
            )
        ),
    },
    oracle=lambda x, m, p: (
        -stats.gamma.logpdf(x, p["concentration"], scale=np.exp(m) / p["concentration"])
    ),
)


def _beta_data(phi: float):
    def data(rng, n):
        m = rng.normal(0, 1, size=n)
        mu = _sigmoid_np(m)
        x = rng.beta(mu * phi, (1 - mu) * phi)
        return np.clip(x, 1e-4, 1 - 1e-4).astype(np.float32), m.astype(np.float32)

    return data


def _beta_ab(m, phi):
    return jax.nn.sigmoid(m) * phi, jax.nn.sigmoid(-m) * phi


def _beta_natural(m, p, x):
    phi = p["concentration"]
    a, b = _beta_ab(m, phi)
    lp = (
        gammaln(phi)
        - gammaln(a)
        - gammaln(b)
        + (a - 1) * jnp.log(x)
        + (b - 1) * jnp.log1p(-x)
    )
    return -jnp.sum(lp)


def _beta_hoisted(m, p, x):
    phi = p["concentration"]
    a, b = _beta_ab(m, phi)
    lx, l1x = jnp.log(x), jnp.log1p(-x)
    per = gammaln(a) + gammaln(b) - a * (lx - l1x) + lx + (1 - phi) * l1x
    return jnp.sum(per) - _n(x) * gammaln(phi)


BETA_PHI = 5.0

BETA = Family(
    "Beta",
    {"concentration": BETA_PHI},
    _beta_data(BETA_PHI),
    hand={"natural": _beta_natural, "hoisted": _beta_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: (
            -jnp.sum(jss.beta.logpdf(x, *_beta_ab(m, p["concentration"])))
        ),
        "numpyro": lambda m, p, x: (
            -jnp.sum(nd.Beta(*_beta_ab(m, p["concentration"])).log_prob(x))
        ),
        "flowjax": lambda m, p, x: -fd.Beta(*_beta_ab(m, p["concentration"])).log_prob(x),
        "tfp": lambda m, p, x: (
            -jnp.sum(tfd.Beta(*_beta_ab(m, p["concentration"])).log_prob(x))
        ),
        "distrax": lambda m, p, x: (
            -jnp.sum(distrax.Beta(*_beta_ab(m, p["concentration"])).log_prob(x))
        ),
    },
    oracle=lambda x, m, p: (
        -stats.beta.logpdf(
            x, _sigmoid_np(m) * p["concentration"], _sigmoid_np(-m) * p["concentration"]
        )
    ),
)


def _vm_data(kappa: float):
    def data(rng, n):
        m = rng.uniform(-np.pi, np.pi, size=n)
        x = rng.vonmises(m, kappa)
        return x.astype(np.float32), m.astype(np.float32)

    return data


def _vm_natural(m, p, x):
    k = p["concentration"]
    return jnp.sum(-k * jnp.cos(x - m) + jnp.log(2 * jnp.pi * i0(k)))


def _vm_hoisted(m, p, x):
    k = p["concentration"]
    return -k * jnp.sum(jnp.cos(x - m)) + _n(x) * (LOG_2PI + jnp.log(i0e(k)) + k)


VM_KAPPA = 2.0

VON_MISES = Family(
    "VonMises",
    {"concentration": VM_KAPPA},
    _vm_data(VM_KAPPA),
    hand={"natural": _vm_natural, "hoisted": _vm_hoisted},
    peers={
        "jax.scipy": lambda m, p, x: (
            -jnp.sum(jss.vonmises.logpdf(x - m, p["concentration"]))
        ),
        "numpyro": lambda m, p, x: -jnp.sum(nd.VonMises(m, p["concentration"]).log_prob(x)),
        "tfp": lambda m, p, x: -jnp.sum(tfd.VonMises(m, p["concentration"]).log_prob(x)),
        "distrax": lambda m, p, x: (
            -jnp.sum(distrax.VonMises(m, p["concentration"]).log_prob(x))
        ),
    },
    oracle=lambda x, m, p: -stats.vonmises.logpdf(x, p["concentration"], loc=m),
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        GAUSSIAN,
        LAPLACE,
        STUDENT_T,
        CAUCHY,
        HUBER,
        GENERALIZED_NORMAL,
        ASYMMETRIC_LAPLACE,
        BERNOULLI,
        BINOMIAL,
        CATEGORICAL,
        POISSON,
        NEGATIVE_BINOMIAL,
        GAMMA,
        BETA,
        VON_MISES,
    )
}
