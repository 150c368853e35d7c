r"""Change of variables on the observation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logit
from jaxtyping import Array

from .._noise._base import AbstractNoise
from ._common import AbstractCombinator, check_noise

__all__ = ["Transform", "transform"]


def _neg_log(x):
    return -jnp.log(x)


def _neg_log1p(x):
    return -jnp.log1p(x)


def _identity(x):
    return x


def _logit_ldj(x):
    return -jnp.log(x) - jnp.log1p(-x)


def _sigmoid_ldj(x):
    return -jax.nn.softplus(x) - jax.nn.softplus(-x)


def _arcsinh_ldj(x):
    return -0.5 * jnp.log1p(x * x)


def _sinh_ldj(x):
    return jnp.log(jnp.cosh(x))


# f -> (log|f'(x)|, f^{-1}) for common bijections; anything else uses autodiff for
# the log-Jacobian and needs `inverse=` to sample or predict. All are increasing.
_KNOWN: dict[Callable, tuple[Callable, Callable]] = {
    jnp.log: (_neg_log, jnp.exp),
    jnp.exp: (_identity, jnp.log),
    jnp.log1p: (_neg_log1p, jnp.expm1),
    jnp.expm1: (_identity, jnp.log1p),
    logit: (_logit_ldj, jax.nn.sigmoid),
    jax.nn.sigmoid: (_sigmoid_ldj, logit),
    jnp.arcsinh: (_arcsinh_ldj, jnp.sinh),
    jnp.sinh: (_sinh_ldj, jnp.arcsinh),
}


def _hashable(fn: str, name: str, value: Any) -> Any:
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{fn}: `{name}` must be callable, got {type(value).__name__}.")
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"{fn}: `{name}` must be hashable (a plain function; it is a static field "
            "so the noise model can pass through `jax.jit`)."
        ) from None
    return value


class Transform(AbstractCombinator):
    r"""`noise` observed through a strictly monotone, differentiable, elementwise
    map $f$: if $f(X)$ has the law of `noise`, then

    $$-\log p(x\mid\hat x) = \mathrm{nll}_{\text{noise}}(f(x), \hat x)
      - \log|f'(x)|.$$

    `transform(Gaussian(s), jnp.log)` is the log-normal noise
    `scipy.stats.lognorm(s, scale=exp(x_hat))`. The log-Jacobian
    $\log|f'(x)|$ is computed by forward-mode autodiff unless given as
    `log_det_jacobian(x)` (it is known for `jnp.log`, `jnp.exp`, `jnp.log1p`,
    `jnp.expm1`, `logit`, `jax.nn.sigmoid`, `jnp.arcsinh`, `jnp.sinh`). `x` outside
    the domain of $f$ (e.g. $x \le 0$ for `jnp.log`), or where $f(x)$ is infinite,
    has probability 0: `nll = +inf` with zero gradients.

    - `loss` is the noise's loss at $f(x)$ (drops its constant and the Jacobian).
    - `cdf`: $F(f(x))$ where $f$ is increasing, $1 - F(f(x))$ where it is
      decreasing (the sign of $f'(x)$ decides, elementwise); NaN outside the
      domain of $f$.
    - `sample`: $f^{-1}$ of the noise's draws; `predict`: $f^{-1}$ of the noise's
      prediction (the median of $x$ when the noise predicts its median, e.g. every
      symmetric family: for the log-normal it is $e^{\hat x}$, not the mean). Both
      need $f^{-1}$: given as `inverse=`, or known for the functions above.

    `f`, `log_det_jacobian` and `inverse` are static (hashable) fields.
    """

    noise: AbstractNoise
    f: Callable[[Array], Array] = eqx.field(static=True)
    log_det_jacobian: Callable[[Array], Array] | None = eqx.field(static=True)
    inverse: Callable[[Array], Array] | None = eqx.field(static=True)
    _child_fields = ("noise",)

    def __init__(
        self,
        noise: AbstractNoise,
        f: Callable[[Array], Array],
        log_det_jacobian: Callable[[Array], Array] | None = None,
        inverse: Callable[[Array], Array] | None = None,
    ):
        noise = check_noise("transform", "noise", noise)
        if noise._discrete:
            raise TypeError(
                f"transform: {type(noise).__name__} is a probability mass; a change of "
                "variables (with a Jacobian) applies to densities only."
            )
        f = _hashable("transform", "f", f)
        if f is None:
            raise TypeError("transform: `f` is required.")
        self.noise = noise
        self.f = f
        known = _KNOWN.get(f)
        ldj = _hashable("transform", "log_det_jacobian", log_det_jacobian)
        inv = _hashable("transform", "inverse", inverse)
        if known is not None:
            ldj = known[0] if ldj is None else ldj
            inv = known[1] if inv is None else inv
        self.log_det_jacobian = ldj
        self.inverse = inv

    @property
    def _safe_x(self) -> float | None:  # pyright: ignore[reportIncompatibleVariableOverride]
        return None

    def _forward(self, x: Array) -> tuple[Array, Array]:
        if self.log_det_jacobian is not None:
            return self.f(x), self.log_det_jacobian(x)
        y, dy = jax.jvp(self.f, (x,), (jnp.ones_like(x),))
        return y, jnp.log(jnp.abs(dy))

    def _observed(self, x: Array) -> tuple[Array, Array, Array]:
        """(y = f(x) made safe, log|f'(x)|, bad): bad where x is a number outside
        the domain of f or f(x) is infinite."""
        y, ldj = self._forward(x)
        bad = ~jnp.isfinite(y) & ~jnp.isnan(x)
        safe = self.noise._safe_x if self.noise._safe_x is not None else 0.0
        return jnp.where(bad, jnp.asarray(safe, y.dtype), y), ldj, bad

    def _value(self, inner: Array, ldj: Array | None, bad: Array) -> Array:
        value = inner if ldj is None else inner - ldj
        impossible = bad | jnp.isposinf(inner)
        return jnp.where(impossible, jnp.asarray(jnp.inf, value.dtype), value)

    def _nll(self, x, x_hat):
        y, ldj, bad = self._observed(x)
        return self._value(self.noise._inner_nll(y, x_hat), ldj, bad)

    def _loss(self, x, x_hat):
        y, _, bad = self._observed(x)
        return self._value(self.noise._inner_loss(y, x_hat), None, bad)

    def _need_inverse(self, method: str) -> Callable[[Array], Array]:
        if self.inverse is None:
            raise NotImplementedError(
                f"Transform.{method} needs the inverse of `f`: pass "
                "`transform(noise, f, inverse=...)`."
            )
        return self.inverse

    def _prediction_kind(self) -> str:
        return "other"

    def _predict(self, x_hat):
        return self._need_inverse("predict")(self.noise._predict(x_hat))

    def _sample(self, key, x_hat, shape):
        return self._need_inverse("sample")(self.noise._sample(key, x_hat, shape))

    def _increasing(self, x: Array) -> tuple[Array, Array]:
        y, dy = jax.jvp(self.f, (x,), (jnp.ones_like(x),))
        return y, dy >= 0

    def _cdf(self, x, x_hat):
        y, up = self._increasing(x)
        lower = type(self.noise)._cdf(self.noise, y, x_hat)
        upper = jnp.exp(type(self.noise)._log_sf(self.noise, y, x_hat))
        return jnp.where(up, lower, upper)

    def _log_cdf(self, x, x_hat):
        y, up = self._increasing(x)
        lower = type(self.noise)._log_cdf(self.noise, y, x_hat)
        upper = type(self.noise)._log_sf(self.noise, y, x_hat)
        return jnp.where(up, lower, upper)

    def _log_sf(self, x, x_hat):
        y, up = self._increasing(x)
        lower = type(self.noise)._log_cdf(self.noise, y, x_hat)
        upper = type(self.noise)._log_sf(self.noise, y, x_hat)
        return jnp.where(up, upper, lower)


def transform(
    noise: AbstractNoise,
    f: Callable[[Array], Array],
    log_det_jacobian: Callable[[Array], Array] | None = None,
    *,
    inverse: Callable[[Array], Array] | None = None,
) -> Transform:
    r"""`noise` on $f(x)$: the density of $x$ is $p_{\text{noise}}(f(x)\mid\hat x)\,
    |f'(x)|$ (see `Transform`). `transform(Gaussian(s), jnp.log)` is log-normal."""
    return Transform(noise, f, log_det_jacobian, inverse)
