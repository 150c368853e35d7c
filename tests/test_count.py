"""Count families beyond the generic table: the exact log-factorial, the Poisson rows
of RELIABILITY.md (value and gradient, float32 and float64, eager and jit), large
counts against mpmath, and the negative binomial's Poisson limit."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import likelax as llx
from likelax._noise._count import log_factorial

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)
DTYPES = [jnp.float32, jnp.float64]
MODES = {"eager": lambda f: f, "jit": jax.jit}

mpmath.mp.dps = 50


def _mp_log_factorial(k) -> float:
    return float(mpmath.loggamma(mpmath.mpf(int(k)) + 1))


def _mp_poisson_nll(x, eta) -> float:
    x, eta = mpmath.mpf(float(x)), mpmath.mpf(float(eta))
    return float(mpmath.exp(eta) - x * eta + mpmath.loggamma(x + 1))


# ------------------------------------------------------------------ log k!


def test_log_factorial_matches_gammaln_on_0_to_1e7():
    k = np.arange(0, 10_000_001, dtype=np.float64)
    got = np.asarray(jax.jit(log_factorial)(jnp.asarray(k)))
    assert got[0] == 0.0 and got[1] == 0.0  # exactly
    ref = special.gammaln(k[2:] + 1)
    # scipy's gammaln is itself within ~2 ulps; allow 3 ulps between the two
    assert np.all(np.abs(got[2:] - ref) <= 3 * np.spacing(ref))


def test_log_factorial_matches_mpmath():
    rng = np.random.default_rng(0)
    k = np.unique(
        np.concatenate(
            [
                np.arange(0, 300),
                rng.integers(0, 10**7, 300),
                [2**31 - 1, 2**31, 2**32, 2**53, 1e15, 1e100, 1e300],
            ]
        ).astype(np.float64)
    )
    ref = np.array([_mp_log_factorial(v) for v in k])
    got = np.asarray(jax.jit(log_factorial)(jnp.asarray(k)))
    # within 2 ulps of the correctly rounded value
    np.testing.assert_array_less(np.abs(got - ref), 2.01 * np.spacing(np.maximum(ref, 1)))
    # float32: table rounded to float32, Stirling in float32
    k32 = k[k < 1e30].astype(np.float32)
    ref32 = np.array([_mp_log_factorial(v) for v in k32.astype(np.float64)])
    got32 = np.asarray(jax.jit(log_factorial)(jnp.asarray(k32)), np.float64)
    np.testing.assert_allclose(got32, ref32, rtol=2.5e-7, atol=1e-7)


def test_log_factorial_nan_propagates():
    got = log_factorial(jnp.array([jnp.nan, 3.0, 20.0]))
    assert np.isnan(got[0]) and np.all(np.isfinite(got[1:]))


# ------------------------------------------------------------- Poisson edges


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_poisson_zero_rate_zero_count(dtype, mode):
    f = MODES[mode](jax.value_and_grad(lambda e: llx.Poisson().nll(0.0, e)))
    value, grad = f(jnp.asarray(-jnp.inf, dtype))
    assert value == 0 and grad == 0
    assert value.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_poisson_impossible_counts_are_inf_with_zero_gradient(dtype, mode):
    x = jnp.asarray([-1.0, 2.5, jnp.inf, 3.0], dtype)

    def total(e):
        return llx.Poisson().nll(x, e).sum()

    values = MODES[mode](lambda e: llx.Poisson().nll(x, e))(jnp.zeros(4, dtype))
    np.testing.assert_array_equal(np.isposinf(values), [True, True, True, False])
    ref = -stats.poisson(1.0).logpmf(3)
    np.testing.assert_allclose(values[3], ref, rtol=1e-6 if dtype == jnp.float32 else 1e-14)
    grad = MODES[mode](jax.grad(total))(jnp.zeros(4, dtype))
    np.testing.assert_array_equal(grad, [0, 0, 0, 1 - 3])


def test_poisson_impossible_counts_raise_in_strict_mode():
    f = jax.jit(lambda x: llx.Poisson().nll(x, 0.0))
    for bad in (-1.0, 2.5):
        with llx.checks("strict"), pytest.raises(RUNTIME_ERRORS, match="probability 0"):
            jax.block_until_ready(jax.jit(lambda x: llx.Poisson().nll(x, 0.0))(bad))
        assert f(bad) == jnp.inf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_poisson_huge_rate_zero_count(dtype, mode):
    eta = jnp.log(jnp.asarray(1e30, dtype))
    value, grad = MODES[mode](jax.value_and_grad(lambda e: llx.Poisson().nll(0.0, e)))(eta)
    rtol = 1e-6 if dtype == jnp.float32 else 1e-13
    np.testing.assert_allclose(value, 1e30, rtol=rtol)
    np.testing.assert_allclose(grad, 1e30, rtol=rtol)  # d/deta = e^eta - x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("count", [0.0, 3.0, 10.0, 1e6])
def test_poisson_infinite_log_rates(dtype, mode, count):
    f = MODES[mode](jax.value_and_grad(lambda e: llx.Poisson().nll(count, e)))
    value, grad = f(jnp.asarray(jnp.inf, dtype))
    assert value == jnp.inf and not np.isnan(grad)
    value, grad = f(jnp.asarray(-jnp.inf, dtype))
    if count == 0:
        assert value == 0 and grad == 0
    else:
        assert value == jnp.inf and grad == -count  # e^eta - x


def test_poisson_integer_and_float_counts_agree():
    eta = jnp.linspace(-2.0, 4.0, 7)
    counts = jnp.arange(7) * 5
    np.testing.assert_array_equal(
        llx.Poisson().nll(counts, eta), llx.Poisson().nll(counts.astype(float), eta)
    )


@pytest.mark.parametrize("mode", MODES)
def test_poisson_large_counts_float64(mode):
    """x up to 2^31 with eta near log x: no x log x cancellation (mpmath oracle)."""
    rng = np.random.default_rng(1)
    x = np.unique(np.round(10.0 ** rng.uniform(0, 9.3, 200)))
    x = np.concatenate([x, [2.0**31, 0.0, 7.0, 8.0]])
    eta = np.log(x + 0.5) + rng.normal(0, 2, x.size) / np.sqrt(x + 1)
    ref = np.array([_mp_poisson_nll(a, b) for a, b in zip(x, eta, strict=True)])
    got = MODES[mode](llx.Poisson().nll)(jnp.asarray(x), jnp.asarray(eta))
    np.testing.assert_allclose(got, ref, rtol=5e-11)
    grad = jax.grad(lambda e: llx.Poisson().nll(x, e).sum())(jnp.asarray(eta))
    want = np.exp(eta) - x  # its own rounding is ~1e-16 x, far below the bound
    assert np.all(np.abs(grad - want) <= 1e-10 * np.maximum(np.abs(want), np.sqrt(x + 1)))


def test_poisson_moderate_counts_float32():
    """float32 meets 1e-5 (relative to max(1, |ref|)) for counts up to 1000, where the
    plain e^eta - x eta + log x! loses ~x log x * 6e-8."""
    rng = np.random.default_rng(2)
    x = np.arange(0, 1001, dtype=np.float32)
    eta = (np.log(x + 0.5) + rng.normal(0, 2, x.size) / np.sqrt(x + 1)).astype(np.float32)
    ref = np.array(
        [
            _mp_poisson_nll(a, b)
            for a, b in zip(x.astype(float), eta.astype(float), strict=True)
        ]
    )
    got = np.asarray(jax.jit(llx.Poisson().nll)(x, eta), np.float64)
    assert np.max(np.abs(got - ref) / np.maximum(1, np.abs(ref))) < 1e-5


def test_poisson_loss_is_half_poisson_deviance_form():
    x = jnp.array([0.0, 1.0, 4.0, 30.0])
    eta = jnp.array([-1.0, 0.3, 1.2, 3.5])
    np.testing.assert_allclose(
        llx.Poisson().loss(x, eta), jnp.exp(eta) - x * eta, rtol=1e-14, atol=0
    )
    np.testing.assert_allclose(
        llx.Poisson().nll(x, eta) - llx.Poisson().loss(x, eta),
        special.gammaln(np.asarray(x) + 1),
        rtol=1e-12,
        atol=1e-14,
    )


# ------------------------------------------------------ negative binomial


@jax.jit
def _nb_and_poisson(r, x, eta):
    """(nll, d/deta) of NegativeBinomial(r) and of Poisson, compiled once."""
    nb = llx.NegativeBinomial(r)
    g_nb = jax.vmap(jax.value_and_grad(lambda e, k: nb.nll(k, e)))(eta, x)
    g_p = jax.vmap(jax.value_and_grad(lambda e, k: llx.Poisson().nll(k, e)))(eta, x)
    return g_nb, g_p


@settings(max_examples=40, deadline=None)
@given(
    st.floats(13.0, 30.0),  # log10 of the concentration
    st.lists(st.integers(0, 200), min_size=8, max_size=8),
    st.lists(st.floats(-3.0, 5.0), min_size=8, max_size=8),
)
def test_negative_binomial_huge_concentration_is_poisson(log10_r, counts, etas):
    (v_nb, g_nb), (v_p, g_p) = _nb_and_poisson(
        jnp.asarray(10.0**log10_r), jnp.asarray(counts, float), jnp.asarray(etas)
    )
    # the exact differences are O((x - mu)^2 / r) < 1e-8 here
    np.testing.assert_allclose(v_nb, v_p, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g_nb, g_p, rtol=1e-8, atol=1e-8)


def test_negative_binomial_infinite_concentration_is_poisson():
    x = jnp.array([0.0, 1.0, 5.0, 40.0])
    eta = jnp.array([-2.0, 0.0, 1.5, 3.7])
    nb = llx.NegativeBinomial(jnp.inf)
    np.testing.assert_allclose(nb.nll(x, eta), llx.Poisson().nll(x, eta), rtol=1e-12)
    # the loss keeps -x log r + x log r: ~1e-13 absolute at r = 1e30
    np.testing.assert_allclose(nb.loss(x, eta), llx.Poisson().loss(x, eta), atol=1e-11)
    g = jax.grad(lambda e: nb.nll(x, e).sum())(eta)
    np.testing.assert_allclose(g, jnp.exp(eta) - x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("r", [1e3, 1e6, 1e9])
def test_negative_binomial_large_concentration_matches_mpmath(r):
    """No lgamma(x + r) - lgamma(r) cancellation for large r (scipy loses digits)."""
    x = np.array([0.0, 1.0, 7.0, 8.0, 30.0, 1000.0])
    eta = np.log(np.array([0.5, 1.0, 6.0, 9.0, 25.0, 900.0]))

    def ref(k, e):
        k, mu, rr = mpmath.mpf(k), mpmath.exp(mpmath.mpf(e)), mpmath.mpf(r)
        return float(
            -mpmath.loggamma(k + rr)
            + mpmath.loggamma(rr)
            + mpmath.loggamma(k + 1)
            - rr * mpmath.log(rr / (rr + mu))
            - k * mpmath.log(mu / (rr + mu))
        )

    want = np.array([ref(a, b) for a, b in zip(x, eta, strict=True)])
    got = llx.NegativeBinomial(r).nll(x, eta)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_negative_binomial_small_concentration_large_counts():
    """x much larger than r uses the log Gamma(x + r) / Gamma(x + 1) expansion."""
    r = 0.3
    x = np.array([8.0, 50.0, 1e4, 1e7])
    eta = np.log(x)

    def ref(k, e):
        k, mu, rr = mpmath.mpf(k), mpmath.exp(mpmath.mpf(e)), mpmath.mpf(r)
        return float(
            -mpmath.loggamma(k + rr)
            + mpmath.loggamma(rr)
            + mpmath.loggamma(k + 1)
            - rr * mpmath.log(rr / (rr + mu))
            - k * mpmath.log(mu / (rr + mu))
        )

    want = np.array([ref(a, b) for a, b in zip(x, eta, strict=True)])
    np.testing.assert_allclose(llx.NegativeBinomial(r).nll(x, eta), want, rtol=1e-12)


def test_negative_binomial_support_and_edges():
    nb = llx.NegativeBinomial(2.0)
    values = nb.nll(jnp.array([-1.0, 2.5, jnp.inf, jnp.nan]), 0.0)
    assert np.all(np.isposinf(values[:3])) and np.isnan(values[3])
    value, grad = jax.value_and_grad(lambda e: nb.nll(0.0, e))(-jnp.inf)
    assert value == 0 and grad == 0  # zero mean, zero count
    value, grad = jax.value_and_grad(lambda e: nb.nll(3.0, e))(-jnp.inf)
    assert value == jnp.inf and np.isfinite(grad)


def _mp_nb_nll(k, eta, r) -> float:
    k, mu, rr = mpmath.mpf(k), mpmath.exp(mpmath.mpf(eta)), mpmath.mpf(r)
    return float(
        -mpmath.loggamma(k + rr)
        + mpmath.loggamma(rr)
        + mpmath.loggamma(k + 1)
        - rr * mpmath.log(rr / (rr + mu))
        - k * mpmath.log(mu / (rr + mu))
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_binomial_grid_against_mpmath(dtype):
    """Every regime (small/large r, small/large x, mean far from x) at the rounded
    inputs: float64 to 1e-12, float32 to 1e-5 (relative to max(1, |ref|))."""
    grid = [
        (r, x, np.log(mu))
        for r in (0.3, 7.9, 8.5, 1e3, 1e6)
        for x in (0.0, 7.0, 8.0, 1000.0, 1e6)
        for mu in (0.1, x + 0.3, 1e5)
    ]
    r, x, eta = (np.asarray(c, dtype) for c in zip(*grid, strict=True))
    got = np.asarray(
        jax.jit(jax.vmap(lambda r, x, e: llx.NegativeBinomial(r).nll(x, e)))(r, x, eta)
    )
    want = np.array([_mp_nb_nll(*map(float, c)) for c in zip(x, eta, r, strict=True)])
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    assert np.max(np.abs(got - want) / np.maximum(1, np.abs(want))) < tol


def test_negative_binomial_gradients_against_mpmath():
    """d/deta and d/dr in every regime of the derivative (x below / above 8, r below
    / at / above 8, r up to 1e9 where d/dr ~ 1/r^2 is a difference of ~1/r terms),
    float64, to 1e-13 relative plus a few ulps of the terms that cancel."""
    grid = [
        (r, x, np.log(mu))
        for r in (0.3, 2.5, 8.0, 30.0, 1e3, 1e6, 1e9)
        for x in (0.0, 3.0, 7.0, 8.0, 20.0, 1000.0)
        for mu in (0.5, x + 2.7, 150.0)
    ]
    r, x, eta = (np.asarray(c) for c in zip(*grid, strict=True))
    f = jax.vmap(jax.grad(lambda e, r, x: llx.NegativeBinomial(r).nll(x, e), (0, 1)))
    d_eta, d_r = jax.jit(f)(eta, r, x)
    scale = x + np.exp(eta)

    def nll(k, e, rr):  # in mpmath numbers, for mpmath.diff
        mu = mpmath.exp(e)
        return (
            -mpmath.loggamma(k + rr)
            + mpmath.loggamma(rr)
            + mpmath.loggamma(k + 1)
            - rr * mpmath.log(rr / (rr + mu))
            - k * mpmath.log(mu / (rr + mu))
        )

    with mpmath.workdps(60):
        want = np.array(
            [
                [
                    float(mpmath.diff(lambda v: nll(k, v, rr), e)),
                    float(mpmath.diff(lambda v: nll(k, e, v), rr)),
                ]
                for rr, k, e in ((mpmath.mpf(float(c)) for c in row) for row in grid)
            ]
        )
    # d/deta = r s - x (1 - s) cancels near x = mu: a few ulps of its terms
    assert np.all(np.abs(d_eta - want[:, 0]) <= 1e-13 * np.abs(want[:, 0]) + 1e-15 * scale)
    # d/dr: its terms are ~((x + mu) / r)^2 for large r, O(1) otherwise
    terms = np.minimum(1.0, (scale / r) ** 2)
    assert np.all(np.abs(d_r - want[:, 1]) <= 1e-13 * np.abs(want[:, 1]) + 1e-15 * terms)


@pytest.mark.parametrize("k", [0.0, 5.0, 40.0, 300.0, 2000.0])
def test_negative_binomial_log_tails_match_mpmath(k):
    """log P(X <= k) and log P(X > k) to full relative precision, including the
    deep upper tail where P(X > k) underflows float64 (scipy gives -inf there)."""
    r, eta = 3.5, 1.2
    with mpmath.workdps(60):
        p = mpmath.mpf(r) / (r + mpmath.exp(mpmath.mpf(eta)))
        lower = mpmath.betainc(r, k + 1, 0, p, regularized=True)
        upper = mpmath.betainc(k + 1, r, 0, 1 - p, regularized=True)
        # each tail's log from whichever of the two is small (full relative precision)
        log_lower = mpmath.log(lower) if lower < 0.5 else mpmath.log1p(-upper)
        log_upper = mpmath.log(upper) if upper < 0.5 else mpmath.log1p(-lower)
        want = (float(log_lower), float(log_upper))
    nb = llx.NegativeBinomial(r)
    got = (float(nb.log_cdf(k, eta)), float(nb.log_sf(k, eta)))
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_negative_binomial_tails_differentiate_in_concentration_and_log_mean():
    """jax's betainc has no derivative in its shapes: likelax's does, so a censored
    negative binomial can learn its concentration. Against central differences of
    scipy's nbinom."""
    r, eta, h = 3.5, 1.2, 1e-6

    def ours(r_, e_):
        nb = llx.NegativeBinomial(r_)
        return nb.log_cdf(4.0, e_) + nb.log_sf(9.0, e_) + nb.cdf(2.0, e_)

    def scipys(r_, e_):
        d = stats.nbinom(r_, r_ / (r_ + np.exp(e_)))
        return d.logcdf(4) + d.logsf(9) + d.cdf(2)

    g_r, g_eta = jax.jit(jax.grad(ours, argnums=(0, 1)))(r, eta)
    np.testing.assert_allclose(
        g_r, (scipys(r + h, eta) - scipys(r - h, eta)) / (2 * h), rtol=1e-7
    )
    np.testing.assert_allclose(
        g_eta, (scipys(r, eta + h) - scipys(r, eta - h)) / (2 * h), rtol=1e-7
    )
