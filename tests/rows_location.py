"""Table rows: real-valued location families."""

import numpy as np
import optax
from case import Case
from scipy import stats

import likelax as llx


def _loc(rng):
    return rng.normal(0.0, 3.0, size=25)


ROWS = [
    Case(
        id="Gaussian",
        instances=lambda: [llx.Gaussian(1.0), llx.Gaussian(0.3), llx.Gaussian(7.5)],
        oracle=lambda n, xh: stats.norm(loc=xh, scale=float(n.scale)),
        x_hat=_loc,
        kind="continuous",
        support=lambda n, xh: (-np.inf, np.inf),
        predict=lambda d: d.mean(),
        familiar_loss=lambda n, x, xh: (
            np.asarray(optax.l2_loss(xh, x)) / float(n.scale) ** 2
        ),
    ),
]
