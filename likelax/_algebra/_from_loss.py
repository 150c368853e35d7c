r"""A noise model from a translation-invariant loss: $p \propto \exp(-\rho)$."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._noise._base import POSITIVE, AbstractNoise, as_param
from .._noise._special import standardize
from ._errors import NotALikelihood

__all__ = ["FromLoss", "from_loss", "integrate_density"]

# Gauss-Kronrod 15-point rule (QUADPACK qk15): Kronrod nodes on [0, 1] of the
# symmetric rule, their weights, and the weights of the embedded 7-point Gauss rule
# (at the odd-indexed Kronrod nodes).
_XGK = np.array(
    [
        0.991455371120812639206854697526329,
        0.949107912342758524526189684047851,
        0.864864423359769072789712788640926,
        0.741531185599394439863864773280788,
        0.586087235467691130294144845693013,
        0.405845151377397166906606412076961,
        0.207784955007898467600689403773245,
        0.000000000000000000000000000000000,
    ]
)
_WGK = np.array(
    [
        0.022935322010529224963732008058970,
        0.063092092629978553290700663189204,
        0.104790010322250183839876322541518,
        0.140653259715525918745189590510238,
        0.169004726639267902826583426598550,
        0.190350578064785409913256402421014,
        0.204432940075298892414161999234649,
        0.209482141084727828012999174891714,
    ]
)
_WG = np.array(
    [
        0.129484966168869693270611432679082,
        0.279705391489276667901467771423780,
        0.381830050505118944950369775488975,
        0.417959183673469387755102040816327,
    ]
)
# all 15 nodes on [-1, 1] and their Kronrod / Gauss weights
_NODES = np.concatenate([-_XGK[:-1], _XGK[::-1]])
_KW = np.concatenate([_WGK[:-1], _WGK[::-1]])
_GW = np.zeros(15)
_GW[1:7:2] = _WG[:3]
_GW[7] = _WG[3]
_GW[8:15] = _GW[:7][::-1]


def _gk15(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray):
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    t = mid[:, None] + half[:, None] * _NODES[None, :]
    v = f(t)
    kron = half * (v @ _KW)
    gauss = half * (v @ _GW)
    return kron, np.abs(kron - gauss)


def integrate_density(
    f: Callable[[np.ndarray], np.ndarray],
    a: float,
    b: float,
    rtol: float = 1e-13,
    max_intervals: int = 20000,
) -> tuple[float, float, bool]:
    r"""$\int_a^b f$ by globally adaptive Gauss-Kronrod (G7/K15) quadrature, in
    float64 numpy; `f` is vectorised. Returns (integral, error estimate, converged).
    The error estimate is $|K_{15} - G_7|$ summed (pessimistic)."""
    edges = np.linspace(a, b, 65)
    lo, hi = edges[:-1], edges[1:]
    val, err = _gk15(f, lo, hi)
    while True:
        total = float(val.sum())
        tol = rtol * abs(total)
        if not np.all(np.isfinite(val)):
            return total, math.inf, False
        if float(err.sum()) <= tol:
            return total, float(err.sum()), True
        if len(lo) > max_intervals:
            return total, float(err.sum()), False
        split = err > tol / (4 * len(lo))
        mid = 0.5 * (lo[split] + hi[split])
        if np.all(mid == lo[split]) or np.all(mid == hi[split]):
            return total, float(err.sum()), False
        new_lo = np.concatenate([lo[split], mid])
        new_hi = np.concatenate([mid, hi[split]])
        new_val, new_err = _gk15(f, new_lo, new_hi)
        keep = ~split
        lo = np.concatenate([lo[keep], new_lo])
        hi = np.concatenate([hi[keep], new_hi])
        val = np.concatenate([val[keep], new_val])
        err = np.concatenate([err[keep], new_err])


def _evaluate(rho: Callable, r: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        out = rho(jnp.asarray(r, jnp.float64))
        return np.asarray(out, dtype=np.float64)


def _name(rho: Callable) -> str:
    return getattr(rho, "__name__", type(rho).__name__)


def _log_normaliser(rho: Callable) -> tuple[float, bool]:
    """(log Z, symmetric) for exp(-rho); raises NotALikelihood when Z diverges."""
    name = _name(rho)
    probe = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1e4, -1e4, 1e8, -1e8])
    try:
        values = _evaluate(rho, probe)
    except Exception as e:  # a loss that cannot take a float64 array
        raise TypeError(
            f"from_loss: `rho` ({name}) must map an array of residuals to an array of "
            f"the same shape with jax.numpy (it failed with {type(e).__name__}: {e})."
        ) from e
    if values.shape != probe.shape:
        raise TypeError(
            f"from_loss: `rho` ({name}) must act elementwise: an input of shape "
            f"{probe.shape} gave {values.shape}."
        )
    if np.any(np.isnan(values)) or not np.isfinite(values[0]):
        raise ValueError(
            f"from_loss: `rho` ({name}) must be finite at 0 and never NaN; got "
            f"{dict(zip(probe.tolist(), values.tolist(), strict=True))}."
        )
    # exp(-rho) must decay faster than 1/|r|: rho(r) - log|r| must keep growing.
    for sign, side in ((1, "+"), (-1, "-")):
        near = values[5 if sign > 0 else 6]
        far = values[7 if sign > 0 else 8]
        growth = math.inf if far == math.inf else (far - near) - math.log(1e4)
        if not (growth > 0):
            raise NotALikelihood(
                f"from_loss: exp(-rho) is not integrable for rho = {name}: between "
                f"r = {side}1e4 and r = {side}1e8 the loss grows by {far - near:.4g}, "
                f"no faster than log|r| ({math.log(1e4):.4g}), so exp(-rho) decays no "
                "faster than 1/|r| and has infinite mass. A bounded loss (Tukey's "
                "biweight, Welsch, any loss that flattens out) is a robust M-estimator "
                "but not the negative log-likelihood of any noise: not every loss is a "
                "likelihood. Use a loss that grows at least like (1+eps) log|r| "
                "(e.g. Cauchy's log(1 + r^2))."
            )
    grid = np.concatenate([-np.logspace(-3, 3, 61), np.logspace(-3, 3, 61)])
    both = _evaluate(rho, grid)
    symmetric = bool(np.allclose(both[:61], both[61:], rtol=1e-12, atol=1e-12))
    shift = float(np.min(np.concatenate([both[np.isfinite(both)], values[:1]])))

    def integrand(t: np.ndarray) -> np.ndarray:
        u = t.ravel()
        with np.errstate(divide="ignore"):
            flat = u / (1.0 - u)
        vals = _evaluate(rho, np.concatenate([flat, -flat]))
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            dens = np.exp(shift - vals[: flat.size]) + np.exp(shift - vals[flat.size :])
            out = np.where(dens > 0, dens / (1.0 - u) ** 2, 0.0)
        return out.reshape(t.shape)

    total, err, ok = integrate_density(integrand, 0.0, 1.0)
    if not ok or not (total > 0) or not math.isfinite(total):
        raise NotALikelihood(
            f"from_loss: the normaliser of exp(-rho) for rho = {name} could not be "
            f"computed to 1e-13 (estimate {total:.6g} ± {err:.2g}): exp(-rho) decays "
            "too slowly to integrate accurately, or is not integrable."
        )
    return math.log(total) - shift, symmetric


class FromLoss(AbstractNoise):
    r"""The noise model of a translation-invariant loss $\rho$:

    $$p(x\mid\hat x) = \frac{1}{s\,Z}\exp\!\Big(-\rho\Big(\frac{x-\hat x}{s}\Big)\Big),
      \qquad Z = \int_{-\infty}^{\infty} e^{-\rho(r)}\,dr,$$

    so $-\log p = \rho(z) + \log s + \log Z$ with $z = (x-\hat x)/s$. $Z$ is computed
    once, at construction, by adaptive Gauss-Kronrod quadrature in float64 (to
    ~1e-13 relative), and stored as the static float `log_normaliser`.
    `from_loss(lambda r: jnp.log(jnp.cosh(r)))` has $Z = \pi$ (the hyperbolic-secant
    law); pseudo-Huber $\delta^2(\sqrt{1+(r/\delta)^2}-1)$ and Charbonnier
    $\sqrt{r^2+\epsilon^2}$ work alike. A loss whose $e^{-\rho}$ has infinite mass
    (bounded losses: Tukey's biweight, Welsch; anything growing no faster than
    $\log|r|$) raises `NotALikelihood`: not every loss is a likelihood.

    `rho` acts elementwise with `jax.numpy` and is a static (hashable) field. `loss`
    is $\rho(z)$ (drops $\log s + \log Z$): with `scale=1` it is $\rho(x-\hat x)$
    itself. `predict` returns `x_hat`: the minimiser of the expected loss
    $E[\rho(X - c)]$ is $c = \hat x$ whenever $\rho$ is convex (its derivative
    integrates to 0 against $e^{-\rho}$), and `x_hat` is the mean and median when
    $\rho$ is symmetric (`symmetric`, checked numerically). `sample` and `cdf` are
    not available (no closed form for the cdf of $e^{-\rho}$; they raise).
    """

    scale: Float[Array, "*#batch"]
    rho: Callable[[Array], Array] = eqx.field(static=True)
    log_normaliser: float = eqx.field(static=True)
    symmetric: bool = eqx.field(static=True)
    _domains = {"scale": POSITIVE}

    def __init__(
        self,
        rho: Callable[[Array], Array],
        scale: Float[ArrayLike, "*#batch"] = 1.0,
    ):
        if not callable(rho):
            raise TypeError(f"from_loss: `rho` must be callable, got {type(rho).__name__}.")
        try:
            hash(rho)
        except TypeError:
            raise TypeError(
                "from_loss: `rho` must be hashable (a plain function: it is a static "
                "field so the noise model can pass through `jax.jit`)."
            ) from None
        self.rho = rho
        self.scale = as_param(scale)
        self.log_normaliser, self.symmetric = _log_normaliser(rho)

    def _loss(self, x, x_hat):
        return self.rho(standardize(x - x_hat, self.scale))

    def _const(self, x):
        return jnp.log(self.scale) + self.log_normaliser

    def _prediction_kind(self) -> str:
        return "centre" if self.symmetric else "other"

    def _predict(self, x_hat):
        return jnp.broadcast_to(x_hat, jnp.broadcast_shapes(x_hat.shape, self.scale.shape))

    def _sample(self, key, x_hat, shape):
        raise NotImplementedError(
            "FromLoss has no `sample`: the law exp(-rho)/Z has no closed-form inverse cdf."
        )

    def _cdf(self, x, x_hat):
        raise NotImplementedError(
            "FromLoss has no `cdf`: the integral of exp(-rho) has no closed form."
        )

    def _log_cdf(self, x, x_hat):
        return self._cdf(x, x_hat)

    def _log_sf(self, x, x_hat):
        return self._cdf(x, x_hat)


def from_loss(
    rho: Callable[[Array], Array], scale: Float[ArrayLike, "*#batch"] = 1.0
) -> FromLoss:
    r"""The normalised noise model $\exp(-\rho((x-\hat x)/s))/(sZ)$ of a
    translation-invariant loss $\rho$ (see `FromLoss`); raises `NotALikelihood` when
    $\exp(-\rho)$ is not integrable."""
    return FromLoss(rho, scale)
