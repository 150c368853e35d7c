r"""Real-valued noise with a location `x_hat`: Gaussian and the robust families.

Every family here is a location-scale family on the real line,
$p(x\mid\hat x) = \tfrac1s f\!\big((x-\hat x)/s\big)$, so its nll is
$\rho(z) + \log s + \log Z$ with $z = (x-\hat x)/s$ standardised once (with
`standardize`, whose derivative stays finite for tiny scales) and differentiated
through. `loss` keeps $\rho(z)$, the part that depends on `x_hat`.

The symmetric families share one tail function $\ell(m) = \log P(Z > m)$, $m \ge 0$,
from which `cdf`, `log_cdf` and `log_sf` are built without cancellation in either
tail (`_symmetric_cdfs`).
"""

from __future__ import annotations

import abc
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.scipy.special import erf, erfcx, gammaincc, gammaln, ndtr
from jaxtyping import Array, ArrayLike, Float

from ._base import POSITIVE, UNIT_INTERVAL_OPEN, AbstractNoise, as_param
from ._special import HALF_LOG_2PI, LOG_2, LOG_PI, ratio_power, standardize

__all__ = [
    "AsymmetricLaplace",
    "Cauchy",
    "Gaussian",
    "GeneralizedNormal",
    "Huber",
    "Laplace",
    "StudentT",
]

_HALF_LOG_PI = 0.5 * LOG_PI
_SQRT_HALF = math.sqrt(0.5)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------- helpers


def _broadcast_location(noise: AbstractNoise, x_hat: Array) -> Array:
    """`x_hat` broadcast against the hyperparameters (what `predict` returns)."""
    shapes = [jnp.shape(p) for p in noise._hyperparameters().values()]
    return jnp.broadcast_to(x_hat, jnp.broadcast_shapes(x_hat.shape, *shapes))


@jax.custom_jvp
def _log1p_square(w: Array) -> Array:
    r"""$\log(1 + w^2)$ for every $w$, without a select (so XLA fuses it into the
    reduction that consumes it) and without forming $w^2$ when it would overflow:

    $$\log(1+t^2) = 2\log\max(t, 1) + \log\!\big(1 + \min(t, 1/t)^2\big),
    \qquad t = |w|,$$

    exact in both regimes (for $t \ge 1$ both terms are positive; for $t < 1$ it is
    `log1p(t²)`), `+inf` at $t = \infty$. The derivative $2w/(1+w^2)$ is written
    as $2/(w + 1/w)$ (no overflow, no select; 0 at $w = \pm\infty$).
    """
    t = jnp.abs(w)
    m = jnp.minimum(t, 1.0 / t)
    return 2.0 * jnp.log(jnp.maximum(t, 1.0)) + jnp.log1p(m * m)


@_log1p_square.defjvp
def _log1p_square_jvp(primals, tangents):
    (w,), (dw,) = primals, tangents
    return _log1p_square(w), 2.0 * _w_over_1p_w2(w) * dw


def _w_over_1p_w2(w: Array) -> Array:
    r"""$w/(1+w^2) = 1/(w + 1/w)$: finite for every $w$ (0 at $w = 0$ and $\pm\infty$)."""
    return 1.0 / (w + 1.0 / w)


def _w2_over_1p_w2(w: Array) -> Array:
    r"""$w^2/(1+w^2) = 1/(1 + 1/w^2)$: 0 at $w = 0$, 1 at $w = \pm\infty$."""
    return 1.0 / (1.0 + 1.0 / (w * w))


def _log1mexp(v: Array) -> Array:
    r"""$\log(1 - e^v)$ for $v \le \log\tfrac12$ (where `log1p(-exp(v))` is exact)."""
    return jnp.log1p(-jnp.exp(v))


def _symmetric_cdfs(log_tail: Array, z: Array) -> tuple[Array, Array, Array]:
    r"""(cdf, log_cdf, log_sf) of a symmetric standardised law from
    $\ell = \log P(Z > |z|)$.

    $\ell$ must be computed from $m$ = `_abs_right(z)` (derivative $+1$ at $z=0$), so
    that the branches chosen at $z = 0$ (those of $z \ge 0$) carry the right
    one-sided derivative.
    """
    right = z >= 0
    tail = jnp.exp(log_tail)
    # 1 - tail, not -expm1: the derivative of expm1 is formed as expm1 + 1 in JAX,
    # which cancels in the far right tail
    cdf = jnp.where(right, 1.0 - tail, tail)
    other = _log1mexp(log_tail)
    log_cdf = jnp.where(right, other, log_tail)
    log_sf = jnp.where(right, log_tail, other)
    return cdf, log_cdf, log_sf


def _abs_right(z: Array) -> Array:
    """$|z|$ with derivative $+1$ at 0 (the branch `_symmetric_cdfs` uses there)."""
    return jnp.where(z >= 0, z, -z)


def _log_ndtr(x: Array) -> Array:
    r"""$\log\Phi(x)$ to full precision in both dtypes.

    `jax.scipy.special.log_ndtr` loses relative accuracy where the answer is tiny
    ($x$ between 3 and 8: up to 4% off at $x = 7.9$ in float64) and switches to an
    asymptotic series below $-20$ that is off by 2e-11. Here, with
    $\Phi(-|x|) = \tfrac12\operatorname{erfcx}(|x|/\sqrt2)\,e^{-x^2/2}$:
    $\log\Phi(x) = \log\tfrac12\operatorname{erfcx}(-x/\sqrt2) - x^2/2$ for $x < -1$,
    $\log\Phi(x)$ directly on $[-1, 0)$, and $\mathrm{log1p}(-\Phi(-x))$ for $x \ge 0$.
    """
    left = x < -1.0
    right = x >= 0.0
    xt = jnp.where(left | right, x, -1.0)
    log_half_erfcx = jnp.log(0.5 * erfcx(_SQRT_HALF * jnp.abs(xt)))
    tail = log_half_erfcx - 0.5 * xt * xt  # log Phi(-|x|)
    upper = jnp.log1p(-jnp.exp(tail))
    middle = jnp.log(ndtr(jnp.where(left | right, -0.5, x)))
    return jnp.where(left, tail, jnp.where(right, upper, middle))


def _homogeneous_sum(noise, x, x_hat, degree, coef=1.0) -> Array:
    r"""`_sum_loss` of a loss $a\,k(r/s)$ whose kernel $k$ (`noise._kernel`) is
    positively homogeneous of degree $p$, with one shared scale:
    $\sum_i k(r_i/s) = (c/s)^p \sum_i k(r_i/c)$ with $c = s$ held constant
    (`ratio_power`). The factor is exactly 1 in value and applied once; the gradient
    takes the scale derivative from it alone (no second pass over the data)."""
    held = lax.stop_gradient(noise.scale)
    factor = ratio_power(held, noise.scale, degree)
    return (coef * factor) * jnp.sum(noise._kernel(x, x_hat, held))


def _square(v: Array) -> Array:
    return v * v  # not jnp.square: XLA:CPU does not fuse `square` into a reduction


# ---------------------------------------------------------------------- Gaussian


class _LocationFamily(AbstractNoise):
    """A family whose `predict` is `x_hat` (a centre of symmetry, median or
    quantile) and whose cdf and log tails all come from one `_tails`."""

    _const_free_of_x = True

    @abc.abstractmethod
    def _tails(self, x: Array, x_hat: Array) -> tuple[Array, Array, Array]:
        """(cdf, log_cdf, log_sf) at x."""

    def _predict(self, x_hat):
        return _broadcast_location(self, x_hat)

    def _cdf(self, x, x_hat):
        return self._tails(x, x_hat)[0]

    def _log_cdf(self, x, x_hat):
        return self._tails(x, x_hat)[1]

    def _log_sf(self, x, x_hat):
        return self._tails(x, x_hat)[2]


class Gaussian(AbstractNoise):
    r"""Gaussian noise: $-\log p(x\mid\hat x) = \tfrac12 z^2 + \log s + \tfrac12\log 2\pi$,
    $z = (x-\hat x)/s$.

    `x_hat` is the mean; `predict` returns it. `loss` drops $\log s + \frac12\log 2\pi$
    and keeps $\tfrac12 z^2$: with `scale=1` it is `optax.l2_loss` ($\tfrac12 r^2$),
    i.e. half the squared error.
    """

    scale: Float[Array, "*#batch"]
    _domains = {"scale": POSITIVE}
    _const_free_of_x = True

    def __init__(self, scale: Float[ArrayLike, "*#batch"] = 1.0):
        self.scale = as_param(scale)

    def _kernel(self, x, x_hat, scale):
        return _square(standardize(x - x_hat, scale))

    def _sum_loss(self, x, x_hat):
        return _homogeneous_sum(self, x, x_hat, 2.0, 0.5)

    def _shared_nll(self, x, x_hat):
        # ½(r/s)² = a T with T = (r/t)², a = ½(t/s)², t the widest finite scale held
        # constant: T overflows only where the widest component's z² does. It spans
        # every component's z² while the scales span less than sqrt(eps / tiny) (3e15
        # in float32, 1e146 in float64); beyond, a component that much narrower sees
        # residuals below sqrt(tiny)·t (1e-19·t in float32) as 0.
        s = self.scale
        top = lax.stop_gradient(jnp.max(jnp.where(s < jnp.inf, s, 0.0)))
        u = standardize(x - x_hat, jnp.where(top > 0, top, 1.0))
        return _square(u), 0.5 * ratio_power(top, s, 2.0), self._const(x)

    def _loss(self, x, x_hat):
        return 0.5 * self._kernel(x, x_hat, self.scale)

    def _const(self, x):
        return jnp.log(self.scale) + HALF_LOG_2PI

    def _predict(self, x_hat):
        return jnp.broadcast_to(x_hat, jnp.broadcast_shapes(x_hat.shape, self.scale.shape))

    def _sample(self, key, x_hat, shape):
        return x_hat + self.scale * jax.random.normal(key, shape, x_hat.dtype)

    def _cdf(self, x, x_hat):
        return ndtr(standardize(x - x_hat, self.scale))

    def _log_cdf(self, x, x_hat):
        return _log_ndtr(standardize(x - x_hat, self.scale))

    def _log_sf(self, x, x_hat):
        return _log_ndtr(-standardize(x - x_hat, self.scale))


# ----------------------------------------------------------------------- Laplace


class Laplace(_LocationFamily):
    r"""Laplace noise: $-\log p(x\mid\hat x) = |z| + \log 2s$, $z = (x-\hat x)/s$.

    `x_hat` is the median (and the mean); `predict` returns it. `loss` drops
    $\log 2s$ and keeps $|z|$: with `scale=1` it is the absolute error $|x-\hat x|$.
    The cdf is $\tfrac12 e^{z}$ for $z<0$ and $1-\tfrac12 e^{-z}$ for $z\ge0$; its
    logarithm is exact in both tails ($\log P(X>x) = -z-\log 2$ for $z>0$).
    """

    scale: Float[Array, "*#batch"]
    _domains = {"scale": POSITIVE}

    def __init__(self, scale: Float[ArrayLike, "*#batch"] = 1.0):
        self.scale = as_param(scale)

    def _kernel(self, x, x_hat, scale):
        return jnp.abs(standardize(x - x_hat, scale))

    def _sum_loss(self, x, x_hat):
        return _homogeneous_sum(self, x, x_hat, 1.0)

    def _shared_nll(self, x, x_hat):
        return jnp.abs(x - x_hat), ratio_power(1.0, self.scale, 1.0), self._const(x)

    def _loss(self, x, x_hat):
        return self._kernel(x, x_hat, self.scale)

    def _const(self, x):
        return jnp.log(self.scale) + LOG_2

    def _sample(self, key, x_hat, shape):
        return x_hat + self.scale * jax.random.laplace(key, shape, x_hat.dtype)

    def _tails(self, x, x_hat):
        z = standardize(x - x_hat, self.scale)
        return _symmetric_cdfs(-_abs_right(z) - LOG_2, z)


# ------------------------------------------------------------ Student-t, Cauchy

# D(nu) = lgamma((nu+1)/2) - lgamma(nu/2) - log(nu/2)/2, asymptotically
# sum_k c_k nu^-(2k+1) with c_k = (2^(1-2j) - 2) B_2j 2^(2j-1) / (2j (2j-1)), j = k+1.
_D_SERIES = (
    -1 / 4,
    1 / 24,
    -1 / 20,
    17 / 112,
    -31 / 36,
    691 / 88,
    -5461 / 52,
    929569 / 480,
)
_D_SWITCH = 20.0  # the series above is exact to ~1e-18 for nu >= 20


def _student_d(nu: Array) -> Array:
    r"""$D(\nu) = \log\Gamma(\frac{\nu+1}2) - \log\Gamma(\frac\nu2) - \frac12\log\frac\nu2$.

    $D(\nu) \to 0$ as $\nu\to\infty$ ($D = -\tfrac1{4\nu} + \tfrac1{24\nu^3} - \dots$):
    for $\nu \ge 20$ the asymptotic series is used, so there is no cancellation
    between huge log-gammas and $\nu = +\infty$ gives exactly 0.
    """
    small = nu < _D_SWITCH
    ns = jnp.where(small, nu, 1.0)
    direct = gammaln(0.5 * ns + 0.5) - gammaln(0.5 * ns) - 0.5 * jnp.log(0.5 * ns)
    u = 1.0 / jnp.where(small, _D_SWITCH, nu)
    u2 = u * u
    poly = jnp.zeros_like(u2)
    for c in reversed(_D_SERIES):
        poly = poly * u2 + c
    return jnp.where(small, direct, u * poly)


# BGRAT (DiDonato & Morris 1992, eq. 9.3-9.4) coefficients p_n for b = 1/2.
def _bgrat_p(b: float, count: int) -> tuple[float, ...]:
    p = [1.0]
    for n in range(1, count):
        s = sum((m * b - n) * p[n - m] / math.factorial(2 * m + 1) for m in range(1, n))
        p.append(s / n + (b - 1) / math.factorial(2 * n + 1))
    return tuple(p)


_BGRAT_P = _bgrat_p(0.5, 10)
_SHIFT_A = 30.0  # BGRAT is used for a >= 30 (smaller a are shifted up by recurrence)
_SERIES_TERMS = 60  # power series terms for x <= 1/2 (ratio < 1/2: 2^-60 < eps)


def _log_beta_half(a: Array, lx: Array, ly: Array) -> Array:
    r"""$\log I_x(a, \tfrac12)$, the regularised incomplete beta, from $\log x$ and
    $\log(1-x)$ (both given accurately), for finite $a > 0$.

    - $x \le \tfrac12$: the power series $I_x(a,b) = \sum_k T_k$,
      $T_0 = x^a(1-x)^b/(a B(a,b))$, $T_{k+1}/T_k = x(a+b+k)/(a+k+1)$, summed relative
      to $T_0$ (relative accuracy deep in the tail, no underflow).
    - $x > \tfrac12$: $I_x(a,b) = \sum_{k<n} T_k + I_x(a+n, b)$ with $a+n \ge 30$,
      the last term by the BGRAT asymptotic expansion for large $a$ and small $b$
      (DiDonato & Morris 1992, TOMS 708, eq. 9), whose leading term is
      $Q(\tfrac12, u) = \mathrm{erfc}\sqrt u$, $u = -(a+n-\tfrac14)\log x$.
    """
    dtype = lx.dtype
    b = 0.5
    x = jnp.exp(lx)
    low = x <= 0.5
    n_shift = jnp.clip(jnp.ceil(_SHIFT_A - a), 0.0, float(_SERIES_TERMS))
    n_terms = jnp.where(low, float(_SERIES_TERMS), n_shift)
    # log T_0 = a lx + b ly + lgamma(a + 1/2) - lgamma(a + 1) - lgamma(1/2)
    log_t0 = a * lx + b * ly + _student_d(2.0 * a) - 0.5 * jnp.log(a) - _HALF_LOG_PI

    def body(k, carry):
        r, s = carry
        kf = jnp.asarray(k, dtype)
        s = s + jnp.where(kf < n_terms, r, 0.0)
        r = r * x * (a + b + kf) / (a + 1.0 + kf)
        return r, s

    shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(lx), jnp.shape(ly))
    ones = jnp.ones(shape, dtype)
    _, s = lax.fori_loop(0, _SERIES_TERMS, body, (ones, jnp.zeros(shape, dtype)))
    has_s = s > 0
    log_s = jnp.where(has_s, jnp.log(jnp.where(has_s, s, 1.0)), -jnp.inf)
    log_low = log_t0 + log_s

    # BGRAT for I_x(a', 1/2), a' = a + n_shift >= 30, on x > 1/2 (safe values elsewhere)
    ap = jnp.where(low, _SHIFT_A, a + n_shift)
    lxb = jnp.where(low, -0.5, lx)
    t = ap - 0.25  # a' + (b - 1)/2
    u = -t * lxb
    pos = u > 0
    us = jnp.where(pos, u, 1.0)
    sqrt_u = jnp.where(pos, jnp.sqrt(us), 0.0)
    log_k0 = jnp.log(erfcx(sqrt_u)) - u  # log erfc(sqrt u)
    log_h = jnp.where(pos, 0.5 * jnp.log(us) - u - _HALF_LOG_PI, -jnp.inf)
    g = jnp.exp(log_h - log_k0)
    t4 = 4.0 * t * t
    lx2 = 0.25 * lxb * lxb
    r = jnp.ones_like(u)
    total = jnp.ones_like(u)
    lxp = jnp.ones_like(u)
    b2n = b
    for p_n in _BGRAT_P[1:]:
        r = (b2n * (b2n + 1.0) * r + (u + b2n + 1.0) * lxp * g) / t4
        lxp = lxp * lx2
        b2n += 2.0
        total = total + p_n * r
    log_high = (
        0.5 * jnp.log(ap)
        + _student_d(2.0 * ap)
        - 0.5 * jnp.log(t)
        + log_k0
        + jnp.log(total)
    )
    return jnp.where(low, log_low, jnp.logaddexp(log_low, log_high))


@jax.custom_jvp
def _student_core(r: Array, s: Array, nu: Array) -> Array:
    r"""$\tfrac{\nu+1}2\log(1 + w^2)$, $w = r/(s\sqrt\nu)$, for finite $\nu$, with
    derivatives written out so that they stay accurate for huge $\nu$ (autodiff
    would form $\nu^{-3/2}$, which underflows in float32, and cancel two terms of
    size $z^2/\nu$) and finite at $r = \pm\infty$ (value $+\infty$; no support mask
    needed):

    $\partial_r = (\nu+1)\,\frac{w}{1+w^2}\,/(s\sqrt\nu)$,
    $\partial_s = -(\nu+1)\,v/s$ and
    $\partial_\nu = \tfrac12 g(v) - \frac{v}{2\nu}$, with $v = \frac{w^2}{1+w^2}$,
    $g(v) = -\log(1-v) - v = \sum_{k\ge2} v^k/k$ (the series below $v = 0.1$). The
    $\nu$-part is skipped when $\nu$ is not differentiated.
    """
    return (0.5 * nu + 0.5) * _log1p_square(standardize(r, s) * lax.rsqrt(nu))


def _g_series_terms(dtype) -> int:
    """The last k of sum_{k>=2} v^k / k exact to eps for v < 0.1: the tail after
    k = K is below v^{K+1} / ((K+1)(1-v)) < eps v^2 / 2 (K = 8 in float32, 16 in
    float64)."""
    eps = float(jnp.finfo(dtype).eps)
    k = 2
    while 0.1 ** (k + 1) / ((k + 1) * 0.9) >= eps * 0.01 / 2:
        k += 1
    return k


def _student_core_jvp(primals, tangents):
    r, s, nu = primals
    dr, ds, dnu = tangents
    rs = lax.rsqrt(nu)
    w = standardize(r, s) * rs
    log1p_w2 = _log1p_square(w)
    out = (0.5 * nu + 0.5) * log1p_w2
    v = _w2_over_1p_w2(w)
    tangent = jnp.zeros_like(out)
    if not isinstance(dr, SymbolicZero):
        tangent = tangent + standardize((nu + 1.0) * rs * _w_over_1p_w2(w) * dr, s)
    if not isinstance(ds, SymbolicZero):
        tangent = tangent - standardize((nu + 1.0) * v * ds, s)
    if not isinstance(dnu, SymbolicZero):
        small = v < 0.1
        vs = jnp.where(small, v, 0.0)
        series = jnp.zeros_like(vs)
        for k in range(_g_series_terms(vs.dtype), 1, -1):
            series = (series + 1.0 / k) * vs
        series = series * vs
        g = jnp.where(small, series, log1p_w2 - v)
        tangent = tangent + (0.5 * g - 0.5 * v / nu) * dnu
    return out, tangent


_student_core.defjvp(_student_core_jvp, symbolic_zeros=True)


def _t_log_tail_raw(m: Array, nu: Array) -> Array:
    """log P(T_nu > m) for m >= 0 and finite nu > 0."""
    w = m * lax.rsqrt(nu)
    lx = -_log1p_square(w)  # x = nu / (nu + m^2) = 1 / (1 + w^2)
    big = w > 1.0
    wb = jnp.where(big, w, 1.0)
    pos = w > 0
    ws = jnp.where(pos, w, 1.0)
    ly = jnp.where(
        big,
        -jnp.log1p(1.0 / (wb * wb)),
        jnp.where(pos, 2.0 * jnp.log(ws) + lx, -jnp.inf),
    )
    return _log_beta_half(0.5 * nu, lx, ly) - LOG_2


def _t_log_pdf(m: Array, nu: Array) -> Array:
    w = m * lax.rsqrt(nu)
    return -((0.5 * nu + 0.5) * _log1p_square(w) + HALF_LOG_2PI - _student_d(nu))


def _log_tail(raw, log_pdf):
    r"""$\log P(Z > m)$ as a `custom_jvp` from its formula `raw(m, θ)`: the
    $m$-derivative is written as $-p(m)/P(Z>m)$ = `-exp(log_pdf(m, θ) - value)`
    (finite where the formula's own derivative would be 0/0), and $\theta$ is
    differentiated through `raw` (skipped when $\theta$ is not differentiated)."""

    @jax.custom_jvp
    def log_tail(m: Array, theta: Array) -> Array:
        return raw(m, theta)

    def jvp(primals, tangents):
        m, theta = primals
        dm, dtheta = tangents
        if isinstance(dtheta, SymbolicZero):
            out = raw(m, theta)
            tangent = jnp.zeros_like(out)
        else:
            out, tangent = jax.jvp(lambda t: raw(m, t), (theta,), (dtheta,))
        if not isinstance(dm, SymbolicZero):
            tangent = tangent - jnp.exp(log_pdf(m, theta) - out) * dm
        return out, tangent

    log_tail.defjvp(jvp, symbolic_zeros=True)
    return log_tail


# log P(T_nu > m), m >= 0
_t_log_tail = _log_tail(_t_log_tail_raw, _t_log_pdf)


def _blend(r: Array, s: Array, nu: Array, gauss: Array, const: Array) -> Array:
    r"""Student-t's nll (or loss) $(\tfrac12 g^2 + c) + \mathrm{core}(t)$ with
    $(g, t) = (0, r)$ for finite df and $(r, 0)$ for df $= \infty$, by clamping $r$
    to $[-0, 0]$ or $[-\infty, \infty]$: no per-element select (which would stop
    XLA fusing the nll into the sum that consumes it) and no $\infty\cdot0$ at
    $r = \pm\infty$. At df $= \infty$, core(0) = 0 is added to the Gaussian's own
    expression, so it rounds the same way."""
    inf = jnp.asarray(jnp.inf, r.dtype)
    g_lim = jnp.where(gauss, inf, 0.0)
    t_lim = jnp.where(gauss, 0.0, inf)
    z = standardize(jnp.clip(r, -g_lim, g_lim), s)
    core = _student_core(jnp.clip(r, -t_lim, t_lim), s, nu)
    return (0.5 * z * z + const) + core


@jax.custom_jvp
def _scalar_df_blend(r: Array, s: Array, nu: Array, gauss: Array, const: Array) -> Array:
    """`_blend` for one df: the value is the select-free blend (it fuses into a
    sum), the derivatives are those of the branch in use only (a `cond` on the
    scalar df): the gradient program does not carry the other branch's
    derivatives (Student-t value_and_grad at N = 1e6: 5.3 -> 4.2 ms)."""
    return _blend(r, s, nu, gauss, const)


@_scalar_df_blend.defjvp
def _scalar_df_blend_jvp(primals, tangents):
    r, s, nu, gauss, const = primals
    dr, ds, dnu, _, dconst = tangents
    shape = jnp.broadcast_shapes(r.shape, s.shape, nu.shape, jnp.shape(const))

    def full(pair):
        return tuple(jnp.broadcast_to(v, shape) for v in pair)

    def gaussian():
        def f(r_, s_, c_):
            z = standardize(r_, s_)
            return (0.5 * z * z + c_) + jnp.zeros((), z.dtype)

        return full(jax.jvp(f, (r, s, const), (dr, ds, dconst)))

    def student():
        def f(r_, s_, nu_, c_):
            return (jnp.zeros((), r_.dtype) + c_) + _student_core(r_, s_, nu_)

        return full(jax.jvp(f, (r, s, nu, const), (dr, ds, dnu, dconst)))

    return lax.cond(gauss, gaussian, student)


class StudentT(_LocationFamily):
    r"""Student-t noise with `df` $=\nu$ degrees of freedom:

    $$-\log p(x\mid\hat x) = \tfrac{\nu+1}2\log\!\big(1+\tfrac{z^2}\nu\big) + \log s
    + \tfrac12\log\nu\pi + \log\Gamma(\tfrac\nu2) - \log\Gamma(\tfrac{\nu+1}2),
    \qquad z = (x-\hat x)/s.$$

    `x_hat` is the location (the median; the mean when $\nu>1$); `predict` returns
    it. `loss` keeps $\tfrac{\nu+1}2\log(1+z^2/\nu)$ and drops the rest (which
    depends on $\nu$ and $s$). `df = inf` is allowed and gives exactly the
    `Gaussian(scale)` nll (and loss); large finite `df` tends to it smoothly (the
    log-gamma difference is evaluated by its asymptotic series, without
    cancellation). Huge residuals are exact: $\log(1+w^2)$ never forms $w^2$ when it
    would overflow. `x = ±inf` has nll `+inf` (the density's limit) with finite
    derivatives in $\hat x$ (0) and $s$, and $+\infty$ in $\nu$; no support mask.

    The cdf is the regularised incomplete beta function
    $P(T>|z|) = \tfrac12 I_{\nu/(\nu+z^2)}(\tfrac\nu2,\tfrac12)$, computed in log
    space (accurate in both tails).
    """

    df: Float[Array, "*#batch"]
    scale: Float[Array, "*#batch"]
    _domains = {"df": POSITIVE, "scale": POSITIVE}

    def __init__(
        self, df: Float[ArrayLike, "*#batch"], scale: Float[ArrayLike, "*#batch"] = 1.0
    ):
        self.df = as_param(df)
        self.scale = as_param(scale)

    def _finite_df(self):
        gauss = jnp.isinf(self.df)
        return gauss, jnp.where(gauss, 1.0, self.df)

    def _loss(self, x, x_hat):
        return self._blend(x, x_hat, 0.0)

    def _sum_loss(self, x, x_hat):
        # one (scalar) df: the sum of the family in use, not of the blend of both
        gauss, nu = self._finite_df()
        return lax.cond(
            gauss,
            lambda: Gaussian(self.scale)._sum_loss(x, x_hat),
            lambda: jnp.sum(_student_core(x - x_hat, self.scale, nu)),
        )

    def _nll(self, x, x_hat):
        return self._blend(x, x_hat, self._const(x))

    def _blend(self, x, x_hat, const):
        gauss, nu = self._finite_df()
        r = x - x_hat
        if gauss.size == 1:  # one df: the derivatives of the df in use only
            return _scalar_df_blend(r, self.scale, nu, gauss.reshape(()), const)
        return _blend(r, self.scale, nu, gauss, const)

    def _const(self, x):
        return jnp.log(self.scale) + (HALF_LOG_2PI - _student_d(self.df))

    def _sample(self, key, x_hat, shape):
        gauss, nu = self._finite_df()
        k1, k2 = jax.random.split(key)
        normal = jax.random.normal(k1, shape, x_hat.dtype)
        # chi2_nu / nu = Gamma(nu/2) / (nu/2), drawn in log space (no underflow)
        log_g = jax.random.loggamma(
            k2, jnp.broadcast_to(0.5 * nu, shape), shape, x_hat.dtype
        )
        factor = jnp.where(gauss, 1.0, jnp.exp(-0.5 * (log_g - jnp.log(0.5 * nu))))
        return x_hat + self.scale * normal * factor

    def _tails(self, x, x_hat):
        gauss, nu = self._finite_df()
        z = standardize(x - x_hat, self.scale)
        m = _abs_right(z)
        log_tail = jnp.where(gauss, _log_ndtr(-m), _t_log_tail(m, nu))
        return _symmetric_cdfs(log_tail, z)


@jax.custom_jvp
def _cauchy_core(r: Array, s: Array) -> Array:
    r"""$\log(1 + w^2)$, $w = r/s$, with derivatives written out:
    $\partial_r = 2\,\frac{w}{1+w^2}/s$, $\partial_s = -2\,\frac{w^2}{1+w^2}/s$,
    both finite at $r = \pm\infty$ (where the value is $+\infty$): $x = \pm\infty$
    needs no support mask (a select that would stop XLA fusing the nll into its sum).
    """
    return _log1p_square(standardize(r, s))


@_cauchy_core.defjvp
def _cauchy_core_jvp(primals, tangents):
    r, s = primals
    dr, ds = tangents
    w = standardize(r, s)
    ratio = _w_over_1p_w2(w)  # w / (1 + w^2)
    v = _w2_over_1p_w2(w)
    return _log1p_square(w), standardize(2.0 * (ratio * dr - v * ds), s)


class Cauchy(_LocationFamily):
    r"""Cauchy noise: $-\log p(x\mid\hat x) = \log(1+z^2) + \log \pi s$,
    $z = (x-\hat x)/s$ (Student-t with one degree of freedom).

    `x_hat` is the location (the median); `predict` returns it. `loss` keeps
    $\log(1+z^2)$ and drops $\log\pi s$. Huge residuals are exact
    ($\log(1+z^2)$ never forms $z^2$ when it would overflow). The cdf is
    $\tfrac1\pi\operatorname{atan2}(1, -z)$, and the tail
    $\log P(X>x) = \log\operatorname{atan2}(1, z) - \log\pi$ is accurate for large $z$.
    `x = ±inf` has nll `+inf` (the density's limit) with finite gradients
    ($\partial_{\hat x} = 0$, $\partial_s = -2/s$).
    """

    scale: Float[Array, "*#batch"]
    _domains = {"scale": POSITIVE}

    def __init__(self, scale: Float[ArrayLike, "*#batch"] = 1.0):
        self.scale = as_param(scale)

    def _loss(self, x, x_hat):
        return _cauchy_core(x - x_hat, self.scale)

    def _const(self, x):
        return jnp.log(self.scale) + LOG_PI

    def _sample(self, key, x_hat, shape):
        return x_hat + self.scale * jax.random.cauchy(key, shape, x_hat.dtype)

    def _tails(self, x, x_hat):
        z = standardize(x - x_hat, self.scale)
        log_tail = jnp.log(jnp.arctan2(1.0, _abs_right(z))) - LOG_PI
        return _symmetric_cdfs(log_tail, z)


# ------------------------------------------------------------------------- Huber


def _huber_log_norm(delta: Array) -> Array:
    r"""$\log Z_\delta$, $Z_\delta = \int e^{-\rho_\delta(z)}dz
    = \sqrt{2\pi}\,\mathrm{erf}(\delta/\sqrt2) + \tfrac2\delta e^{-\delta^2/2}$."""
    small = delta < 1.0
    gauss = jnp.isinf(delta)
    ds = jnp.where(small, delta, 1.0)
    # Z = (2/d) e^{-d^2/2} (1 + d sqrt(pi/2) erf(d/sqrt 2) e^{d^2/2}) for small d
    log_small = (
        LOG_2
        - jnp.log(ds)
        - 0.5 * ds * ds
        + jnp.log1p(_SQRT_HALF_PI * ds * erf(_SQRT_HALF * ds) * jnp.exp(0.5 * ds * ds))
    )
    dl = jnp.where(small | gauss, 1.0, delta)
    log_large = jnp.log(
        _SQRT_2PI * erf(_SQRT_HALF * dl) + 2.0 * jnp.exp(-0.5 * dl * dl - jnp.log(dl))
    )
    return jnp.where(small, log_small, jnp.where(gauss, HALF_LOG_2PI, log_large))


def _huber_rho(a: Array, delta: Array) -> tuple[Array, Array]:
    r"""($\rho_\delta$ at $a = |z|$, the mask $a \le \delta$), $\rho$ written as
    `optax.huber_loss` writes it ($\tfrac12\delta^2 + \delta(a - \delta)$ on the
    linear branch), so the two agree bit for bit. A select, not `min`: XLA:CPU
    compiles it into one loop (and a separate sum), which is faster than the
    reduction fusion it forms for a select-free chain of this length."""
    inside = a <= delta
    return jnp.where(inside, 0.5 * a * a, 0.5 * delta * delta + delta * (a - delta)), inside


@jax.custom_jvp
def _huber_core(r: Array, s: Array, delta: Array) -> Array:
    r"""$\rho_\delta(z)$, $z = r/s$, with derivatives written out: with
    $\psi = \operatorname{clip}(z, -\delta, \delta)$,
    $\partial_r = \psi/s$, $\partial_s = -z\psi/s$ and
    $\partial_\delta = |z| - \delta$ outside $[-\delta, \delta]$, 0 inside (so
    $\delta = \infty$, the Gaussian, never forms $\infty - \infty$). At
    $|z| = \infty$ (value $+\infty$): $\partial_r = \pm\delta/s$,
    $\partial_s = -\infty$, $\partial_\delta = +\infty$."""
    return _huber_rho(jnp.abs(standardize(r, s)), delta)[0]


@_huber_core.defjvp
def _huber_core_jvp(primals, tangents):
    r, s, delta = primals
    dr, ds, ddelta = tangents
    z = standardize(r, s)
    a = jnp.abs(z)
    value, inside = _huber_rho(a, delta)
    psi = jnp.clip(z, -delta, delta)
    excess = jnp.where(inside, 0.0, a - delta)
    return value, standardize(psi * (dr - z * ds), s) + excess * ddelta


class Huber(_LocationFamily):
    r"""Huber noise: $p(x\mid\hat x) = \frac{1}{s Z_\delta}\exp(-\rho_\delta(z))$,
    $z = (x-\hat x)/s$, with the Huber function
    $\rho_\delta(z) = \tfrac12 z^2$ for $|z|\le\delta$ and
    $\delta(|z| - \tfrac\delta2)$ otherwise, and the exact normaliser

    $$Z_\delta = \int e^{-\rho_\delta} = \sqrt{2\pi}\,\big(2\Phi(\delta)-1\big)
    + \tfrac2\delta e^{-\delta^2/2}.$$

    So $-\log p = \rho_\delta(z) + \log s + \log Z_\delta$. `x_hat` is the location
    (median and mean); `predict` returns it. `loss` keeps $\rho_\delta(z)$ (written as
    `optax.huber_loss` writes it, which it equals for `scale=1`) and drops
    $\log s Z_\delta$. `delta = inf` gives the Gaussian. Huge residuals stay on the
    linear branch (finite, derivative $\pm\delta/s$).

    The cdf is piecewise: $F(z) = e^{\delta z + \delta^2/2}/(\delta Z_\delta)$ for
    $z < -\delta$, $F(-\delta) + \sqrt{2\pi}(\Phi(z) - \Phi(-\delta))/Z_\delta$ on
    $[-\delta, \delta]$, and $1 - F(-z)$ above; it is evaluated in log space.
    Sampling picks the central piece with its mass $\sqrt{2\pi}(2\Phi(\delta)-1)/Z_\delta$
    (a truncated normal) or a tail (a shifted exponential, rate $\delta$).
    """

    delta: Float[Array, "*#batch"]
    scale: Float[Array, "*#batch"]
    _domains = {"delta": POSITIVE, "scale": POSITIVE}

    def __init__(
        self,
        delta: Float[ArrayLike, "*#batch"] = 1.0,
        scale: Float[ArrayLike, "*#batch"] = 1.0,
    ):
        self.delta = as_param(delta)
        self.scale = as_param(scale)

    def _loss(self, x, x_hat):
        return _huber_core(x - x_hat, self.scale, self.delta)

    def _const(self, x):
        return jnp.log(self.scale) + _huber_log_norm(self.delta)

    def _sample(self, key, x_hat, shape):
        delta = self.delta
        gauss = jnp.isinf(delta)
        df = jnp.where(gauss, 1.0, delta)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        dtype = x_hat.dtype
        p_mid = jnp.exp(HALF_LOG_2PI - _huber_log_norm(delta)) * erf(_SQRT_HALF * delta)
        lim = jnp.broadcast_to(delta, shape)
        mid = jax.random.truncated_normal(k1, -lim, lim, shape, dtype)
        sign = jnp.where(jax.random.bernoulli(k2, 0.5, shape), 1.0, -1.0)
        tail = sign * (df + jax.random.exponential(k3, shape, dtype) / df)
        z = jnp.where(jax.random.uniform(k4, shape, dtype) < p_mid, mid, tail)
        return x_hat + self.scale * z

    def _tails(self, x, x_hat):
        delta = self.delta
        gauss = jnp.isinf(delta)
        df = jnp.where(gauss, 1.0, delta)
        log_z = _huber_log_norm(delta)
        z = standardize(x - x_hat, self.scale)
        m = -_abs_right(z)  # log P(Z > |z|) = log F(-|z|)
        in_tail = m < -delta
        mt = jnp.where(in_tail, m, -df)
        left = df * (mt + 0.5 * df) - jnp.log(df) - log_z
        # C = phi(d)/d - Phi(-d) > 0 (Mills), so F(m) = sqrt(2 pi)(Phi(m) + C)/Z inside
        log_b = -0.5 * df * df - jnp.log(df) - HALF_LOG_2PI
        log_c = jnp.where(
            gauss, -jnp.inf, log_b + jnp.log1p(-jnp.exp(_log_ndtr(-df) - log_b))
        )
        mm = jnp.where(in_tail, -df, m)
        middle = HALF_LOG_2PI - log_z + jnp.logaddexp(_log_ndtr(mm), log_c)
        return _symmetric_cdfs(jnp.where(in_tail, left, middle), z)


# ------------------------------------------------------------- GeneralizedNormal


def _abs_power(a: Array, power: Array) -> Array:
    """a**power for a >= 0, with value and gradients finite (0) at a = 0."""
    zero = a == 0
    return jnp.where(zero, 0.0, jnp.power(jnp.where(zero, 1.0, a), power))


@jax.custom_jvp
def _gn_core(r: Array, s: Array, power: Array) -> Array:
    r"""$|z|^\beta$, $z = r/s$, as $\exp(\beta\log|z|)$: vectorised `exp` and
    `log` (XLA:CPU calls a scalar `pow` per element, ~7x slower), exact at $z = 0$
    ($e^{-\infty} = 0$) and $|z| = \infty$; $\beta = \infty$ (the uniform law)
    uses the largest finite $\beta$, which gives the same 0, 1 or $\infty$.
    Relative error $\approx |\log|z|^\beta|$ ulps (at most 88 in float32).

    Derivatives written out, with $y = |z|^\beta$: $\partial_r = \beta y/(z s)$,
    $\partial_s = -\beta y/s$, $\partial_\beta = y\log|z|$; all 0 at $z = 0$; at
    $|z| = \infty$ (value $+\infty$) $\partial_r = 0$, $\partial_s = -\infty$,
    $\partial_\beta = +\infty$. The value inside the rule is this function again,
    so higher derivatives never see $0\cdot\log 0$.
    """
    b = jnp.minimum(power, jnp.finfo(power.dtype).max)
    return jnp.exp(b * jnp.log(jnp.abs(standardize(r, s))))


@_gn_core.defjvp
def _gn_core_jvp(primals, tangents):
    r, s, power = primals
    dr, ds, dpower = tangents
    y = _gn_core(r, s, power)
    b = jnp.minimum(power, jnp.finfo(power.dtype).max)
    z = standardize(r, s)
    a = jnp.abs(z)
    zero = a == 0
    edge = zero | (a == jnp.inf)  # (NaN is neither: it reaches every derivative)
    by = b * y
    d_r = jnp.where(edge, 0.0, by / jnp.where(edge, 1.0, z))
    d_power = jnp.where(zero, 0.0, y * jnp.log(jnp.where(zero, 1.0, a)))
    # b outside the product with y: the s-derivative sums y itself (no b*y array)
    return y, standardize(d_r * dr - b * (y * ds), s) + d_power * dpower


_GAMMA_CF_SWITCH = 25.0  # log Q(a, y) by continued fraction for y > a + 25
_GAMMA_CF_TERMS = 40


def _log_gammaincc(a: Array, y: Array) -> Array:
    r"""$\log Q(a, y)$, the regularised upper incomplete gamma, also where $Q$
    underflows: for $y > a + 25$ Legendre's continued fraction
    $\Gamma(a,y) = e^{-y}y^a / (y+1-a-\frac{1(1-a)}{y+3-a-\frac{2(2-a)}{y+5-a-\dots}})$
    is evaluated backwards in log space (40 terms, converged there)."""
    far = y > a + _GAMMA_CF_SWITCH
    near_y = jnp.where(far, a, y)
    near = jnp.log(gammaincc(a, near_y))
    yf = jnp.where(far, y, a + _GAMMA_CF_SWITCH + 1.0)

    def step(i, f):
        n = jnp.asarray(_GAMMA_CF_TERMS - i, yf.dtype)
        return yf + (2.0 * n - 1.0) - a - n * (n - a) / f

    f = lax.fori_loop(0, _GAMMA_CF_TERMS, step, yf + (2.0 * _GAMMA_CF_TERMS + 1.0) - a)
    cf = a * jnp.log(yf) - yf - gammaln(a) - jnp.log(f)
    return jnp.where(far, cf, near)


def _gn_log_tail_raw(m: Array, power: Array) -> Array:
    r"""log P(Z > m) = log(Q(1/power, m^power) / 2) for m >= 0.

    For $y = m^\beta < 10^{-3}$ (where $y$ may underflow while $P(a, y)$, $a = 1/\beta$,
    does not), $\log Q = \log(1 - P)$ with the series
    $P(a, y) = \frac{y^a}{\Gamma(a+1)}\sum_k \frac{a(-y)^k}{k!(a+k)}$ and $y^a = m$.
    """
    a = 1.0 / power
    y = _abs_power(m, power)
    small = y < 1e-3
    ys = jnp.where(small, 1.0, y)
    yt = jnp.where(small, y, 0.0)
    series = jnp.ones_like(yt)
    term = jnp.ones_like(yt)
    for k in range(1, 5):
        term = -term * yt / k
        series = series + term * a / (a + k)
    p_small = m * jnp.exp(-gammaln(a + 1.0)) * series
    log_q = jnp.where(small, jnp.log1p(-p_small), _log_gammaincc(a, ys))
    return log_q - LOG_2


def _gn_log_pdf(m: Array, power: Array) -> Array:
    return -(_abs_power(m, power) + LOG_2 + gammaln(1.0 + 1.0 / power))


# log P(Z > m) for the standard generalized normal (finite m-derivative at m = 0
# for every power)
_gn_log_tail = _log_tail(_gn_log_tail_raw, _gn_log_pdf)


class GeneralizedNormal(_LocationFamily):
    r"""Generalized normal (exponential power) noise with shape `power` $=\beta$:

    $$-\log p(x\mid\hat x) = |z|^\beta + \log 2s + \log\Gamma(1 + 1/\beta),
    \qquad z = (x-\hat x)/s,$$

    i.e. `scipy.stats.gennorm(power, loc=x_hat, scale=scale)`. $\beta=2$ with
    $s\sqrt2$ is `Gaussian(s)`; $\beta=1$ is `Laplace(s)`. `x_hat` is the location
    (median and mean); `predict` returns it. `loss` keeps $|z|^\beta$ and drops
    $\log 2s\,\Gamma(1+1/\beta)$. The cdf is
    $\tfrac12 + \tfrac12\operatorname{sign}(z) P(1/\beta, |z|^\beta)$ (regularised
    incomplete gamma, tails in log space); sampling is $\hat x \pm s\,G^{1/\beta}$,
    $G\sim\mathrm{Gamma}(1/\beta)$. `x = ±inf` has nll `+inf` (the density's limit)
    with no NaN gradient ($\partial_{\hat x} = 0$, $\partial_s = -\infty$,
    $\partial_\beta = +\infty$), so the nll needs no support mask.
    """

    power: Float[Array, "*#batch"]
    scale: Float[Array, "*#batch"]
    _domains = {"power": POSITIVE, "scale": POSITIVE}

    def __init__(
        self, power: Float[ArrayLike, "*#batch"], scale: Float[ArrayLike, "*#batch"] = 1.0
    ):
        self.power = as_param(power)
        self.scale = as_param(scale)

    def _kernel(self, x, x_hat, scale):
        return _gn_core(x - x_hat, scale, self.power)

    def _sum_loss(self, x, x_hat):
        degree = jnp.minimum(self.power, jnp.finfo(self.power.dtype).max)  # no inf * 0
        return _homogeneous_sum(self, x, x_hat, degree)

    def _loss(self, x, x_hat):
        return self._kernel(x, x_hat, self.scale)

    def _const(self, x):
        return jnp.log(self.scale) + LOG_2 + gammaln(1.0 + 1.0 / self.power)

    def _sample(self, key, x_hat, shape):
        k1, k2 = jax.random.split(key)
        a = jnp.broadcast_to(1.0 / self.power, shape)
        radius = jnp.exp(jax.random.loggamma(k1, a, shape, x_hat.dtype) / self.power)
        sign = jnp.where(jax.random.bernoulli(k2, 0.5, shape), 1.0, -1.0)
        return x_hat + self.scale * sign * radius

    def _tails(self, x, x_hat):
        z = standardize(x - x_hat, self.scale)
        return _symmetric_cdfs(_gn_log_tail(_abs_right(z), self.power), z)


# ------------------------------------------------------------- AsymmetricLaplace


@jax.custom_jvp
def _pinball_core(r: Array, s: Array, tau: Array) -> Array:
    r"""The pinball loss $\rho_\tau(z) = \max(\tau z, (\tau - 1)z)$, $z = r/s$
    (`+inf` at $z = \pm\infty$; $\tau z - \min(z, 0)$ is $\infty - \infty$ at
    $-\infty$), with derivatives written out: the slope
    $\psi = \tau - \mathbf 1[z < 0]$ ($\tau - \tfrac12$ at $z = 0$, the mean of
    the one-sided ones), $\partial_r = \psi/s$, $\partial_s = -\rho/s$,
    $\partial_\tau = z$."""
    z = standardize(r, s)
    return jnp.maximum(tau * z, (tau - 1.0) * z)


@_pinball_core.defjvp
def _pinball_core_jvp(primals, tangents):
    r, s, tau = primals
    dr, ds, dtau = tangents
    z = standardize(r, s)
    rho = _pinball_core(r, s, tau)
    # tau - 1[z < 0], tau - 1/2 at z = 0 (there "+ z" adds 0; it passes a NaN z on)
    slope = jnp.where(z < 0, tau - 1.0, jnp.where(z > 0, tau, tau - 0.5 + z))
    return rho, standardize(slope * dr - rho * ds, s) + z * dtau


class AsymmetricLaplace(_LocationFamily):
    r"""Asymmetric Laplace noise, the likelihood of quantile regression:

    $$p(x\mid\hat x) = \frac{\tau(1-\tau)}{s}\exp\!\big(-\rho_\tau(z)\big),\quad
    z = (x-\hat x)/s,\quad \rho_\tau(u) = u\,(\tau - \mathbf 1[u<0]),$$

    so $-\log p = \rho_\tau(z) + \log s - \log\tau(1-\tau)$, with $\tau$ = `quantile`.
    `x_hat` is the $\tau$-quantile ($P(X \le \hat x) = \tau$); `predict` returns it.
    `loss` keeps the pinball loss $\rho_\tau(z)$ (written $\max(\tau z, (\tau - 1) z)$) and
    drops $\log s - \log\tau(1-\tau)$; with `scale=1` it is the pinball (quantile)
    loss. `AsymmetricLaplace(0.5, s)` is `Laplace(2 s)`. In scipy's terms it is
    `laplace_asymmetric(kappa, loc=x_hat, scale=s / sqrt(tau (1 - tau)))` with
    $\kappa = \sqrt{\tau/(1-\tau)}$.
    """

    quantile: Float[Array, "*#batch"]
    scale: Float[Array, "*#batch"]
    _domains = {"quantile": UNIT_INTERVAL_OPEN, "scale": POSITIVE}

    def __init__(
        self,
        quantile: Float[ArrayLike, "*#batch"],
        scale: Float[ArrayLike, "*#batch"] = 1.0,
    ):
        self.quantile = as_param(quantile)
        self.scale = as_param(scale)

    def _kernel(self, x, x_hat, scale):
        return _pinball_core(x - x_hat, scale, self.quantile)

    def _sum_loss(self, x, x_hat):
        return _homogeneous_sum(self, x, x_hat, 1.0)

    def _loss(self, x, x_hat):
        return self._kernel(x, x_hat, self.scale)

    def _const(self, x):
        tau = self.quantile
        return jnp.log(self.scale) - jnp.log(tau) - jnp.log1p(-tau)

    def _sample(self, key, x_hat, shape):
        tau = self.quantile
        k1, k2 = jax.random.split(key)
        e = jax.random.exponential(k1, shape, x_hat.dtype)
        below = jax.random.uniform(k2, shape, x_hat.dtype) < tau
        z = jnp.where(below, -e / (1.0 - tau), e / tau)
        return x_hat + self.scale * z

    def _tails(self, x, x_hat):
        tau = self.quantile
        z = standardize(x - x_hat, self.scale)
        below = z < 0
        exponent = jnp.where(below, (1.0 - tau) * z, -tau * z)  # <= 0
        e = jnp.exp(exponent)
        cdf = jnp.where(below, tau * e, 1.0 - (1.0 - tau) * e)
        log_cdf = jnp.where(below, jnp.log(tau) + exponent, jnp.log1p(-(1.0 - tau) * e))
        log_sf = jnp.where(below, jnp.log1p(-tau * e), jnp.log1p(-tau) + exponent)
        return cdf, log_cdf, log_sf
