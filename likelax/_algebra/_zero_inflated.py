r"""Zero inflation: a point mass at 0 mixed with a noise model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._noise._base import UNIT_INTERVAL_OPEN, AbstractNoise, as_param
from ._common import AbstractCombinator, check_noise, logsumexp_list, prediction_kind

__all__ = ["ZeroInflated", "zero_inflated"]


class ZeroInflated(AbstractCombinator):
    r"""A point mass at 0 with probability $\pi$ (`prob`), and `noise` otherwise.

    For a count (mass) `noise` (zero-inflated Poisson / negative binomial):

    $$p(0\mid\hat x) = \pi + (1-\pi)\,p(0\mid\hat x),\qquad
      p(x\mid\hat x) = (1-\pi)\,p(x\mid\hat x)\quad (x \ne 0),$$

    evaluated in log space ($\log\pi$, $\log1p(-\pi)$, `logaddexp`), so it is exact
    when $p(0\mid\hat x)$ underflows or $\pi$ is tiny. For a density `noise`
    (zero-inflated Gamma or log-normal: rainfall, insurance claims) the likelihood
    is taken with respect to Lebesgue measure plus an atom at 0 (a hurdle model):
    $-\log\pi$ at $x = 0$ and $-\log(1-\pi) + \mathrm{nll}(x, \hat x)$ elsewhere, so
    a density that is impossible at 0 (Gamma) never produces NaN.

    `prob` is a learnable hyperparameter in the open interval (0, 1) (path
    `"prob"`; the noise's are `"noise.<field>"`).

    - `loss`: the full nll at $x = 0$ for a mass noise (its $\hat x$-dependence does
      not separate), the noise's loss at $x \ne 0$ (drops $-\log(1-\pi)$ and the
      noise's constant, neither depends on `x_hat`).
    - `predict`: $(1-\pi)\,$ the noise's prediction, the mean when the noise
      predicts its mean (Poisson, negative binomial, Gamma...); raises otherwise.
    - `sample`: exact; `cdf`: $\pi\,[x\ge0] + (1-\pi)F(x)$, `log_cdf` / `log_sf`
      in log space.
    """

    noise: AbstractNoise
    prob: Float[Array, "*#batch"]
    _domains = {"prob": UNIT_INTERVAL_OPEN}
    _child_fields = ("noise",)

    def __init__(self, noise: AbstractNoise, prob: Float[ArrayLike, "*#batch"]):
        self.noise = check_noise("zero_inflated", "noise", noise)
        if noise._integer_x:
            raise TypeError(
                f"zero_inflated: {type(noise).__name__} is not a univariate noise model."
            )
        self.prob = as_param(prob)

    @property
    def _safe_x(self) -> float | None:  # pyright: ignore[reportIncompatibleVariableOverride]
        return 0.0

    def _logs(self) -> tuple[Array, Array]:
        return jnp.log(self.prob), jnp.log1p(-self.prob)

    def _combine(self, x, inner: Array, exact_zero: bool) -> Array:
        log_pi, log_1m = self._logs()
        at0 = x == 0
        nonzero = inner - log_1m
        if self.noise._discrete:
            zero = -logsumexp_list((jnp.broadcast_to(log_pi, inner.shape), log_1m - inner))
        else:
            zero = jnp.broadcast_to(-log_pi, inner.shape)
            if not exact_zero:
                zero = jnp.zeros_like(inner)
        if not exact_zero:
            nonzero = inner
        return jnp.where(at0, zero, nonzero)

    def _nll(self, x, x_hat):
        return self._combine(x, self.noise._inner_nll(x, x_hat), True)

    def _loss(self, x, x_hat):
        if self.noise._discrete:
            nll = self.noise._inner_nll(x, x_hat)
            loss = self.noise._inner_loss(x, x_hat)
            at0 = x == 0
            return jnp.where(at0, self._combine(x, nll, True), loss)
        return self._combine(x, self.noise._inner_loss(x, x_hat), False)

    def _prediction_kind(self) -> str:
        return "mean"

    def _predict(self, x_hat):
        kind = prediction_kind(self.noise)
        if kind not in ("mean", "both"):
            raise NotImplementedError(
                f"ZeroInflated.predict: {type(self.noise).__name__}'s prediction is not "
                "its mean, so (1 - prob) times it is not the mean of the inflated model."
            )
        return (1.0 - self.prob) * self.noise._predict(x_hat)

    def _sample(self, key, x_hat, shape):
        k_zero, k_noise = jax.random.split(key)
        draws = self.noise._sample(k_noise, x_hat, shape)
        zero = jax.random.bernoulli(k_zero, self.prob, shape)
        return jnp.where(zero, jnp.zeros((), draws.dtype), draws)

    def _cdf(self, x, x_hat):
        inner = type(self.noise)._cdf(self.noise, x, x_hat)
        step = (x >= 0).astype(inner.dtype)
        return self.prob * step + (1.0 - self.prob) * inner

    def _log_cdf(self, x, x_hat):
        log_pi, log_1m = self._logs()
        inner = log_1m + type(self.noise)._log_cdf(self.noise, x, x_hat)
        with_atom = logsumexp_list((jnp.broadcast_to(log_pi, inner.shape), inner))
        return jnp.where(x >= 0, with_atom, inner)

    def _log_sf(self, x, x_hat):
        log_pi, log_1m = self._logs()
        inner = log_1m + type(self.noise)._log_sf(self.noise, x, x_hat)
        with_atom = logsumexp_list((jnp.broadcast_to(log_pi, inner.shape), inner))
        return jnp.where(x < 0, with_atom, inner)


def zero_inflated(noise: AbstractNoise, prob: Float[ArrayLike, "*#batch"]) -> ZeroInflated:
    r"""`noise` with extra zeros: a point mass at 0 of probability `prob`
    (zero-inflated Poisson / negative binomial; a hurdle for densities). See
    `ZeroInflated`."""
    return ZeroInflated(noise, prob)
