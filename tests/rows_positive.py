"""Table rows: positive (Gamma), unit-interval (Beta) and circular (VonMises) families."""

import jax.numpy as jnp
import numpy as np
import optax
from case import Case
from scipy import special, stats
from sklearn._loss.loss import HalfGammaLoss

import likelax as llx


def _gamma_oracle(n, xh):
    k = float(n.concentration)
    return stats.gamma(a=k, scale=np.exp(xh) / k)


def _gamma_familiar(n, x, xh):
    """scikit-learn's half-Gamma deviance loss (constant-free), times k."""
    x, xh = np.broadcast_arrays(np.asarray(x, float), np.asarray(xh, float))
    return float(n.concentration) * HalfGammaLoss().loss(x.copy(), xh.copy())


def _beta_oracle(n, xh):
    phi = float(n.concentration)
    mu = special.expit(xh)
    return stats.beta(mu * phi, (1.0 - mu) * phi)


class _VonMisesOracle:
    """scipy's von Mises, with the distribution function of likelax's convention:
    the angle on the turn [loc - pi, loc + pi), i.e. scipy's standard `cdf` of the
    residual wrapped to [-pi, pi) (scipy's own `cdf` adds the number of turns)."""

    def __init__(self, kappa, loc):
        self.loc = np.asarray(loc, float)
        self._std = stats.vonmises(kappa)
        self._dist = stats.vonmises(kappa, loc=self.loc)

    def _r(self, x):
        return np.mod(np.asarray(x, float) - self.loc + np.pi, 2 * np.pi) - np.pi

    def logpdf(self, x):
        return self._dist.logpdf(x)

    def cdf(self, x):
        return self._std.cdf(self._r(x))

    def logcdf(self, x):
        return self._std.logcdf(self._r(x))

    def logsf(self, x):
        return self._std.logsf(self._r(x))

    def rvs(self, random_state=None):
        return self._dist.rvs(random_state=random_state)

    def mean(self):
        return self.loc

    def median(self):
        return self.loc


def _vonmises_familiar(n, x, xh):
    """kappa times optax's cosine distance between the unit vectors of the angles."""
    u = jnp.stack([jnp.cos(x), jnp.sin(x)], axis=-1)
    v = jnp.stack([jnp.cos(xh), jnp.sin(xh)], axis=-1)
    return float(n.concentration) * np.asarray(optax.cosine_distance(u, v))


ROWS = [
    Case(
        id="Gamma",
        instances=lambda: [llx.Gamma(1.0), llx.Gamma(0.4), llx.Gamma(6.0)],
        oracle=_gamma_oracle,
        x_hat=lambda rng: rng.normal(0.0, 1.0, size=25),
        kind="continuous",
        support=lambda n, xh: (0.0, np.inf),
        predict=lambda d: d.mean(),
        familiar_loss=_gamma_familiar,
    ),
    Case(
        id="Beta",
        instances=lambda: [llx.Beta(10.0), llx.Beta(1.5), llx.Beta(30.0)],
        oracle=_beta_oracle,
        x_hat=lambda rng: rng.normal(0.0, 1.0, size=25),
        kind="continuous",
        support=lambda n, xh: (0.0, 1.0),
        predict=lambda d: d.mean(),
    ),
    Case(
        id="VonMises",
        instances=lambda: [llx.VonMises(2.0), llx.VonMises(0.5), llx.VonMises(20.0)],
        oracle=lambda n, xh: _VonMisesOracle(float(n.concentration), xh),
        x_hat=lambda rng: rng.uniform(-np.pi, np.pi, size=25),
        kind="continuous",
        support=lambda n, xh: (xh - np.pi, xh + np.pi),
        predict=lambda d: d.mean(),
        familiar_loss=_vonmises_familiar,
    ),
]
