"""from_loss (losses that are likelihoods, and those that are not) and switch."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import likelax as llx

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)


def _quad_log_z(rho_np):
    total = sum(
        integrate.quad(
            lambda r: np.exp(-rho_np(r)), a, b, epsabs=0, epsrel=1e-13, limit=500
        )[0]
        for a, b in ((-np.inf, 0.0), (0.0, np.inf))
    )
    return np.log(total)


# ---------------------------------------------------------------- from_loss


def _logcosh(r):
    return jnp.log(jnp.cosh(r))


def _pseudo_huber(r):
    return 1.5**2 * (jnp.sqrt(1 + (r / 1.5) ** 2) - 1)


def _charbonnier(r):
    return jnp.sqrt(r * r + 1e-2)


def test_log_cosh_normaliser_is_pi():
    noise = llx.from_loss(_logcosh)
    assert abs(noise.log_normaliser - np.log(np.pi)) < 1e-13
    assert noise.symmetric
    x = np.array([-3.0, 0.2, 5.0])
    np.testing.assert_allclose(
        noise.nll(x, 0.5), -stats.hypsecant(0.5).logpdf(x), rtol=1e-13
    )


@pytest.mark.parametrize(
    "rho,rho_np",
    [
        (_pseudo_huber, lambda r: 1.5**2 * (np.sqrt(1 + (r / 1.5) ** 2) - 1)),
        (_charbonnier, lambda r: np.sqrt(r * r + 1e-2)),
    ],
    ids=["pseudo-huber", "charbonnier"],
)
def test_normaliser_matches_quadpack(rho, rho_np):
    noise = llx.from_loss(rho, scale=0.5)
    assert abs(noise.log_normaliser - _quad_log_z(rho_np)) < 1e-12
    x = np.array([-2.0, 0.1, 3.0])
    want = rho_np((x - 0.3) / 0.5) + np.log(0.5) + _quad_log_z(rho_np)
    np.testing.assert_allclose(noise.nll(x, 0.3), want, rtol=1e-12)
    np.testing.assert_allclose(noise.loss(x, 0.3), rho_np((x - 0.3) / 0.5), rtol=1e-13)
    np.testing.assert_allclose(noise.predict(np.array([0.3, -1.0])), [0.3, -1.0])


def _huber(r):
    a = jnp.abs(r)
    return jnp.where(a <= 1.2, 0.5 * r * r, 1.2 * (a - 0.6))


def _pinball(r):
    return jnp.where(r >= 0, 0.8 * r, (0.8 - 1.0) * r)


def test_known_losses_give_the_known_families():
    """Independent exact normalisers: the Huber loss is llx.Huber, the pinball loss
    is llx.AsymmetricLaplace (an asymmetric loss), ½r² is the Gaussian."""
    x = np.array([-4.0, -0.3, 0.0, 0.7, 9.0])
    huber = llx.from_loss(_huber, 0.7)
    np.testing.assert_allclose(
        huber.nll(x, 0.2), llx.Huber(1.2, 0.7).nll(x, 0.2), rtol=1e-12
    )
    pinball = llx.from_loss(_pinball, 1.3)
    assert not pinball.symmetric
    np.testing.assert_allclose(
        pinball.nll(x, 0.2), llx.AsymmetricLaplace(0.8, 1.3).nll(x, 0.2), rtol=1e-12
    )
    gauss = llx.from_loss(lambda r: 0.5 * r * r, 2.0)
    np.testing.assert_allclose(gauss.nll(x, 0.2), llx.Gaussian(2.0).nll(x, 0.2), rtol=1e-13)


@pytest.mark.parametrize(
    "rho",
    [
        lambda r: jnp.where(
            jnp.abs(r) < 4.685,
            4.685**2 / 6 * (1 - (1 - (r / 4.685) ** 2) ** 3),
            4.685**2 / 6,
        ),
        lambda r: 1 - jnp.exp(-0.5 * r * r),
        lambda r: jnp.zeros_like(r),
        lambda r: jnp.log1p(jnp.abs(r)),
        lambda r: jnp.minimum(r * r, 1.0),
    ],
    ids=["tukey-biweight", "welsch", "constant", "log1p-abs", "truncated-quadratic"],
)
def test_not_every_loss_is_a_likelihood(rho):
    with pytest.raises(llx.NotALikelihood, match="not every loss is a likelihood"):
        llx.from_loss(rho)
    assert issubclass(llx.NotALikelihood, ValueError)


def test_from_loss_errors():
    with pytest.raises(TypeError, match="`rho` must be callable"):
        llx.from_loss(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite at 0 and never NaN"):
        llx.from_loss(lambda r: jnp.log(r * r))
    with pytest.raises(TypeError, match="act elementwise"):
        llx.from_loss(lambda r: jnp.sum(r * r))
    noise = llx.from_loss(_logcosh)
    with pytest.raises(NotImplementedError, match="sample"):
        noise.sample(jax.random.key(0), 0.0)
    with pytest.raises(NotImplementedError, match="cdf"):
        noise.cdf(0.0, 0.0)


# -------------------------------------------------------------------- switch

FIVE = [
    llx.Gaussian(1.0),
    llx.Laplace(0.8),
    llx.StudentT(3.0, 1.2),
    llx.Cauchy(0.5),
    llx.Huber(1.0, 1.1),
]


def test_one_vmapped_program_over_five_families():
    """One jitted, vmapped call evaluates Gaussian, Laplace, Student-t, Cauchy and
    Huber nll (and gradients) on the same data; it equals the separate calls."""
    sw = llx.switch(FIVE)
    rng = np.random.default_rng(0)
    x, xh = rng.standard_t(2.0, 50) * 2, rng.normal(size=50)

    @jax.jit
    def all_families(s, a, b):
        def one(i):
            m = s.at(i)
            return m.nll(a, b), jax.grad(lambda bb: m.nll(a, bb).sum())(b)

        return jax.vmap(one)(jnp.arange(len(FIVE)))

    values, grads = all_families(sw, x, xh)
    for i, fam in enumerate(FIVE):
        np.testing.assert_allclose(values[i], fam.nll(x, xh), rtol=1e-13)
        g = jax.grad(lambda b, fam=fam: fam.nll(x, b).sum())(jnp.asarray(xh))
        np.testing.assert_allclose(grads[i], g, rtol=1e-12, atol=1e-14)


def test_switch_methods_follow_the_index(getkey):
    sw = llx.switch([llx.Gaussian(1.0), llx.Laplace(2.0)], 1)
    x = np.array([-1.0, 0.5])
    np.testing.assert_allclose(sw.nll(x, 0.1), llx.Laplace(2.0).nll(x, 0.1), rtol=1e-15)
    np.testing.assert_allclose(sw.loss(x, 0.1), llx.Laplace(2.0).loss(x, 0.1), rtol=1e-15)
    np.testing.assert_allclose(sw.cdf(x, 0.1), stats.laplace(0.1, 2.0).cdf(x), rtol=1e-13)
    np.testing.assert_allclose(
        sw.at(0).log_sf(x, 0.1), stats.norm(0.1).logsf(x), rtol=1e-13
    )
    key = getkey()
    np.testing.assert_array_equal(
        sw.sample(key, 0.1, (5,)), llx.Laplace(2.0).sample(key, 0.1, (5,))
    )


def test_switch_index_is_not_trained_and_does_not_retrace():
    sw = llx.switch(FIVE)
    assert sw.index.dtype == jnp.int32
    assert not any(p.endswith("index") for p in sw._hyperparameter_paths())
    grads = eqx.filter_grad(lambda s: s.nll(0.3, 0.0))(sw)
    assert grads.index is None
    params = eqx.filter(sw, eqx.is_inexact_array)
    assert params.index is None

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(s):
        return s.nll(0.3, 0.0)

    values = {float(f(sw.at(i))) for i in range(len(FIVE))}
    assert len(values) == len(FIVE)


def test_switch_index_out_of_range_never_clamps():
    sw = llx.switch(FIVE[:2])
    with pytest.raises(ValueError, match=r"`index` must be in 0\.\.1, got 2"):
        llx.switch(FIVE[:2], 2)
    f = jax.jit(lambda s, i: s.at(i).nll(0.3, 0.0))
    with pytest.raises(RUNTIME_ERRORS, match="`index` must be in"):
        jax.block_until_ready(f(sw, 2))
    with llx.checks("off"):
        assert np.isnan(jax.jit(lambda s, i: s.at(i).nll(0.3, 0.0))(sw, -1))


def test_switch_errors():
    with pytest.raises(TypeError, match="all densities or all masses"):
        llx.switch([llx.Gaussian(), llx.Poisson()])
    with pytest.raises(TypeError, match="`index` must be an integer"):
        llx.switch(FIVE, 1.0)
    with pytest.raises(ValueError, match="must be a scalar"):
        llx.switch(FIVE, np.array([0, 1]))
    with pytest.raises(ValueError, match="`components` is empty"):
        llx.switch([])
