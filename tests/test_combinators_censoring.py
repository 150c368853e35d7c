"""censored and zero_inflated: deep tails, survival data, Tobit, extreme inflation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import likelax as llx

dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])


# ------------------------------------------------------------------- censored


@dtypes
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_gaussian_censored_40_sigma_away(dtype, jit):
    """The tail masses at 40 standard deviations (Φ(-40) ≈ 1e-350 underflows even
    float64) are exact through log_ndtr, with finite gradients."""
    lo = llx.censored(llx.Gaussian(1.0), lower=-40.0)
    hi = llx.censored(llx.Gaussian(2.0), upper=80.0)
    f = (lambda g: jax.jit(g)) if jit else (lambda g: g)
    zero = jnp.zeros((), dtype)
    v_lo = f(lambda b: lo.nll(jnp.asarray(-40.0, dtype), b))(zero)
    v_hi = f(lambda b: hi.nll(jnp.asarray(80.0, dtype), b))(zero)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(v_lo, -stats.norm.logcdf(-40.0), rtol=rtol)
    np.testing.assert_allclose(v_hi, -stats.norm(0, 2).logsf(80.0), rtol=rtol)
    g_lo = f(jax.grad(lambda b: lo.nll(jnp.asarray(-40.0, dtype), b)))(zero)
    # d/dx_hat -log Φ(l - x_hat) = φ/Φ (the inverse Mills ratio) ≈ 40.0250
    mills = np.exp(stats.norm.logpdf(-40.0) - stats.norm.logcdf(-40.0))
    np.testing.assert_allclose(g_lo, mills, rtol=rtol)
    g_n = jax.grad(lambda n: n.nll(jnp.asarray(80.0, dtype), zero))(hi)
    assert np.isfinite(g_n.noise.scale)


def test_tobit_log_likelihood():
    """The textbook Tobit (left-censored at 0) log-likelihood on a small data set:
    Σ_{y=0} log Φ(-xβ/σ) + Σ_{y>0} [log φ((y - xβ)/σ) - log σ]."""
    rng = np.random.default_rng(4)
    u = rng.normal(size=(40, 2))
    beta, sigma = np.array([1.0, -0.5]), 1.3
    mean = u @ beta + 0.3
    y = np.maximum(mean + sigma * rng.normal(size=40), 0.0)
    assert 5 < (y == 0).sum() < 35
    ll = np.where(
        y == 0,
        stats.norm.logcdf(-mean / sigma),
        stats.norm.logpdf((y - mean) / sigma) - np.log(sigma),
    ).sum()
    tobit = llx.censored(llx.Gaussian(sigma), lower=0.0)
    np.testing.assert_allclose(-tobit.nll(y, mean).sum(), ll, rtol=1e-13)


def test_right_censored_durations_with_per_observation_bounds():
    """Survival data: events contribute the density, censored times the survival
    function, with `upper = where(event, inf, time)`."""
    t = np.array([0.5, 1.2, 3.0, 0.7, 2.2])
    event = np.array([True, False, True, False, False])
    xh = np.array([0.1, 0.3, 0.5, -0.2, 0.0])  # log-mean of a Gamma(2) duration
    noise = llx.censored(llx.Gamma(2.0), upper=np.where(event, np.inf, t))
    d = stats.gamma(2.0, scale=np.exp(xh) / 2.0)
    want = np.where(event, d.logpdf(t), d.logsf(t))
    np.testing.assert_allclose(-noise.nll(t, xh), want, rtol=1e-12)
    lognormal = llx.censored(
        llx.transform(llx.Gaussian(0.8), jnp.log), upper=np.where(event, np.inf, t)
    )
    d = stats.lognorm(0.8, scale=np.exp(xh))
    want = np.where(event, d.logpdf(t), d.logsf(t))
    np.testing.assert_allclose(-lognormal.nll(t, xh), want, rtol=1e-12)


def test_censored_beta_regression_with_learned_concentration():
    """Proportions below a detection limit are reported at the limit (left
    censoring): the censored-Beta MLE with a learned concentration — which needs
    derivatives of the incomplete beta in its shapes — equals a direct
    maximisation of scipy's censored log-likelihood."""
    from scipy import optimize

    rng = np.random.default_rng(7)
    u = rng.normal(size=400)
    mu = 1 / (1 + np.exp(-(0.4 + 0.8 * u)))
    y = rng.beta(12.0 * mu, 12.0 * (1 - mu))
    lod = 0.25
    assert 10 < (y < lod).sum() < 100
    y = np.maximum(y, lod)

    def model(p, u):
        return p["a"] + p["b"] * u

    noise = llx.censored(llx.Beta(5.0), lower=lod)
    obj = llx.likelihood(model, noise, learn="noise.concentration")
    start = {"a": jnp.asarray(0.0), "b": jnp.asarray(0.0)}
    result = llx.fit(obj, start, (u, y), progress=False)
    assert result.converged

    def nll(t):
        m = 1 / (1 + np.exp(-(t[0] + t[1] * u)))
        d = stats.beta(m * np.exp(t[2]), (1 - m) * np.exp(t[2]))
        return -np.where(y <= lod, d.logcdf(lod), d.logpdf(y)).sum()

    opts = {"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000}
    ref = optimize.minimize(
        nll, [0.0, 0.0, np.log(5.0)], method="Nelder-Mead", options=opts
    )
    fitted = result.objective.terms[0].noise.noise.concentration
    np.testing.assert_allclose(
        [result.params["a"], result.params["b"], fitted],
        [ref.x[0], ref.x[1], np.exp(ref.x[2])],
        rtol=1e-6,
    )
    np.testing.assert_allclose(result.value, ref.fun, rtol=1e-10)


def test_impossible_observations_of_a_censored_model():
    noise = llx.censored(llx.Gaussian(1.0), lower=-1.0, upper=1.0)
    x = jnp.asarray([-2.0, 1.5, jnp.inf, -jnp.inf, 0.0])
    out = noise.nll(x, 0.0)
    assert np.all(out[:4] == np.inf) and np.isfinite(out[4])
    g = jax.grad(lambda b, n: n.nll(x, b).sum(), (0, 1))(0.0, noise)
    assert all(np.isfinite(v) for v in jax.tree.leaves(g))


def test_censored_errors():
    with pytest.raises(ValueError, match="`lower` must be below `upper`"):
        llx.censored(llx.Gaussian(), lower=1.0, upper=0.0)
    with pytest.raises(TypeError, match="not univariate"):
        llx.censored(llx.Categorical(), upper=2.0)
    assert llx.censored(llx.Gaussian(), lower=0.0)._hyperparameter_paths().keys() == {
        "noise.scale"
    }


# -------------------------------------------------------------- zero inflation


@dtypes
def test_zero_inflated_when_the_count_model_mass_at_zero_underflows(dtype):
    """log-rate 10 (rate 22026): p(0) = exp(-22026) underflows; the nll at 0 is
    -log π exactly, with finite gradients; a tiny π is exact too."""
    noise = jax.tree.map(lambda a: a.astype(dtype), llx.zero_inflated(llx.Poisson(), 0.3))
    zero, ten = jnp.zeros((), dtype), jnp.asarray(10.0, dtype)
    np.testing.assert_allclose(noise.nll(zero, ten), -np.log(0.3), rtol=1e-7)
    g = jax.grad(lambda n, b: n.nll(zero, b), (0, 1))(noise, ten)
    assert all(np.isfinite(v) for v in jax.tree.leaves(g))
    tiny = llx.zero_inflated(llx.Poisson(), 1e-12)
    want = -np.log(1e-12 + (1 - 1e-12) * stats.poisson(0.5).pmf(0))
    np.testing.assert_allclose(tiny.nll(0.0, np.log(0.5)), want, rtol=1e-13)
    np.testing.assert_allclose(
        tiny.nll(3.0, np.log(0.5)),
        -np.log1p(-1e-12) - stats.poisson(0.5).logpmf(3),
        rtol=1e-13,
    )


def test_zero_inflated_density_is_a_hurdle_without_nan():
    """A Gamma is impossible at 0; the atom carries it, no NaN reaches gradients."""
    noise = llx.zero_inflated(llx.Gamma(2.0), 0.25)
    x = jnp.asarray([0.0, 1.5, -1.0])
    out = noise.nll(x, 0.2)
    np.testing.assert_allclose(out[0], -np.log(0.25), rtol=1e-15)
    assert out[2] == np.inf
    g = jax.grad(lambda n, b: n.nll(x, b).sum(), (0, 1))(noise, 0.2)
    assert all(np.isfinite(v) for v in jax.tree.leaves(g))


def test_zero_inflated_predict_and_paths():
    noise = llx.zero_inflated(llx.NegativeBinomial(3.0), 0.2)
    np.testing.assert_allclose(noise.predict(np.log(4.0)), 0.8 * 4.0, rtol=1e-14)
    assert set(noise._hyperparameter_paths()) == {"prob", "noise.concentration"}
    with pytest.raises(NotImplementedError, match="not its mean"):
        llx.zero_inflated(llx.AsymmetricLaplace(0.3), 0.2).predict(0.0)
    with pytest.raises(ValueError, match="`prob` must be in the open interval"):
        llx.zero_inflated(llx.Poisson(), 1.0)
