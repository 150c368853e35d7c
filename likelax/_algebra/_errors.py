"""Errors raised by the combinators."""

from __future__ import annotations

__all__ = ["NotALikelihood"]


class NotALikelihood(ValueError):
    r"""A loss $\rho$ whose $\exp(-\rho)$ cannot be normalised into a density.

    Raised by `likelax.from_loss` when $\int \exp(-\rho(r))\,dr$ diverges (bounded
    losses such as Tukey's biweight or Welsch, or losses growing no faster than
    $\log|r|$) or cannot be computed: not every loss is a likelihood.
    """
