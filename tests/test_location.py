"""Real-line families beyond the generic table: the RELIABILITY edge cases (value and
gradient, float32 and float64, eager and jit), extreme points and deep tails against
an independent high-precision reference (mpmath), the exact relations between the
families (hypothesis), and `predict` as the minimiser of the expected loss.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import likelax as llx

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)
MODES = [
    pytest.param(dtype, jit, id=f"{np.dtype(dtype).name}-{'jit' if jit else 'eager'}")
    for dtype in (np.float32, np.float64)
    for jit in (False, True)
]
mp = mpmath.mp


# ------------------------------------------------------------- mpmath references


def _mpf(v):
    """An mpmath number (numpy scalars go through float, exactly)."""
    return v if isinstance(v, mpmath.mpf) else mpmath.mpf(float(v))


def _mp_nll(family: str, x, x_hat, **hp):
    """-log p(x | x_hat) written from the densities, in mpmath."""
    x, x_hat = _mpf(x), _mpf(x_hat)
    hp = {k: _mpf(v) for k, v in hp.items()}
    s = hp.get("scale", mpmath.mpf(1))
    z = (x - x_hat) / s
    log_s = mpmath.log(s)
    if family == "Gaussian":
        return z * z / 2 + log_s + mpmath.log(2 * mpmath.pi) / 2
    if family == "Laplace":
        return abs(z) + mpmath.log(2 * s)
    if family == "StudentT":
        nu = mpmath.mpf(hp["df"])
        return (
            (nu + 1) / 2 * mpmath.log1p(z * z / nu)
            + log_s
            + mpmath.log(nu * mpmath.pi) / 2
            + mpmath.loggamma(nu / 2)
            - mpmath.loggamma((nu + 1) / 2)
        )
    if family == "Cauchy":
        return mpmath.log1p(z * z) + mpmath.log(mpmath.pi * s)
    if family == "Huber":
        d = mpmath.mpf(hp["delta"])
        rho = z * z / 2 if abs(z) <= d else d * (abs(z) - d / 2)
        norm = mpmath.sqrt(2 * mpmath.pi) * mpmath.erf(
            d / mpmath.sqrt(2)
        ) + 2 / d * mpmath.exp(-d * d / 2)
        return rho + log_s + mpmath.log(norm)
    if family == "GeneralizedNormal":
        b = mpmath.mpf(hp["power"])
        return abs(z) ** b + mpmath.log(2 * s) + mpmath.loggamma(1 + 1 / b)
    if family == "AsymmetricLaplace":
        t = mpmath.mpf(hp["quantile"])
        rho = z * (t - (1 if z < 0 else 0))
        return rho + log_s - mpmath.log(t) - mpmath.log1p(-t)
    raise ValueError(family)


def _mp_grad(family, x, x_hat, hp, name):
    """d nll / d name (name is "x_hat" or a hyperparameter): a central difference at
    working precision, with a step relative to the variable's own scale."""
    eps = mpmath.mpf(10) ** (-(mp.dps // 3))
    if name == "x_hat":
        s = mpmath.mpf(float(hp.get("scale", 1.0)))
        v0 = mpmath.mpf(float(x_hat))
        z = (mpmath.mpf(float(x)) - v0) / s
        h = s * (abs(z) if z != 0 else 1) * eps

        def f(v):
            return _mp_nll(family, x, v, **hp)
    else:
        v0 = mpmath.mpf(float(hp[name]))
        h = abs(v0) * eps

        def f(v):
            return _mp_nll(family, x, x_hat, **{**hp, name: v})

    return (f(v0 + h) - f(v0 - h)) / (2 * h)


@functools.cache
def _value_and_grad_fn(family, names, method, jit):
    ctor = getattr(llx, family)

    def f(x, xh, *params):
        noise = ctor(**dict(zip(names, params, strict=True)))
        return getattr(noise, method)(x, xh)

    vg = jax.value_and_grad(f, argnums=tuple(range(1, len(names) + 2)))
    return jax.jit(vg) if jit else vg


def _value_and_grads(family, x, x_hat, hp, dtype, jit, method="nll"):
    """(value, {name: gradient}) of `method` wrt x_hat and every hyperparameter."""
    names = tuple(hp)
    vg = _value_and_grad_fn(family, names, method, jit)
    args = [jnp.asarray(v, dtype) for v in (x, x_hat, *(hp[n] for n in names))]
    value, grads = vg(*args)
    return value, dict(zip(["x_hat", *names], grads, strict=True))


_METHODS = ("nll", "loss")
_TAIL_METHODS = ("cdf", "log_cdf", "log_sf")


def _tails(noise, x, x_hat):
    return jnp.stack([getattr(noise, m)(x, x_hat) for m in _TAIL_METHODS])


_TAILS = jax.jit(_tails)
_COMPILED = {
    m: jax.jit(lambda noise, x, x_hat, m=m: getattr(noise, m)(x, x_hat)) for m in _METHODS
}


def ev(noise, x, x_hat, method):
    """`noise.<method>(x, x_hat)` as a numpy array, through one compiled program per
    family, method and shape (new hyperparameter values never retrace)."""
    x, x_hat = np.asarray(x), np.asarray(x_hat)
    x = x if x.dtype == np.float32 else x.astype(np.float64)
    x_hat = x_hat if x_hat.dtype == np.float32 else x_hat.astype(np.float64)
    if method in _TAIL_METHODS:  # one program for the three
        return np.asarray(_TAILS(noise, x, x_hat)[_TAIL_METHODS.index(method)])
    return np.asarray(_COMPILED[method](noise, x, x_hat))


def ev1(noise, x, x_hat, method):
    return float(ev(noise, x, x_hat, method))


@functools.partial(jax.jit, static_argnums=3)
def _sample(noise, key, x_hat, shape):
    return noise.sample(key, x_hat, shape)


def _all_finite(grads):
    return all(bool(jnp.isfinite(g)) for g in grads.values())


# ---------------------------------------------------- RELIABILITY.md edge cases


@pytest.mark.parametrize("dtype,jit", MODES)
def test_gaussian_tiny_scale_at_the_mean(dtype, jit):
    value, g = _value_and_grads("Gaussian", 0.25, 0.25, {"scale": 1e-30}, dtype, jit)
    assert value.dtype == dtype
    assert float(value) == pytest.approx(-68.1587, abs=1e-4)
    ref = float(_mp_nll("Gaussian", 0.25, 0.25, scale=np.asarray(1e-30, dtype)))
    assert float(value) == pytest.approx(ref, rel=1e-6 if dtype == np.float32 else 1e-14)
    assert float(g["scale"]) == pytest.approx(1e30, rel=1e-6)  # d/ds log s
    assert float(g["x_hat"]) == 0.0


@pytest.mark.parametrize("dtype,jit", MODES)
@pytest.mark.parametrize("x", [np.inf, -np.inf])
def test_gaussian_infinite_observation(dtype, jit, x):
    value, g = _value_and_grads("Gaussian", x, 0.3, {"scale": 2.0}, dtype, jit)
    assert float(value) == np.inf
    assert not any(bool(jnp.isnan(v)) for v in g.values())


@pytest.mark.parametrize("dtype,jit", MODES)
@pytest.mark.parametrize(
    "family,hp", [("Gaussian", {"scale": 1.0}), ("StudentT", {"df": 3.0})]
)
def test_nan_observation_gives_nan(family, hp, dtype, jit):
    value, _ = _value_and_grads(family, np.nan, 0.3, hp, dtype, jit)
    assert bool(jnp.isnan(value))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_gaussian_non_positive_scale(bad):
    noise = eqx.tree_at(lambda n: n.scale, llx.Gaussian(1.0), jnp.asarray(bad))
    f = jax.jit(lambda n: n.nll(jnp.asarray([0.1, 2.0]), 0.0))
    with pytest.raises(RUNTIME_ERRORS, match="`scale` must be > 0"):
        jax.block_until_ready(f(noise))
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        llx.Gaussian(bad)
    with llx.checks("off"):
        assert np.all(np.isnan(f(noise)))


@pytest.mark.parametrize("dtype,jit", MODES)
def test_laplace_tiny_scale_at_the_median(dtype, jit):
    value, g = _value_and_grads("Laplace", -1.5, -1.5, {"scale": 1e-30}, dtype, jit)
    ref = float(_mp_nll("Laplace", -1.5, -1.5, scale=np.asarray(1e-30, dtype)))
    assert float(value) == pytest.approx(ref, rel=1e-6 if dtype == np.float32 else 1e-14)
    assert _all_finite(g)
    assert float(g["scale"]) == pytest.approx(1e30, rel=1e-6)


@pytest.mark.parametrize("dtype,jit", MODES)
def test_student_t_infinite_df_is_exactly_gaussian(dtype, jit):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, 50).astype(dtype)
    x_hat = rng.normal(0, 3, 50).astype(dtype)
    s = np.asarray(0.7, dtype)

    def values(noise):
        def fn(xh, scale):
            n = noise(scale)
            return n.nll(x, xh), n.loss(x, xh)

        return (jax.jit(fn) if jit else fn)(jnp.asarray(x_hat), jnp.asarray(s))

    t_nll, t_loss = values(lambda sc: llx.StudentT(jnp.asarray(np.inf, dtype), sc))
    g_nll, g_loss = values(llx.Gaussian)
    # Eagerly the same expression, bit for bit. Compiled, XLA may contract
    # `½z·z + c` into one fma or not depending on what else the program
    # computes (even for the Gaussian alone: its nll with or without its loss
    # beside it differs by one rounding), so jitted results agree to 1 ulp.
    exact = np.testing.assert_array_equal
    ulp = functools.partial(np.testing.assert_allclose, rtol=np.finfo(dtype).eps)
    (ulp if jit else exact)(t_nll, g_nll)
    (ulp if jit else exact)(t_loss, g_loss)

    def grads(cls_args):
        def total(xh, scale):
            return getattr(llx, cls_args[0])(*cls_args[1](scale)).nll(x, xh).sum()

        vg = jax.grad(total, argnums=(0, 1))
        return (jax.jit(vg) if jit else vg)(jnp.asarray(x_hat), jnp.asarray(s))

    gt = grads(("StudentT", lambda sc: (jnp.asarray(np.inf, dtype), sc)))
    gg = grads(("Gaussian", lambda sc: (sc,)))
    np.testing.assert_array_equal(gt[0], gg[0])
    np.testing.assert_allclose(gt[1], gg[1], rtol=4 * np.finfo(dtype).eps)
    # the df gradient at df = inf is finite (the nll is flat there)
    g_df = jax.grad(lambda d: llx.StudentT(d, s).nll(x, jnp.asarray(x_hat)).sum())(
        jnp.asarray(np.inf, dtype)
    )
    assert float(g_df) == 0.0


@pytest.mark.parametrize("dtype,jit", MODES)
def test_student_t_huge_residual(dtype, jit):
    hp = {"df": 3.0, "scale": 1.0}
    value, g = _value_and_grads("StudentT", 1e20, 0.0, hp, dtype, jit)
    assert float(value) == pytest.approx(183.010, abs=5e-4)
    assert float(value) == pytest.approx(
        float(_mp_nll("StudentT", 1e20, 0.0, **hp)), rel=1e-6
    )
    assert _all_finite(g)
    for name in ("x_hat", "df", "scale"):
        ref = float(_mp_grad("StudentT", 1e20, 0.0, hp, name))
        assert float(g[name]) == pytest.approx(ref, rel=1e-5), name


@pytest.mark.parametrize("dtype,jit", MODES)
def test_cauchy_huge_residual(dtype, jit):
    value, g = _value_and_grads("Cauchy", 1e20, 0.0, {"scale": 1.0}, dtype, jit)
    assert float(value) == pytest.approx(93.2481, abs=1e-4)
    assert _all_finite(g)
    assert float(g["x_hat"]) == pytest.approx(-2e-20, rel=1e-5)
    assert float(g["scale"]) == pytest.approx(-1.0, rel=1e-5)


@pytest.mark.parametrize("dtype,jit", MODES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_huber_huge_residual_is_on_the_linear_branch(dtype, jit, sign):
    hp = {"delta": 1.5, "scale": 2.0}
    value, g = _value_and_grads("Huber", sign * 1e30, 0.0, hp, dtype, jit)
    ref = float(_mp_nll("Huber", sign * 1e30, 0.0, **hp))
    assert float(value) == pytest.approx(ref, rel=1e-6)
    assert _all_finite(g)
    assert float(g["x_hat"]) == -sign * 1.5 / 2.0  # -d/dx_hat: ±delta/scale
    assert float(g["delta"]) == pytest.approx(
        float(_mp_grad("Huber", sign * 1e30, 0.0, hp, "delta")), rel=1e-6
    )


@pytest.mark.parametrize("dtype,jit", MODES)
@pytest.mark.parametrize("x", [np.inf, -np.inf])
def test_asymmetric_laplace_infinite_observation(dtype, jit, x):
    """nll +inf on both sides (τz − min(z, 0) is ∞ − ∞ at −∞), ∂x̂ the slope
    −(τ − 1[z < 0])/s, no NaN gradient."""
    hp = {"quantile": 0.3, "scale": 2.0}
    value, g = _value_and_grads("AsymmetricLaplace", x, 0.0, hp, dtype, jit)
    assert float(value) == np.inf
    assert float(g["x_hat"]) == pytest.approx(-0.15 if x > 0 else 0.35, rel=1e-6)
    assert not np.isnan([float(v) for v in g.values()]).any()


@pytest.mark.parametrize("dtype,jit", MODES)
def test_generalized_normal_infinite_power_is_uniform(dtype, jit):
    """β = ∞ is the uniform law on [x̂ - s, x̂ + s] (|z|^β is 0 inside, ∞ outside),
    with finite gradients inside (∂x̂ = 0, ∂s = 1/s, ∂β = 0)."""
    uniform = stats.uniform(-2.0, 4.0)
    for x in (0.0, 0.6, -1.9, 2.5, -3.0):
        hp = {"power": np.inf, "scale": 2.0}
        value, g = _value_and_grads("GeneralizedNormal", x, 0.0, hp, dtype, jit)
        assert float(value) == pytest.approx(-uniform.logpdf(x), rel=1e-6)
        if abs(x) < 2:
            assert [float(g[n]) for n in ("x_hat", "scale", "power")] == [0, 0.5, 0]
        assert not np.isnan([float(v) for v in g.values()]).any()


@pytest.mark.parametrize("dtype,jit", MODES)
@pytest.mark.parametrize("delta", [1e8, 1e20])
def test_huber_huge_delta_gradients(dtype, jit, delta):
    """Inside a huge delta the Huber nll is the Gaussian one, and so are its
    derivatives: nothing may cancel delta against delta (autodiff of
    ½q² + δ(|z| − q), q = min(|z|, δ), gave ∂x̂ = 0 there)."""
    hp = {"delta": delta, "scale": 2.0}
    value, g = _value_and_grads("Huber", 3.0, 0.0, hp, dtype, jit)
    assert float(value) == pytest.approx(float(_mp_nll("Huber", 3.0, 0.0, **hp)), rel=1e-6)
    for name in ("x_hat", "scale", "delta"):
        ref = float(_mp_grad("Huber", 3.0, 0.0, hp, name))
        assert float(g[name]) == pytest.approx(ref, rel=1e-5, abs=1e-12), name


@pytest.mark.parametrize("dtype,jit", MODES)
@pytest.mark.parametrize("x", [np.inf, -np.inf])
def test_huber_infinite_observation(dtype, jit, x):
    """nll +inf with no NaN gradient; ∂x̂ is the linear branch's ∓δ/s. With
    δ = ∞ (the Gaussian) too: the value is +inf, not ∞ − ∞."""
    value, g = _value_and_grads("Huber", x, 0.0, {"delta": 1.5, "scale": 2.0}, dtype, jit)
    assert float(value) == np.inf
    assert float(g["x_hat"]) == -np.sign(x) * 0.75
    assert not np.isnan([float(v) for v in g.values()]).any()
    hp = {"delta": np.inf, "scale": 2.0}
    value, g = _value_and_grads("Huber", x, 0.0, hp, dtype, jit)
    assert float(value) == np.inf
    assert not np.isnan([float(v) for v in g.values()]).any()


@pytest.mark.parametrize("x", [np.inf, -np.inf])
def test_cauchy_infinite_observation_is_the_limit(x):
    """Cauchy needs no support mask: nll +inf, ∂x̂ = 0, and ∂s is the limit of
    -2w²/((1+w²)s) + 1/s (the log πs term) as w -> ∞: -1/s."""
    for dtype, jit in [(np.float32, True), (np.float64, False)]:
        value, g = _value_and_grads("Cauchy", x, 0.0, {"scale": 2.0}, dtype, jit)
        assert float(value) == np.inf
        assert float(g["x_hat"]) == 0.0
        assert float(g["scale"]) == -0.5


@pytest.mark.parametrize("x", [np.inf, -np.inf])
def test_student_t_infinite_observation_is_the_limit(x):
    """No support mask: nll +inf, ∂x̂ = 0, ∂s the limit -(ν+1)/s + 1/s = -ν/s,
    ∂ν = +inf (½log(1+z²/ν) grows without bound)."""
    for dtype, jit in [(np.float32, True), (np.float64, False)]:
        hp = {"df": 3.0, "scale": 2.0}
        value, g = _value_and_grads("StudentT", x, 0.0, hp, dtype, jit)
        assert float(value) == np.inf
        assert float(g["x_hat"]) == 0.0
        assert float(g["scale"]) == pytest.approx(-1.5, rel=1e-6)
        assert float(g["df"]) == np.inf


@pytest.mark.parametrize("power", [0.5, 1.0, 3.0, np.inf])
@pytest.mark.parametrize("x", [np.inf, -np.inf])
def test_generalized_normal_infinite_observation_is_the_limit(power, x):
    """No support mask: nll +inf, ∂x̂ = 0, and ∂s, ∂β the limits of
    -β|z|^β/s + 1/s and |z|^β log|z| + d/dβ log Γ(1 + 1/β): -inf and +inf."""
    for dtype, jit in [(np.float32, True), (np.float64, False)]:
        hp = {"power": power, "scale": 2.0}
        value, g = _value_and_grads("GeneralizedNormal", x, 0.0, hp, dtype, jit)
        assert float(value) == np.inf
        assert float(g["x_hat"]) == 0.0
        assert float(g["scale"]) == -np.inf
        assert float(g["power"]) == np.inf


# ------------------------------------------- extreme points vs mpmath (f64, f32)

EXTREME = [
    ("Laplace", 1e300, -1e300, {"scale": 1e5}),
    ("Laplace", 1e-301, 0.0, {"scale": 1e-300}),
    ("Laplace", 0.5, 0.0, {"scale": 1e300}),
    ("StudentT", 2.0, 0.5, {"df": 1e-3, "scale": 1.0}),
    ("StudentT", 2.0, 0.5, {"df": 1e10, "scale": 0.3}),
    ("StudentT", 2.0, 0.5, {"df": 1e300, "scale": 0.3}),
    ("StudentT", 1e300, 0.0, {"df": 0.5, "scale": 1.0}),
    ("StudentT", 1e-200, 0.0, {"df": 7.0, "scale": 1e-300}),
    ("StudentT", 19.0, 2.0, {"df": 19.999, "scale": 1.0}),
    ("StudentT", 19.0, 2.0, {"df": 20.001, "scale": 1.0}),
    ("Cauchy", 1e300, 0.0, {"scale": 1.0}),
    ("Cauchy", 2e-300, 0.0, {"scale": 1e-300}),
    ("Huber", 1.0, 0.0, {"delta": 1e-8, "scale": 1.0}),
    ("Huber", 4.0, 0.0, {"delta": 40.0, "scale": 1.0}),
    ("Huber", 0.3, 0.0, {"delta": 0.999999, "scale": 1.0}),
    ("Huber", 0.3, 0.0, {"delta": 1.000001, "scale": 1.0}),
    ("Huber", 1e300, 0.0, {"delta": 0.5, "scale": 1.0}),
    ("GeneralizedNormal", 0.5, 0.0, {"power": 50.0, "scale": 1.0}),
    ("GeneralizedNormal", 1e5, 0.0, {"power": 0.05, "scale": 1.0}),
    ("GeneralizedNormal", 1e-100, 0.0, {"power": 3.0, "scale": 1.0}),
    ("AsymmetricLaplace", 3.0, 2.0, {"quantile": 1e-12, "scale": 1.0}),
    ("AsymmetricLaplace", 3.0, 2.0, {"quantile": 1 - 1e-12, "scale": 1.0}),
    ("AsymmetricLaplace", -1e300, 2.0, {"quantile": 0.3, "scale": 1e5}),
]


@pytest.mark.parametrize("family,x,x_hat,hp", EXTREME)
def test_extreme_points_float64(family, x, x_hat, hp):
    with mpmath.workdps(800):  # tiny terms next to O(1) ones, lgamma(1e300)
        ref = float(_mp_nll(family, x, x_hat, **hp))
        ref_g = {n: float(_mp_grad(family, x, x_hat, hp, n)) for n in ["x_hat", *hp]}
    value, g = _value_and_grads(family, x, x_hat, hp, np.float64, jit=True)
    assert float(value) == pytest.approx(ref, rel=1e-12, abs=1e-300)
    for n, want in ref_g.items():
        assert float(g[n]) == pytest.approx(want, rel=1e-9, abs=1e-290), n


EXTREME_F32 = [
    ("StudentT", 3e30, -3e30, {"df": 2.0, "scale": 1e-3}),
    ("StudentT", 2.0, 0.5, {"df": 1e30, "scale": 0.3}),
    # (beyond |z| ~ 1/tiny = 8.5e37 the derivative of log(1 + z^2) is subnormal and
    # flushed to zero on CPU, which loses the loss' share of the scale gradient)
    ("Cauchy", 1e37, -1e37, {"scale": 1.0}),
    ("Huber", 1.0, 0.0, {"delta": 1e-30, "scale": 1.0}),
    ("Laplace", 1e-20, 0.0, {"scale": 1e-25}),
    ("GeneralizedNormal", 1e-7, 0.0, {"power": 60.0, "scale": 1.0}),
    # |z|^β = 4.2e28 by exp(β log|z|): |log y| = 66 ulps of relative error at most
    ("GeneralizedNormal", 3.0, 0.0, {"power": 60.0, "scale": 1.0}),
    ("AsymmetricLaplace", 3.0, 2.0, {"quantile": 1e-7, "scale": 1.0}),
]


@pytest.mark.parametrize("family,x,x_hat,hp", EXTREME_F32)
def test_extreme_points_float32(family, x, x_hat, hp):
    f32 = np.float32
    x, x_hat = f32(x), f32(x_hat)
    hp32 = {k: f32(v) for k, v in hp.items()}
    with mpmath.workdps(400):
        ref = float(_mp_nll(family, x, x_hat, **hp32))
        ref_g = {n: float(_mp_grad(family, x, x_hat, hp32, n)) for n in ["x_hat", *hp32]}
    value, g = _value_and_grads(family, x, x_hat, hp32, f32, jit=True)
    assert float(value) == pytest.approx(ref, rel=1e-5 * max(1.0, 1 / max(abs(ref), 1e-30)))
    for n, want in ref_g.items():
        assert float(g[n]) == pytest.approx(want, rel=1e-4, abs=1e-37), n


# ------------------------------------------------------------------ deep tails


def _mp_t_log_sf(z, nu):
    z, nu = mpmath.mpf(z), mpmath.mpf(nu)
    x = nu / (nu + z * z)
    return mpmath.log(mpmath.betainc(nu / 2, mpmath.mpf(1) / 2, 0, x, regularized=True) / 2)


def _mp_gn_log_sf(z, b):
    z, b = mpmath.mpf(z), mpmath.mpf(b)
    return mpmath.log(mpmath.gammainc(1 / b, z**b, mpmath.inf, regularized=True) / 2)


def _mp_huber_log_cdf(z, d):
    z, d = mpmath.mpf(z), mpmath.mpf(d)
    norm = mpmath.sqrt(2 * mpmath.pi) * mpmath.erf(d / mpmath.sqrt(2))
    norm += 2 / d * mpmath.exp(-d * d / 2)

    def left(u):  # F(u), u <= 0
        if u < -d:
            return mpmath.exp(d * d / 2 + d * u) / (d * norm)
        central = mpmath.sqrt(2 * mpmath.pi) * (mpmath.ncdf(u) - mpmath.ncdf(-d))
        return (mpmath.exp(-d * d / 2) / d + central) / norm

    return mpmath.log(left(z)) if z <= 0 else mpmath.log1p(-left(-z))


def _check_tails(noise, zs, ref_log_sf, rtol):
    """log_sf(z) against the reference, and log_cdf(-z) equal to it (symmetry)."""
    zs = np.asarray(zs, np.float64)
    got = ev(noise, zs, 0.0, "log_sf")
    want = np.array([float(ref_log_sf(z)) for z in zs])
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    np.testing.assert_allclose(ev(noise, -zs, 0.0, "log_cdf"), got, rtol=1e-15, atol=0)


@pytest.mark.parametrize("nu", [0.3, 3.0, 29.5, 45.0, 1000.0])
def test_student_t_tails_vs_mpmath(nu):
    """Both sides of x = 1/2 in I_x(nu/2, 1/2) (power series / shifted BGRAT), tiny
    and astronomically large z."""
    zs = np.sqrt(nu) * np.array([1e-9, 0.05, 0.5, 0.9, 0.99, 1.01, 3.0, 1e4, 1e150])
    with mpmath.workdps(30):
        _check_tails(llx.StudentT(nu), zs, lambda z: _mp_t_log_sf(z, nu), 1e-13)


def test_student_t_tails_match_scipy_and_gaussian_limit():
    zs = np.array([-40.0, -7.0, -1.0, 0.0, 0.3, 5.0, 30.0, 1e3])
    for nu in (1.0, 2.5, 60.0, 1e6):
        noise = llx.StudentT(nu, 2.0)
        ref = stats.t(nu, loc=1.0, scale=2.0)
        # (scipy's logsf is log(sf): -inf once sf underflows, where ours is finite)
        ok = np.isfinite(ref.logsf(zs))
        log_sf = ev(noise, zs, 1.0, "log_sf")
        np.testing.assert_allclose(log_sf[ok], ref.logsf(zs)[ok], rtol=1e-12)
        assert np.all(np.isfinite(log_sf))
        np.testing.assert_allclose(
            ev(noise, zs, 1.0, "log_cdf"), ref.logcdf(zs), rtol=1e-12
        )
        np.testing.assert_allclose(ev(noise, zs, 1.0, "cdf"), ref.cdf(zs), rtol=1e-12)
    inf, gauss = llx.StudentT(np.inf, 2.0), llx.Gaussian(2.0)
    for method in ("log_sf", "log_cdf"):
        np.testing.assert_allclose(
            ev(inf, zs, 1.0, method), ev(gauss, zs, 1.0, method), rtol=1e-15
        )
    # (exp of the log tail: relative error eps * |log cdf| far out)
    np.testing.assert_allclose(
        ev(inf, zs, 1.0, "cdf"), ev(gauss, zs, 1.0, "cdf"), rtol=1e-13
    )


def test_gaussian_tails_vs_mpmath():
    """jax's log_ndtr is off by 2e-11 just below -20 and by 4% at +7.9; ours is not."""
    zs = np.array([0.5, 5.0, 7.9, 19.9, 20.1, 21.0, 25.0, 38.0, 1e3, 1e100])
    with mpmath.workdps(40):
        _check_tails(llx.Gaussian(), zs, lambda z: mpmath.log(mpmath.ncdf(-z)), 1e-14)
    x = np.array([3.0, 5.0, 7.9])
    with mpmath.workdps(60):
        want = [float(mpmath.log(mpmath.ncdf(v))) for v in x]
    np.testing.assert_allclose(ev(llx.Gaussian(), x, 0.0, "log_cdf"), want, rtol=1e-14)


def test_cauchy_tails_vs_mpmath():
    zs = np.array([1e-300, 1e-5, 0.7, 10.0, 1e8, 1e300])
    _check_tails(
        llx.Cauchy(),
        zs,
        lambda z: mpmath.log(mpmath.atan(1 / mpmath.mpf(z)) / mpmath.pi),
        1e-14,
    )


def test_laplace_tails_are_exact():
    zs = np.array([0.0, 1e-12, 0.4, 30.0, 800.0, 1e300])
    _check_tails(
        llx.Laplace(), zs, lambda z: mpmath.log(mpmath.exp(-mpmath.mpf(z)) / 2), 1e-15
    )
    # the far right tail is exactly -z - log 2 (cdf would round to 1)
    assert ev1(llx.Laplace(2.0), 2e3, 0.0, "log_sf") == -1e3 - math.log(2)


@pytest.mark.parametrize("delta", [1e-6, 0.05, 1.0, 1.345, 10.0, 35.0])
def test_huber_tails_vs_mpmath(delta):
    zs = np.array(
        [-1e3, -40.0, -1.01 * delta, -0.99 * delta, -0.3, 0.0, 1e-9, 0.3, 20.0, 1e4]
    )
    with mpmath.workdps(40):
        _check_tails(llx.Huber(delta), zs, lambda z: _mp_huber_log_cdf(-z, delta), 1e-12)


@pytest.mark.parametrize("power", [0.1, 0.6, 1.5, 4.0, 50.0])
def test_generalized_normal_tails_vs_mpmath(power):
    zs = np.array([1e-300, 1e-7, 0.01, 0.9, 1.1, 5.0, 30.0, 1e3, 1e30])
    zs = np.where(np.log10(zs) * power < 300, zs, 2.0)
    with mpmath.workdps(30):
        _check_tails(
            llx.GeneralizedNormal(power), zs, lambda z: _mp_gn_log_sf(z, power), 1e-13
        )


def test_asymmetric_laplace_tails_are_exact():
    tau = 0.2
    noise = llx.AsymmetricLaplace(tau, 1.5)
    x = 1.5 * np.array([-300.0, -30.0, -0.1, 0.0, 0.1, 30.0, 300.0])
    ref = stats.laplace_asymmetric(
        np.sqrt(tau / (1 - tau)), scale=1.5 / np.sqrt(tau * (1 - tau))
    )
    np.testing.assert_allclose(ev(noise, x, 0.0, "log_sf"), ref.logsf(x), rtol=1e-13)
    np.testing.assert_allclose(ev(noise, x, 0.0, "log_cdf"), ref.logcdf(x), rtol=1e-13)
    # far tails in closed form
    far = np.array([1.5e4, -1.5e4])
    assert ev(noise, far, 0.0, "log_sf")[0] == pytest.approx(
        math.log(0.8) - 0.2e4, rel=1e-15
    )
    assert ev(noise, far, 0.0, "log_cdf")[1] == pytest.approx(
        math.log(0.2) - 0.8e4, rel=1e-15
    )


TAIL_NOISES = [
    llx.Gaussian(1.3),
    llx.Laplace(0.7),
    llx.StudentT(2.5, 0.8),
    llx.StudentT(45.0, 0.8),
    llx.Cauchy(1.1),
    llx.Huber(0.8, 1.2),
    llx.GeneralizedNormal(0.6, 1.0),
    llx.GeneralizedNormal(3.0, 1.0),
    llx.AsymmetricLaplace(0.3, 0.9),
]


@jax.jit
def _tail_derivatives(noise, x, x_hat, far):
    """d/dx of (cdf, log_cdf, log_sf) at each x (forward mode); the gradient of their
    sum at `far` wrt the model and x_hat."""
    d = jax.vmap(jax.jacfwd(lambda t: _tails(noise, t, x_hat)))(x)
    g = jax.grad(lambda n, xh: _tails(n, far, xh).sum(), argnums=(0, 1))(noise, x_hat)
    return dict(zip(_TAIL_METHODS, d.T, strict=True)), g


@pytest.mark.parametrize("noise", TAIL_NOISES, ids=lambda n: type(n).__name__)
def test_tail_derivatives_are_the_density(noise):
    """d/dx cdf = pdf, d/dx log_sf = -pdf/sf, d/dx log_cdf = pdf/cdf, also at
    x = x_hat (one-sided there) and far in the tails; gradients wrt x_hat and the
    hyperparameters are finite everywhere, deep tails included."""
    x = np.array([-30.0, -2.0, -0.1, 0.0, 1e-14, 1.1, 5.6, 39.6])
    far = jnp.asarray([-1e6, -50.0, 0.0, 50.0, 1e6])
    d, g = _tail_derivatives(noise, x, 0.0, far)
    nll = ev(noise, x, 0.0, "nll")
    np.testing.assert_allclose(d["cdf"], np.exp(-nll), rtol=1e-10, atol=1e-300)
    lsf, lcdf = ev(noise, x, 0.0, "log_sf"), ev(noise, x, 0.0, "log_cdf")
    np.testing.assert_allclose(d["log_sf"], -np.exp(-nll - lsf), rtol=1e-9)
    np.testing.assert_allclose(d["log_cdf"], np.exp(-nll - lcdf), rtol=1e-9)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))


@jax.jit
def _tails_f32(noise, x, x_hat):
    return _tails(noise, x.astype(jnp.float32), x_hat.astype(jnp.float32))


@pytest.mark.parametrize("noise", TAIL_NOISES, ids=lambda n: type(n).__name__)
def test_tails_float32(noise):
    x = np.array([-25.0, -3.0, -0.2, 0.0, 0.2, 3.0, 25.0])
    got = _tails_f32(noise, x, np.asarray(0.1))
    assert got.dtype == np.float32
    want = np.stack([ev(noise, x, 0.1, m) for m in _TAIL_METHODS])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


# --------------------------------------------------------------- Huber specifics


@pytest.mark.parametrize("delta", [1e-3, 0.2, 1.0, 1.345, 4.0, 30.0, np.inf])
def test_huber_normaliser_by_quadrature(delta):
    """Z = sqrt(2 pi)(2 Phi(delta) - 1) + (2/delta) exp(-delta^2/2) integrates to 1."""
    noise = llx.Huber(delta, 0.7)
    density = jax.jit(lambda n, t: jnp.exp(-n.nll(t, 0.0)))
    lim = 0.7 * min(delta, 50.0)
    pieces = [(-np.inf, -lim), (-lim, 0.0), (0.0, lim), (lim, np.inf)]
    total = sum(
        integrate.quad(
            lambda t: float(density(noise, t)), a, b, epsabs=1e-14, epsrel=1e-12, limit=500
        )[0]
        for a, b in pieces
    )
    assert total == pytest.approx(1.0, abs=1e-9)


def test_huber_loss_is_optax_huber_loss_exactly():
    rng = np.random.default_rng(1)
    x, x_hat = rng.normal(0, 3, 200), rng.normal(0, 3, 200)
    for delta in (0.1, 1.0, 2.7):
        # bit for bit in eager mode; compiled, XLA may contract a*b + c into an fma
        # differently in the two programs (one rounding: <= 1 ulp)
        eager = llx.Huber(delta, 1.0).loss(x, x_hat)
        want = optax.huber_loss(x_hat, x, delta=delta)
        np.testing.assert_array_equal(eager, want)
        got = ev(llx.Huber(delta, 1.0), x, x_hat, "loss")
        np.testing.assert_allclose(got, want, rtol=2.3e-16, atol=0)


def test_huber_infinite_delta_is_gaussian():
    rng = np.random.default_rng(2)
    x, x_hat = rng.normal(0, 3, 50), rng.normal(0, 3, 50)
    huber, gauss = llx.Huber(np.inf, 0.6), llx.Gaussian(0.6)
    np.testing.assert_allclose(
        ev(huber, x, x_hat, "nll"), ev(gauss, x, x_hat, "nll"), rtol=4.5e-16, atol=0
    )
    for m in _TAIL_METHODS:
        np.testing.assert_allclose(
            ev(huber, x, x_hat, m), ev(gauss, x, x_hat, m), rtol=1e-13
        )


def test_pinball_loss():
    rng = np.random.default_rng(3)
    x, x_hat = rng.normal(0, 3, 200), rng.normal(0, 3, 200)
    for tau in (0.05, 0.5, 0.9):
        r = x - x_hat
        want = np.maximum(tau * r, (tau - 1) * r)
        got = ev(llx.AsymmetricLaplace(tau, 1.0), x, x_hat, "loss")
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


# ------------------------------------------------------- sampling, special cases


@pytest.mark.parametrize(
    "noise,ref",
    [
        (llx.StudentT(np.inf, 2.0), stats.norm(scale=2.0)),
        (llx.StudentT(0.3, 1.0), stats.t(0.3)),
        (llx.GeneralizedNormal(0.2, 1.0), stats.gennorm(0.2)),
        (llx.GeneralizedNormal(12.0, 1.0), stats.gennorm(12.0)),
    ],
    ids=["t-inf", "t-0.3", "gn-0.2", "gn-12"],
)
def test_sampling_special_hyperparameters(noise, ref):
    draws = np.asarray(_sample(noise, jax.random.key(5), 0.0, (4000,)))
    assert np.all(np.isfinite(draws))
    assert stats.kstest(draws, ref.cdf).pvalue > 1e-3


@pytest.mark.parametrize("delta", [0.02, 5.0, np.inf])
def test_huber_sampling_extreme_delta(delta):
    """KS against the reference Huber cdf (the table's oracle)."""
    from rows_location import _HUBER

    noise = llx.Huber(delta, 1.0)
    draws = np.asarray(_sample(noise, jax.random.key(6), 0.0, (4000,)))
    if np.isinf(delta):
        assert stats.kstest(draws, stats.norm.cdf).pvalue > 1e-3
    else:
        assert stats.kstest(draws, _HUBER(delta).cdf).pvalue > 1e-3


# ----------------------------------------------------- identities (hypothesis)

FAMILIES = {
    "Gaussian": lambda s, h: llx.Gaussian(s),
    "Laplace": lambda s, h: llx.Laplace(s),
    "StudentT": lambda s, h: llx.StudentT(0.2 + 60 * h, s),
    "Cauchy": lambda s, h: llx.Cauchy(s),
    "Huber": lambda s, h: llx.Huber(0.05 + 5 * h, s),
    "GeneralizedNormal": lambda s, h: llx.GeneralizedNormal(0.3 + 6 * h, s),
    "AsymmetricLaplace": lambda s, h: llx.AsymmetricLaplace(0.01 + 0.98 * h, s),
}
reals = st.floats(-1e3, 1e3)
scales = st.floats(-6, 6).map(lambda e: 10.0**e)
unit = st.floats(0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(family=st.sampled_from(sorted(FAMILIES)), x=reals, x_hat=reals, s=scales, h=unit)
def test_location_scale(family, x, x_hat, s, h):
    """nll(x, x_hat; s) = nll((x - x_hat)/s, 0; 1) + log s, and the tails are
    invariant."""
    make = FAMILIES[family]
    z = (x - x_hat) / s
    got = ev1(make(s, h), x, x_hat, "nll")
    want = ev1(make(1.0, h), z, 0.0, "nll") + math.log(s)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10 * max(1.0, abs(math.log(s))))
    if abs(z) < 1e3:
        got_c = ev1(make(s, h), x, x_hat, "log_sf")
        assert got_c == pytest.approx(
            ev1(make(1.0, h), z, 0.0, "log_sf"), rel=1e-8, abs=1e-12
        )


@settings(max_examples=30, deadline=None)
@given(x=reals, x_hat=reals, s=scales)
def test_cauchy_is_student_t_one(x, x_hat, s):
    a, b = llx.Cauchy(s), llx.StudentT(1.0, s)
    assert ev1(a, x, x_hat, "nll") == pytest.approx(
        ev1(b, x, x_hat, "nll"), rel=1e-14, abs=1e-14
    )
    assert ev1(a, x, x_hat, "loss") == ev1(b, x, x_hat, "loss")
    assert ev1(a, x, x_hat, "log_sf") == pytest.approx(
        ev1(b, x, x_hat, "log_sf"), rel=1e-13
    )


@settings(max_examples=30, deadline=None)
@given(x=reals, x_hat=reals, s=scales)
def test_student_t_infinite_df_is_gaussian(x, x_hat, s):
    # `ev1` is jitted: XLA may contract ½z·z + c into an fma in one program and
    # not in the other (see test_student_t_infinite_df_is_exactly_gaussian)
    np.testing.assert_array_max_ulp(
        ev1(llx.StudentT(np.inf, s), x, x_hat, "nll"),
        ev1(llx.Gaussian(s), x, x_hat, "nll"),
        maxulp=1,
    )


@settings(max_examples=30, deadline=None)
@given(z=st.floats(-8, 8), log_nu=st.floats(2, 12))
def test_student_t_large_df_tends_to_gaussian(z, log_nu):
    """nll_t - nll_gauss = (1/4 + z^2/2 - z^4/4)/nu + O(nu^-2)."""
    nu = 10.0**log_nu
    diff = ev1(llx.StudentT(nu), z, 0.0, "nll") - ev1(llx.Gaussian(), z, 0.0, "nll")
    lead = (0.25 + z * z / 2 - z**4 / 4) / nu
    assert abs(diff - lead) <= 2 * (1 + z**6) / nu**2 + 1e-14 * (1 + z * z)


@settings(max_examples=30, deadline=None)
@given(x=reals, x_hat=reals, s=scales)
def test_special_cases_of_generalized_normal_and_asymmetric_laplace(x, x_hat, s):
    def close(a, b):
        assert ev1(a, x, x_hat, "nll") == pytest.approx(
            ev1(b, x, x_hat, "nll"), rel=1e-13, abs=1e-13
        )
        assert ev1(a, x, x_hat, "log_sf") == pytest.approx(
            ev1(b, x, x_hat, "log_sf"), rel=1e-11, abs=1e-14
        )

    close(llx.GeneralizedNormal(2.0, s * math.sqrt(2)), llx.Gaussian(s))
    close(llx.GeneralizedNormal(1.0, s), llx.Laplace(s))
    close(llx.AsymmetricLaplace(0.5, s), llx.Laplace(2 * s))


@settings(max_examples=30, deadline=None)
@given(z=st.floats(-1, 1), delta=st.floats(0.01, 10), s=scales)
def test_huber_is_gaussian_inside_delta(z, delta, s):
    """On |z| <= delta the Huber nll is the Gaussian nll plus log(Z_delta / sqrt(2 pi))."""
    x = z * delta * s
    diff = ev1(llx.Huber(delta, s), x, 0.0, "nll") - ev1(llx.Gaussian(s), x, 0.0, "nll")
    with mpmath.workdps(30):
        d = mpmath.mpf(delta)
        norm = mpmath.sqrt(2 * mpmath.pi) * mpmath.erf(d / mpmath.sqrt(2))
        norm += 2 / d * mpmath.exp(-d * d / 2)
        want = float(mpmath.log(norm / mpmath.sqrt(2 * mpmath.pi)))
    assert diff == pytest.approx(want, rel=1e-12, abs=1e-12 * max(1.0, abs(math.log(s))))


@settings(max_examples=30, deadline=None)
@given(
    family=st.sampled_from(sorted(set(FAMILIES) - {"AsymmetricLaplace"})), z=reals, h=unit
)
def test_symmetric_tails(family, z, h):
    noise = FAMILIES[family](1.5, h)
    x = np.array([z, 0.6 - z])
    log_cdf, log_sf, cdf = (ev(noise, x, 0.3, m) for m in ("log_cdf", "log_sf", "cdf"))
    assert log_cdf[0] == pytest.approx(log_sf[1], rel=1e-12, abs=1e-300)
    assert cdf[0] + cdf[1] == pytest.approx(1.0, abs=1e-14)


# --------------------------------------------- predict minimises expected loss

PREDICT_NOISES = [
    llx.Gaussian(0.8),
    llx.Laplace(0.8),
    llx.StudentT(2.0, 0.8),
    llx.Cauchy(0.8),
    llx.Huber(1.0, 0.8),
    llx.GeneralizedNormal(0.7, 0.8),
    llx.AsymmetricLaplace(0.2, 0.8),
    llx.AsymmetricLaplace(0.9, 0.8),
]


@jax.jit
def _empirical_risk(noise, draws, grid):
    return jax.vmap(lambda c: noise.loss(draws, c).mean())(grid)


@pytest.mark.parametrize("noise", PREDICT_NOISES, ids=lambda n: type(n).__name__)
def test_predict_minimises_expected_loss(noise):
    """The mean loss over many draws at x_hat is smallest (on a grid) at
    predict(x_hat): the mean, the median, the location, the tau-quantile."""
    x_hat = 0.7
    draws = _sample(noise, jax.random.key(11), x_hat, (40000,))
    grid = jnp.linspace(x_hat - 0.5, x_hat + 0.5, 101)
    risk = _empirical_risk(noise, draws, grid)
    best = float(grid[jnp.argmin(risk)])
    assert float(noise.predict(x_hat)) == x_hat
    assert abs(best - x_hat) <= 0.05
    # and the risk really rises away from it (the test can fail)
    assert float(risk[0]) > float(risk.min()) and float(risk[-1]) > float(risk.min())
