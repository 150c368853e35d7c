"""Mixtures: the RELIABILITY rows, structure, weights, prediction and errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import special, stats

import likelax as llx
from likelax._noise._base import constrained, unconstrained

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)

modes = pytest.mark.parametrize("dtype", [np.float32, np.float64])
jitted = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def _maybe_jit(f, jit):
    return jax.jit(f) if jit else f


def _finite_tree(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(t)))) for t in jax.tree.leaves(tree))


# ------------------------------------------------------ RELIABILITY: Mixture rows


@modes
@jitted
def test_zero_weight_gives_the_other_component(dtype, jit):
    """weights [0, 1], x = 0.3: the second component's nll; finite gradients."""
    mix = llx.mixture([llx.Gaussian(1.0), llx.Laplace(2.0)], jnp.asarray([0.0, 1.0], dtype))
    mix = jax.tree.map(lambda a: a.astype(dtype), mix)
    f = _maybe_jit(lambda m, x: m.nll(x, jnp.zeros((), dtype)), jit)
    x = jnp.asarray(0.3, dtype)
    got = f(mix, x)
    want = -stats.laplace(0.0, 2.0).logpdf(0.3)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert float(mix.logits[0]) == -np.inf
    grads = _maybe_jit(jax.grad(lambda m: m.nll(x, jnp.zeros((), dtype))), jit)(mix)
    assert _finite_tree(grads)
    # d nll / d logit_0 = w_0 - r_0 = 0; the Gaussian's scale has no influence
    assert float(grads.logits[0]) == 0.0
    assert float(grads.components[0].scale) == 0.0


@modes
@jitted
def test_dead_component(dtype, jit):
    """A component with scale 1e-30 far from x: finite value and gradients, and a
    zero gradient for the dead component's parameters."""
    mix = llx.mixture([llx.Gaussian(1e-30), llx.Gaussian(1.0)], [0.5, 0.5])
    mix = jax.tree.map(lambda a: a.astype(dtype), mix)
    x, xh = jnp.asarray([5.0, -3.0], dtype), jnp.asarray([0.0, 0.5], dtype)

    def total(m, b):
        return m.nll(x, b).sum()

    value = _maybe_jit(total, jit)(mix, xh)
    want = (
        -2 * np.log(0.5)
        - stats.norm(np.asarray(xh, np.float64), 1.0)
        .logpdf(np.asarray(x, np.float64))
        .sum()
    )
    np.testing.assert_allclose(value, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    g_m, g_xh = _maybe_jit(jax.grad(total, argnums=(0, 1)), jit)(mix, xh)
    assert _finite_tree((g_m, g_xh))
    assert float(g_m.components[0].scale) == 0.0
    np.testing.assert_allclose(g_xh, -(np.asarray(x) - np.asarray(xh)), rtol=1e-6)


@modes
@jitted
def test_component_densities_underflow_at_x_40(dtype, jit):
    """Every component density underflows at x = 40; logsumexp keeps it exact."""
    w = np.array([0.3, 0.7])
    mix = jax.tree.map(
        lambda a: a.astype(dtype), llx.mixture([llx.Gaussian(1.0), llx.Gaussian(2.0)], w)
    )
    got = _maybe_jit(lambda m: m.nll(jnp.asarray(40.0, dtype), jnp.zeros((), dtype)), jit)(
        mix
    )
    mpmath.mp.dps = 50
    dens = sum(
        mpmath.mpf(wk) * mpmath.npdf(40, 0, s) for wk, s in zip(w, (1.0, 2.0), strict=True)
    )
    want = float(-mpmath.log(dens))
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    g = jax.grad(lambda m: m.nll(jnp.asarray(40.0, dtype), jnp.zeros((), dtype)))(mix)
    assert _finite_tree(g)


@pytest.mark.parametrize(
    "dtype,jit", [(np.float32, True), (np.float64, True)], ids=["f32-jit", "f64-jit"]
)
def test_every_component_impossible(dtype, jit):
    """x = -1 is impossible for Gamma and Beta: +inf, no NaN reaching the weights,
    the components or the other elements."""
    mix = jax.tree.map(
        lambda a: a.astype(dtype),
        llx.mixture([llx.Gamma(2.0), llx.Beta(3.0)], [0.4, 0.6]),
    )
    x = jnp.asarray([-1.0, 0.3, 0.8], dtype)
    xh = jnp.asarray([0.2, -0.5, 0.1], dtype)
    out = _maybe_jit(lambda m: m.nll(x, xh), jit)(mix)
    assert out[0] == np.inf
    alone = _maybe_jit(lambda m: m.nll(x[1:], xh[1:]), jit)(mix)
    np.testing.assert_allclose(out[1:], alone, rtol=1e-6 if dtype == np.float32 else 1e-14)
    g_m, g_xh = _maybe_jit(jax.grad(lambda m, b: m.nll(x, b)[1:].sum(), (0, 1)), jit)(
        mix, xh
    )
    g_all = _maybe_jit(jax.grad(lambda m, b: jnp.where(x > 0, m.nll(x, b), 0).sum()), jit)(
        mix, xh
    )
    assert _finite_tree((g_m, g_xh, g_all))
    assert float(g_xh[0]) == 0.0
    # the impossible element's +inf nll: zero gradients (weights and components)
    g_dead = _maybe_jit(jax.grad(lambda m: m.nll(x, xh)[0]), jit)(mix)
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(g_dead))


def test_normal_plus_gamma_below_zero():
    """Support-aware: at x < 0 only the Gaussian contributes."""
    mix = llx.mixture([llx.Gaussian(1.5), llx.Gamma(3.0)], [0.4, 0.6])
    x = np.array([-2.0, -0.1])
    want = -(np.log(0.4) + stats.norm(0.3, 1.5).logpdf(x))
    np.testing.assert_allclose(mix.nll(x, 0.3), want, rtol=1e-13)
    g = jax.grad(lambda m, b: m.nll(x, b).sum(), (0, 1))(mix, 0.3)
    assert _finite_tree(g)
    assert float(g[0].components[1].concentration) == 0.0


# ----------------------------------------------------------------- structure


def test_one_component_is_exactly_that_component(getkey):
    comp = llx.Cauchy(0.7)
    mix = llx.mixture([comp])
    x, xh = np.array([-3.0, 0.1, 7.0]), np.array([0.5, 0.0, -1.0])
    np.testing.assert_array_equal(mix.nll(x, xh), comp.nll(x, xh))
    np.testing.assert_array_equal(mix.loss(x, xh), comp.loss(x, xh))
    np.testing.assert_array_equal(mix.predict(xh), comp.predict(xh))
    np.testing.assert_array_equal(mix.cdf(x, xh), comp.cdf(x, xh))
    np.testing.assert_array_equal(mix.log_sf(x, xh), comp.log_sf(x, xh))
    key = getkey()
    np.testing.assert_array_equal(mix.sample(key, xh, (4,)), comp.sample(key, xh, (4,)))
    g_mix = jax.grad(lambda b: mix.nll(x, b).sum())(jnp.asarray(xh))
    g_comp = jax.grad(lambda b: comp.nll(x, b).sum())(jnp.asarray(xh))
    np.testing.assert_array_equal(g_mix, g_comp)


@pytest.mark.parametrize("k", [3, 34], ids=["unrolled-k3", "scanned-k34"])
def test_stacked_equals_list(k):
    """One stacked module (unrolled for small K, scanned in chunks for large K)
    equals the sequence of separate components, in value and gradients."""
    family, field = llx.AsymmetricLaplace, "quantile"
    rng = np.random.default_rng(0)
    a, s = rng.uniform(0.1, 0.9, k), rng.uniform(0.2, 3.0, k)
    w = rng.uniform(0.1, 1.0, k)
    stacked = llx.mixture(family(a, s), w)
    listed = llx.mixture([family(ai, si) for ai, si in zip(a, s, strict=True)], w)
    x, xh = rng.normal(0, 3, 20), rng.normal(0, 1, 20)
    f = jax.jit(lambda m, b: m.nll(x, b))
    np.testing.assert_allclose(f(stacked, xh), f(listed, xh), rtol=1e-13)
    g = jax.jit(jax.grad(lambda m, b: m.nll(x, b).sum(), argnums=(0, 1)))
    (gs, gxs), (gl, gxl) = g(stacked, xh), g(listed, xh)
    np.testing.assert_allclose(gxs, gxl, rtol=1e-12)
    np.testing.assert_allclose(gs.logits, gl.logits, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(
        getattr(gs.components, field),
        [getattr(c, field) for c in gl.components],
        rtol=1e-11,
        atol=1e-14,
    )
    assert f"components.{field}" in stacked._hyperparameter_paths()
    assert f"components.{k - 1}.scale" in listed._hyperparameter_paths()


def test_stacked_shares_scalar_hyperparameters():
    mix = llx.mixture(llx.StudentT(np.array([2.0, 5.0]), 1.5), [0.5, 0.5])
    x = np.array([0.3, -2.0])
    want = -np.log(0.5 * stats.t(2.0, 0, 1.5).pdf(x) + 0.5 * stats.t(5.0, 0, 1.5).pdf(x))
    np.testing.assert_allclose(mix.nll(x, 0.0), want, rtol=1e-13)


def test_per_observation_weights():
    """logits of shape (N, K): each observation has its own weights."""
    w = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    mix = llx.mixture([llx.Gaussian(1.0), llx.Laplace(1.0)], w)
    x = np.array([0.5, -1.0, 2.0])
    want = -np.log(w[:, 0] * stats.norm.pdf(x) + w[:, 1] * stats.laplace.pdf(x))
    np.testing.assert_allclose(mix.nll(x, 0.0), want, rtol=1e-13)


def test_weights_are_learnable_logits():
    mix = llx.mixture([llx.Gaussian(1.0), llx.Laplace(3.0)], [0.25, 0.75])
    np.testing.assert_allclose(jax.nn.softmax(mix.logits), [0.25, 0.75], rtol=1e-15)
    paths = mix._hyperparameter_paths()
    assert set(paths) == {"logits", "components.0.scale", "components.1.scale"}
    free = unconstrained(mix, list(paths))
    np.testing.assert_allclose(free["components.1.scale"], np.log(3.0))
    moved = constrained(mix, {"logits": jnp.asarray([1.0, 0.0]), "components.0.scale": 0.0})
    assert float(moved.components[0].scale) == 1.0
    np.testing.assert_allclose(jax.nn.softmax(moved.logits), special.softmax([1.0, 0.0]))
    # gradient wrt the logits = (prior weight - posterior responsibility)
    x = 0.4
    g = jax.grad(lambda m: m.nll(x, 0.0))(mix)
    p = np.array([0.25 * stats.norm.pdf(x), 0.75 * stats.laplace(0, 3).pdf(x)])
    np.testing.assert_allclose(g.logits, [0.25, 0.75] - p / p.sum(), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("narrow", [0, -1], ids=["first", "last"])
def test_tiny_responsibility_keeps_an_exact_gradient(k, narrow):
    """At x = 6 the narrow component's responsibility is ~1e-30: its scale's
    gradient is tiny but exact (not flushed to 0 by forming it as 1 - the others)."""
    scales = [3.0, 2.0][: k - 1]
    w = [0.5, 0.3, 0.2][:k]
    scales.insert(narrow % k, 0.5)
    mix = llx.mixture([llx.Gaussian(s) for s in scales], w)
    g = jax.grad(lambda m: m.nll(6.0, 0.0))(mix)
    mpmath.mp.dps = 50

    def nll(s_narrow):
        ss = list(scales)
        ss[narrow] = s_narrow
        return -mpmath.log(
            sum(wi * mpmath.npdf(6, 0, si) for wi, si in zip(w, ss, strict=True))
        )

    want = float(mpmath.diff(nll, 0.5))
    assert -1e-25 < want < -1e-30
    np.testing.assert_allclose(g.components[narrow].scale, want, rtol=1e-10)


def test_mixture_inside_jit_with_traced_weights():
    x = jnp.asarray([0.1, 2.0])

    @jax.jit
    def f(w):
        return llx.mixture([llx.Gaussian(1.0), llx.Gaussian(2.0)], w).nll(x, 0.0)

    want = -np.log(0.3 * stats.norm.pdf(x) + 0.7 * stats.norm(0, 2).pdf(x))
    np.testing.assert_allclose(f(jnp.asarray([0.3, 0.7])), want, rtol=1e-13)
    # (surfaces as a ValueError wrapping the callback's error under pytest's x64 setup)
    with pytest.raises((ValueError, *RUNTIME_ERRORS), match="`weights` must be"):
        jax.block_until_ready(f(jnp.asarray([-0.3, 1.3])))


def test_log_cdf_deep_in_the_tails():
    mix = llx.mixture([llx.Gaussian(1.0), llx.Laplace(0.5)], [0.5, 0.5])
    x = np.array([-40.0, 40.0])
    want_cdf = np.logaddexp(
        np.log(0.5) + stats.norm.logcdf(x), np.log(0.5) + stats.laplace(0, 0.5).logcdf(x)
    )
    want_sf = np.logaddexp(
        np.log(0.5) + stats.norm.logsf(x), np.log(0.5) + stats.laplace(0, 0.5).logsf(x)
    )
    np.testing.assert_allclose(mix.log_cdf(x, 0.0), want_cdf, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(mix.log_sf(x, 0.0), want_sf, rtol=1e-12, atol=1e-300)


# --------------------------------------------------------------- prediction


def test_predict_is_the_mixture_mean():
    mix = llx.mixture([llx.Gaussian(1.0), llx.Gamma(2.0)], [0.3, 0.7])
    xh = np.array([-0.5, 0.2, 1.0])
    np.testing.assert_allclose(mix.predict(xh), 0.3 * xh + 0.7 * np.exp(xh), rtol=1e-14)


def test_predict_is_the_centre_of_symmetric_components():
    mix = llx.mixture([llx.Cauchy(1.0), llx.StudentT(1.5)], [0.5, 0.5])
    np.testing.assert_allclose(mix.predict(np.array([0.3, -2.0])), [0.3, -2.0])


def test_predict_raises_when_no_closed_form():
    mix = llx.mixture([llx.AsymmetricLaplace(0.9, 1.0), llx.Gaussian(1.0)])
    with pytest.raises(NotImplementedError, match=r"Mixture\.predict"):
        mix.predict(0.0)


# ----------------------------------------------------------------- errors


def test_densities_and_masses_do_not_mix():
    with pytest.raises(
        TypeError, match=r"cannot mix densities .*Gaussian.* masses .*Poisson"
    ):
        llx.mixture([llx.Gaussian(), llx.Poisson()])


def test_construction_errors():
    with pytest.raises(ValueError, match="`components` is empty"):
        llx.mixture([])
    with pytest.raises(TypeError, match=r"did you mean `Gaussian\(\)`"):
        llx.mixture([llx.Gaussian])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"components\[1\]` must be a noise model"):
        llx.mixture([llx.Gaussian(), 3.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="3 weights for 2 components"):
        llx.mixture([llx.Gaussian(), llx.Laplace()], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="finite and non-negative"):
        llx.mixture([llx.Gaussian(), llx.Laplace()], [-0.2, 1.2])
    with pytest.raises(ValueError, match="sum to 0"):
        llx.mixture([llx.Gaussian(), llx.Laplace()], [0.0, 0.0])
    with pytest.raises(ValueError, match="same leading axis"):
        llx.mixture(llx.StudentT(np.ones(3), np.ones(2)))
    with pytest.raises(TypeError, match="trailing event axes"):
        llx.mixture([llx.Gaussian(), llx.heteroscedastic(llx.Gaussian())])


def test_shape_errors_name_the_component_field():
    mix = llx.mixture([llx.Gaussian(np.ones(3)), llx.Laplace()])
    with pytest.raises(ValueError, match=r"`x` \(4,\).*`Gaussian.scale` \(3,\)"):
        mix.nll(np.zeros(4), 0.0)


def test_mixture_of_heteroscedastic_models():
    """Components with a (location, raw scale) event axis: a mixture density network
    head with shared location and scale, Gaussian core and Student-t tails."""
    mix = llx.mixture(
        [llx.heteroscedastic(llx.Gaussian()), llx.heteroscedastic(llx.StudentT(3.0))],
        [0.6, 0.4],
    )
    xh = np.array([[0.3, 0.5], [1.0, -1.0], [-2.0, 3.0]])
    x = np.array([1.0, -2.0, 0.5])
    s = np.logaddexp(xh[:, 1], 0.0)
    want = -np.log(
        0.6 * stats.norm(xh[:, 0], s).pdf(x) + 0.4 * stats.t(3.0, xh[:, 0], s).pdf(x)
    )
    np.testing.assert_allclose(mix.nll(x, xh), want, rtol=1e-13)
    np.testing.assert_allclose(mix.predict(xh), xh[:, 0], rtol=1e-15)
    g = jax.grad(lambda b: mix.nll(x, b).sum())(jnp.asarray(xh))
    assert g.shape == xh.shape and _finite_tree(g)


# ------------------------------- one family linear in a shared statistic (T = r²)


def _generic_twin(noise):
    """The same law through the per-component path: a Gaussian as Student-t with
    df = inf, a Laplace as a generalized normal of power 1."""
    if isinstance(noise, llx.Gaussian):
        return llx.StudentT(jnp.inf, noise.scale)
    return llx.GeneralizedNormal(1.0, noise.scale)


@pytest.mark.parametrize("family", [llx.Gaussian, llx.Laplace])
@pytest.mark.parametrize("stacked", [False, True])
def test_shared_statistic_path_matches_scipy_and_per_component(family, stacked):
    """Components of one family share |r| or r²: the value against scipy, the value
    and every gradient against the same mixture evaluated component by component."""
    scales = np.array([1e-3, 0.7, 2.5, 1e3])
    w = np.array([0.1, 0.4, 0.3, 0.2])
    comps = [family(s) for s in scales]
    mix = llx.mixture(family(jnp.asarray(scales)) if stacked else comps, w)
    twin = llx.mixture([comps[0], _generic_twin(comps[1]), *comps[2:]], w)
    rng = np.random.default_rng(0)
    x, xh = rng.standard_cauchy(40), rng.normal(size=40)
    law = stats.norm if family is llx.Gaussian else stats.laplace
    want = -special.logsumexp(
        [np.log(wk) + law(xh, s).logpdf(x) for wk, s in zip(w, scales, strict=True)], axis=0
    )
    np.testing.assert_allclose(mix.nll(x, xh), want, rtol=1e-12)

    def total(m, b):
        return m.nll(x, b).sum()

    (v1, (gm1, gx1)) = jax.value_and_grad(total, argnums=(0, 1))(mix, xh)
    (v2, (gm2, gx2)) = jax.value_and_grad(total, argnums=(0, 1))(twin, xh)
    np.testing.assert_allclose(v1, v2, rtol=1e-13)
    np.testing.assert_allclose(gx1, gx2, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gm1.logits, gm2.logits, rtol=1e-10, atol=1e-14)
    g_scales = gm1.components.scale if stacked else [c.scale for c in gm1.components]
    np.testing.assert_allclose(
        g_scales, [c.scale for c in gm2.components], rtol=1e-10, atol=1e-14
    )


def test_shared_statistic_path_at_extreme_scales_float32():
    """Scales 1e-12 .. 1e3 and residuals 0 .. 1e25 in float32: the float64 law's
    value wherever it is finite in float32 (r² of the widest component overflows
    only where its z² does), finite gradients."""
    scales = np.array([1e-12, 1.0, 1e3], np.float32)
    w = [0.2, 0.5, 0.3]
    mix = llx.mixture(llx.Gaussian(jnp.asarray(scales)), np.array(w))
    x = np.array([0.0, 1e-11, 3.0, 1e15, 2e21, 1e25], np.float32)
    got = mix.nll(x, np.float32(0.0))
    want = -special.logsumexp(
        [
            np.log(wk) + stats.norm(0.0, float(s)).logpdf(x.astype(np.float64))
            for wk, s in zip(w, scales, strict=True)
        ],
        axis=0,
    )
    want = np.where(want < np.finfo(np.float32).max, want, np.inf)
    np.testing.assert_allclose(got, want, rtol=1e-5)  # the float32 contract
    grads = jax.grad(lambda m, b: m.nll(x[:5], b).sum(), argnums=(0, 1))(
        mix, np.float32(0.0)
    )
    assert _finite_tree(grads)


def test_shared_statistic_path_with_an_infinite_scale():
    """A component of infinite scale has density 0: the others decide."""
    mix = llx.mixture(llx.Gaussian(jnp.asarray([1.0, jnp.inf])), np.array([0.5, 0.5]))
    x = np.array([0.0, 2.0, -7.0])
    np.testing.assert_allclose(
        mix.nll(x, 0.0), -np.log(0.5) - stats.norm(0.0, 1.0).logpdf(x), rtol=1e-14
    )
