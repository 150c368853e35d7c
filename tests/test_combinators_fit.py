"""Combinators inside objectives and fits: learned mixture weights and inflation
probabilities, against statsmodels' maximum-likelihood fits."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from statsmodels.discrete.count_model import ZeroInflatedPoisson

import likelax as llx


def test_zero_inflated_poisson_regression_matches_statsmodels():
    """ZIP regression with a learned inflation probability: the same MLE as
    statsmodels' ZeroInflatedPoisson (constant inflation, log link)."""
    rng = np.random.default_rng(0)
    n = 400
    u = np.column_stack([np.ones(n), rng.normal(size=n)])
    beta = np.array([0.6, 0.8])
    y = rng.poisson(np.exp(u @ beta)) * (rng.uniform(size=n) > 0.3)
    res = ZeroInflatedPoisson(y, u, exog_infl=np.ones((n, 1))).fit(
        method="bfgs", maxiter=2000, gtol=1e-10, disp=False
    )
    pi_sm = special.expit(res.params[0])

    def model(params, uu):
        return uu @ params

    objective = llx.likelihood(model, llx.zero_inflated(llx.Poisson(), 0.5), learn="prob")
    out = llx.fit(
        objective, jnp.zeros(2), (jnp.asarray(u), jnp.asarray(y, float)), steps=500
    )
    np.testing.assert_allclose(out.params, res.params[1:], rtol=1e-5, atol=1e-6)
    fitted = out.objective.terms[0].noise
    np.testing.assert_allclose(float(fitted.prob), pi_sm, rtol=1e-5)
    np.testing.assert_allclose(-float(out.value), res.llf, rtol=1e-9)


def test_learned_mixture_weights_and_scales():
    """A contaminated normal (0.8·N(1) + 0.2·N(5) around a common mean): the
    weights, scales and location are recovered, and the fit reaches a stationary
    point of the exact mixture likelihood."""
    rng = np.random.default_rng(1)
    n = 4000
    wide = rng.uniform(size=n) < 0.2
    y = 2.0 + np.where(wide, 5.0, 1.0) * rng.normal(size=n)
    noise = llx.mixture([llx.Gaussian(0.5), llx.Gaussian(2.0)], [0.5, 0.5])
    objective = llx.likelihood(lambda p, uu: p * uu, noise, learn=True)
    out = llx.fit(objective, jnp.asarray(0.0), (jnp.ones(n), jnp.asarray(y)), steps=500)
    fitted = out.objective.terms[0].noise
    w = np.asarray(jnp.exp(fitted.logits - jnp.max(fitted.logits)))
    w = w / w.sum()
    assert float(out.params) == pytest.approx(2.0, abs=0.1)
    assert w[0] == pytest.approx(0.8, abs=0.05)
    assert float(fitted.components[0].scale) == pytest.approx(1.0, abs=0.1)
    assert float(fitted.components[1].scale) == pytest.approx(5.0, abs=0.5)
    assert float(out.grad_norm) < 1e-4 * n
