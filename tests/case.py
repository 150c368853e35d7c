"""The row type of the family table that drives the generic tests.

Adding a family is one `Case` in one of the `rows_*.py` modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

import likelax as llx


@dataclasses.dataclass(frozen=True)
class Case:
    """One family, with its independent oracle.

    - `instances`: builds >= 2 valid noise models of this family with different
      hyperparameters (all have the same leaf shapes so they can be stacked).
    - `oracle`: `(noise, x_hat) -> frozen scipy.stats distribution` (or any object
      with `logpdf`/`logpmf`, `cdf`, `logcdf`, `logsf`, `rvs`, `mean`, `median`,
      `ppf`) built independently of likelax, in float64.
    - `x_hat`: `rng -> ndarray` of valid `x_hat` values (shape (n,) or (n, K)).
    - `kind`: "continuous" (density; quadrature over `support`) or "discrete"
      (mass; sum over `support`), or "categorical".
    - `support`: `(noise, x_hat scalar) -> (lo, hi)` the integration/summation range.
    - `predict`: `(oracle dist) -> ndarray` what `predict` must return.
    - `familiar_loss`: `(noise, x, x_hat) -> ndarray` the loss people already use
      (optax & co.), which `noise.loss` must equal; None when there is none.
    - `univariate`: has `cdf`, `log_cdf`, `log_sf`.
    - `no_grad`: integer-valued hyperparameters (e.g. Binomial `total_count`) that
      the finite-difference gradient test leaves alone.
    """

    id: str
    instances: Callable[[], list[llx.AbstractNoise]]
    oracle: Callable[[Any, np.ndarray], Any]
    x_hat: Callable[[np.random.Generator], np.ndarray]
    kind: Literal["continuous", "discrete", "categorical"]
    support: Callable[[Any, float], tuple[float, float]]
    predict: Callable[[Any], np.ndarray]
    familiar_loss: Callable[[Any, np.ndarray, np.ndarray], np.ndarray] | None = None
    univariate: bool = True
    sample_size: int = 4000
    # hyperparameters not differentiated by the finite-difference test (integer ones)
    no_grad: tuple[str, ...] = ()


def logdensity(dist, x):
    """log pdf or log pmf of a scipy frozen distribution."""
    if hasattr(dist, "logpdf"):
        return dist.logpdf(x)
    return dist.logpmf(x)
