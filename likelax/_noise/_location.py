r"""Real-valued noise with a location `x_hat`: Gaussian and the robust families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr
from jaxtyping import Array, ArrayLike, Float

from ._base import POSITIVE, AbstractNoise, as_param
from ._special import HALF_LOG_2PI, standardize


class Gaussian(AbstractNoise):
    r"""Gaussian noise: $-\log p(x\mid\hat x) = \tfrac12 z^2 + \log s + \tfrac12\log 2\pi$,
    $z = (x-\hat x)/s$.

    `x_hat` is the mean; `predict` returns it. `loss` drops $\log s + \frac12\log 2\pi$
    and keeps $\tfrac12 z^2$: with `scale=1` it is `optax.l2_loss` ($\tfrac12 r^2$),
    i.e. half the squared error.
    """

    scale: Float[Array, "*#batch"]
    _domains = {"scale": POSITIVE}

    def __init__(self, scale: Float[ArrayLike, "*#batch"] = 1.0):
        self.scale = as_param(scale)

    def _loss(self, x, x_hat):
        z = standardize(x - x_hat, self.scale)
        return 0.5 * z * z

    def _const(self, x):
        return jnp.log(self.scale) + HALF_LOG_2PI

    def _predict(self, x_hat):
        return jnp.broadcast_to(x_hat, jnp.broadcast_shapes(x_hat.shape, self.scale.shape))

    def _sample(self, key, x_hat, shape):
        return x_hat + self.scale * jax.random.normal(key, shape, x_hat.dtype)

    def _cdf(self, x, x_hat):
        return ndtr(standardize(x - x_hat, self.scale))

    def _log_cdf(self, x, x_hat):
        return log_ndtr(standardize(x - x_hat, self.scale))

    def _log_sf(self, x, x_hat):
        return log_ndtr(-standardize(x - x_hat, self.scale))
