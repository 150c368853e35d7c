"""Numerically careful building blocks shared by the families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Array

LOG_2PI = 1.8378770664093453  # log(2π)
HALF_LOG_2PI = 0.9189385332046727  # ½ log(2π)
LOG_2 = 0.6931471805599453
LOG_PI = 1.1447298858494002

# B_{2n} / (2n (2n-1)), n = 1..9: the coefficients of Stirling's series of log Γ,
# log Γ(z) ≈ (z-½) log z - z + ½ log 2π + Σ_n STIRLING[n-1] / z^{2n-1}.
STIRLING = (
    1 / 12,
    -1 / 360,
    1 / 1260,
    -1 / 1680,
    1 / 1188,
    -691 / 360360,
    1 / 156,
    -3617 / 122400,
    43867 / 244188,
)


def reciprocal(scale: Array) -> Array:
    r"""$1/s$, capped at the largest finite number (a subnormal scale would
    otherwise give $1/s = \infty$ and $0\cdot\infty = $ NaN at a zero residual)."""
    return jnp.minimum(1 / scale, jnp.finfo(scale.dtype).max)


def _inverse_times(r: Array, scale: Array) -> Array:
    # One scalar reciprocal and a multiply per element when the scale is shared
    # (a per-element division costs several multiplies); a division otherwise.
    return r * reciprocal(scale) if scale.size == 1 else r / scale


@jax.custom_jvp
def standardize(r: Array, scale: Array) -> Array:
    r"""$z = r / s$ with the derivative written as $dz = (dr - z\,ds)/s$.

    The plain quotient rule forms $r/s^2$, which overflows (or underflows to 0/0)
    for tiny scales; this form stays finite wherever $z$ and $1/s$ are. A shared
    (scalar) scale is inverted once and multiplied in.
    """
    return _inverse_times(r, scale)


def _standardize_jvp(primals, tangents):
    # symbolic zeros: a scale that is not differentiated (held constant, or fixed
    # while only `x_hat` is) adds no `z * 0` array to the derivative
    r, s = primals
    dr, ds = tangents
    z = _inverse_times(r, s)
    if isinstance(ds, SymbolicZero):
        dz = jnp.zeros_like(z) if isinstance(dr, SymbolicZero) else dr
    else:
        dz = -(z * ds) if isinstance(dr, SymbolicZero) else dr - z * ds
    return z, jnp.broadcast_to(_inverse_times(dz, s), z.shape)


standardize.defjvp(_standardize_jvp, symbolic_zeros=True)


def ratio_power(num: Array | float, den: Array, degree: Array | float) -> Array:
    r"""$(t/s)^p$ as $\exp(p(\log t - \log s))$, capped at the largest finite float:
    neither the value nor the derivative ($-p\,(t/s)^p/s$) forms an infinite
    intermediate for tiny $s$ (so a zero cotangent gives a zero, not NaN,
    gradient). Exactly 1 at $t = s$, also at $t = s = \infty$ (and $0/0$); a finite
    $t$ over $s = \infty$ gives 0.

    With $t = s$ held constant (`stop_gradient`) it is a factor that is 1 in value
    and carries the whole scale derivative: for a loss positively homogeneous of
    degree $p$ in $1/s$, $\rho(r/s) = (t/s)^p\,\rho(r/t)$."""
    log_max = float(np.log(np.finfo(jnp.result_type(den)).max)) - 0.01  # exp stays finite
    log_ratio = degree * (jnp.log(num) - jnp.log(den))
    log_ratio = jnp.where(jnp.isnan(log_ratio), 0.0, log_ratio)  # inf/inf, 0/0
    return jnp.exp(jnp.minimum(log_ratio, log_max))
