"""Table rows: count families (log-mean parametrisations)."""

import numpy as np
from case import Case
from scipy import stats
from sklearn._loss.loss import HalfPoissonLoss

import likelax as llx


def _log_rates(rng):
    return rng.normal(1.0, 1.2, size=25)


def _nbinom(n, xh):
    r = float(n.concentration)
    mu = np.exp(np.asarray(xh, np.float64))
    return stats.nbinom(n=r, p=r / (r + mu))


def _count_support(dist):
    return (0, int(np.max(dist.isf(1e-15))) + 10)


ROWS = [
    Case(
        id="Poisson",
        instances=lambda: [llx.Poisson(), llx.Poisson()],
        oracle=lambda n, xh: stats.poisson(mu=np.exp(np.asarray(xh, np.float64))),
        x_hat=_log_rates,
        kind="discrete",
        support=lambda n, xh: _count_support(stats.poisson(mu=np.exp(xh))),
        predict=lambda d: d.mean(),
        familiar_loss=lambda n, x, xh: HalfPoissonLoss().loss(
            y_true=np.asarray(x, np.float64), raw_prediction=np.asarray(xh, np.float64)
        ),
    ),
    Case(
        id="NegativeBinomial",
        instances=lambda: [
            llx.NegativeBinomial(2.0),
            llx.NegativeBinomial(0.7),
            llx.NegativeBinomial(15.0),
        ],
        oracle=_nbinom,
        x_hat=_log_rates,
        kind="discrete",
        support=lambda n, xh: _count_support(_nbinom(n, xh)),
        predict=lambda d: d.mean(),
    ),
]
