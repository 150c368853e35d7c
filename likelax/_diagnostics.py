r"""Residual diagnostics: probability integral transform (PIT) and calibration.

If the noise model is right, $u_i = F(x_i \mid \hat x_i)$ is uniform on (0, 1). For a
discrete family the PIT is randomised (Brockwell 2007; Czado, Gneiting & Held 2009):
$u_i = F(x_i - 1) + v_i\,[F(x_i) - F(x_i - 1)]$ with $v_i \sim U(0, 1)$, which is
exactly uniform under the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ._noise._base import AbstractNoise


def pit(
    noise: AbstractNoise,
    x: ArrayLike,
    x_hat: ArrayLike,
    key: PRNGKeyArray | None = None,
) -> Array:
    r"""PIT values $F(x \mid \hat x)$, randomised for discrete families.

    Args:
        noise: a univariate noise model (one with `cdf`).
        x: observations.
        x_hat: the model's outputs.
        key: a PRNG key, required for discrete families (randomised PIT).

    Returns:
        An array of the broadcast batch shape with values in [0, 1].
    """
    upper = noise.cdf(x, x_hat)
    if not noise._discrete:
        return upper
    if key is None:
        raise ValueError(
            f"pit: {type(noise).__name__} is discrete, so its PIT is randomised: "
            "pass `key=jax.random.key(...)`."
        )
    lower = noise.cdf(jnp.asarray(x) - 1, x_hat)
    v = jax.random.uniform(key, upper.shape, dtype=upper.dtype)
    return lower + v * (upper - lower)


def calibration(pit_values: ArrayLike) -> dict[str, float]:
    """A calibration summary of PIT values.

    Returns a dict with the Kolmogorov–Smirnov distance to the uniform
    (``ks``), its asymptotic p-value (``ks_pvalue``), and the empirical coverage of
    the central 50 %, 80 %, 90 % and 95 % prediction intervals (``coverage_50`` ...),
    which should be close to the nominal levels.
    """
    u = np.sort(np.asarray(pit_values, dtype=np.float64).ravel())
    u = u[np.isfinite(u)]
    n = len(u)
    if n == 0:
        raise ValueError("calibration: no finite PIT values")
    i = np.arange(1, n + 1)
    ks = float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))
    out = {"n": float(n), "ks": ks, "ks_pvalue": _kolmogorov_sf(np.sqrt(n) * ks)}
    for level in (50, 80, 90, 95):
        lo, hi = 0.5 - level / 200, 0.5 + level / 200
        out[f"coverage_{level}"] = float(np.mean((u > lo) & (u <= hi)))
    return out


def _kolmogorov_sf(t: float) -> float:
    """P(K > t) for the Kolmogorov distribution (alternating series)."""
    if t <= 0:
        return 1.0
    if t < 0.2:
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k**2 * t**2)), 0, 1))
