"""`llx.fit` against established fits on real data (float64, standardised covariates).

Oracles: statsmodels (GLM Poisson, NegativeBinomial NB2, QuantReg) and scikit-learn
(LogisticRegression, Ridge). One fit per model with the default optimiser and
default tolerances: no tuning.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import likelax as llx

sm = pytest.importorskip("statsmodels.api")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load(name: str) -> dict[str, np.ndarray]:
    path = DATA / f"{name}.csv"
    if not path.exists():  # the same files, bundled with the package
        return llx.load_dataset(name)
    table = np.genfromtxt(path, delimiter=",", names=True)
    assert table.dtype.names is not None
    return {c: np.asarray(table[c], dtype=np.float64) for c in table.dtype.names}


def standardise(x):
    return (x - x.mean(0)) / x.std(0)


def linear(p, u):
    return u @ p["w"] + p["b"]


def start(d, b=0.0):
    return {"w": jnp.zeros(d), "b": jnp.asarray(b)}


def coef(p):
    return np.r_[np.asarray(p["b"]), np.asarray(p["w"])]


@pytest.fixture(scope="module")
def randhie():
    t = load("randhie")
    y = t.pop("mdvis")
    x = standardise(np.column_stack(list(t.values())))
    return x, y


def test_poisson_regression_matches_statsmodels(randhie):
    x, y = randhie
    res = llx.fit(llx.likelihood(linear, llx.Poisson()), start(x.shape[1]), (x, y))
    assert res.status == llx.Status.converged
    ref = sm.GLM(y, sm.add_constant(x), family=sm.families.Poisson()).fit(tol=1e-14)
    np.testing.assert_allclose(coef(res.params), ref.params, rtol=1e-6)
    # `value` is the exact nll (log y! included): statsmodels' -loglikelihood.
    np.testing.assert_allclose(res.value, -ref.llf, rtol=1e-13)


def test_negative_binomial_with_learned_concentration_matches_statsmodels(randhie):
    x, y = randhie
    obj = llx.likelihood(linear, llx.NegativeBinomial(1.0), learn="concentration")
    res = llx.fit(obj, start(x.shape[1]), (x, y))
    assert res.status == llx.Status.converged
    from statsmodels.discrete.discrete_model import NegativeBinomial

    ref = NegativeBinomial(y, sm.add_constant(x)).fit(
        method="newton", maxiter=100, tol=1e-14, disp=0
    )
    assert ref.mle_retvals["converged"]
    # NB2: statsmodels' alpha is 1 / concentration.
    fitted = res.objective.noise
    assert isinstance(fitted, llx.NegativeBinomial)
    ours = np.r_[coef(res.params), 1 / float(fitted.concentration)]
    np.testing.assert_allclose(ours, ref.params, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(res.value, -ref.llf, rtol=1e-13)


def test_logistic_regression_with_gaussian_prior_is_sklearn_l2():
    # sklearn minimises ½‖w‖² + C Σ logloss; dividing by C, that is
    # Σ logloss + ‖w‖² / (2C): the MAP objective under w ~ N(0, τ²) with C = τ²
    # (up to the prior's constant). The intercept is not penalised in either.
    t = load("anes96")
    y = t.pop("vote")
    t.pop("popul")  # logpopul is kept
    x = standardise(np.column_stack(list(t.values())))
    tau = 0.5
    obj = llx.likelihood(linear, llx.Bernoulli()) + llx.prior(
        llx.Gaussian(tau), on=lambda p: p["w"]
    )
    res = llx.fit(obj, start(x.shape[1]), (x, y))
    assert res.status == llx.Status.converged
    ref = sklearn_linear.LogisticRegression(C=tau**2, tol=1e-12, max_iter=10_000).fit(x, y)
    expected = np.r_[ref.intercept_, ref.coef_[0]]
    np.testing.assert_allclose(coef(res.params), expected, rtol=1e-5, atol=1e-8)
    # sklearn's lbfgs stops ~1e-6 short; Newton's method on the same MAP objective
    # (an independent numpy solve, to machine precision) is the tighter oracle.
    design = np.c_[np.ones(len(y)), x]
    penalty = np.eye(design.shape[1]) / tau**2
    penalty[0, 0] = 0.0
    theta = np.zeros(design.shape[1])
    for _ in range(30):
        prob = 1 / (1 + np.exp(-design @ theta))
        grad = design.T @ (prob - y) + penalty @ theta
        hess = design.T @ (design * (prob * (1 - prob))[:, None]) + penalty
        theta = theta - np.linalg.solve(hess, grad)
    np.testing.assert_allclose(coef(res.params), theta, rtol=1e-7)
    # The mapping is C = τ², not e.g. C = τ: that fit is far away.
    other = sklearn_linear.LogisticRegression(C=tau, tol=1e-12, max_iter=10_000).fit(x, y)
    assert np.max(np.abs(coef(res.params) - np.r_[other.intercept_, other.coef_[0]])) > 1e-2


def test_gaussian_map_is_ridge():
    # MAP with y ~ N(Xw + b, σ²), w ~ N(0, τ²): Σ r²/2σ² + ‖w‖²/2τ², i.e. sklearn's
    # Ridge ‖r‖² + α‖w‖² with α = σ²/τ² (intercept unpenalised).
    t = load("longley")
    y = t.pop("TOTEMP")
    x = standardise(np.column_stack(list(t.values())))
    sigma, tau = 300.0, 100.0
    obj = llx.likelihood(linear, llx.Gaussian(sigma)) + llx.prior(
        llx.Gaussian(tau), on=lambda p: p["w"]
    )
    res = llx.fit(obj, start(x.shape[1], float(y.mean())), (x, y))
    assert res.status == llx.Status.converged
    ref = sklearn_linear.Ridge(alpha=sigma**2 / tau**2, tol=1e-14, solver="cholesky")
    ref.fit(x, y)
    np.testing.assert_allclose(
        coef(res.params), np.r_[ref.intercept_, ref.coef_], rtol=1e-7
    )


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_quantile_regression_near_statsmodels_quantreg(q):
    # The pinball objective is piecewise linear: its minimiser is a vertex (the line
    # through 2 observations) that QuantReg's IRLS/LP finds exactly. L-BFGS's line
    # search stops at a kink ("stalled"), a small objective gap away: measured
    # 3e-7 (q=0.5) and 1e-5 (q=0.9) relative, coefficients 1e-5 and 2e-3.
    from statsmodels.regression.quantile_regression import QuantReg

    t = load("engel")
    x = standardise(t["income"][:, None])
    y = t["foodexp"]
    obj = llx.likelihood(linear, llx.AsymmetricLaplace(q, 1.0))
    res = llx.fit(obj, start(1, float(np.median(y))), (x, y))
    assert res.status in (llx.Status.stalled, llx.Status.converged)
    ref = QuantReg(y, sm.add_constant(x)).fit(q=q, max_iter=10_000, p_tol=1e-12)

    def pinball(c):
        r = y - (x @ c[1:] + c[0])
        return np.sum(r * (q - (r < 0)))

    ours = coef(res.params)
    assert pinball(ours) >= pinball(ref.params) * (1 - 1e-12)  # QuantReg is optimal
    assert pinball(ours) <= pinball(ref.params) * (1 + 1e-4)
    np.testing.assert_allclose(ours, ref.params, rtol=1e-2)
