r"""Reparameterisations of `x_hat`: a link function, and a learned per-observation
scale (heteroscedastic noise)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logit
from jaxtyping import Array

from .._noise._base import AbstractNoise
from ._common import AbstractCombinator, check_noise, prediction_kind

__all__ = [
    "Heteroscedastic",
    "Reparam",
    "heteroscedastic",
    "log_softplus",
    "reparam",
    "standardize_log",
]


# ------------------------------------------------------------------ mean forms
#
# `reparam(noise, link)` composes `noise.nll(x, link(z))`. When `link` maps the
# natural mean parameter to the family's `x_hat` (e.g. `jnp.log` for a Poisson rate),
# the composition has a removable 0·∞ in its chain rule at the boundary (rate 0:
# d nll/dη = 0 times dη/dμ = ∞), while the nll written in the mean is smooth there.
# A family may provide that form itself as
#
#     _mean_link: ClassVar[Callable]       # e.g. jnp.log
#     def _mean_nll(self, x, mu): ...       # the nll as a function of the mean
#     def _mean_loss(self, x, mu): ...      # (optional) the same minus `_const(x)`
#
# and `reparam` uses it when `link is _mean_link`. The table below supplies these
# forms for the families of likelax until (or unless) they define them.


def _xlogy0(x: Array, y: Array) -> Array:
    """`x * log(y)` with value and gradient 0 where `x == 0` (also at `y = 0`)."""
    zero = x == 0
    return jnp.where(zero, jnp.zeros((), y.dtype), x * jnp.log(jnp.where(zero, 1.0, y)))


def _poisson_mean_loss(noise, x, mu):
    return mu - _xlogy0(x, mu)


def _negbin_mean_loss(noise, x, mu):
    # r log(1 + mu/r) + x log(1 + r/mu) - x log r (the family's `_loss` in mu)
    r = noise.concentration
    zero = x == 0
    tail = x * jnp.log1p(r / jnp.where(zero, jnp.ones((), mu.dtype), mu))
    return (
        r * jnp.log1p(mu / r)
        + jnp.where(zero, jnp.zeros((), mu.dtype), tail)
        - (x * jnp.log(r))
    )


def _bernoulli_mean_loss(noise, x, p):
    return -_xlogy0(x, p) - _xlogy0(1.0 - x, 1.0 - p)


def _binomial_mean_loss(noise, x, p):
    return -_xlogy0(x, p) - _xlogy0(noise.total_count - x, 1.0 - p)


def _rate(mu):
    return mu >= 0


def _probability(p):
    return (p >= 0) & (p <= 1)


# family name -> (link, mean-form loss, valid means); the nll is the loss plus the
# family's `_const(x)`; invalid means (a negative rate) give NaN.
_MEAN_FORMS: dict[str, tuple[Callable, Callable, Callable]] = {
    "Poisson": (jnp.log, _poisson_mean_loss, _rate),
    "NegativeBinomial": (jnp.log, _negbin_mean_loss, _rate),
    "Bernoulli": (logit, _bernoulli_mean_loss, _probability),
    "Binomial": (logit, _binomial_mean_loss, _probability),
}


def _mean_form(noise: AbstractNoise, link: Callable) -> tuple[Callable, Callable] | None:
    """(nll, loss) of `noise` in its mean parametrisation when `link` is its
    mean link, else None."""
    own = getattr(type(noise), "_mean_link", None)
    if own is not None and own is link and hasattr(type(noise), "_mean_nll"):
        nll = type(noise)._mean_nll  # type: ignore[attr-defined]
        own_loss = getattr(type(noise), "_mean_loss", None)
        if own_loss is not None:
            return nll, own_loss

        def loss(self, x, mu):
            return nll(self, x, mu) - self._const(x)

        return nll, loss
    entry = _MEAN_FORMS.get(type(noise).__name__)
    if entry is None or entry[0] is not link:
        return None
    _, formula, valid = entry

    def mean_loss(self, x, mu):
        value = formula(self, x, mu)
        return jnp.where(valid(mu), value, jnp.asarray(jnp.nan, value.dtype))

    def mean_nll(self, x, mu):
        return mean_loss(self, x, mu) + self._const(x)

    return mean_nll, mean_loss


class Reparam(AbstractCombinator):
    r"""`noise` with its `x_hat` given through a link: $p(x\mid z) =
    p_{\text{noise}}(x\mid \hat x = \mathrm{link}(z))$.

    The model outputs $z$; e.g. an identity-link Poisson (the model outputs the
    rate $\mu$ itself) is `reparam(Poisson(), jnp.log)`, a probability-output
    Bernoulli is `reparam(Bernoulli(), jax.scipy.special.logit)`. `link` is applied
    elementwise and must be a hashable callable (a function, not a closure over
    arrays: it is a static field).

    When `link` maps the family's mean to its `x_hat` (`jnp.log` for Poisson and
    negative binomial, `logit` for Bernoulli and binomial), the nll is evaluated in
    the mean parametrisation directly, so the boundary is smooth: a Poisson rate of
    0 with a count of 0 gives nll 0 and $\partial/\partial\mu = 1$ (the plain chain
    rule would give $0\cdot\infty$).

    `loss`, `predict`, `sample` and `cdf` are the noise's at `link(z)`.
    """

    noise: AbstractNoise
    link: Callable[[Array], Array] = eqx.field(static=True)
    _child_fields = ("noise",)

    def __init__(self, noise: AbstractNoise, link: Callable[[Array], Array]):
        self.noise = check_noise("reparam", "noise", noise)
        if not callable(link):
            raise TypeError(f"reparam: `link` must be callable, got {type(link).__name__}.")
        try:
            hash(link)
        except TypeError:
            raise TypeError(
                "reparam: `link` must be hashable (a plain function; it is a static "
                "field so the noise model can pass through `jax.jit`)."
            ) from None
        self.link = link

    def _nll(self, x, x_hat):
        form = _mean_form(self.noise, self.link)
        if form is not None:
            return self.noise._masked(form[0], x, x_hat)
        return self.noise._inner_nll(x, self.link(x_hat))

    def _loss(self, x, x_hat):
        form = _mean_form(self.noise, self.link)
        if form is not None:
            return self.noise._masked(form[1], x, x_hat)
        return self.noise._inner_loss(x, self.link(x_hat))

    def _prediction_kind(self) -> str:
        return prediction_kind(self.noise)

    def _predict(self, x_hat):
        return self.noise._predict(self.link(x_hat))

    def _sample(self, key, x_hat, shape):
        return self.noise._sample(key, self.link(x_hat), shape)

    def _cdf(self, x, x_hat):
        return type(self.noise)._cdf(self.noise, x, self.link(x_hat))

    def _log_cdf(self, x, x_hat):
        return type(self.noise)._log_cdf(self.noise, x, self.link(x_hat))

    def _log_sf(self, x, x_hat):
        return type(self.noise)._log_sf(self.noise, x, self.link(x_hat))


def reparam(noise: AbstractNoise, link: Callable[[Array], Array]) -> Reparam:
    r"""`noise` with `x_hat = link(z)`: the model outputs `z` (see `Reparam`)."""
    return Reparam(noise, link)


# ------------------------------------------------------------- heteroscedastic

_LOG_SOFTPLUS_CUT = -20.0


def log_softplus(t: Array) -> Array:
    r"""$\log \mathrm{softplus}(t) = \log\log(1+e^t)$, finite for every finite $t$.

    For $t < -20$ it is $t - e^t/2$ (the series of $\log(\log(1+u)/u)$, exact to
    $e^{2t}$), so a raw scale of $-100$ (softplus $\approx 4\cdot10^{-44}$, below
    float32's normal range) gives $-100$, with derivative 1.
    """
    lo = t < _LOG_SOFTPLUS_CUT
    e = jnp.exp(jnp.where(lo, t, jnp.zeros((), t.dtype)))
    # jax.nn.softplus has the right derivative at t = 0 (max(t, 0) + log1p(e^-|t|)
    # gets 0.5 - 0.5 = 0 there from the kinks of max and abs)
    sp = jax.nn.softplus(t)
    hi = jnp.log(jnp.where(lo, jnp.ones((), t.dtype), sp))
    return jnp.where(lo, t - 0.5 * e, hi)


@jax.custom_jvp
def standardize_log(r: Array, log_s: Array) -> Array:
    r"""$z = r / s$ from $\log s$, as $(r\,h)\,h$ with $h = e^{-\log s/2}$.

    $1/s$ itself overflows float32 once $s < 3\cdot10^{-39}$, but $h$ does not
    until $s < 10^{-77}$, so $z$ is exact whenever it is representable, and the
    derivative $dz = h\,(h\,dr) - z\,d\log s$ is 0 (not $0\cdot\infty$) at $r=0$.
    """
    h = jnp.exp(-0.5 * log_s)
    return (r * h) * h


@standardize_log.defjvp
def _standardize_log_jvp(primals, tangents):
    r, log_s = primals
    dr, dlog_s = tangents
    h = jnp.exp(-0.5 * log_s)
    z = (r * h) * h
    return z, (dr * h) * h - z * dlog_s


def _real_line(noise: AbstractNoise) -> bool:
    """Whether the support is the real line (finite reals), when it can be told."""
    inside = noise._in_support(jnp.asarray([-1.5, 0.0, 1.5]))
    if inside is None or isinstance(inside, jax.core.Tracer):  # pyright: ignore[reportAttributeAccessIssue]
        return True
    return bool(jnp.all(inside))


class Heteroscedastic(AbstractCombinator):
    r"""A location-scale `noise` whose scale is predicted per observation:

    $$-\log p(x\mid\hat x) = f_0\!\Big(\frac{x-\mu}{s}\Big) + \log s,\qquad
      \mu = \hat x_{\dots,0},\quad s = s_0\,\mathrm{softplus}(\hat x_{\dots,1}),$$

    where $f_0$ is the family's standardised nll (scale 1) and $s_0$ its own `scale`
    (leave it at the default 1 for $s = \mathrm{softplus}(\hat x_{\dots,1})$).
    `x_hat` has a trailing axis of size 2 (location, raw scale). Everything is
    computed from $\log s$ ($\log\mathrm{softplus}$ evaluated in log space), so raw
    outputs of $\pm 100$ give finite values and gradients in float32.

    For a Gaussian this is PyTorch's `GaussianNLLLoss(full=True)` with
    `var = s**2` (without its `eps` clamp). `loss` drops only the family's
    constant (e.g. $\tfrac12\log 2\pi$): $\log s$ depends on `x_hat`.
    `predict`, `sample`, `cdf`, `log_cdf`, `log_sf` use the location-scale form
    ($\mu + s\,\cdot$ the standard family's).

    Works for every family with a `scale` hyperparameter on the real line: Gaussian,
    Laplace, StudentT, Cauchy, Huber, GeneralizedNormal, AsymmetricLaplace, and
    `from_loss` models.
    """

    noise: AbstractNoise
    _child_fields = ("noise",)
    _x_hat_event_ndim = 1  # pyright: ignore[reportAssignmentType]

    def __init__(self, noise: AbstractNoise):
        noise = check_noise("heteroscedastic", "noise", noise)
        domains = noise._hyperparameter_paths()
        if (
            "scale" not in domains
            or noise._discrete
            or noise._x_hat_event_ndim != 0
            or not _real_line(noise)
        ):
            raise TypeError(
                "heteroscedastic: `noise` must be a location-scale family on the real "
                "line with a `scale` hyperparameter (Gaussian, Laplace, StudentT, "
                f"Cauchy, Huber, GeneralizedNormal, AsymmetricLaplace, from_loss); got "
                f"{type(noise).__name__}."
            )
        self.noise = noise

    def _unit(self) -> AbstractNoise:
        scale = self.noise.scale  # type: ignore[attr-defined]
        return eqx.tree_at(lambda n: n.scale, self.noise, jnp.ones((), scale.dtype))

    def _split(self, x_hat) -> tuple[Array, Array, AbstractNoise]:
        if x_hat.shape[-1] != 2:
            raise ValueError(
                "Heteroscedastic: `x_hat` must have a trailing axis of size 2 "
                f"(location, raw scale), got shape {x_hat.shape}."
            )
        loc, raw = x_hat[..., 0], x_hat[..., 1]
        log_s = log_softplus(raw) + jnp.log(self.noise.scale)  # type: ignore[attr-defined]
        return loc, log_s, self._unit()

    def _nll(self, x, x_hat):
        loc, log_s, unit = self._split(x_hat)
        z = standardize_log(x - loc, log_s)
        return unit._inner_nll(z, jnp.zeros((), z.dtype)) + log_s

    def _loss(self, x, x_hat):
        loc, log_s, unit = self._split(x_hat)
        z = standardize_log(x - loc, log_s)
        return unit._inner_loss(z, jnp.zeros((), z.dtype)) + log_s

    def _prediction_kind(self) -> str:
        return prediction_kind(self.noise)

    def _predict(self, x_hat):
        loc, log_s, unit = self._split(x_hat)
        zero = jnp.zeros((), loc.dtype)
        return loc + jnp.exp(log_s) * unit._predict(zero)

    def _sample(self, key, x_hat, shape):
        loc, log_s, unit = self._split(x_hat)
        zero = jnp.zeros((), loc.dtype)
        return loc + jnp.exp(log_s) * unit._sample(key, zero, shape)

    def _tail(self, name: str, x, x_hat):
        loc, log_s, unit = self._split(x_hat)
        z = standardize_log(x - loc, log_s)
        return getattr(type(unit), name)(unit, z, jnp.zeros((), z.dtype))

    def _cdf(self, x, x_hat):
        return self._tail("_cdf", x, x_hat)

    def _log_cdf(self, x, x_hat):
        return self._tail("_log_cdf", x, x_hat)

    def _log_sf(self, x, x_hat):
        return self._tail("_log_sf", x, x_hat)


def heteroscedastic(noise: AbstractNoise) -> Heteroscedastic:
    r"""`noise` with a per-observation scale: `x_hat[..., 0]` is the location and
    `softplus(x_hat[..., 1])` the scale (see `Heteroscedastic`)."""
    return Heteroscedastic(noise)
