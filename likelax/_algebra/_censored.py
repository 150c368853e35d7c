r"""Censored observations: the tail mass at a bound instead of the density."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._noise._base import AbstractNoise, _is_concrete, _to_rank, as_param
from ._common import AbstractCombinator, check_noise

__all__ = ["Censored", "censored"]


def _bound(name: str, value: Any) -> Array | None:
    if value is None:
        return None
    if jnp.issubdtype(jnp.asarray(value).dtype, jnp.complexfloating):
        raise TypeError(f"censored: `{name}` must be real.")
    return as_param(value)


class Censored(AbstractCombinator):
    r"""`noise` observed through censoring at `lower` and/or `upper` (Tobit;
    right-censored durations): with $X$ distributed as `noise`, one observes
    $\min(\max(X, l), u)$, so

    $$-\log p(x\mid\hat x) = \begin{cases}
      -\log F(l\mid\hat x) & x = l \quad\text{(left-censored)}\\
      \mathrm{nll}_{\text{noise}}(x,\hat x) & l < x < u\\
      -\log P(X \ge u\mid\hat x) & x = u \quad\text{(right-censored)}\\
      +\infty & x < l \text{ or } x > u \text{ or } x = \pm\infty.
    \end{cases}$$

    The tail terms use the noise's `log_cdf` / `log_sf`, accurate far in the tails
    (a Gaussian censored 40 standard deviations away is exact). For a count family
    $P(X \ge u) = P(X > u - 1)$. `lower` / `upper` may be arrays (per-observation
    censoring points; they broadcast with the data); None means no censoring on that
    side. Right-censored survival data: pass `upper = where(event, inf, time)` and
    `x = time`, so events contribute the density and censored times the survival.
    The bounds are data, not hyperparameters (never learned). The tail terms are
    differentiable in `x_hat` and in the noise's hyperparameters (Beta's and the
    negative binomial's through likelax's incomplete beta, which has derivatives
    in its shapes), so a censored model can learn its noise.

    - `loss`: the tail term at censored observations, the noise's loss elsewhere
      (the dropped constant is the noise's, which is free of `x_hat`).
    - `cdf` / `log_cdf` / `log_sf`: those of $\min(\max(X,l),u)$ (0 below $l$, 1 at
      and above $u$).
    - `sample`: clipped draws of the noise (exact). `predict`: the noise's
      prediction clipped to $[l, u]$ (the median of the censored law when the noise
      predicts its median; not its mean).
    """

    noise: AbstractNoise
    lower: Float[Array, "*#batch"] | None
    upper: Float[Array, "*#batch"] | None
    _child_fields = ("noise",)

    def __init__(
        self,
        noise: AbstractNoise,
        lower: Float[ArrayLike, "*#batch"] | None = None,
        upper: Float[ArrayLike, "*#batch"] | None = None,
    ):
        self.noise = check_noise("censored", "noise", noise)
        if noise._integer_x:
            raise TypeError(
                f"censored: {type(noise).__name__} is not univariate; censoring needs "
                "an ordered observation with a cdf."
            )
        self.lower = _bound("lower", lower)
        self.upper = _bound("upper", upper)

    def __check_init__(self):
        lo, up = self.lower, self.upper
        both = lo is not None and up is not None and _is_concrete(lo) and _is_concrete(up)
        if both and bool(jnp.any(lo >= up)):  # type: ignore[operator]
            raise ValueError("censored: `lower` must be below `upper`.")
        for name, b in (("lower", lo), ("upper", up)):
            if b is not None and _is_concrete(b) and bool(jnp.any(jnp.isnan(b))):
                raise ValueError(f"censored: `{name}` holds NaN.")

    def _own_shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for name in ("lower", "upper"):
            b = getattr(self, name)
            if b is not None:
                out[f"Censored.{name}"] = tuple(b.shape)
        return out

    def _prepared(self, dtype: Any, rank: int) -> AbstractNoise:
        new = self
        for name in ("lower", "upper"):
            b = getattr(self, name)
            if b is not None:
                new = eqx.tree_at(
                    lambda m, n=name: getattr(m, n), new, _to_rank(b.astype(dtype), rank)
                )
        return self._prepare_children(new, dtype, rank)

    def _violations(self) -> list[tuple[str, Array]]:
        out = AbstractCombinator._violations(self)
        if self.lower is not None and self.upper is not None:
            out.append(
                ("censored: `lower` must be below `upper`.", self.lower >= self.upper)
            )
        return out

    # ----------------------------------------------------------- formulas

    def _parts(self, x):
        """(at lower, at upper, impossible, x for the tail formulas)."""
        noise = self.noise
        false = jnp.zeros(x.shape, bool)
        at_lo = false if self.lower is None else x == self.lower
        at_hi = false if self.upper is None else x == self.upper
        impossible = jnp.isinf(x)
        if self.lower is not None:
            impossible = impossible | (x < self.lower)
        if self.upper is not None:
            impossible = impossible | (x > self.upper)
        inside, xs = noise._mask_nan_and_support(x)
        safe = noise._safe_x if noise._safe_x is not None else 0.0
        xt = jnp.where(jnp.isinf(xs), jnp.asarray(safe, x.dtype), xs)
        if inside is not None:
            impossible = impossible | ~inside
        return at_lo, at_hi, impossible, xt

    def _with_tails(self, x, x_hat, method: str) -> Array:
        noise = self.noise
        at_lo, at_hi, impossible, xt = self._parts(x)
        # the density at a safe point where x is impossible (x = ±inf), so that its
        # (masked) gradient stays finite
        xd = jnp.where(impossible & ~jnp.isnan(x), xt, x)
        value = getattr(noise, method)(xd, x_hat)
        if self.lower is not None:
            tail = -type(noise)._log_cdf(noise, xt, x_hat)
            value = jnp.where(at_lo, tail, value)
        if self.upper is not None:
            xu = xt - 1.0 if noise._discrete else xt
            tail = -type(noise)._log_sf(noise, xu, x_hat)
            value = jnp.where(at_hi, tail, value)
        return jnp.where(impossible, jnp.asarray(jnp.inf, value.dtype), value)

    def _nll(self, x, x_hat):
        return self._with_tails(x, x_hat, "_inner_nll")

    def _loss(self, x, x_hat):
        return self._with_tails(x, x_hat, "_inner_loss")

    def _prediction_kind(self) -> str:
        return "other"

    def _clip(self, v: Array) -> Array:
        if self.lower is not None:
            v = jnp.maximum(v, self.lower)
        if self.upper is not None:
            v = jnp.minimum(v, self.upper)
        return v

    def _predict(self, x_hat):
        return self._clip(self.noise._predict(x_hat))

    def _sample(self, key, x_hat, shape):
        draws = self.noise._sample(key, x_hat, shape)
        return self._clip(draws).astype(draws.dtype)

    def _below_above(self, x):
        below = jnp.zeros(x.shape, bool) if self.lower is None else x < self.lower
        above = jnp.zeros(x.shape, bool) if self.upper is None else x >= self.upper
        return below, above

    def _cdf(self, x, x_hat):
        below, above = self._below_above(x)
        value = type(self.noise)._cdf(self.noise, x, x_hat)
        value = jnp.where(below, jnp.zeros((), value.dtype), value)
        return jnp.where(above, jnp.ones((), value.dtype), value)

    def _log_cdf(self, x, x_hat):
        below, above = self._below_above(x)
        value = type(self.noise)._log_cdf(self.noise, x, x_hat)
        value = jnp.where(below, jnp.asarray(-jnp.inf, value.dtype), value)
        return jnp.where(above, jnp.zeros((), value.dtype), value)

    def _log_sf(self, x, x_hat):
        below, above = self._below_above(x)
        value = type(self.noise)._log_sf(self.noise, x, x_hat)
        value = jnp.where(below, jnp.zeros((), value.dtype), value)
        return jnp.where(above, jnp.asarray(-jnp.inf, value.dtype), value)


def censored(
    noise: AbstractNoise,
    lower: Float[ArrayLike, "*#batch"] | None = None,
    upper: Float[ArrayLike, "*#batch"] | None = None,
) -> Censored:
    r"""`noise` censored at `lower` and/or `upper` (scalars or per-observation
    arrays): an observation equal to a bound contributes the tail mass beyond it
    (see `Censored`)."""
    return Censored(noise, lower, upper)
