"""Optional matplotlib helpers: penalty geometry, residual diagnostics, fit history.

Install with ``pip install "likelax[plot]"`` (matplotlib). Every function draws on
``ax`` when given (or a new figure) and returns the ``Axes``; nothing is shown or
saved unless you do it (``ax.figure.savefig(...)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._noise._base import AbstractNoise


def _axes(ax: Any = None) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib

        matplotlib.use(matplotlib.get_backend())  # honour MPLBACKEND / headless
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "likelax.plot needs matplotlib: pip install 'likelax[plot]'"
        ) from e
    _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    return ax


def penalty_curves(
    noises: Mapping[str, AbstractNoise],
    residuals: Sequence[float] | np.ndarray | None = None,
    *,
    centred: bool = True,
    ax: Any = None,
) -> Any:
    r"""The penalty $r \mapsto -\log p(r \mid 0)$ of several noise models side by side.

    "A noise model is a penalty geometry": the Gaussian is a parabola, the Laplace a
    V, Student-t and Cauchy flatten out (outliers cost little), Huber is quadratic
    then linear. With ``centred=True`` each curve is shifted to 0 at its minimum so
    shapes compare; with ``centred=False`` the exact nll is drawn (normalisers
    included, which is what model comparison sees).
    """
    ax = _axes(ax)
    r = np.linspace(-6, 6, 601) if residuals is None else np.asarray(residuals, float)
    for name, noise in noises.items():
        value = np.asarray(noise.nll(jnp.asarray(r), jnp.zeros_like(jnp.asarray(r))))
        if centred:
            value = value - np.nanmin(value[np.isfinite(value)])
        ax.plot(r, value, label=name)
    ax.set_xlabel("residual $r = x - \\hat x$")
    ax.set_ylabel("penalty $-\\log p(r)$" + (" (shifted to 0)" if centred else ""))
    ax.set_title("Noise model = penalty geometry")
    ax.legend()
    return ax


def pit_histogram(pit: np.ndarray | Any, *, bins: int = 20, ax: Any = None) -> Any:
    """Histogram of probability-integral-transform values: flat when calibrated."""
    ax = _axes(ax)
    pit = np.asarray(pit, float).ravel()
    ax.hist(pit, bins=bins, range=(0, 1), density=True, alpha=0.7, edgecolor="k")
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="calibrated")
    ax.set_xlabel("PIT value $F(x \\mid \\hat x)$")
    ax.set_ylabel("density")
    ax.set_title("PIT histogram")
    ax.legend()
    return ax


def pit_qq(pit: np.ndarray | Any, *, ax: Any = None, label: str | None = None) -> Any:
    """Uniform QQ plot of PIT values: on the diagonal when calibrated."""
    ax = _axes(ax)
    pit = np.sort(np.asarray(pit, float).ravel())
    n = len(pit)
    expected = (np.arange(1, n + 1) - 0.5) / n
    ax.plot(expected, pit, marker=".", linestyle="none", label=label)
    ax.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("PIT quantile")
    ax.set_title("PIT QQ plot")
    if label is not None:
        ax.legend()
    return ax


def fit_history(history: np.ndarray | Any, *, ax: Any = None, label: str | None = None):
    """The exact objective per step (log-scaled when positive)."""
    ax = _axes(ax)
    h = np.asarray(history, float).ravel()
    h = h[np.isfinite(h)]
    ax.plot(np.arange(len(h)), h, label=label)
    if len(h) and np.all(h > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("objective (exact)")
    ax.set_title("Fit history")
    if label is not None:
        ax.legend()
    return ax


def fitted_line(
    u: np.ndarray | Any,
    y: np.ndarray | Any,
    predictions: Mapping[str, np.ndarray | Any],
    *,
    ax: Any = None,
    xlabel: str = "u",
    ylabel: str = "y",
) -> Any:
    """A 1-D regression: the data and one fitted curve per noise model."""
    ax = _axes(ax)
    u = np.asarray(u, float).ravel()
    order = np.argsort(u)
    ax.scatter(u, np.asarray(y, float).ravel(), s=12, color="0.3", label="data")
    for name, pred in predictions.items():
        ax.plot(u[order], np.asarray(pred, float).ravel()[order], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax
