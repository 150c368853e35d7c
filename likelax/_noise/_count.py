r"""Count noise: Poisson and negative binomial, and the exact fast $\log k!$.

Both families take the log-mean $\eta = \log\mu$ as `x_hat` (the canonical link of
the Poisson, the usual log link of the negative binomial) and accept counts as floats
or integers. Non-integer, negative or infinite counts are impossible (`nll = +inf`).

The shared building blocks live here too:

- `log_factorial(k)`: $\log k!$ for integer-valued $k \ge 0$, exact to a couple of
  ulps in float64, without a `lgamma` per element (see its docstring);
- `softplus_pair(a, b, t)`: $a\,\mathrm{softplus}(t) + b\,\mathrm{softplus}(-t)$ for
  non-negative weights, with no cancellation, no overflow and no $0\cdot\infty$.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammainc, gammaincc, gammaln
from jaxtyping import Array, ArrayLike, Float

from ._base import POSITIVE, AbstractNoise, as_param
from ._positive import _log1p_minus, betainc, log_betainc_tails
from ._special import HALF_LOG_2PI, STIRLING

__all__ = [
    "NegativeBinomial",
    "Poisson",
    "exp_excess",
    "log_factorial",
    "log_gamma_step",
    "softplus_pair",
]


# ------------------------------------------------------------------ log k!

# Below _K0 the value comes from a short compare-and-select chain over the exact
# table (a gather costs more than a logarithm on CPU); from _K0 on, Stirling's series.
_K0 = 8
_LOG_FACTORIALS = tuple(math.log(math.factorial(k)) for k in range(_K0))
# B_{2n} / (2n (2n-1)), n = 1..9: the Stirling series of log Γ.
_STIRLING = STIRLING  # shared table (likelax._noise._special)


def _stirling_tail(z: Array, terms: int) -> Array:
    r"""$\sum_{n=1}^{N} B_{2n} / (2n(2n-1) z^{2n-1})$, Horner in $z^{-2}$."""
    r = 1.0 / z
    r2 = r * r
    acc = jnp.asarray(_STIRLING[terms - 1], z.dtype)
    for c in reversed(_STIRLING[: terms - 1]):
        acc = c + r2 * acc
    return r * acc


def _stirling_terms(dtype) -> int:
    # float64: 9 terms, truncation error < 1e-17 absolute at z = 8 (relative < 1e-18);
    # float32: 4 terms, < 7e-12 absolute at z = 8.
    return 9 if jnp.finfo(dtype).bits > 32 else 4


def _dtype_key(dtype) -> int:
    return 64 if jnp.finfo(dtype).bits > 32 else 32


# e^d - 1 - d == e^d (and e^d - x d == e^d for x < 8) once d exceeds this
_EXP_ONLY = {64: 50.0, 32: 25.0}
# Taylor terms of e^d - 1 - d = sum_{k>=2} d^k / k! for |d| < 1/4: float64 up to
# k = 13 (truncation < 1e-17 relative), float32 up to k = 7 (< 2e-8).
_EXCESS_TERMS = {64: 13, 32: 7}


def _exp_excess_series(d: Array) -> Array:
    acc = jnp.asarray(1.0 / math.factorial(_EXCESS_TERMS[_dtype_key(d.dtype)]), d.dtype)
    for k in range(_EXCESS_TERMS[_dtype_key(d.dtype)] - 1, 1, -1):
        acc = 1.0 / math.factorial(k) + d * acc
    return d * d * acc


def exp_excess(d: Array) -> Array:
    r"""$e^d - 1 - d \ge 0$, accurate to a few ulps relative everywhere: the Taylor
    series for $|d| < 1/4$, the direct form elsewhere ($e^d$ alone for large $d$, so
    $d = \pm\infty$ gives $+\infty$ with a finite or infinite, never NaN, gradient).
    """
    e = jnp.exp(d)
    far = jnp.where(d > _EXP_ONLY[_dtype_key(d.dtype)], e, e - 1.0 - d)
    near = jnp.abs(d) < 0.25
    d_near = jnp.where(near, d, jnp.zeros((), d.dtype))  # no inf into the series
    return jnp.where(near, _exp_excess_series(d_near), far)


def log_gamma_step(z: Array, d: Array) -> Array:
    r"""$\log\Gamma(z+d) - \log\Gamma(z)$ for $z \ge 8$, $z + d \ge 8$, without
    cancellation: $d\log z + (z+d-\tfrac12)\,\mathrm{log1p}(d/z) - d + S(z+d) - S(z)$
    ($S$ the Stirling tail)."""
    terms = _stirling_terms(z.dtype)
    return (
        d * jnp.log(z)
        + (z + d - 0.5) * jnp.log1p(d / z)
        - d
        + _stirling_tail(z + d, terms)
        - _stirling_tail(z, terms)
    )


def _small_log_factorial(k: Array) -> Array:
    """log k! for k in 0..7 (exact table, compare chain); 0 elsewhere."""
    small = jnp.zeros_like(k)
    for j in range(2, _K0):
        small = jnp.where(k == j, jnp.asarray(_LOG_FACTORIALS[j], k.dtype), small)
    return small


def log_factorial(k: Array) -> Array:
    r"""$\log k!$ for integer-valued floating $k \ge 0$ (NaN propagates).

    $k < 8$: the exact table (rounded once to the working dtype), selected by a
    compare chain; $k \ge 8$: Stirling's series
    $(k+\tfrac12)\log k - k + \tfrac12\log 2\pi + \sum_{n=1}^{9} \frac{B_{2n}}
    {2n(2n-1)k^{2n-1}}$, truncation error below $10^{-17}$ absolute (float64).
    One logarithm and one division per element instead of a full `lgamma` (about
    2.5x cheaper on CPU; a table gather costs more than the logarithm there);
    within 2 ulps of the correctly rounded value (checked against mpmath up to
    $10^{300}$ and against `scipy.special.gammaln` on every $k \le 10^7$).
    The caller guarantees $k$ is a non-negative integer (or NaN).
    """
    small = _small_log_factorial(k)
    z = jnp.maximum(k, _K0)  # NaN stays NaN
    big = (z + 0.5) * jnp.log(z) - z + HALF_LOG_2PI
    big = big + _stirling_tail(z, _stirling_terms(k.dtype))
    return jnp.where(k < _K0, small, big)


def _poisson_nll(x: Array, eta: Array) -> Array:
    r"""$e^\eta - x\eta + \log x!$ without cancellation at large counts.

    For $x \ge 8$, with $d = \eta - \log x$ and Stirling's $\log x!$, the large
    terms cancel analytically: $x\,(e^d - 1 - d) + \tfrac12\log x + \tfrac12\log
    2\pi + S(x)$, where $e^d - 1 - d$ is a Taylor polynomial for $|d| < 1/4$. The
    plain formula loses $\sim x\log x \cdot \epsilon$ (at $x = 10^6$ a relative
    $10^{-10}$ in float64, at $x = 100$ a relative $10^{-5}$ in float32). For
    $x < 8$: the plain formula with the exact table. One `exp` and one `log` per
    element in total (the exponential is shared by the two branches).
    """
    small = x < _K0
    z = jnp.maximum(x, _K0)
    log_z = jnp.log(z)
    d = eta - log_z
    e = jnp.exp(jnp.where(small, eta, d))
    # e^d - 1 - d: the series near 0, the direct form elsewhere (e alone when 1 + d
    # is below its rounding error, so that d = +inf gives +inf, not NaN)
    far = jnp.where(d > _EXP_ONLY[_dtype_key(d.dtype)], e, e - 1.0 - d)
    near = jnp.abs(d) < 0.25
    d_near = jnp.where(near, d, jnp.zeros((), d.dtype))  # no inf into the series
    excess = jnp.where(near, _exp_excess_series(d_near), far)
    terms = _stirling_terms(x.dtype)
    large = z * excess + 0.5 * log_z + HALF_LOG_2PI + _stirling_tail(z, terms)
    x_eta = x * jnp.where(x == 0, jnp.zeros((), eta.dtype), eta)
    exp_only = eta > _EXP_ONLY[_dtype_key(eta.dtype)]  # eta = +inf: +inf, not NaN
    plain = jnp.where(exp_only, e, e - x_eta) + _small_log_factorial(x)
    return jnp.where(small, plain, large)


def _log_gamma_ratio(x: Array, r: Array) -> Array:
    r"""$\log\Gamma(x+r) - \log\Gamma(r) - \log x!$ for integer $x \ge 0$, $r > 0$:
    the log of the negative-binomial coefficient, without cancellation.

    Three regimes (selected per element):

    - $r \ge x$, $r \ge 8$: Stirling for both gammas, with
      $\log\Gamma(x+r)-\log\Gamma(r) = x\log r + (x+r-\tfrac12)\,\mathrm{log1p}(x/r)
      - x + S(x+r) - S(r)$ ($S$ the Stirling tail), minus $\log x!$;
    - $x > r$, $x \ge 8$: $\log\Gamma(x+r) - \log\Gamma(x+1) = d\log z +
      (z+d-\tfrac12)\,\mathrm{log1p}(d/z) - d + S(z+d) - S(z)$ with $z = x+1$,
      $d = r-1$, minus $\log\Gamma(r)$;
    - both below 8: the log of the rising factorial $r(r+1)\cdots(r+x-1)$ (no
      per-element `lgamma`).
    """
    terms = _stirling_terms(x.dtype)
    # r large (and not smaller than x)
    r_big = jnp.maximum(r, 8.0)
    lead_r = x * jnp.log(r_big) + (x + r_big - 0.5) * jnp.log1p(x / r_big) - x
    via_r = (
        lead_r
        + _stirling_tail(x + r_big, terms)
        - _stirling_tail(r_big, terms)
        - log_factorial(x)
    )
    # x large (and larger than r)
    z = jnp.maximum(x, 8.0) + 1.0
    d = r - 1.0
    via_x = (
        d * jnp.log(z)
        + (z + d - 0.5) * jnp.log1p(d / z)
        - d
        + _stirling_tail(z + d, terms)
        - _stirling_tail(z, terms)
        - gammaln(r)
    )
    # both small: Gamma(x + r) / Gamma(r) = r (r + 1) ... (r + x - 1), x < 8
    x_small = jnp.minimum(x, 7.0)
    rising = jnp.ones_like(x_small * r)
    for j in range(7):
        rising = rising * jnp.where(x_small > j, r + j, 1.0)
    direct = jnp.log(rising) - _small_log_factorial(x_small)
    use_r = (r >= x) & (r >= 8.0)
    use_x = (x > r) & (x >= 8.0)
    return jnp.where(use_r, via_r, jnp.where(use_x, via_x, direct))


# ------------------------------------------------------------ softplus pairs


def _mul0(a: Array, b: Array) -> Array:
    """`a * b` with `0 * inf = 0` (value and gradient)."""
    return a * jnp.where(a == 0, jnp.zeros((), b.dtype), b)


def softplus_pair(a: Array, b: Array, t: Array) -> Array:
    r"""$a\,\mathrm{softplus}(t) + b\,\mathrm{softplus}(-t)$ for weights $a,b\ge0$.

    Written as $(a+b)\log(1+e^{-|t|}) + a\max(t,0) + b\max(-t,0)$: every term is
    non-negative (no cancellation at large $|t|$), a zero weight times an infinite
    $t$ is 0, and the derivative at $t = 0$ is the exact $(a-b)/2$.
    """
    pos = t > 0
    neg_abs = jnp.where(pos, -t, t)  # -|t|, with derivative ±1 (never 0) at t = 0
    linear = jnp.where(pos, _mul0(a, t), -_mul0(b, t))
    return (a + b) * jnp.log1p(jnp.exp(neg_abs)) + linear


def _is_count(x: Array) -> Array:
    return (x >= 0) & (x == jnp.floor(x)) & (x < jnp.inf)


# ------------------------------------------------------------------ Poisson


class Poisson(AbstractNoise):
    r"""Poisson noise with log-rate `x_hat` $=\eta$:
    $-\log p(x\mid\eta) = e^{\eta} - x\eta + \log x!$, $x \in \{0, 1, 2, \dots\}$.

    `x_hat` is the log of the rate (the mean) $\mu = e^\eta$; `predict` returns
    $\mu$. `loss` drops $\log x!$ and keeps $e^\eta - x\eta$ (scikit-learn's
    `HalfPoissonLoss`, PyTorch's `PoissonNLLLoss(log_input=True)`).

    Counts may be floats or integers; a negative, non-integer or infinite count has
    probability 0 (`nll = +inf`). A zero rate ($\eta = -\infty$) with a zero count
    gives 0 with a zero gradient. The nll is exact without a per-element `lgamma`
    and without the $x\log x$ cancellation of the plain formula at large counts
    (float64 to $10^{-11}$ relative up to $x = 2^{31}$); in float32 its error at
    counts above ~$10^4$ is that of a one-ulp change of `x_hat`.
    """

    _discrete = True
    _safe_x = 0.0

    def __init__(self):
        pass

    def _loss(self, x, x_hat):
        # x * eta with 0 * (-inf) = 0 (zero rate, zero count), gradient 0 there
        x_eta = x * jnp.where(x == 0, jnp.zeros((), x_hat.dtype), x_hat)
        return jnp.exp(x_hat) - x_eta

    def _const(self, x):
        return log_factorial(x)

    def _nll(self, x, x_hat):
        return _poisson_nll(x, x_hat)

    def _in_support(self, x):
        return _is_count(x)

    def _predict(self, x_hat):
        return jnp.exp(x_hat)

    def _sample(self, key, x_hat, shape):
        return jax.random.poisson(key, jnp.exp(x_hat), shape).astype(x_hat.dtype)

    def _cdf(self, x, x_hat):
        k = jnp.floor(x)
        inside = k >= 0
        a = jnp.where(inside, k, 0.0) + 1.0
        value = gammaincc(a, jnp.exp(x_hat))
        return jnp.where(inside, value, jnp.zeros((), value.dtype))

    def _log_cdf(self, x, x_hat):
        return jnp.log(self._cdf(x, x_hat))

    def _log_sf(self, x, x_hat):
        k = jnp.floor(x)
        inside = k >= 0
        a = jnp.where(inside, k, 0.0) + 1.0
        value = jnp.log(gammainc(a, jnp.exp(x_hat)))
        return jnp.where(inside, value, jnp.zeros((), value.dtype))


# ------------------------------------------------------------ negative binomial

_R_MAX = {64: 1e30, 32: 1e15}


def _negative_binomial_saddle(x: Array, r: Array, eta: Array) -> Array:
    r"""The negative-binomial nll for $x, r \ge 8$ in saddle-point form.

    With $N = x + r$, $p = r/(r+\mu)$, the mass is $\frac{r}{N}\binom{N}{r}p^r
    q^x$ (Loader's identity), so with $w_1 = \log\frac{r}{Np}$,
    $w_2 = \log\frac{x}{Nq}$ and $E(d) = e^d - 1 - d$:
    $r\,E(-w_1) + x\,E(-w_2) + \tfrac12\log\frac{2\pi r x}{N} + S(r) + S(x) - S(N)
    + \log\frac{N}{r}$. Every large term is non-negative: no cancellation between
    $\log\Gamma(x+r)$, $\log x!$ and $x\log\mu$, for any $x$, $r$, $\mu$.
    """
    x = jnp.maximum(x, _K0)  # safe arguments where another regime is selected
    r = jnp.maximum(r, _K0)
    t = eta - jnp.log(r)
    pos = t > 0
    shared = jnp.log1p(jnp.exp(jnp.where(pos, -t, t)))
    zero = jnp.zeros((), t.dtype)
    neg_log_p = shared + jnp.where(pos, t, zero)  # softplus(t) = log((r + mu) / r)
    neg_log_q = shared - jnp.where(pos, zero, t)  # softplus(-t) = log((r + mu) / mu)
    log_n_over_r = jnp.log1p(x / r)
    log_n_over_x = jnp.log1p(r / x)
    terms = _stirling_terms(x.dtype)
    return (
        r * exp_excess(log_n_over_r - neg_log_p)
        + x * exp_excess(log_n_over_x - neg_log_q)
        + 0.5 * (jnp.log(x) - log_n_over_r)
        + HALF_LOG_2PI
        + _stirling_tail(r, terms)
        + _stirling_tail(x, terms)
        - _stirling_tail(x + r, terms)
        + log_n_over_r
    )


def _negative_binomial_plain(x: Array, r: Array, eta: Array) -> Array:
    """The nll by regime: saddle-point form when x and r are both at least 8."""
    plain = softplus_pair(r, x, eta - jnp.log(r)) - _log_gamma_ratio(x, r)
    both_large = (x >= _K0) & (r >= _K0)
    return jnp.where(both_large, _negative_binomial_saddle(x, r, eta), plain)


# psi(z) ~ log z - 1/(2z) - sum_n B_2n / (2n z^2n): the B_2n / 2n, n = 1..9 (for
# z >= 8: float64 nine terms, truncation < 1e-17 relative; float32 four)
_DIGAMMA = (
    1 / 12,
    -1 / 120,
    1 / 252,
    -1 / 240,
    1 / 132,
    -691 / 32760,
    1 / 12,
    -3617 / 8160,
    43867 / 14364,
)


def _digamma_tail(z: Array) -> Array:
    r"""$\sum_n \frac{B_{2n}}{2n} z^{-2n}$ (Horner in $z^{-2}$), $z \ge 8$."""
    terms = _stirling_terms(z.dtype)
    r2 = 1.0 / (z * z)
    acc = jnp.full_like(r2, _DIGAMMA[terms - 1])
    for c in reversed(_DIGAMMA[: terms - 1]):
        acc = c + r2 * acc
    return r2 * acc


def _log1p_excess(a: Array, s: Array, log1p_a: Array, small: Array) -> Array:
    r"""$L(a) = \log(1+a) - \frac{a}{1+a} \ge 0$, given $s = \frac{a}{1+a}$ and
    $\log(1+a)$ (used where not `small`): $a s - (a - \log(1+a))$ where `small`
    ($a \le 1$: ~$a^2/2$, the difference by its series, without cancellation),
    $\log(1+a) - s$ elsewhere."""
    a_s = jnp.where(small, a, 0.0)
    near = a_s * s - _log1p_minus(a_s)
    return jnp.where(small, near, jnp.where(small, 1.0, log1p_a) - s)


def _logistic_parts(t: Array) -> tuple[Array, Array, Array, Array]:
    r"""$(\sigma(t), \sigma(-t), e^{-|t|}, \mathrm{softplus}(t))$ from one `exp` and
    one `log1p`, accurate for every $t$."""
    e = jnp.exp(-jnp.abs(t))
    inv = 1.0 / (1.0 + e)
    pos = t >= 0
    s = jnp.where(pos, inv, e * inv)
    sm = jnp.where(pos, e * inv, inv)
    return s, sm, e, jnp.maximum(t, 0.0) + jnp.log1p(e)


def _negative_binomial_dr(
    x: Array, r: Array, t: Array, s: Array, sm: Array, e: Array, softplus_t: Array
) -> Array:
    r"""$\partial\,\mathrm{nll} / \partial r$ at fixed $\eta$, with $t = \eta - \log r$,
    $s = \sigma(t) = \mu/(r+\mu)$, $s_- = \sigma(-t)$, $a = e^t = \mu / r$
    (`_logistic_parts`):

    $$\partial_r = L(a) + \frac{x}{r+\mu} - [\psi(x+r) - \psi(r)],\qquad
      L(a) = \log(1+a) - \tfrac{a}{1+a},$$

    where for large $r$ every term is ~$1/r$ and the result ~$1/r^2$, so each regime
    is rearranged to cancel analytically:

    - $x < 8$: $\frac{x}{r+\mu} - \sum_{j<x} \frac1{r+j}
      = \sum_{j<x} \frac{j s_-/r - s}{r + j}$;
    - $x, r \ge 8$, $u = x/r$: $L(a) - L(u) + \frac{x}{r+x}(x s_-/r - s)
      - \frac{x}{2r(r+x)} + \sum_n \frac{B_{2n}}{2n}[(x+r)^{-2n} - r^{-2n}]$
      (the asymptotic series of $\psi$);
    - $x \ge 8 > r$: the asymptotic series for $\psi(x+r)$, `digamma` for $\psi(r)$.

    Everything that depends on $r$ alone is computed on $r$'s own (usually scalar)
    shape.
    """
    inv_r = 1.0 / r
    big_r = r >= _K0
    small_t = t <= 0  # a = e^t = e^{-|t|} there
    la = _log1p_excess(e, s, softplus_t, small_t)
    sm_r = sm * inv_r
    # x < 8: the finite sum (masked terms); the j = 0 term is -s / r
    small_x = x < _K0
    xs = jnp.minimum(x, _K0 - 1.0)
    finite = -jnp.where(xs > 0, s * inv_r, 0.0)
    for j in range(1, _K0 - 1):
        finite = finite + jnp.where(xs > j, (j * sm_r - s) * (1.0 / (r + j)), 0.0)
    # x >= 8 (the value of x for the two regimes below)
    xb = jnp.where(small_x, _K0, x)
    z = xb + r
    tail_z = _digamma_tail(jnp.maximum(z, _K0))
    # x, r >= 8
    rb = jnp.where(big_r, r, _K0)
    u = xb / rb
    small_u = u <= 1.0
    lu = _log1p_excess(u, u / (1.0 + u), jnp.log1p(u), small_u)
    large = (
        la
        - lu
        + xb / z * (xb * sm_r - s)
        - 0.5 * xb * inv_r / z
        + tail_z
        - _digamma_tail(rb)
    )
    # x >= 8 > r
    psi_r = digamma(jnp.where(big_r, 1.0, r))
    mixed = la + xb * sm_r - (jnp.log(z) - 0.5 / z - tail_z - psi_r)
    return jnp.where(small_x, la + finite, jnp.where(big_r, large, mixed))


@jax.custom_jvp
def _negative_binomial_nll(x: Array, r: Array, eta: Array) -> Array:
    r"""The negative-binomial nll, with its derivatives written out:
    $\partial_\eta = r s - x s_-$ and $\partial_r$ (`_negative_binomial_dr`); autodiff
    through the three regimes of the value cost ~3x the value and lost accuracy
    at their boundaries. The count $x$ has no derivative (a constant)."""
    return _negative_binomial_plain(x, r, eta)


@_negative_binomial_nll.defjvp
def _negative_binomial_nll_jvp(primals, tangents):
    x, r, eta = primals
    _, dr, deta = tangents
    t = eta - jnp.log(r)
    s, sm, e, softplus_t = _logistic_parts(t)
    d_eta = r * s - x * sm
    d_r = _negative_binomial_dr(x, r, t, s, sm, e, softplus_t)
    # the value through the rule itself, so higher derivatives never see the regimes
    return _negative_binomial_nll(x, r, eta), d_eta * deta + d_r * dr


class NegativeBinomial(AbstractNoise):
    r"""Negative binomial (gamma-Poisson) noise with log-mean `x_hat` $=\eta$ and
    concentration $r$ (the number of successes; variance $\mu + \mu^2/r$):

    $$-\log p(x\mid\eta) = -\log\frac{\Gamma(x+r)}{\Gamma(r)\,x!}
      + r\log\frac{r+\mu}{r} + x\log\frac{r+\mu}{\mu},\qquad \mu = e^{\eta},$$

    i.e. `scipy.stats.nbinom(n=r, p=r/(r+μ))`. `predict` returns the mean $\mu$.
    The $\hat x$-dependent part is evaluated as
    $r\,\mathrm{softplus}(\eta-\log r) + x\,\mathrm{softplus}(\log r-\eta)$ (stable
    for any $\eta$) and the coefficient without cancellation, even for huge $r$;
    when both $x$ and $r$ are at least 8 the whole nll is taken in saddle-point form
    (no $x\log x$ cancellation at large counts). The derivatives in $\eta$ and $r$
    are written out, rearranged so that the $1/r$ terms of $\partial_r$ cancel
    analytically (~1e-15 relative in float64 up to $r = 10^9$); counts are
    constants (no derivative in $x$).

    `loss` keeps $(r+x)\log(1+\mu/r) - x\eta$ and drops
    $-\log\frac{\Gamma(x+r)}{\Gamma(r)\,x!} + x\log r$; as $r\to\infty$ the loss
    tends to the Poisson loss $e^\eta - x\eta$ and the nll to the Poisson nll;
    `concentration=inf` is exactly the Poisson (values of $r$ above $10^{30}$, or
    $10^{15}$ in float32, are treated as that limit).
    """

    concentration: Float[Array, "*#batch"]
    _domains = {"concentration": POSITIVE}
    _discrete = True
    _safe_x = 0.0

    def __init__(self, concentration: Float[ArrayLike, "*#batch"]):
        self.concentration = as_param(concentration)

    def _r(self) -> Array:
        # Beyond _R_MAX the law equals the Poisson to within x^2 / (2 r) < 1e-16
        # (float64) relative for any realistic count; clamping keeps log r, r * e^t
        # and the coefficient finite, so r = +inf is exactly that limit.
        r = self.concentration
        return jnp.minimum(r, _R_MAX[_dtype_key(r.dtype)])

    def _pair(self, x, x_hat):
        r = self._r()
        return softplus_pair(r, x, x_hat - jnp.log(r))

    def _nll(self, x, x_hat):
        return _negative_binomial_nll(x, self._r(), x_hat)

    def _loss(self, x, x_hat):
        return self._pair(x, x_hat) - x * jnp.log(self._r())

    def _const(self, x):
        r = self._r()
        return x * jnp.log(r) - _log_gamma_ratio(x, r)

    def _in_support(self, x):
        return _is_count(x)

    def _predict(self, x_hat):
        return jnp.broadcast_to(
            jnp.exp(x_hat), jnp.broadcast_shapes(x_hat.shape, self.concentration.shape)
        )

    def _sample(self, key, x_hat, shape):
        k_gamma, k_poisson = jax.random.split(key)
        r = self._r()
        rate = jax.random.gamma(k_gamma, r, shape, x_hat.dtype) * (jnp.exp(x_hat) / r)
        return jax.random.poisson(k_poisson, rate, shape).astype(x_hat.dtype)

    def _tail_args(self, x, x_hat):
        r = self._r()
        k = jnp.floor(x)
        inside = k >= 0
        k = jnp.where(inside, k, 0.0)
        log_r = jnp.log(r)
        p = jax.nn.sigmoid(log_r - x_hat)  # r / (r + mu)
        q = jax.nn.sigmoid(x_hat - log_r)  # mu / (r + mu)
        return r, k, inside, p, q

    def _cdf(self, x, x_hat):
        r, k, inside, p, _ = self._tail_args(x, x_hat)
        value = betainc(r, k + 1.0, p)
        return jnp.where(inside, value, jnp.zeros((), value.dtype))

    def _log_tails(self, x, x_hat):
        r"""$P(X \le k) = I_p(r, k+1)$ and $P(X > k) = I_q(k+1, r)$, $q = 1-p$, in
        log space and each accurate where it is small (`log_betainc_tails`)."""
        r, k, inside, p, q = self._tail_args(x, x_hat)
        log_p, log_q = log_betainc_tails(r, k + 1.0, p, q)
        return jnp.where(inside, log_p, -jnp.inf), jnp.where(inside, log_q, 0.0)

    def _log_cdf(self, x, x_hat):
        return self._log_tails(x, x_hat)[0]

    def _log_sf(self, x, x_hat):
        return self._log_tails(x, x_hat)[1]
