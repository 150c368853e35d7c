"""Table rows: real-valued location families."""

import numpy as np
import optax
from case import Case
from scipy import special, stats

import likelax as llx


def _loc(rng):
    return rng.normal(0.0, 3.0, size=25)


def _real_line(n, xh):
    return (-np.inf, np.inf)


def _median(d):
    return d.median()


class _HuberRef(stats.rv_continuous):
    r"""Reference Huber law in float64 (independent of likelax):
    density $e^{-\rho_\delta(z)} / Z$, $Z = \sqrt{2\pi}(2\Phi(\delta) - 1) +
    (2/\delta) e^{-\delta^2/2}$; the cdf integrates the three pieces directly."""

    def _argcheck(self, delta):
        return delta > 0

    def _log_z(self, d):
        return np.log(
            np.sqrt(2 * np.pi) * (2 * special.ndtr(d) - 1) + 2 / d * np.exp(-d * d / 2)
        )

    def _logpdf(self, z, d):
        a = np.abs(z)
        rho = np.where(a <= d, 0.5 * z * z, d * (a - 0.5 * d))
        return -rho - self._log_z(d)

    def _pdf(self, z, d):
        return np.exp(self._logpdf(z, d))

    def _logcdf_left(self, z, d):
        """log F(z) for z <= 0."""
        log_z = self._log_z(d)
        tail = d * z + 0.5 * d * d - np.log(d) - log_z
        # F(-d) + sqrt(2 pi) (Phi(z) - Phi(-d)) / Z on [-d, 0]
        f_left = np.exp(-0.5 * d * d - np.log(d) - log_z)
        mid = np.log(
            f_left
            + np.sqrt(2 * np.pi) * (special.ndtr(z) - special.ndtr(-d)) / np.exp(log_z)
        )
        return np.where(z < -d, tail, mid)

    def _logcdf(self, z, d):
        left = self._logcdf_left(-np.abs(z), d)
        return np.where(z <= 0, left, np.log1p(-np.exp(left)))

    def _logsf(self, z, d):
        return self._logcdf(-z, d)

    def _cdf(self, z, d):
        return np.exp(self._logcdf(z, d))

    def _sf(self, z, d):
        return np.exp(self._logsf(z, d))


_HUBER = _HuberRef(name="huber_ref")


def _pinball(tau, r):
    return np.maximum(tau * r, (tau - 1.0) * r)


def _ald_oracle(n, xh):
    tau, s = float(n.quantile), float(n.scale)
    return stats.laplace_asymmetric(
        np.sqrt(tau / (1 - tau)), loc=xh, scale=s / np.sqrt(tau * (1 - tau))
    )


def _ald_predict(d):
    kappa = d.args[0]
    return d.ppf(kappa**2 / (1 + kappa**2))  # the tau-quantile


ROWS = [
    Case(
        id="Gaussian",
        instances=lambda: [llx.Gaussian(1.0), llx.Gaussian(0.3), llx.Gaussian(7.5)],
        oracle=lambda n, xh: stats.norm(loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=lambda d: d.mean(),
        familiar_loss=lambda n, x, xh: (
            np.asarray(optax.l2_loss(xh, x)) / float(n.scale) ** 2
        ),
    ),
    Case(
        id="Laplace",
        instances=lambda: [llx.Laplace(1.0), llx.Laplace(0.3), llx.Laplace(7.5)],
        oracle=lambda n, xh: stats.laplace(loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=_median,
        familiar_loss=lambda n, x, xh: np.abs(x - xh) / float(n.scale),
    ),
    Case(
        id="StudentT",
        instances=lambda: [
            llx.StudentT(3.0, 1.0),
            llx.StudentT(0.7, 0.5),
            llx.StudentT(45.0, 2.5),
            llx.StudentT(400.0, 1.3),
        ],
        oracle=lambda n, xh: stats.t(float(n.df), loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=_median,
        familiar_loss=lambda n, x, xh: (
            0.5
            * (float(n.df) + 1)
            * np.log1p(((x - xh) / float(n.scale)) ** 2 / float(n.df))
        ),
    ),
    Case(
        id="Cauchy",
        instances=lambda: [llx.Cauchy(1.0), llx.Cauchy(0.3), llx.Cauchy(7.5)],
        oracle=lambda n, xh: stats.cauchy(loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=_median,
        familiar_loss=lambda n, x, xh: np.log1p(((x - xh) / float(n.scale)) ** 2),
    ),
    Case(
        id="Huber",
        instances=lambda: [llx.Huber(1.0, 1.0), llx.Huber(0.3, 2.0), llx.Huber(2.5, 0.5)],
        oracle=lambda n, xh: _HUBER(float(n.delta), loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=_median,
        familiar_loss=lambda n, x, xh: np.asarray(
            optax.huber_loss(xh / float(n.scale), x / float(n.scale), delta=float(n.delta))
        ),
    ),
    Case(
        id="GeneralizedNormal",
        instances=lambda: [
            llx.GeneralizedNormal(1.5, 1.0),
            llx.GeneralizedNormal(0.6, 0.5),
            llx.GeneralizedNormal(4.0, 3.0),
        ],
        oracle=lambda n, xh: stats.gennorm(float(n.power), loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=_median,
        familiar_loss=lambda n, x, xh: np.abs((x - xh) / float(n.scale)) ** float(n.power),
    ),
    Case(
        id="AsymmetricLaplace",
        instances=lambda: [
            llx.AsymmetricLaplace(0.5, 1.0),
            llx.AsymmetricLaplace(0.1, 0.6),
            llx.AsymmetricLaplace(0.85, 4.0),
        ],
        oracle=_ald_oracle,
        x_hat=_loc,
        kind="continuous",
        support=_real_line,
        predict=_ald_predict,
        familiar_loss=lambda n, x, xh: _pinball(float(n.quantile), x - xh) / float(n.scale),
    ),
]
