r"""Binary and categorical noise: Bernoulli, Binomial (logits) and Categorical.

`x_hat` is a logit (Bernoulli, Binomial) or a vector of logits along the last axis
(Categorical). Everything is computed from the logits directly (softplus and
log-softmax forms), never from probabilities, so logits of any size, including
$\pm\infty$, give exact values and finite gradients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc, digamma
from jaxtyping import Array, ArrayLike, Float

from ._base import NONNEGATIVE_INTEGER, AbstractNoise, as_param
from ._count import (
    _logistic_parts,
    _small_log_factorial,
    _stirling_tail,
    _stirling_terms,
    exp_excess,
    log_factorial,
    log_gamma_step,
    softplus_pair,
)
from ._special import HALF_LOG_2PI

__all__ = ["Bernoulli", "Binomial", "Categorical"]


def _softplus(z: Array) -> Array:
    r"""$\log(1+e^z) = \log(1+e^{-|z|}) + \max(z, 0)$, select-free (so XLA fuses it
    into a reduction). $-|z|$ is written $\min(z, -z)$: `min` and `max` split a tie
    evenly, so the derivative at 0 is exactly ½ (`abs` would give it slope 1)."""
    return jnp.log1p(jnp.exp(jnp.minimum(z, -z))) + jnp.maximum(z, jnp.zeros((), z.dtype))


# ------------------------------------------------------------------ Bernoulli


class Bernoulli(AbstractNoise):
    r"""Bernoulli noise with logit `x_hat` $=\ell$, $p = \sigma(\ell)$:

    $$-\log p(x\mid\ell) = \begin{cases}\mathrm{softplus}(-\ell) & x = 1\\
      \mathrm{softplus}(\ell) & x = 0\end{cases}
      = \mathrm{softplus}\big((1-2x)\,\ell\big).$$

    `x_hat` is the logit of $P(x=1)$; `predict` returns the probability
    $\sigma(\ell)$. `loss` equals `nll` (nothing is dropped): it is
    `optax.sigmoid_binary_cross_entropy(x_hat, x)`.

    `x` may be bool, integer or float; values other than 0 and 1 (a soft label 0.5,
    2, -1) have probability 0 (`nll = +inf`). Logits of any size are exact: at
    $\ell = \pm10^{30}$ the value is 0 or $|\ell|$ and the gradient is 0 or $\pm1$;
    $\ell = +\infty$ with $x = 1$ gives 0.
    """

    _discrete = True
    _safe_x = 0.0

    def __init__(self):
        pass

    def _loss(self, x, x_hat):
        return _softplus((1.0 - 2.0 * x) * x_hat)

    def _in_support(self, x):
        return (x == 0) | (x == 1)

    def _predict(self, x_hat):
        return jax.nn.sigmoid(x_hat)

    def _sample(self, key, x_hat, shape):
        return jax.random.bernoulli(key, jax.nn.sigmoid(x_hat), shape).astype(x_hat.dtype)

    # P(X <= x): 0 below 0, 1 - p on [0, 1), 1 from 1 on.
    def _cdf(self, x, x_hat):
        return jnp.where(x < 0, 0.0, jnp.where(x < 1, jax.nn.sigmoid(-x_hat), 1.0)).astype(
            x_hat.dtype
        )

    def _log_cdf(self, x, x_hat):
        return jnp.where(x < 0, -jnp.inf, jnp.where(x < 1, -_softplus(x_hat), 0.0)).astype(
            x_hat.dtype
        )

    def _log_sf(self, x, x_hat):
        return jnp.where(x < 0, 0.0, jnp.where(x < 1, -_softplus(-x_hat), -jnp.inf)).astype(
            x_hat.dtype
        )


# ------------------------------------------------------------------ Binomial


_SMALL = 8.0  # below this a count's log-factorial comes from the exact table


def _binomial_nll(x: Array, n: Array, logit: Array) -> Array:
    r"""$-\log\binom{n}{x} + x\,\mathrm{softplus}(-\ell) + y\,\mathrm{softplus}(\ell)$,
    $y = n - x$, without the $n\log n$ cancellation of the three log-factorials.

    - $x, y \ge 8$ (the saddle-point form, as in Loader's algorithm): with
      $w_1 = \log(x/n) + \mathrm{softplus}(-\ell) = \log\frac{x}{np}$ and
      $w_2 = \log(y/n) + \mathrm{softplus}(\ell) = \log\frac{y}{nq}$, the nll is
      $x\,E(-w_1) + y\,E(-w_2) + \tfrac12\log\frac{2\pi xy}{n} + S(x) + S(y)
      - S(n)$, $E(d) = e^d - 1 - d$ (all terms non-negative but the last three);
    - $x < 8 \le y$: $\log n! - \log y!$ by `log_gamma_step` (and symmetrically);
    - $x, y < 8$: the exact table.
    """
    y = n - x
    pair = softplus_pair(y, x, logit)
    small_x, small_y = x < _SMALL, y < _SMALL
    # safe arguments per regime (double where: no inf/NaN into unselected branches)
    xa, ya = jnp.maximum(x, _SMALL), jnp.maximum(y, _SMALL)
    na = xa + ya
    xs, ys = jnp.minimum(x, _SMALL - 1), jnp.minimum(y, _SMALL - 1)
    # both large
    pos = logit > 0
    shared = jnp.log1p(jnp.exp(jnp.where(pos, -logit, logit)))  # log(1 + e^-|l|)
    zero = jnp.zeros((), logit.dtype)
    sp_pos = shared + jnp.where(pos, logit, zero)  # softplus(l) = -log q
    sp_neg = shared - jnp.where(pos, zero, logit)  # softplus(-l) = -log p
    log_n = jnp.log(na)
    w1 = jnp.log(xa) - log_n + sp_neg
    w2 = jnp.log(ya) - log_n + sp_pos
    terms = _stirling_terms(x.dtype)
    both = (
        xa * exp_excess(-w1)
        + ya * exp_excess(-w2)
        + 0.5 * (jnp.log(xa) + jnp.log(ya) - log_n)
        + HALF_LOG_2PI
        + _stirling_tail(xa, terms)
        + _stirling_tail(ya, terms)
        - _stirling_tail(na, terms)
    )
    # one side small: -log C(n, x) = log x! - (log n! - log y!), or x and y swapped
    # (one log_gamma_step on the chosen pair, not one per side)
    lf_xs, lf_ys = _small_log_factorial(xs), _small_log_factorial(ys)
    one_small = jnp.where(small_x, lf_xs, lf_ys) - log_gamma_step(
        jnp.where(small_x, ya, xa) + 1.0, jnp.where(small_x, xs, ys)
    )
    plain = lf_xs + lf_ys - log_factorial(xs + ys)
    coefficient = jnp.where(small_x & small_y, plain, one_small)
    return jnp.where(small_x | small_y, coefficient + pair, both)


@jax.custom_jvp
def _binomial_core(x: Array, n: Array, logit: Array) -> Array:
    r"""`_binomial_nll` with its derivatives written out: only the softplus pair
    depends on the logit, $\partial_\ell = (n - x)\,\sigma(\ell) - x\,\sigma(-\ell)$
    (finite at $\ell = \pm\infty$); autodiff through the three regimes of the
    coefficient wrote ~10 full-size arrays for it. The count has no derivative;
    `total_count` (an integer, not learned) gets that of the $\log\Gamma$
    continuation, $\mathrm{softplus}(\ell) - \psi(n+1) + \psi(n-x+1)$ (formed
    only when it is asked for; it also keeps `total_count`'s value check in a
    program that differentiates the module)."""
    return _binomial_nll(x, n, logit)


@_binomial_core.defjvp
def _binomial_core_jvp(primals, tangents):
    x, n, logit = primals
    _, dn, dlogit = tangents
    s, sm, _, softplus = _logistic_parts(logit)
    d_logit = (n - x) * s - x * sm
    d_n = softplus - digamma(n + 1.0) + digamma(n - x + 1.0)
    return _binomial_core(x, n, logit), d_logit * dlogit + d_n * dn


class Binomial(AbstractNoise):
    r"""Binomial noise: $x$ successes out of $n$ = `total_count` trials, logit
    `x_hat` $=\ell$, $p = \sigma(\ell)$:

    $$-\log p(x\mid\ell) = -\log\binom{n}{x} + n\,\mathrm{softplus}(\ell) - x\ell
      = -\log\binom{n}{x} + x\,\mathrm{softplus}(-\ell) + (n-x)\,\mathrm{softplus}(\ell),$$

    evaluated in the second form (no cancellation at large $|\ell|$), with the
    coefficient folded in saddle-point form (no $n\log n$ cancellation between
    the log-factorials: exact to ~1e-15 in float64 and ~1e-7 in float32 up to
    $n = 10^9$). `predict`
    returns the mean $n\sigma(\ell)$. `loss` drops $-\log\binom{n}{x}$ and keeps
    $n\,\mathrm{softplus}(\ell) - x\ell$ (the binary cross-entropy summed over the
    $n$ trials). `total_count` is a non-negative integer (stored as a float leaf);
    it is not a differentiable parameter. Counts outside $0..n$ or non-integer have
    probability 0.
    """

    total_count: Float[Array, "*#batch"]
    _domains = {"total_count": NONNEGATIVE_INTEGER}
    _discrete = True
    _safe_x = 0.0

    def __init__(self, total_count: Float[ArrayLike, "*#batch"]):
        self.total_count = as_param(total_count)

    def _loss(self, x, x_hat):
        return softplus_pair(self.total_count - x, x, x_hat)

    def _const(self, x):
        n = self.total_count
        return log_factorial(x) + log_factorial(n - x) - log_factorial(n)

    def _nll(self, x, x_hat):
        return _binomial_core(x, self.total_count, x_hat)

    def _in_support(self, x):
        return (x >= 0) & (x <= self.total_count) & (x == jnp.floor(x))

    def _predict(self, x_hat):
        return self.total_count * jax.nn.sigmoid(x_hat)

    def _sample(self, key, x_hat, shape):
        n = jnp.broadcast_to(self.total_count, shape)
        p = jnp.broadcast_to(jax.nn.sigmoid(x_hat), shape)
        return jax.random.binomial(key, n, p, shape, x_hat.dtype)

    def _tails(self, x, x_hat):
        """(below, inside, above, k) for P(X <= x), with safe incomplete-beta args."""
        n = self.total_count
        k = jnp.floor(x)
        below = k < 0
        above = k >= n
        inside = ~(below | above)
        k = jnp.where(inside, k, 0.0)
        n = jnp.where(inside, n, 1.0)
        return below, above, k, n

    def _cdf(self, x, x_hat):
        # P(X <= k) = I_{1-p}(n - k, k + 1)
        below, above, k, n = self._tails(x, x_hat)
        value = betainc(n - k, k + 1.0, jax.nn.sigmoid(-x_hat))
        return jnp.where(below, 0.0, jnp.where(above, 1.0, value)).astype(value.dtype)

    def _log_cdf(self, x, x_hat):
        return jnp.log(self._cdf(x, x_hat))

    def _log_sf(self, x, x_hat):
        # P(X > k) = I_p(k + 1, n - k)
        below, above, k, n = self._tails(x, x_hat)
        value = jnp.log(betainc(k + 1.0, n - k, jax.nn.sigmoid(x_hat)))
        return jnp.where(below, 0.0, jnp.where(above, -jnp.inf, value)).astype(value.dtype)


# ------------------------------------------------------------------ Categorical


@jax.custom_jvp
def _lower_inf(x: Array) -> Array:
    """`+inf` lowered to the largest finite float; tangents pass unchanged (the
    plain `minimum` would add a compare-and-select to the backward pass)."""
    return jnp.minimum(x, jnp.finfo(x.dtype).max)


@_lower_inf.defjvp
def _lower_inf_jvp(primals, tangents):
    return _lower_inf(primals[0]), tangents[0]


def _shift(m: Array) -> Array:
    """The row shift from the row maximum `m`: the lowered maximum, 0 for a row of
    `-inf` only (no gradient flows through it)."""
    lowered = _lower_inf(m)
    zero = jnp.zeros((), m.dtype)
    return jax.lax.stop_gradient(jnp.where(lowered == -jnp.inf, zero, lowered))


def _sum_exp(x_hat: Array, m: Array, lower: bool) -> Array:
    logits = _lower_inf(x_hat) if lower else x_hat
    return jnp.sum(jnp.exp(logits - _shift(m)[..., None]), axis=-1)


def _log_normaliser(x_hat: Array) -> tuple[Array, Array, Array]:
    r"""(shift, log-normaliser, row holds the largest float) of the last axis:
    $\log\sum_k e^{\ell_k} = $ `shift + log_z`, both per row.

    `+inf` logits are lowered to the largest finite float, so a row with `+inf`
    entries puts its mass uniformly on them (`_cross_entropy` gives the other
    classes `+inf`). The lowering runs only when some row holds `+inf` (a
    `lax.cond`): otherwise the per-element work is one subtraction and one `exp`
    inside the row sum, which XLA fuses without writing an `(..., K)`
    intermediate (one more per-element operation in that fused reduction costs
    as much again on XLA:CPU). A row of `-inf` only (no valid distribution) gets
    a unit normaliser, so no `0/0` reaches the gradient.
    """
    m = jnp.max(x_hat, axis=-1)
    lowered = _lower_inf(m)  # = max of the lowered logits
    # the shift is formed inside each branch (and again below) from m: as an
    # operand of the cond it would be written out as one more array
    total = jax.lax.cond(
        jnp.any(m == jnp.inf),
        functools.partial(_sum_exp, lower=True),
        functools.partial(_sum_exp, lower=False),
        x_hat,
        m,
    )
    shift = _shift(m)
    log_z = jnp.log(jnp.where(lowered == -jnp.inf, jnp.ones((), total.dtype), total))
    return shift, log_z, lowered == jnp.finfo(x_hat.dtype).max


def _cross_entropy_parts(x_hat: Array, label: Array) -> tuple[Array, ...]:
    """(nll, shift, log-normaliser) per row, `label` in range."""
    shift, log_z, top = _log_normaliser(x_hat)
    logit = jnp.take_along_axis(x_hat, label[..., None], axis=-1, mode="clip")[..., 0]
    picked = _lower_inf(logit) - shift
    # a finite logit in a row holding +inf has probability 0 (picked < 0 there); a
    # -inf logit gives +inf by itself
    impossible = top & (picked < 0)
    value = jnp.where(impossible, jnp.asarray(jnp.inf, log_z.dtype), log_z - picked)
    return value, shift, log_z


@jax.custom_jvp
def _cross_entropy(x_hat: Array, label: Array) -> Array:
    r"""$\log\sum_k e^{\ell_k} - \ell_y$ per row, for labels $y$ in range (broadcast
    against the batch axes of `x_hat`).

    Its derivative is written out, $\partial/\partial\ell_k = \mathrm{softmax}(\ell)_k
    - [k = y]$ (0 where the value is `+inf`: a $-\infty$ logit stays $-\infty$
    under any finite change): the reverse pass is then one elementwise loop over
    the logits, where autodiff would write the `exp` of every logit and read it
    back twice.
    """
    return _cross_entropy_parts(x_hat, label)[0]


@_cross_entropy.defjvp
def _cross_entropy_jvp(primals, tangents):
    x_hat, label = primals
    value, shift, log_z = _cross_entropy_parts(x_hat, label)
    # shifted first: shift + log_z would round log_z away next to a large shift
    p = jnp.exp(_lower_inf(x_hat) - shift[..., None] - log_z[..., None])
    k = jnp.arange(x_hat.shape[-1], dtype=label.dtype).reshape((1,) * label.ndim + (-1,))
    dp = p - (k == label[..., None]).astype(p.dtype)
    tangent = jnp.sum(dp * tangents[0], axis=-1)
    return value, jnp.where(value == jnp.inf, jnp.zeros((), tangent.dtype), tangent)


class Categorical(AbstractNoise):
    r"""Categorical noise over $K$ classes with logits `x_hat` $=\ell$ (last axis):

    $$-\log p(x\mid\ell) = \log\sum_{k=0}^{K-1} e^{\ell_k} - \ell_x
      = -\mathrm{log\_softmax}(\ell)_x .$$

    `x` holds integer class labels $0..K-1$ (a float label is a trace-time
    `TypeError`); `x_hat` has the class axis last, which `nll` reduces. `predict`
    returns the probabilities $\mathrm{softmax}(\ell)$ (shape `(..., K)`); `sample`
    returns integer labels. `loss` equals `nll`:
    `optax.softmax_cross_entropy_with_integer_labels(x_hat, x)`.

    Computed as a log-softmax (shifted by the row maximum) before picking the label,
    so a common offset of the logits, however large, changes nothing. Labels outside
    $0..K-1$ (e.g. $K$ or $-1$) have probability 0 (`nll = +inf`): they never wrap
    or clamp. A $-\infty$ logit is a class of probability 0; a row of $-\infty$
    only gives `+inf`. Not univariate: no `cdf`.
    """

    _discrete = True
    _integer_x = True
    _x_hat_event_ndim = 1
    _safe_x = 0.0

    def __init__(self):
        pass

    def _nll(self, x, x_hat):
        x = x.astype(jnp.int32) if x.dtype == jnp.bool_ else x
        possible = (x >= 0) & (x < x_hat.shape[-1])
        label = jnp.where(possible, x, jnp.zeros((), x.dtype))
        # labels broadcast against the logits' batch axes (a scalar label too)
        label = jnp.broadcast_to(label, jnp.broadcast_shapes(label.shape, x_hat.shape[:-1]))
        value = _cross_entropy(x_hat, label)
        return jnp.where(possible, value, jnp.asarray(jnp.inf, value.dtype))

    def _loss(self, x, x_hat):
        return self._nll(x, x_hat)

    def _predict(self, x_hat):
        shift, log_z, _ = _log_normaliser(x_hat)
        return jnp.exp(_lower_inf(x_hat) - shift[..., None] - log_z[..., None])

    def _sample(self, key, x_hat, shape):
        shift, _, _ = _log_normaliser(x_hat)
        shifted = _lower_inf(x_hat) - shift[..., None]
        return jax.random.categorical(key, shifted, axis=-1, shape=shape)
