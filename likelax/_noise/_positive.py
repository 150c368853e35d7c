r"""Noise on the positive half-line (Gamma) and on the unit interval (Beta).

Both are written so that large concentrations do not cancel catastrophically: the
normalising constants are split into a Stirling part, which cancels analytically
against the data terms, and the Stirling remainder
$\operatorname{stirlerr}(k) = \log\Gamma(k) - (k-\tfrac12)\log k + k - \tfrac12\log 2\pi$,
which is small and computed accurately without `lgamma` (a series for $k \ge 10$, the
recurrence below).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.scipy.special import betainc as _jax_betainc
from jax.scipy.special import gammainc, gammaincc, gammaln
from jaxtyping import Array, ArrayLike, Float

from ._base import POSITIVE, AbstractNoise, as_param
from ._special import HALF_LOG_2PI, STIRLING

# ------------------------------------------------------------------ helpers

_STIRLING_SWITCH = 10.0
# B_2n / (2n (2n-1)): the Stirling series of log Gamma. For k >= 10, eight terms are
# exact to 2e-18 (absolute), five to 2e-14 (enough in float32).
_STIRLING = STIRLING[:8]  # eight terms (likelax._noise._special)


def _stirling_series(k: Array) -> Array:
    r = 1.0 / k
    terms = _STIRLING if jnp.dtype(k.dtype).itemsize > 4 else _STIRLING[:5]
    return r * _poly(list(terms), r * r, len(terms))


def _stirlerr(k: Array, log_k: Array) -> Array:
    r"""$\log\Gamma(k) - (k-\frac12)\log k + k - \frac12\log 2\pi$ for $k > 0$.

    For $k \ge 10$ the Stirling series; below, the same series at $m = k + 10$ and
    the recurrence $\Gamma(k) = \Gamma(m) / (k (k+1) \cdots (k+9))$:
    $(k + \frac12)\log(m/k) + \log(m^9/\prod_{j=1}^{9}(k+j)) - 10
    + \operatorname{stirlerr}(m)$ (terms of size ~10: absolute error ~1e-15 in
    float64, ~1e-6 in float32). No `lgamma` and no
    `digamma` in the gradient: rational functions and two logs, cheaper than
    `lgamma` alone. `log_k` is $\log k$, passed separately so that a $k$ that
    underflows to 0 (a tiny Beta shape) still gives the right (finite) value and
    gradient. Both branches get safe inputs, so neither leaks NaN gradients.
    """
    big = k >= _STIRLING_SWITCH
    kb = jnp.where(big, k, _STIRLING_SWITCH)
    ks = jnp.where(big, 1.0, k)
    log_ks = jnp.where(big, 0.0, log_k)
    m = ks + _STIRLING_SWITCH
    # written with terms of size ~10 (not ~35): (k + 1/2) log(m / k)
    # + log(m^9 / prod_j (k + j)) - 10 + stirlerr(m). log(m / k) as a difference of
    # logs (m / k > 2: no cancellation) with log k as given, so that a k which
    # underflowed is right and the derivative 1/m - 1/k never forms k^2 (which
    # flushes to 0 in float32 at k = 1e-19, the edge of a learned concentration)
    log_m_over_k = jnp.log(m) - log_ks
    prod = ks + 1.0
    for j in range(2, 10):
        prod = prod * (ks + j)
    m2 = m * m
    m4 = m2 * m2
    shifted = (
        (ks + 0.5) * log_m_over_k
        + jnp.log(m4 * m4 * m / prod)
        - _STIRLING_SWITCH
        + _stirling_series(m)
    )
    return jnp.where(big, _stirling_series(kb), shifted)


_SERIES_SWITCH = 0.1
# e^d - 1 - d = d^2 sum_n d^n / (n+2)!: for |d| <= 0.1, ten terms reach 3e-17
# (relative), six 2e-9 (enough in float32)
_EXPM1_MINUS = [1.0 / math.factorial(n + 2) for n in range(10)]
# u - log1p(u) = u^2 sum_n (-1)^n u^n / (n+2): fifteen terms (float64), eight (float32)
_LOG1P_MINUS = [(-1.0) ** n / (n + 2) for n in range(15)]


def _poly(coeffs: list[float], t: Array, f32_terms: int) -> Array:
    """Horner; float32 (and lower) needs only the first `f32_terms` coefficients."""
    if jnp.dtype(t.dtype).itemsize <= 4:
        coeffs = coeffs[:f32_terms]
    acc = jnp.zeros_like(t)
    for c in reversed(coeffs):
        acc = c + t * acc
    return acc


@jax.custom_jvp
def _expm1_minus(d: Array) -> Array:
    r"""$e^d - 1 - d$, accurate to a few ulps for every $d$ (a series near 0, where
    the direct form cancels); its derivative is written as $\operatorname{expm1}(d)$,
    so the gradient costs one multiply."""
    em1 = jnp.expm1(d)
    small = jnp.abs(d) <= _SERIES_SWITCH
    ds = jnp.where(small, d, 0.0)
    direct = jnp.where(jnp.isposinf(d), jnp.inf, em1 - d)
    return jnp.where(small, ds * ds * _poly(_EXPM1_MINUS, ds, 6), direct)


@_expm1_minus.defjvp
def _expm1_minus_jvp(primals, tangents):
    (d,), (dd,) = primals, tangents
    return _expm1_minus(d), jnp.expm1(d) * dd


@jax.custom_jvp
def _log1p_minus(u: Array) -> Array:
    r"""$u - \log(1+u)$ for $u > -1$, accurate near 0 (a series); derivative
    $u / (1 + u)$."""
    small = jnp.abs(u) <= _SERIES_SWITCH
    us = jnp.where(small, u, 0.0)
    ul = jnp.where(small, 1.0, u)
    return jnp.where(small, us * us * _poly(_LOG1P_MINUS, us, 8), ul - jnp.log1p(ul))


@_log1p_minus.defjvp
def _log1p_minus_jvp(primals, tangents):
    (u,), (du,) = primals, tangents
    return _log1p_minus(u), u / (1.0 + u) * du


def _log_sigmoids(logit: Array) -> tuple[Array, Array, Array, Array]:
    r"""$(\log\mu, \log(1-\mu), \mu, 1-\mu)$ for $\mu = \sigma(\ell)$, with one `exp`
    and one `log1p`, accurate for any $\ell$ (including $\pm$1e4 in float32, where
    $\mu$ or $1-\mu$ underflows but its logarithm does not)."""
    pos = logit >= 0
    e = jnp.exp(jnp.where(pos, -logit, logit))  # exp(-|l|), with the gradient at 0
    lp = jnp.log1p(e)
    log_mu = -(jnp.where(pos, 0.0, -logit) + lp)
    log_1m_mu = -(jnp.where(pos, logit, 0.0) + lp)
    inv = 1.0 / (1.0 + e)
    mu = jnp.where(pos, inv, e * inv)
    one_m_mu = jnp.where(pos, e * inv, inv)
    return log_mu, log_1m_mu, mu, one_m_mu


def _log1mexp(v: Array) -> Array:
    r"""$\log(1 - e^{v})$ for $v \le 0$, accurate on both sides of $-\log 2$."""
    near = v > -0.6931471805599453
    v_near = jnp.where(near, v, -1.0)
    v_far = jnp.where(near, -1.0, v)
    return jnp.where(near, jnp.log(-jnp.expm1(v_near)), jnp.log1p(-jnp.exp(v_far)))


def _broadcast(value: Array, *others: Array) -> Array:
    return jnp.broadcast_to(
        value, jnp.broadcast_shapes(value.shape, *(o.shape for o in others))
    )


# Tail fallbacks for the regularised incomplete gamma functions, used where
# `gammainc` / `gammaincc` underflow to 0 but their logarithm is representable.
_TAIL_TERMS = 48
_MAX_LEVELS = 4096  # the incomplete beta's derivatives: accurate up to a + b ~ 4e6


def _log_gammainc_cf(k: Array, log_z: Array, z: Array) -> Array:
    r"""$\log P(k, z)$ from $P = \frac{z^k e^{-z}}{\Gamma(k+1)}\,M(1; k+1; z)$, with
    Kummer's $M(1; k+1; z) = \sum_n z^n / ((k+1)\cdots(k+n))$ by its Gauss continued
    fraction (`_TAIL_TERMS` levels, evaluated backwards). Used where $P$ underflows,
    i.e. $z < k$: there it converges to rounding even for $k = 10^6$, $z = 0.95k$."""
    t = jnp.zeros_like(z)
    for j in range(_TAIL_TERMS, 0, -1):
        if j == 1:
            c = -z / (k + 1.0)
        elif j % 2 == 0:
            m = j // 2
            c = m * z / ((k + (2 * m - 1)) * (k + 2 * m))
        else:
            m = (j - 1) // 2
            c = -(k + m) * z / ((k + 2 * m) * (k + (2 * m + 1)))
        t = c / (1.0 + t)
    return k * log_z - z - gammaln(k + 1.0) - jnp.log1p(t)


def _log_gammaincc_cf(k: Array, log_z: Array, z: Array) -> Array:
    r"""$\log Q(k, z)$ from Legendre's continued fraction
    $Q = \frac{z^k e^{-z}}{\Gamma(k)}\cfrac{1}{z+1-k-\cfrac{1\,(1-k)}{z+3-k-\cdots}}$,
    evaluated backwards to a fixed depth; used for $z > k$ only."""
    t = jnp.zeros_like(z)
    for j in range(_TAIL_TERMS, 0, -1):
        t = j * (j - k) / (z + 2.0 * j + 1.0 - k - t)
    return k * log_z - z - gammaln(k) - jnp.log(z + 1.0 - k - t)


def _log_betainc_cf(
    a: Array, b: Array, x: Array, depth: int | Array = _TAIL_TERMS
) -> Array:
    r"""$\log I_x(a, b)$ from $I_x = \frac{x^a(1-x)^b}{a\,B(a,b)}
    \cfrac{1}{1+\cfrac{d_1}{1+\cfrac{d_2}{1+\cdots}}}$ (the continued fraction of
    Numerical Recipes' `betacf`, `depth` levels, evaluated backwards). It converges
    for $x < (a+1)/(a+b+2)$: fast far below the mean (where $I_x$ underflows,
    `_TAIL_TERMS` levels), in about $2\sqrt{a+b}$ levels next to it. A traced
    `depth` makes the loop a `while` (forward-mode differentiable only)."""

    def level(i, t):
        j = depth - i  # from the deepest level up
        m = (j // 2).astype(x.dtype)
        even = m * (b - m) * x / ((a + (2 * m - 1)) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + (2 * m + 1)))
        return jnp.where(j % 2 == 0, even, odd) / (1.0 + t)

    t = jax.lax.fori_loop(0, depth, level, jnp.zeros_like(a * b * x))
    log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
    return a * jnp.log(x) + b * jnp.log1p(-x) - jnp.log(a) - log_beta - jnp.log1p(t)


def _inside_cf(a: Array, b: Array) -> Array:
    """A point where the continued fraction of $I_x(a, b)$ converges (half its
    switch point $(a+1)/(a+b+2)$): the harmless argument of an unused branch."""
    return 0.5 * (a + 1.0) / (a + b + 2.0)


def _betainc_partials(a: Array, b: Array, x: Array) -> tuple[Array, Array]:
    r"""$(\partial I_x(a,b)/\partial a,\ \partial I_x(a,b)/\partial b)$ for
    $0 < x < 1$: forward-mode derivatives of the continued fraction of
    `_log_betainc_cf`, where it converges ($x < (a+1)/(a+b+2)$), times $I$; above,
    of $I = 1 - I_{1-x}(b, a)$ the same way. Relative error below 1e-9 in float64
    (checked against mpmath for $a, b \in [0.05, 5000]$ from the tails to the
    mode)."""
    a, b, x = jnp.broadcast_arrays(a, b, x)
    # levels for convergence to rounding next to the mean (checked to a + b = 1.4e4)
    levels = 32.0 + 2.0 * jnp.ceil(jnp.sqrt(jnp.max(a + b, initial=0.0)))
    levels = jnp.where(levels < _MAX_LEVELS, levels, _MAX_LEVELS)  # NaN: the cap
    depth = levels.astype(jnp.int32)
    direct = x < (a + 1.0) / (a + b + 2.0)
    # each branch gets an argument where it converges (no NaN in the unused one)
    x_lo = jnp.where(direct, x, _inside_cf(a, b))
    x_hi = jnp.where(direct, _inside_cf(b, a), 1.0 - x)
    ones, zeros = jnp.ones_like(x), jnp.zeros_like(x)

    def partial(f, *args, which):
        tangents = [ones if i == which else zeros for i in range(len(args))]
        log_i, d_log_i = jax.jvp(lambda *v: f(*v, depth), args, tuple(tangents))
        return jnp.exp(log_i) * d_log_i

    lo = (
        partial(_log_betainc_cf, a, b, x_lo, which=0),
        partial(_log_betainc_cf, a, b, x_lo, which=1),
    )
    hi = (  # I = 1 - J, J = I_{1-x}(b, a)
        -partial(_log_betainc_cf, b, a, x_hi, which=1),
        -partial(_log_betainc_cf, b, a, x_hi, which=0),
    )
    return jnp.where(direct, lo[0], hi[0]), jnp.where(direct, lo[1], hi[1])


@jax.custom_jvp
def betainc(a: Array, b: Array, x: Array) -> Array:
    r"""The regularised incomplete beta function $I_x(a, b)$ (jax's value),
    differentiable in all three arguments: $\partial_x I = x^{a-1}(1-x)^{b-1} /
    B(a, b)$ and the $a$, $b$ derivatives of `_betainc_partials` (jax has none).
    At $x \le 0$ or $x \ge 1$ (where $I$ is constant) every derivative is 0."""
    return _jax_betainc(a, b, x)


def _betainc_jvp(primals, tangents):
    a, b, x = primals
    da, db, dx = tangents
    value = betainc(a, b, x)
    inside = (x > 0) & (x < 1)
    xs = jnp.where(inside, x, jnp.asarray(0.5, x.dtype))
    zero = jnp.zeros_like(value)
    out = zero
    if not isinstance(dx, SymbolicZero):
        log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
        density = jnp.exp((a - 1.0) * jnp.log(xs) + (b - 1.0) * jnp.log1p(-xs) - log_beta)
        out = out + jnp.where(inside, density, zero) * dx
    if not (isinstance(da, SymbolicZero) and isinstance(db, SymbolicZero)):
        ga, gb = _betainc_partials(a, b, xs)
        if not isinstance(da, SymbolicZero):
            out = out + jnp.where(inside, ga, zero) * da
        if not isinstance(db, SymbolicZero):
            out = out + jnp.where(inside, gb, zero) * db
    return value, out


betainc.defjvp(_betainc_jvp, symbolic_zeros=True)


def log_betainc_tails(
    a: Array, b: Array, x: Array, y: Array | None = None
) -> tuple[Array, Array]:
    r"""$(\log I_x(a, b),\ \log I_y(b, a))$ for $0 < x < 1$, $y = 1 - x$ (pass
    it when it is known more accurately than `1 - x`): the lower and upper tails
    of a Beta$(a, b)$ law at $x$, each accurate where it is small.

    Each tail is `betainc` where it is the smaller one and `log1p` of minus the
    other where it is not; a tail that underflows comes from the continued
    fraction in log space (`_log_betainc_cf`), so deep tails stay finite and
    accurate. Differentiable in $a$, $b$ and $x$; every unused branch sees a
    harmless argument (no NaN in gradients)."""
    y = 1.0 - x if y is None else y
    p = betainc(a, b, x)
    q = betainc(b, a, y)
    tiny = jnp.finfo(p.dtype).tiny * 1e6
    cf_p, cf_q = p < tiny, q < tiny
    log_p_small = jnp.where(
        cf_p,
        _log_betainc_cf(a, b, jnp.where(cf_p, x, _inside_cf(a, b))),
        jnp.log(jnp.where(cf_p, 1.0, p)),
    )
    log_q_small = jnp.where(
        cf_q,
        _log_betainc_cf(b, a, jnp.where(cf_q, y, _inside_cf(b, a))),
        jnp.log(jnp.where(cf_q, 1.0, q)),
    )
    lower = p < 0.5
    log_p = jnp.where(lower, log_p_small, jnp.log1p(-jnp.where(lower, 0.0, q)))
    log_q = jnp.where(lower, jnp.log1p(-jnp.where(lower, p, 0.0)), log_q_small)
    return log_p, log_q


# ------------------------------------------------------------------ Gamma


class Gamma(AbstractNoise):
    r"""Gamma noise with concentration (shape) $k$ and mean $\mu = e^{\hat x}$:

    $$p(x\mid\hat x) = \frac{(k/\mu)^k}{\Gamma(k)}\,x^{k-1}e^{-kx/\mu},\quad x>0,$$

    $$-\log p = k\,x e^{-\hat x} + k\hat x - (k-1)\log x - k\log k + \log\Gamma(k).$$

    `x_hat` is the log-mean $\eta = \log\mu$ (the canonical log link); the variance
    is $\mu^2/k$. scipy's twin is `gamma(a=k, scale=mu/k)`. `predict` returns
    $\mu = e^{\hat x}$.

    `loss` keeps $k\,(x e^{-\hat x} + \hat x)$ (with $k=1$ this is the half-Gamma
    deviance loss of scikit-learn, `HalfGammaLoss`) and drops
    $-(k-1)\log x - k\log k + \log\Gamma(k)$.

    Numerics: with $d = \log x - \hat x$ the nll is evaluated as
    $k\,(\operatorname{expm1}(d) - d) + \log x + \tfrac12\log(2\pi/k) +
    \operatorname{stirlerr}(k)$, which has no $k\log k$ cancellation (huge $k$ is
    accurate), never forms $x/\mu$ or $e^{-\hat x}$ alone (so $\hat x = \pm700$ in
    float64 and huge or tiny $x$ stay finite wherever the value is representable),
    and costs one `log` and one `expm1` per element; the $k$-only terms are computed
    once on the hyperparameter. $x \le 0$ and $x = +\infty$ give `+inf`.

    `cdf` is `gammainc`; `log_cdf` / `log_sf` take the logarithm of whichever of
    $P$, $Q$ is below ½ (`log1p` of the other above), and where that underflows
    they switch to log-space continued fractions (Gauss's for Kummer's function in the
    lower tail, Legendre's in the upper), so deep tails stay finite and accurate
    (relative ~1e-13 in float64, checked to $k = 10^7$).

    Arguments:
        concentration: the shape $k > 0$ (the inverse squared coefficient of
            variation); an array broadcast against the batch.
    """

    concentration: Float[Array, "*#batch"]
    _domains = {"concentration": POSITIVE}
    _safe_x = 1.0

    def __init__(self, concentration: Float[ArrayLike, "*#batch"]):
        self.concentration = as_param(concentration)

    def _in_support(self, x):
        return (x > 0) & (x < jnp.inf)

    def _log_norm(self) -> Array:
        """$\\log\\Gamma(k) - k\\log k + k$ without cancellation (hyperparameter only)."""
        k = self.concentration
        log_k = jnp.log(k)
        return HALF_LOG_2PI - 0.5 * log_k + _stirlerr(k, log_k)

    def _nll(self, x, x_hat):
        k = self.concentration
        log_x = jnp.log(x)
        d = log_x - x_hat
        return k * _expm1_minus(d) + log_x + self._log_norm()

    def _loss(self, x, x_hat):
        # k (x e^{-x_hat} + x_hat) = k (expm1(d) - d + log x + 1): the same form as
        # the nll, so the gradient -k expm1(d) does not cancel near x = mu
        k = self.concentration
        log_x = jnp.log(x)
        return k * (_expm1_minus(log_x - x_hat) + log_x + 1.0)

    def _const(self, x):
        k = self.concentration
        return -(k - 1.0) * jnp.log(x) - k * jnp.log(k) + gammaln(k)

    def _predict(self, x_hat):
        return _broadcast(jnp.exp(x_hat), self.concentration)

    def _sample(self, key, x_hat, shape):
        k = jnp.broadcast_to(self.concentration, shape)
        log_g = jax.random.loggamma(key, k, shape, x_hat.dtype)
        return jnp.exp(log_g + (x_hat - jnp.log(self.concentration)))

    def _scaled(self, x, x_hat):
        """(k, log z, z) with $z = kx/\\mu$ (computed in log space); x > 0 assumed."""
        k = self.concentration
        log_z = jnp.log(x) + (jnp.log(k) - x_hat)
        return k, log_z, jnp.exp(log_z)

    def _cdf(self, x, x_hat):
        low = x <= 0
        k, _, z = self._scaled(jnp.where(low, 1.0, x), x_hat)
        return jnp.where(low, 0.0, gammainc(k, z))

    def _log_tails(self, x, x_hat):
        """(log P, log Q) at x > 0, each accurate where it is small."""
        k, log_z, z = self._scaled(x, x_hat)
        p = gammainc(k, z)
        q = gammaincc(k, z)
        tiny = jnp.finfo(p.dtype).tiny
        # lower tail: log P, or the log-space series where P underflows
        use_cf_low = p < tiny * 1e6
        zs = jnp.where(use_cf_low, z, 0.5 * k)
        log_zs = jnp.where(use_cf_low, log_z, jnp.log(0.5 * k))
        ps = jnp.where(use_cf_low, 1.0, p)
        log_p_small = jnp.where(use_cf_low, _log_gammainc_cf(k, log_zs, zs), jnp.log(ps))
        # upper tail: log Q, or the continued fraction where Q underflows
        use_cf = (q < tiny * 1e6) & (z > k)
        zc = jnp.where(use_cf, z, 2.0 * k + 2.0)
        log_zc = jnp.where(use_cf, log_z, jnp.log(2.0 * k + 2.0))
        qs = jnp.where(use_cf, 1.0, q)
        log_q_small = jnp.where(use_cf, _log_gammaincc_cf(k, log_zc, zc), jnp.log(qs))
        lower_half = p < 0.5
        qh = jnp.where(lower_half, 0.0, q)
        ph = jnp.where(lower_half, p, 0.0)
        log_p = jnp.where(lower_half, log_p_small, jnp.log1p(-qh))
        log_q = jnp.where(lower_half, jnp.log1p(-ph), log_q_small)
        return log_p, log_q

    def _log_cdf(self, x, x_hat):
        low, high = x <= 0, x == jnp.inf
        log_p, _ = self._log_tails(jnp.where(low | high, 1.0, x), x_hat)
        return jnp.where(low, -jnp.inf, jnp.where(high, 0.0, log_p))

    def _log_sf(self, x, x_hat):
        low, high = x <= 0, x == jnp.inf
        _, log_q = self._log_tails(jnp.where(low | high, 1.0, x), x_hat)
        return jnp.where(low, 0.0, jnp.where(high, -jnp.inf, log_q))


# ------------------------------------------------------------------ Beta


class Beta(AbstractNoise):
    r"""Beta noise on $(0, 1)$ with mean $\mu = \sigma(\hat x)$ and concentration
    (precision) $\phi$: shapes $a = \mu\phi$, $b = (1-\mu)\phi$,

    $$-\log p(x\mid\hat x) = -(a-1)\log x - (b-1)\log(1-x)
        + \log\Gamma(a) + \log\Gamma(b) - \log\Gamma(\phi).$$

    `x_hat` is the logit of the mean (the usual Beta-regression link); the variance
    is $\mu(1-\mu)/(1+\phi)$. scipy's twin is `beta(mu*phi, (1-mu)*phi)`.
    `predict` returns $\mu = \sigma(\hat x)$.

    `loss` keeps $-a\log x - b\log(1-x) + \log\Gamma(a) + \log\Gamma(b)$ and drops
    $\log x + \log(1-x) - \log\Gamma(\phi)$ (the only $\hat x$-free terms: $a$ and
    $b$ depend on $\hat x$).

    Numerics: $\log\mu = -\operatorname{softplus}(-\hat x)$ and
    $\log(1-\mu) = -\operatorname{softplus}(\hat x)$ (one `exp`, one `log1p`), so
    logits of $\pm$1e4 (float32) or $\pm$800 (float64), where $a$ or $b$ underflows,
    stay finite and exact (a logit of $\pm\infty$, $\mu \in \{0, 1\}$, makes every
    $x$ impossible: `+inf`). The nll is evaluated as
    $\phi\,\mathrm{KL}(\mu\,\|\,x) + \log x + \log(1-x)
    - \tfrac12\log(\phi\mu(1-\mu)) + \tfrac12\log 2\pi
    + \operatorname{stirlerr}(a) + \operatorname{stirlerr}(b)
    - \operatorname{stirlerr}(\phi)$, where
    $\mathrm{KL}(\mu\|x) = \mu\log\frac{\mu}{x} + (1-\mu)\log\frac{1-\mu}{1-x}$ is
    the Bernoulli divergence (formed with `log1p` of relative differences near
    $x = \mu$): the $O(\phi\log\phi)$ terms of the log-Gamma functions cancel
    analytically, so huge concentrations are accurate. $x \le 0$ and $x \ge 1$
    give `+inf`.

    `cdf` is `betainc(a, b, x)`; `log_cdf` / `log_sf` take the logarithm of the
    smaller tail (`betainc` of the reflected arguments for the upper one) and, where
    that underflows, the continued fraction of $I_x(a, b)$ in log space, so deep
    tails stay finite and accurate. All three are differentiable with respect to
    `x_hat` and the concentration (jax's `betainc` has no derivative in $a$, $b$;
    likelax's `betainc` adds them), so censored Beta regression can be fitted.

    Arguments:
        concentration: the precision $\phi > 0$; an array broadcast against the
            batch.
    """

    concentration: Float[Array, "*#batch"]
    _domains = {"concentration": POSITIVE}
    _safe_x = 0.5

    def __init__(self, concentration: Float[ArrayLike, "*#batch"]):
        self.concentration = as_param(concentration)

    def _in_support(self, x):
        return (x > 0) & (x < 1)

    def _nll(self, x, x_hat):
        phi = self.concentration
        log_phi = jnp.log(phi)
        # logit = +-inf: mu is 0 or 1, every x in (0, 1) is impossible (+inf, with a
        # zero gradient); the formula itself sees a harmless logit there
        degenerate = jnp.isinf(x_hat)
        x_hat = jnp.where(degenerate, 0.0, x_hat)
        log_mu, log_1m_mu, mu, one_m_mu = _log_sigmoids(x_hat)
        log_x = jnp.log(x)
        one_m_x = 1.0 - x
        log_1m_x = jnp.log1p(-x)
        # mu - x, accurately whichever end of (0, 1) both are near
        delta = jnp.where(x < 0.5, mu - x, one_m_x - one_m_mu)
        # Near x = mu (|delta| <= min(x, 1-x)/2): the first-order terms of the two
        # log-ratios cancel analytically,
        #   KL = delta^2/(x(1-x)) - mu g(delta/x) - (1-mu) g(-delta/(1-x)),
        # g(u) = u - log1p(u) (second order, by a series); elsewhere each ratio is a
        # log1p of a relative difference (when moderate) or a difference of logs.
        near1 = jnp.abs(delta) <= 0.5 * x
        near2 = jnp.abs(delta) <= 0.5 * one_m_x
        r1 = jnp.where(near1, delta / x, 0.0)
        r2 = jnp.where(near2, -delta / one_m_x, 0.0)
        log_ratio1 = jnp.where(near1, jnp.log1p(r1), log_mu - log_x)
        log_ratio2 = jnp.where(near2, jnp.log1p(r2), log_1m_mu - log_1m_x)
        kl_far = mu * log_ratio1 + one_m_mu * log_ratio2
        both = near1 & near2
        kl_near = (
            delta * delta / (x * one_m_x)
            - mu * _log1p_minus(jnp.where(both, r1, 0.0))
            - one_m_mu * _log1p_minus(jnp.where(both, r2, 0.0))
        )
        kl = phi * jnp.where(both, kl_near, kl_far)
        const = HALF_LOG_2PI - 0.5 * log_phi - _stirlerr(phi, log_phi)
        value = (
            kl
            + log_x
            + log_1m_x
            - 0.5 * (log_mu + log_1m_mu)
            + _stirlerr(phi * mu, log_phi + log_mu)
            + _stirlerr(phi * one_m_mu, log_phi + log_1m_mu)
            + const
        )
        return jnp.where(degenerate, jnp.inf, value)

    def _const(self, x):
        return jnp.log(x) + jnp.log1p(-x) - gammaln(self.concentration)

    def _loss(self, x, x_hat):
        return self._nll(x, x_hat) - self._const(x)

    def _predict(self, x_hat):
        return _broadcast(jax.nn.sigmoid(x_hat), self.concentration)

    def _sample(self, key, x_hat, shape):
        phi = self.concentration
        log_phi = jnp.log(phi)
        log_mu, log_1m_mu, _, _ = _log_sigmoids(x_hat)
        a = jnp.broadcast_to(jnp.exp(log_phi + log_mu), shape)
        b = jnp.broadcast_to(jnp.exp(log_phi + log_1m_mu), shape)
        ka, kb = jax.random.split(key)
        log_ga = jax.random.loggamma(ka, a, shape, x_hat.dtype)
        log_gb = jax.random.loggamma(kb, b, shape, x_hat.dtype)
        return jax.nn.sigmoid(log_ga - log_gb)

    def _shapes(self, x_hat):
        phi = self.concentration
        mu = jax.nn.sigmoid(x_hat)
        return phi * mu, phi * jax.nn.sigmoid(-x_hat)

    def _cdf(self, x, x_hat):
        a, b = self._shapes(x_hat)
        xs = jnp.where((x <= 0) | (x >= 1), 0.5, x)  # NaN stays NaN
        value = betainc(a, b, xs)
        return jnp.where(x <= 0, 0.0, jnp.where(x >= 1, 1.0, value))

    def _log_tails(self, x, x_hat):
        a, b = self._shapes(x_hat)
        xs = jnp.where((x <= 0) | (x >= 1), 0.5, x)  # NaN stays NaN
        log_p, log_q = log_betainc_tails(a, b, xs)
        log_p = jnp.where(x <= 0, -jnp.inf, jnp.where(x >= 1, 0.0, log_p))
        log_q = jnp.where(x <= 0, 0.0, jnp.where(x >= 1, -jnp.inf, log_q))
        return log_p, log_q

    def _log_cdf(self, x, x_hat):
        return self._log_tails(x, x_hat)[0]

    def _log_sf(self, x, x_hat):
        return self._log_tails(x, x_hat)[1]
