"""`total_nll` / `total_loss`: the summed nll every objective evaluates.

For every family of the table: the sum agrees with the independent oracle's summed
log-density (float64, 1e-10) and with `jnp.sum(nll)` in value and gradient (with
respect to `x_hat` and to the noise model itself); masks, 16-bit inputs, per-element
hyperparameters, value checks, strict mode and overflow behave as for `nll`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from case import Case, logdensity
from cases import CASES, IDS

import likelax as llx

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)
parametrize = pytest.mark.parametrize("case", CASES, ids=IDS)


def _data(case: Case, noise, seed: int = 0):
    rng = np.random.default_rng(seed)
    x_hat = case.x_hat(rng)
    x = np.asarray(case.oracle(noise, x_hat).rvs(random_state=rng))
    return x, x_hat


def _grads(f, x_hat, noise):
    value, (g_xh, g_noise) = jax.value_and_grad(f, argnums=(0, 1))(x_hat, noise)
    return value, g_xh, jax.tree.leaves(g_noise)


@parametrize
def test_total_nll_matches_oracle_float64(case):
    for i, noise in enumerate(case.instances()):
        x, x_hat = _data(case, noise, seed=i)
        ref = -np.sum(np.asarray(logdensity(case.oracle(noise, x_hat), x), np.float64))
        got = noise.total_nll(x, x_hat)
        assert got.shape == () and got.dtype == jnp.float64
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)
        np.testing.assert_allclose(
            noise.total_loss(x, x_hat), jnp.sum(noise.loss(x, x_hat)), rtol=1e-12
        )


@parametrize
def test_total_gradients_equal_those_of_the_sum(case):
    """Value and gradient (x_hat and every hyperparameter), eager and jitted."""
    noise = case.instances()[0]
    x, x_hat = _data(case, noise, seed=3)
    x_hat = jnp.asarray(x_hat)
    for exact in (True, False):
        per = (lambda n: n.nll) if exact else (lambda n: n.loss)
        tot = (lambda n: n.total_nll) if exact else (lambda n: n.total_loss)

        def summed(xh, n, per=per):
            return jnp.sum(per(n)(x, xh))

        def total(xh, n, tot=tot):
            return tot(n)(x, xh)

        ref = _grads(summed, x_hat, noise)
        for f in (total, jax.jit(total)):
            got = _grads(f, x_hat, noise)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
            np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-300)
            for a, b in zip(got[2], ref[2], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@parametrize
def test_total_low_precision(case):
    """float32 agrees with the float64 sum; 16-bit inputs are summed (and returned)
    in float32."""
    noise = case.instances()[0]
    x, x_hat = _data(case, noise, seed=5)
    ref = float(noise.total_nll(x, x_hat))
    xf = x if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
    got = noise.total_nll(xf, np.asarray(x_hat, np.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # bfloat16 inputs: the sum of the float32 nlls of the rounded inputs (more
    # accurate than a sum of bfloat16-rounded per-element values)
    xb = x if np.issubdtype(x.dtype, np.integer) else jnp.asarray(x, jnp.bfloat16)
    xhb = jnp.asarray(x_hat, jnp.bfloat16)
    got = noise.total_nll(xb, xhb)
    assert got.dtype == jnp.float32
    xd = x if np.issubdtype(x.dtype, np.integer) else np.asarray(xb, np.float64)
    exact = noise.total_nll(xd, np.asarray(xhb, np.float64))
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)


@parametrize
def test_total_where_mask_isolates_nan(case):
    noise = case.instances()[0]
    x, x_hat = _data(case, noise, seed=31)
    x_hat = jnp.asarray(x_hat).at[0].set(jnp.nan)
    mask = jnp.ones(x_hat.shape[: x_hat.ndim - (case.kind == "categorical")], bool)
    mask = mask.at[0].set(False)
    value, g_xh, g_noise = _grads(
        lambda xh, n: n.total_nll(x, xh, where=mask), x_hat, noise
    )
    np.testing.assert_allclose(value, jnp.sum(noise.nll(x, x_hat)[1:]), rtol=1e-12)
    assert np.all(np.asarray(g_xh)[0] == 0) and np.all(np.isfinite(g_xh))
    assert all(np.all(np.isfinite(leaf)) for leaf in g_noise)


@parametrize
def test_total_with_per_observation_hyperparameters(case):
    """Hyperparameters with a batch axis (stacked instances, one per observation)."""
    a, b = case.instances()[:2]
    x, x_hat = _data(case, a, seed=7)
    n = x.shape[0]
    stacked = jax.tree.map(
        lambda u, v: (
            jnp.where(jnp.arange(n) % 2 == 0, u, v) if eqx.is_inexact_array(u) else u
        ),
        a,
        b,
    )
    np.testing.assert_allclose(
        stacked.total_nll(x, x_hat), jnp.sum(stacked.nll(x, x_hat)), rtol=1e-12
    )


@parametrize
def test_total_value_checks(case):
    """Invalid hyperparameters raise under jit and in the gradient in `x_hat`
    alone; with checks off the sum is NaN."""
    noise = case.instances()[0]
    x, x_hat = _data(case, noise)
    for field in noise._domains:
        broken = eqx.tree_at(
            lambda n, field=field: getattr(n, field),
            noise,
            jnp.full_like(getattr(noise, field), -1.0),
        )
        with pytest.raises(RUNTIME_ERRORS, match=f"`{field}` must be"):
            jax.block_until_ready(jax.jit(lambda n: n.total_nll(x, x_hat))(broken))
        g = jax.jit(jax.grad(lambda xh, n: n.total_nll(x, xh)))
        with pytest.raises(RUNTIME_ERRORS, match=f"`{field}` must be"):
            jax.block_until_ready(g(x_hat, broken))
        with llx.checks("off"):
            assert np.isnan(jax.jit(lambda n: n.total_nll(x, x_hat))(broken))


def test_total_impossible_observation_and_strict_mode():
    noise = llx.Poisson()
    x = jnp.array([1.0, -1.0, 2.5])
    value, grad = jax.value_and_grad(lambda m: noise.total_nll(x, m))(jnp.zeros(3))
    assert value == jnp.inf and np.all(np.isfinite(grad))
    assert llx.Gaussian().total_nll(jnp.array([0.0, jnp.inf]), 0.0) == jnp.inf
    with llx.checks("strict"), pytest.raises(RUNTIME_ERRORS, match="probability 0"):
        jax.block_until_ready(
            jax.jit(lambda v: llx.Gaussian().total_nll(v, 0.0))(x * jnp.inf)
        )


def test_total_stays_exact_at_huge_residuals():
    """Nothing overflows in the sum that does not in the per-element nll."""
    x = jnp.array([1e20, 0.5, -3e19], jnp.float32)
    for noise in (
        llx.StudentT(3.0),
        llx.Cauchy(2.0),
        llx.Laplace(1e20),
        llx.Gaussian(1e19),
    ):
        got, ref = noise.total_nll(x, 0.0), jnp.sum(noise.nll(x, 0.0))
        assert np.isfinite(got)
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_total_broadcasts_x_hat_and_names_bad_shapes():
    noise = llx.Gaussian(2.0)
    x = jnp.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(
        noise.total_nll(x, jnp.arange(4.0)),
        jnp.sum(noise.nll(x, jnp.arange(4.0))),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        noise.total_nll(1.0, jnp.arange(4.0)),
        jnp.sum(noise.nll(1.0, jnp.arange(4.0))),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"`x` \(3,\), `x_hat` \(4,\)"):
        noise.total_nll(jnp.zeros(3), jnp.zeros(4))


def test_likelihood_and_prior_terms_are_total_nll():
    """The objective's terms are the summed nll (and loss) of their noise model."""
    u = jnp.linspace(-1.0, 1.0, 7)
    y = 2.0 * u + jnp.sin(5.0 * u)
    params = {"w": jnp.array(1.5), "b": jnp.array(0.25)}
    noise = llx.StudentT(4.0, 0.5)
    lik = llx.likelihood(lambda p, v: p["w"] * v + p["b"], noise)
    obj = lik + llx.prior(llx.Gaussian(3.0))
    x_hat = params["w"] * u + params["b"]
    prior = llx.Gaussian(3.0).total_nll(jnp.stack([params["b"], params["w"]]), 0.0)
    np.testing.assert_allclose(
        obj(params, (u, y)), jnp.sum(noise.nll(y, x_hat)) + prior, rtol=1e-6
    )
    np.testing.assert_allclose(
        obj.loss(params, (u, y)),
        jnp.sum(noise.loss(y, x_hat))
        + llx.Gaussian(3.0).total_loss(jnp.stack([params["b"], params["w"]]), 0.0),
        rtol=1e-6,
    )
