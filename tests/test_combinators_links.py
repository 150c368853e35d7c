"""reparam, heteroscedastic and transform: boundaries, conventions and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logit
from scipy import stats

import likelax as llx

jitted = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def _maybe_jit(f, jit):
    return jax.jit(f) if jit else f


def _softplus(t):
    return np.logaddexp(t, 0.0)


# ------------------------------------------------------------------- reparam


@dtypes
@jitted
def test_poisson_identity_link_at_rate_zero(dtype, jit):
    """RELIABILITY: Poisson rate 0, count 0: nll 0, d/d rate = +1 (identity link);
    count 3 at rate 0 is impossible (+inf), with no NaN gradient."""
    noise = llx.reparam(llx.Poisson(), jnp.log)
    zero = jnp.zeros((), dtype)
    f = _maybe_jit(lambda x, rate: noise.nll(x, rate), jit)
    g = _maybe_jit(jax.grad(lambda x, rate: noise.nll(x, rate), argnums=1), jit)
    assert f(zero, zero) == 0.0
    assert g(zero, zero) == 1.0
    three = jnp.asarray(3.0, dtype)
    assert f(three, zero) == np.inf
    assert not np.isnan(g(three, zero))
    # interior: d/d rate = 1 - x / rate
    np.testing.assert_allclose(g(three, jnp.asarray(2.0, dtype)), 1 - 3 / 2, rtol=1e-6)


def test_log_link_for_negative_binomial_and_logit_for_binary():
    nb = llx.reparam(llx.NegativeBinomial(2.5), jnp.log)
    assert nb.nll(0.0, 0.0) == 0.0
    assert jax.grad(lambda m: nb.nll(0.0, m))(0.0) == 1.0
    np.testing.assert_allclose(
        nb.nll(np.arange(5.0), 1.7),
        -stats.nbinom(2.5, 2.5 / (2.5 + 1.7)).logpmf(np.arange(5)),
        rtol=1e-12,
    )
    bern = llx.reparam(llx.Bernoulli(), logit)
    assert bern.nll(0.0, 0.0) == 0.0 and bern.nll(1.0, 1.0) == 0.0
    assert jax.grad(lambda p: bern.nll(0.0, p))(0.0) == 1.0
    assert jax.grad(lambda p: bern.nll(1.0, p))(1.0) == -1.0
    binom = llx.reparam(llx.Binomial(4), logit)
    np.testing.assert_allclose(
        binom.nll(np.arange(5.0), 0.3),
        -stats.binom(4, 0.3).logpmf(np.arange(5)),
        rtol=1e-12,
    )


def test_invalid_mean_gives_nan_never_a_finite_value():
    noise = llx.reparam(llx.Poisson(), jnp.log)
    out = noise.nll(np.array([0.0, 2.0]), np.array([-1.0, -1.0]))
    assert np.all(np.isnan(out))
    bern = llx.reparam(llx.Bernoulli(), logit)
    assert np.isnan(bern.nll(0.0, 1.5))


def test_other_links_compose():
    noise = llx.reparam(llx.Gaussian(0.5), jnp.tanh)
    z = np.array([-1.0, 0.2, 3.0])
    np.testing.assert_allclose(
        noise.nll(0.1, z), -stats.norm(np.tanh(z), 0.5).logpdf(0.1), rtol=1e-13
    )
    np.testing.assert_allclose(noise.predict(z), np.tanh(z), rtol=1e-15)
    assert llx.reparam(llx.Poisson(), jnp.log).predict(2.5) == pytest.approx(2.5, rel=1e-15)


def test_reparam_errors():
    with pytest.raises(TypeError, match="`link` must be callable"):
        llx.reparam(llx.Gaussian(), 3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`noise` must be a noise model"):
        llx.reparam(jnp.log, jnp.log)  # type: ignore[arg-type]


# ----------------------------------------------------------- heteroscedastic

LOCATION_SCALE = [
    ("Gaussian", lambda: llx.Gaussian(), lambda m, s: stats.norm(m, s)),
    ("Laplace", lambda: llx.Laplace(), lambda m, s: stats.laplace(m, s)),
    ("StudentT", lambda: llx.StudentT(3.0), lambda m, s: stats.t(3.0, m, s)),
    ("Cauchy", lambda: llx.Cauchy(), lambda m, s: stats.cauchy(m, s)),
    (
        "GeneralizedNormal",
        lambda: llx.GeneralizedNormal(1.5),
        lambda m, s: stats.gennorm(1.5, m, s),
    ),
    ("Huber", lambda: llx.Huber(1.2), None),
    ("AsymmetricLaplace", lambda: llx.AsymmetricLaplace(0.8), None),
]


@pytest.mark.parametrize(
    "make,dist", [r[1:] for r in LOCATION_SCALE], ids=[r[0] for r in LOCATION_SCALE]
)
def test_heteroscedastic_every_location_scale_family(make, dist):
    """Equals the family with the per-observation scale softplus(raw) (scipy where it
    has a twin, else the family itself evaluated with an array of scales)."""
    rng = np.random.default_rng(0)
    loc, raw = rng.normal(0, 2, 10), rng.normal(0, 2, 10)
    x = loc + rng.normal(0, 3, 10)
    noise = llx.heteroscedastic(make())
    got = noise.nll(x, np.stack([loc, raw], -1))
    s = _softplus(raw)
    if dist is not None:
        want = -dist(loc, s).logpdf(x)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(
            noise.cdf(x, np.stack([loc, raw], -1)), dist(loc, s).cdf(x), rtol=1e-10
        )
    else:
        fam = make()
        per_obs = type(fam)(**{**{f: getattr(fam, f) for f in fam._domains}, "scale": s})
        np.testing.assert_allclose(got, per_obs.nll(x, loc), rtol=1e-12)


@pytest.mark.parametrize(
    "make", [r[1] for r in LOCATION_SCALE], ids=[r[0] for r in LOCATION_SCALE]
)
@jitted
def test_heteroscedastic_raw_scale_at_plus_minus_100_float32(make, jit):
    """RELIABILITY: a learned softplus scale with raw output ±100 gives a finite value
    and gradient in float32 (log space: softplus(-100) ≈ 4e-44 is not a float32
    normal number), equal to the float64 value."""
    noise = llx.heteroscedastic(make())
    xh = np.array([[0.0, -100.0], [0.0, 100.0], [1.0, 100.0]])
    x = np.array([0.0, 0.0, -3.0])
    f = _maybe_jit(lambda a, b: noise.nll(a, b), jit)
    got = f(x.astype(np.float32), xh.astype(np.float32))
    ref = f(x, xh)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert abs(float(ref[0]) - (-100.0 + float(make().nll(0.0, 0.0)))) < 1e-10
    g = _maybe_jit(jax.grad(lambda b: noise.nll(x.astype(np.float32), b).sum()), jit)(
        xh.astype(np.float32)
    )
    assert np.all(np.isfinite(g[:, 1])) and np.all(np.isfinite(g[1:, 0]))
    if type(make()).__name__ in ("Laplace", "AsymmetricLaplace"):
        # |x - loc| / s has a kink at x = loc, whose one-sided slopes ±1/s = ±3e43
        # overflow float32: ±inf is the true value there, never NaN
        assert np.isinf(g[0, 0])
    else:
        assert g[0, 0] == 0.0
    np.testing.assert_allclose(g[0, 1], 1.0, rtol=1e-6)  # d log s / d raw -> 1


def test_heteroscedastic_gaussian_is_torch_gaussian_nll_full():
    """torch.nn.GaussianNLLLoss(full=True, reduction='none') with var = scale**2:
    0.5 (log var + (x - mu)^2 / var) + 0.5 log 2π (written out; torch's eps clamp
    is not reached here)."""
    rng = np.random.default_rng(3)
    mu, raw = rng.normal(size=8), rng.normal(size=8)
    x = rng.normal(size=8) * 2
    var = _softplus(raw) ** 2
    torch_full = 0.5 * (np.log(var) + (x - mu) ** 2 / var) + 0.5 * np.log(2 * np.pi)
    got = llx.heteroscedastic(llx.Gaussian()).nll(x, np.stack([mu, raw], -1))
    np.testing.assert_allclose(got, torch_full, rtol=1e-12)


def test_heteroscedastic_predict_and_sample(getkey):
    noise = llx.heteroscedastic(llx.Laplace())
    xh = np.array([[1.5, 0.3], [-2.0, -1.0]])
    np.testing.assert_allclose(noise.predict(xh), [1.5, -2.0])
    draws = np.asarray(noise.sample(getkey(), xh[0], (3000,)))
    assert stats.kstest(draws, stats.laplace(1.5, _softplus(0.3)).cdf).pvalue > 1e-3
    al = llx.heteroscedastic(llx.AsymmetricLaplace(0.9))
    np.testing.assert_allclose(al.predict(xh), [1.5, -2.0])


def test_heteroscedastic_errors():
    for bad in (llx.Poisson(), llx.Gamma(2.0), llx.VonMises(1.0), llx.Bernoulli()):
        with pytest.raises(TypeError, match="location-scale family"):
            llx.heteroscedastic(bad)
    with pytest.raises(ValueError, match="trailing axis of size 2"):
        llx.heteroscedastic(llx.Gaussian()).nll(np.zeros(3), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="trailing event axis"):
        llx.heteroscedastic(llx.Gaussian()).nll(0.0, 0.0)


# ---------------------------------------------------------------- transform


def test_lognormal_is_scipy_lognorm():
    noise = llx.transform(llx.Gaussian(0.7), jnp.log)
    x = np.array([1e-3, 0.5, 1.0, 40.0])
    xh = np.array([0.3, -1.0, 0.0, 2.0])
    np.testing.assert_allclose(
        noise.nll(x, xh), -stats.lognorm(0.7, scale=np.exp(xh)).logpdf(x), rtol=1e-13
    )
    np.testing.assert_allclose(noise.predict(xh), np.exp(xh), rtol=1e-15)  # the median


def test_log_jacobian_autodiff_equals_known_and_supplied():
    x = np.array([0.2, 1.0, 7.0])
    known = llx.transform(llx.Laplace(0.5), jnp.log)
    auto = llx.transform(llx.Laplace(0.5), lambda v: jnp.log(v))
    given = llx.transform(llx.Laplace(0.5), lambda v: jnp.log(v), lambda v: -jnp.log(v))
    for other in (auto, given):
        np.testing.assert_allclose(other.nll(x, 0.1), known.nll(x, 0.1), rtol=1e-14)
    np.testing.assert_allclose(
        known.nll(x, 0.1),
        -stats.laplace(0.1, 0.5).logpdf(np.log(x)) + np.log(x),
        rtol=1e-13,
    )


def test_outside_the_domain_is_impossible_with_zero_gradients():
    noise = llx.transform(llx.Gaussian(0.7), jnp.log)
    x = jnp.asarray([-1.0, 0.0, jnp.inf, 2.0])
    out = noise.nll(x, 0.0)
    assert np.all(out[:3] == np.inf) and np.isfinite(out[3])
    g_xh, g_n = jax.grad(lambda b, n: n.nll(x, b)[:3].sum(), (0, 1))(0.0, noise)
    assert g_xh == 0.0 and float(g_n.noise.scale) == 0.0
    g_all = jax.grad(lambda b: jnp.where(x > 0, noise.nll(x, b), 0.0).sum())(0.0)
    assert np.isfinite(g_all)


def test_decreasing_transform_cdf_and_sample(getkey):
    """f(x) = -log x is decreasing: cdf uses the survival function of the noise."""
    noise = llx.transform(
        llx.Gaussian(0.5), lambda v: -jnp.log(v), inverse=lambda y: jnp.exp(-y)
    )
    x = np.array([0.3, 1.0, 2.5])
    ref = stats.lognorm(0.5, scale=np.exp(-0.2))  # X = exp(-Y), Y ~ N(0.2, 0.5)
    np.testing.assert_allclose(noise.nll(x, 0.2), -ref.logpdf(x), rtol=1e-13)
    np.testing.assert_allclose(noise.cdf(x, 0.2), ref.cdf(x), rtol=1e-12)
    np.testing.assert_allclose(noise.log_sf(x, 0.2), ref.logsf(x), rtol=1e-12)
    draws = np.asarray(noise.sample(getkey(), 0.2, (3000,)))
    assert stats.kstest(draws, ref.cdf).pvalue > 1e-3


def test_transform_errors():
    with pytest.raises(TypeError, match="densities only"):
        llx.transform(llx.Poisson(), jnp.log)
    with pytest.raises(TypeError, match="`f` must be callable"):
        llx.transform(llx.Gaussian(), 2.0)  # type: ignore[arg-type]
    noise = llx.transform(llx.Gaussian(), lambda v: v**3)
    with pytest.raises(NotImplementedError, match="needs the inverse"):
        noise.sample(jax.random.key(0), 0.0)
    with pytest.raises(NotImplementedError, match="needs the inverse"):
        noise.predict(0.0)


def test_heteroscedastic_scale_gradient_at_raw_zero():
    """d/dt log softplus(t) at t = 0 is sigmoid(0)/log 2 (not 0 from two kinks)."""
    import jax
    import jax.numpy as jnp

    import likelax as llx

    noise = llx.heteroscedastic(llx.Gaussian())
    g = jax.grad(lambda t: noise.nll(1.0, jnp.stack([jnp.zeros(()), t])))(0.0)
    s = np.log(2.0)  # softplus(0)
    # d/dt [½ (1/s)² + log s] with ds/dt = sigmoid(0) = ½
    want = (-1.0 / s**3 + 1.0 / s) * 0.5
    np.testing.assert_allclose(g, want, rtol=1e-6)
