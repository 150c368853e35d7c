"""Gamma, Beta and VonMises beyond the generic table: extreme points against mpmath
(value and gradient, float32 and float64, eager and jit), impossible observations,
deep tails of the distribution functions, the sampler at extreme concentrations, and
property tests of known identities."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy import stats

import likelax as llx

mp.mp.dps = 60

# ------------------------------------------------------------------ mpmath oracles


def _mp_gamma(x, eta, k):
    return (
        k * x * mp.exp(-eta)
        + k * eta
        - (k - 1) * mp.log(x)
        - k * mp.log(k)
        + mp.loggamma(k)
    )


def _mp_beta(x, logit, phi):
    mu = 1 / (1 + mp.exp(-logit))
    one_m_mu = 1 / (1 + mp.exp(logit))
    a, b = phi * mu, phi * one_m_mu
    return (
        -(a - 1) * mp.log(x)
        - (b - 1) * mp.log1p(-x)
        + mp.loggamma(a)
        + mp.loggamma(b)
        - mp.loggamma(phi)
    )


def _mp_vonmises(x, x_hat, kappa):
    return -kappa * mp.cos(x - x_hat) + mp.log(2 * mp.pi) + mp.log(mp.besseli(0, kappa))


_MP = {"Gamma": _mp_gamma, "Beta": _mp_beta, "VonMises": _mp_vonmises}
_CLS = {"Gamma": llx.Gamma, "Beta": llx.Beta, "VonMises": llx.VonMises}


def _mp_value_and_grads(name, x, x_hat, conc):
    """nll and its derivatives in x_hat and the concentration (central differences
    at 150 digits, steps 1e-50 relative), at the float inputs given."""
    f = _MP[name]
    with mp.workdps(150):
        x, x_hat, conc = mp.mpf(x), mp.mpf(x_hat), mp.mpf(conc)
        h1 = mp.mpf(10) ** -50 * max(1, abs(x_hat))
        h2 = mp.mpf(10) ** -50 * conc
        value = f(x, x_hat, conc)
        g1 = (f(x, x_hat + h1, conc) - f(x, x_hat - h1, conc)) / (2 * h1)
        g2 = (f(x, x_hat, conc + h2) - f(x, x_hat, conc - h2)) / (2 * h2)
        return float(value), float(g1), float(g2)


# ------------------------------------------------------------------ extreme points

F64_ONLY = (np.float64,)
BOTH = (np.float32, np.float64)

# (family, x, x_hat, concentration, dtypes, scale): `scale` is the size of the
# terms that cancel in the concentration derivative (its absolute error is a few
# ulps of that), None when nothing cancels.
EXTREMES = [
    # Gamma: log-mean far out, huge / tiny x, huge / tiny shape
    ("Gamma", 1.0, 700.0, 2.0, F64_ONLY, None),
    ("Gamma", 1.0, -700.0, 2.0, F64_ONLY, None),
    ("Gamma", 1e300, 690.0, 1.5, F64_ONLY, 700.0),  # d = log x - x_hat carries eps*690
    ("Gamma", 1e-300, 0.0, 3.0, F64_ONLY, None),
    ("Gamma", 1.0, 80.0, 2.0, BOTH, None),
    ("Gamma", 1.0, -80.0, 2.0, BOTH, None),
    ("Gamma", 1e30, 70.0, 1.5, BOTH, None),
    ("Gamma", 1e-30, 0.0, 3.0, BOTH, None),
    ("Gamma", 1.001, 0.0, 1e10, BOTH, 1e-6),
    ("Gamma", 1.001, 0.0, 1e6, BOTH, 1e-6),
    ("Gamma", 2.0, 0.5, 1e-8, BOTH, None),
    ("Gamma", 5e-5, 0.0, 0.5, BOTH, None),
    ("Gamma", 3.0, 1.0, 1e300, F64_ONLY, 1e-3),
    ("Gamma", 0.5, 0.3, 1.0842e-19, BOTH, None),  # a learned shape held at its edge
    # Beta: logits far out (a or b underflows), huge / tiny precision, x at the ends
    ("Beta", 0.3, 1e4, 2.0, BOTH, None),
    ("Beta", 0.3, -1e4, 2.0, BOTH, None),
    ("Beta", 0.99, 800.0, 3.0, F64_ONLY, None),
    ("Beta", 0.5, 0.0, 1e10, BOTH, 1e-10),
    ("Beta", 0.50001, 0.0, 1e10, BOTH, 1e-10),
    ("Beta", 0.7, 1.0, 1e6, BOTH, None),
    ("Beta", 0.2, 0.3, 1e-6, BOTH, None),
    ("Beta", 1e-300, -2.0, 2.0, F64_ONLY, None),
    ("Beta", 1.0 - 2.0**-53, 3.0, 2.0, F64_ONLY, None),
    ("Beta", 1e-30, -2.0, 2.0, BOTH, None),
    ("Beta", 0.3, 0.5, 1.0842e-19, BOTH, None),  # a learned precision held at its edge
    # VonMises: huge / tiny concentration, far angles, wrap-around
    ("VonMises", 0.0, 0.0, 1e30, BOTH, 1e-30),
    ("VonMises", 1e-15, 0.0, 1e30, BOTH, 1e-30),
    ("VonMises", 1.0, 0.0, 1e-30, BOTH, None),
    ("VonMises", 0.1, 0.0, 1e8, BOTH, None),
    ("VonMises", 0.001, 0.0, 1e6, BOTH, 1e-6),
    ("VonMises", 3.0, -3.0, 50.0, BOTH, None),
    ("VonMises", 1e6 + 0.25, 0.25, 2.0, F64_ONLY, None),  # x - x_hat exact: 1e6
    ("VonMises", 1e6, 1e6 - 0.3, 2.0, F64_ONLY, None),
]


def _cases():
    for name, x, xh, c, dtypes, scale in EXTREMES:
        for dt in dtypes:
            yield pytest.param(
                name, x, xh, c, dt, scale, id=f"{name}-{x:g}-{xh:g}-{c:g}-{dt.__name__}"
            )


def _value_and_grad(name):
    """(nll, (d/d x_hat, d/d concentration)) as a function of (x_hat, conc, x)."""
    return jax.value_and_grad(lambda xh, c, x: _CLS[name](c).nll(x, xh), argnums=(0, 1))


# one compiled program per family and dtype, shared by all the points
_VALUE_AND_GRAD = {name: _value_and_grad(name) for name in _CLS}
_VALUE_AND_GRAD_JIT = {name: jax.jit(_value_and_grad(name)) for name in _CLS}


@pytest.mark.parametrize("name,x,x_hat,conc,dtype,scale", list(_cases()))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_extreme_points_match_mpmath(name, x, x_hat, conc, dtype, scale, jit):
    x_, xh_, c_ = dtype(x), dtype(x_hat), dtype(conc)
    ref_v, ref_g1, ref_g2 = _mp_value_and_grads(name, float(x_), float(xh_), float(c_))

    vg = _VALUE_AND_GRAD_JIT[name] if jit else _VALUE_AND_GRAD[name]
    value, (g1, g2) = vg(xh_, c_, x_)
    assert value.dtype == dtype and g1.dtype == dtype and g2.dtype == dtype
    eps = float(np.finfo(dtype).eps)
    rtol = 20 * eps if dtype == np.float64 else 1e-5
    value, g1, g2 = float(value), float(g1), float(g2)
    assert abs(value - ref_v) <= rtol * max(1.0, abs(ref_v)), (value, ref_v)
    assert abs(g1 - ref_g1) <= 1e3 * eps * abs(ref_g1) + 1e-300, (g1, ref_g1)
    atol = 0.0 if scale is None else 16 * eps * scale
    assert abs(g2 - ref_g2) <= 1e3 * eps * abs(ref_g2) + atol, (g2, ref_g2)


@pytest.mark.parametrize("name,x,x_hat,conc,dtype,scale", list(_cases()))
def test_extreme_points_loss(name, x, x_hat, conc, dtype, scale):
    """The loss is finite where the nll is, with the same x_hat-gradient."""
    x_, xh_, c_ = dtype(x), dtype(x_hat), dtype(conc)
    noise = _CLS[name](c_)
    loss, g_loss = jax.value_and_grad(lambda xh: noise.loss(x_, xh))(xh_)
    g_nll = jax.grad(lambda xh: noise.nll(x_, xh))(xh_)
    assert np.isfinite(loss) or not np.isfinite(noise.nll(x_, xh_))
    eps = float(np.finfo(dtype).eps)
    assert abs(float(g_loss) - float(g_nll)) <= 64 * eps * abs(float(g_nll)) + 1e-300


@pytest.mark.parametrize(
    "k", [1e-300, 1e-8, 0.5, 1.0, 14.999, 15.0, 15.001, 1e3, 1e15, 1e300]
)
def test_gamma_normaliser_across_the_stirling_switch(k):
    """nll at x = mu over 600 orders of magnitude of the shape (both branches of
    the Stirling remainder, and continuity at the switch)."""
    got = float(llx.Gamma(k).nll(1.0, 0.0))
    with mp.workdps(700):  # k log k and log Gamma(k) cancel to 600 digits
        ref = float(_mp_gamma(mp.mpf(1), mp.mpf(0), mp.mpf(k)))
    assert got == pytest.approx(ref, rel=1e-13, abs=1e-13)


# ------------------------------------------------------------------ impossible x

IMPOSSIBLE = [
    ("Gamma", 3.0, [0.0, -1.0, -0.0, np.inf, -np.inf]),
    ("Beta", 4.0, [0.0, 1.0, -0.5, 2.0, np.inf, -np.inf]),
    ("VonMises", 2.0, [np.inf, -np.inf]),
]


@pytest.mark.parametrize("name,conc,xs", IMPOSSIBLE, ids=[c[0] for c in IMPOSSIBLE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_impossible_observations_are_inf_with_zero_gradient(name, conc, xs, dtype, jit):
    """+inf for value and loss; the gradients (in x_hat and in a per-element
    concentration) are exactly 0, not NaN, and the possible element of the same
    batch is untouched."""
    good = {"Gamma": 1.5, "Beta": 0.25, "VonMises": 0.5}[name]
    x = jnp.asarray([*xs, good], dtype)
    x_hat = jnp.full(x.shape, 0.3, dtype)
    concs = jnp.full(x.shape, conc, dtype)
    eps = float(np.finfo(dtype).eps)
    for method in ("nll", "loss"):

        def total(xh, c, method=method):
            values = getattr(_CLS[name](c), method)(x, xh)
            return values.sum(where=jnp.isfinite(values)), values

        fn = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)
        if jit:
            fn = jax.jit(fn)
        (_, values), (g_xh, g_c) = fn(x_hat, concs)
        assert np.all(np.isposinf(values[:-1])) and np.isfinite(values[-1])
        alone = getattr(_CLS[name](conc), method)(x[-1:], x_hat[-1:])
        assert abs(float(values[-1]) - float(alone[0])) <= 16 * eps * max(
            1, abs(float(alone[0]))
        )
        assert np.all(np.asarray(g_xh)[:-1] == 0) and np.all(np.asarray(g_c)[:-1] == 0)
        assert np.all(np.isfinite(g_xh)) and np.all(np.isfinite(g_c))


@pytest.mark.parametrize("name,conc", [("Gamma", 2.0), ("Beta", 3.0), ("VonMises", 1.0)])
def test_nan_observation_propagates(name, conc):
    out = np.asarray(_CLS[name](conc).nll(jnp.asarray([np.nan, 0.5]), 0.1))
    assert np.isnan(out[0]) and np.isfinite(out[1])


def test_vonmises_infinite_direction_is_nan():
    """An infinite x_hat is not a direction: NaN, documented (never a finite value)."""
    assert np.isnan(llx.VonMises(1.0).nll(0.3, jnp.inf))


# ------------------------------------------------------------------ tails of the cdfs


@pytest.mark.parametrize(
    "noise,x,cdf",
    [
        (llx.Gamma(2.0), [-1.0, 0.0, np.inf, np.nan], [0.0, 0.0, 1.0, np.nan]),
        (llx.Beta(3.0), [-1.0, 0.0, 1.0, 2.0, np.inf, np.nan], [0, 0, 1, 1, 1, np.nan]),
    ],
    ids=["Gamma", "Beta"],
)
def test_cdf_outside_the_support(noise, x, cdf):
    """0 below the support, 1 above it (log tails -inf / 0), NaN stays NaN."""
    x, cdf = np.asarray(x), np.asarray(cdf, float)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(noise.cdf(x, 0.3), cdf)
        np.testing.assert_array_equal(noise.log_cdf(x, 0.3), np.log(cdf))
        np.testing.assert_array_equal(noise.log_sf(x, 0.3), np.log1p(-cdf))


def _mp_gamma_log_tails(k, r):
    """(log P, log Q) at z = k r for the Gamma(k) of mean 1: mpmath's gammainc for
    moderate k, else quadrature of the density around its peak (where mpmath's
    hypergeometric series stall)."""
    k, z = mp.mpf(k), mp.mpf(k) * mp.mpf(r)
    if k <= 1000:  # mpmath's own incomplete gamma is reliable here
        log_p = mp.log(mp.gammainc(k, 0, z, regularized=True))
        log_q = mp.log(mp.gammainc(k, z, mp.inf, regularized=True))
        return float(log_p), float(log_q)
    c = (k - 1) * mp.log(z) - z - mp.loggamma(k)
    if z > k - 1:  # upper tail: integrate t = z + s
        rate = 1 - (k - 1) / z
        pts = [0] + [j / rate for j in (0.3, 1, 3, 10, 30, 100)] + [mp.inf]
        f = lambda s: mp.exp((k - 1) * mp.log1p(s / z) - s)
        log_q = c + mp.log(mp.quad(f, pts))
        return float(mp.log(-mp.expm1(log_q))), float(log_q)
    rate = (k - 1) / z - 1
    pts = [0] + [j / rate for j in (0.3, 1, 3, 10, 30, 100) if j / rate < z] + [z]
    f = lambda s: mp.exp((k - 1) * mp.log1p(-s / z) + s)
    log_p = c + mp.log(mp.quad(f, pts))
    return float(log_p), float(mp.log(-mp.expm1(log_p)))


@pytest.mark.parametrize(
    "k,r",
    [
        (0.3, 1e-12),  # lower tail, P ~ 1e-4
        (3.0, 1e-120),  # P underflows: continued fraction
        (1e3, 1e-12),
        (1e5, 0.85),  # P ~ 1e-546, near the mode's scale
        (1e6, 0.95),
        (2.5, 0.7),
        (50.0, 30.0),  # Q ~ 1e-559
        (1e4, 1.5),
        (1e6, 1.05),
    ],
)
def test_gamma_log_cdf_and_log_sf_in_deep_tails(k, r):
    ref_p, ref_q = _mp_gamma_log_tails(k, r)
    g = llx.Gamma(k)
    assert float(g.log_cdf(r, 0.0)) == pytest.approx(ref_p, rel=1e-11, abs=1e-300)
    assert float(g.log_sf(r, 0.0)) == pytest.approx(ref_q, rel=1e-11, abs=1e-300)
    # the same point with another log-mean: x / mu is what matters
    assert float(g.log_cdf(r * math.e, 1.0)) == pytest.approx(ref_p, rel=1e-11, abs=1e-300)


def test_gamma_tail_gradients_are_finite_and_match_finite_differences():
    """Through jax's gammainc in the bulk and through the continued fractions where
    the tails underflow."""
    g = llx.Gamma(3.0)
    for method, x in (
        ("log_cdf", 1e-120),
        ("log_cdf", 0.7),
        ("log_sf", 2.0),
        ("log_sf", 400.0),
    ):
        f = lambda xh, m=method, x=x: getattr(g, m)(x, xh)
        check_grads(f, (jnp.asarray(0.2),), order=1, modes=("rev",), eps=1e-6)


@pytest.mark.parametrize(
    "phi,logit,x",
    [(10.0, 0.0, 1e-80), (3.0, 1.0, 1e-200), (10.0, 0.0, 1 - 2.0**-50), (50.0, 0.5, 0.01)],
)
def test_beta_log_cdf_and_log_sf_in_deep_tails(phi, logit, x):
    mu = 1 / (1 + mp.exp(-logit))
    a, b = phi * mu, phi * (1 - mu)
    x_mp = mp.mpf(x)
    p = mp.betainc(a, b, 0, x_mp, regularized=True)
    q = mp.betainc(b, a, 0, 1 - x_mp, regularized=True)  # both to full relative precision
    ref_p = mp.log(p) if p < q else mp.log1p(-q)
    ref_q = mp.log(q) if q < p else mp.log1p(-p)
    beta = llx.Beta(phi)
    assert float(beta.log_cdf(x, logit)) == pytest.approx(
        float(ref_p), rel=1e-12, abs=1e-300
    )
    assert float(beta.log_sf(x, logit)) == pytest.approx(
        float(ref_q), rel=1e-12, abs=1e-300
    )


def _mp_vonmises_log_lower(kappa, r):
    """log P(X - x_hat <= r), r in [-pi, 0], by quadrature refined geometrically
    towards r (where the mass of a tail sits)."""
    k, r = mp.mpf(kappa), mp.mpf(r)
    f = lambda t: mp.exp(k * (mp.cos(t) - 1))
    norm = 2 * mp.pi * mp.besseli(0, k) * mp.exp(-k)
    decay = min(1 / mp.sqrt(k), 1 / (k * abs(mp.sin(r)) + mp.mpf(10) ** -30))
    pts, step = [r], decay / 4
    while pts[-1] - step > -mp.pi and len(pts) < 60:
        pts.append(pts[-1] - step)
        step *= 1.6
    pts.append(-mp.pi)
    return float(mp.log(mp.quad(f, pts[::-1]) / norm))


@pytest.mark.parametrize(
    "kappa,r",
    [
        (0.3, -3.0),
        (5.0, -3.1),
        (20.0, -2.9),  # F0 ~ 1e-17 (scipy's logcdf has no digits left here)
        (60.0, -2.0),  # quadrature branch
        (150.0, -0.3),  # Hill's normal branch
        (150.0, -1.63),
        (1e3, -1.26),  # F0 ~ 1e-306
        (1e5, -0.126),  # F0 ~ 1e-349: below the float64 range, log still exact
        (1e8, -0.002),
    ],
)
def test_vonmises_log_cdf_and_log_sf_in_deep_tails(kappa, r):
    ref = _mp_vonmises_log_lower(kappa, r)
    vm = llx.VonMises(kappa)
    x_hat = 0.7
    assert float(vm.log_cdf(x_hat + r, x_hat)) == pytest.approx(ref, rel=1e-11)
    assert float(vm.log_sf(x_hat - r, x_hat)) == pytest.approx(ref, rel=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vonmises_loss_and_derivative_match_mpmath_over_many_turns(dtype):
    """The loss 2 k sin^2(d/2) and its derivative -k sin(d) in x_hat, d = x - x_hat,
    to a few ulps at residuals from tiny to many turns, near 0 and near +-pi
    (the reduction by 2 pi and the polynomials behind them)."""
    rng = np.random.default_rng(7)
    turns = 1e5 if dtype == np.float64 else 1e3
    tiny = -30 if dtype == np.float64 else -15  # the loss stays a normal number
    d = np.concatenate(
        [
            rng.uniform(-4.0, 4.0, 200),
            rng.uniform(-turns, turns, 200),
            10.0 ** rng.uniform(tiny, 0, 50),
            np.pi + np.array([0.0, 1e-3, -1e-3]),
            2 * np.pi * np.array([1.0, 7.0, -300.0]),
        ]
    ).astype(dtype)
    noise = llx.VonMises(dtype(3.0))
    loss, grad = jax.jit(
        jax.vmap(jax.value_and_grad(lambda xh, x: noise.loss(x, xh)), in_axes=(None, 0))
    )(dtype(0.0), jnp.asarray(d))
    want_loss = np.array([float(6 * mp.sin(mp.mpf(float(v)) / 2) ** 2) for v in d])
    want_grad = np.array([float(-3 * mp.sin(mp.mpf(float(v)))) for v in d])
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(loss, want_loss, rtol=8 * eps, atol=0)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=3 * 8 * eps)


def test_vonmises_cdf_convention_and_derivatives():
    """cdf in [0, 1) on the turn [x_hat - pi, x_hat + pi), 2 pi periodic, agreeing
    with scipy's standard cdf of the wrapped residual; d cdf / dx is the density and
    d cdf / d x_hat its negative; d cdf / d kappa matches finite differences."""
    vm = llx.VonMises(3.0)
    x_hat = 1.0
    x = np.linspace(-20.0, 20.0, 41)
    got = np.asarray(vm.cdf(x, x_hat))
    r = np.mod(x - x_hat + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(got, stats.vonmises(3.0).cdf(r), rtol=1e-12, atol=1e-15)
    assert np.all((got >= 0) & (got < 1))
    np.testing.assert_allclose(vm.cdf(x + 2 * np.pi, x_hat), got, rtol=1e-9, atol=1e-12)
    pts = jnp.asarray([-2.0, -0.3, 0.0, 0.4, 3.0])
    dx = jax.vmap(jax.grad(vm.cdf, argnums=0), in_axes=(0, None))(pts, x_hat)
    dxh = jax.vmap(jax.grad(vm.cdf, argnums=1), in_axes=(0, None))(pts, x_hat)
    pdf = jnp.exp(-vm.nll(pts, x_hat))
    np.testing.assert_allclose(dx, pdf, rtol=1e-12)
    np.testing.assert_allclose(dxh, -pdf, rtol=1e-12)

    # d/d kappa through every branch: series (3), tail quadrature and Hill's normal
    # approximation (60, 500), for the cdf and both log tails
    @jax.jit
    def tails(kappa):
        m = llx.VonMises(kappa[:, None])
        r = pts * 0.2 + 0.05
        return jnp.stack([m.cdf(r, 0.0), m.log_cdf(r, 0.0), m.log_sf(r, 0.0)])

    check_grads(
        tails, (jnp.asarray([3.0, 60.0, 500.0]),), order=1, modes=("rev", "fwd"), eps=1e-4
    )


# ------------------------------------------------------------------ sampling extremes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vonmises_sampler_at_extreme_concentrations(dtype, getkey):
    """kappa -> 0: uniform on the turn; kappa huge: Gaussian with variance 1/kappa
    (no cancellation in the Best-Fisher constants)."""
    n = 4000
    tiny = np.asarray(
        llx.VonMises(jnp.asarray(1e-8, dtype)).sample(
            getkey(), jnp.asarray(0.0, dtype), (n,)
        )
    )
    assert tiny.dtype == dtype
    assert stats.kstest(tiny, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    for kappa in (1e6, 1e12 if dtype == np.float64 else 1e10):
        draws = llx.VonMises(jnp.asarray(kappa, dtype)).sample(
            getkey(), jnp.asarray(2.0, dtype), (n,)
        )
        z = (np.asarray(draws, np.float64) - float(dtype(2.0))) * math.sqrt(kappa)
        assert np.all(np.isfinite(z))
        if kappa * float(np.finfo(dtype).eps) ** 2 < 1e-6:  # resolvable around 2.0
            assert stats.kstest(z, stats.norm().cdf).pvalue > 1e-3


def test_gamma_and_beta_samplers_at_extremes(getkey):
    n = 4000
    # Gamma: a huge shape, and log-means of -600 and 600 (no overflow of mu / k)
    k = jnp.asarray([1e8, 2.0, 2.0])
    draws = np.asarray(
        llx.Gamma(k).sample(getkey(), jnp.asarray([3.0, -600.0, 600.0]), (n,))
    )
    assert np.all(draws > 0) and np.all(np.isfinite(draws))
    ref = stats.gamma(a=1e8, scale=math.exp(3.0) / 1e8)
    assert stats.kstest(draws[:, 0], ref.cdf).pvalue > 1e-3
    ref = stats.gamma(a=2.0, scale=0.5)
    assert stats.kstest(draws[:, 2] / math.exp(600.0), ref.cdf).pvalue > 1e-3
    assert stats.kstest(draws[:, 1] / math.exp(-600.0), ref.cdf).pvalue > 1e-3
    # Beta: logits of -30 and 30 (one shape ~1e-13), and a tiny precision
    phi = jnp.asarray([3.0, 3.0, 1e-3])
    draws = np.asarray(
        llx.Beta(phi).sample(getkey(), jnp.asarray([-30.0, 30.0, 0.4]), (n,))
    )
    assert np.all((draws >= 0) & (draws <= 1))
    assert np.mean(draws[:, 0]) < 1e-9 and np.mean(1 - draws[:, 1]) < 1e-9
    # tiny precision: (almost) all the mass at the ends, with P(X > 1/2) -> mu
    assert np.mean(draws[:, 2] > 0.5) == pytest.approx(1 / (1 + math.exp(-0.4)), abs=0.03)


# ------------------------------------------------------------------ properties

_gamma_nll = jax.jit(lambda k, x, xh: llx.Gamma(k).nll(x, xh))
_beta_nll = jax.jit(lambda p, x, xh: llx.Beta(p).nll(x, xh))
_vm_nll = jax.jit(lambda k, x, xh: llx.VonMises(k).nll(x, xh))

_reals = st.floats(-20.0, 20.0, allow_nan=False)
_positives = st.floats(1e-6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(x=_positives, eta=_reals)
def test_gamma_one_is_the_exponential(x, eta):
    """Gamma(1) is the exponential with mean e^eta: nll = x e^{-eta} + eta."""
    want = x * math.exp(-eta) + eta
    assert float(_gamma_nll(1.0, x, eta)) == pytest.approx(want, rel=1e-13, abs=1e-13)


@settings(max_examples=60, deadline=None)
@given(x=_positives, eta=_reals, k=st.floats(1e-3, 1e5), log_c=st.floats(-30.0, 30.0))
def test_gamma_change_of_scale(x, eta, k, log_c):
    """X ~ Gamma(k, mu) => cX ~ Gamma(k, c mu): nll(cx, eta+log c) = nll(x, eta)+log c."""
    c = math.exp(log_c)
    lhs = float(_gamma_nll(k, x * c, eta + log_c))
    rhs = float(_gamma_nll(k, x, eta)) + log_c
    assert lhs == pytest.approx(rhs, rel=1e-11, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(x=st.floats(1e-300, 1.0, exclude_max=True, exclude_min=True))
def test_beta_two_one_half_is_uniform(x):
    """phi = 2, mu = 1/2: a = b = 1, the uniform density: nll = 0."""
    # a sum of terms of size |log x|: a few ulps of that
    tol = 32 * 2.2e-16 * (4.0 + abs(math.log(x)) + abs(math.log1p(-x)))
    assert float(_beta_nll(2.0, x, 0.0)) == pytest.approx(0.0, abs=tol)


@settings(max_examples=60, deadline=None)
@given(x=st.floats(0.5, 1.0, exclude_max=True), logit=_reals, phi=st.floats(1e-3, 1e8))
def test_beta_reflection(x, logit, phi):
    """X ~ Beta(mu) => 1 - X ~ Beta(1 - mu): nll(x, l) = nll(1 - x, -l) (1 - x exact)."""
    a = float(_beta_nll(phi, x, logit))
    b = float(_beta_nll(phi, 1.0 - x, -logit))
    assert a == pytest.approx(b, rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(x=st.floats(-1e3, 1e3), x_hat=st.floats(-10.0, 10.0))
def test_vonmises_small_concentration_is_uniform(x, x_hat):
    assert float(_vm_nll(1e-14, x, x_hat)) == pytest.approx(
        math.log(2 * math.pi), rel=1e-13
    )


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(-10.0, 10.0),
    x_hat=st.floats(-10.0, 10.0),
    turns=st.integers(-50, 50),
    kappa=st.floats(1e-3, 1e3),
)
def test_vonmises_is_periodic(x, x_hat, turns, kappa):
    shifted = x + 2 * math.pi * turns
    a = float(_vm_nll(kappa, shifted, x_hat))
    b = float(_vm_nll(kappa, x, x_hat))
    # the only error is the rounding of the shifted angle
    assert a == pytest.approx(b, abs=kappa * 4 * abs(shifted) * 2.2e-16 + 1e-14)


@settings(max_examples=60, deadline=None)
@given(
    z=st.floats(-6.0, 6.0),
    x_hat=st.floats(-3.0, 3.0),
    log_kappa=st.floats(math.log(1e6), math.log(1e12)),
)
def test_vonmises_large_concentration_is_gaussian(z, x_hat, log_kappa):
    """kappa -> inf: N(x_hat, 1/kappa); the nll differs by O(z^4 / kappa)."""
    kappa = math.exp(log_kappa)
    x = x_hat + z / math.sqrt(kappa)
    gauss = 0.5 * ((x - x_hat) ** 2) * kappa + 0.5 * math.log(2 * math.pi / kappa)
    got = float(_vm_nll(kappa, x, x_hat))
    assert got == pytest.approx(gauss, abs=(z**4 + 1.0) / kappa + 1e-9 * max(1.0, z * z))


# ------------------------------------------------- derivatives of the incomplete beta


def _betainc_derivatives_by_quadrature(a, b, x):
    """d/da, d/db, d/dx of the regularised I_x(a, b) from its integral form:
    d/da I = int_0^x (log t - psi(a) + psi(a + b)) f(t) dt (likewise for b with
    log(1 - t)), f the beta density; mpmath's own betainc (a hypergeometric
    series) takes minutes at shapes in the thousands, the quadrature a second."""
    a_, b_, x_ = mp.mpf(a), mp.mpf(b), mp.mpf(x)
    log_beta = mp.loggamma(a_) + mp.loggamma(b_) - mp.loggamma(a_ + b_)
    dens = lambda t: mp.exp((a_ - 1) * mp.log(t) + (b_ - 1) * mp.log1p(-t) - log_beta)
    mean = a_ / (a_ + b_)
    sd = mp.sqrt(mean * (1 - mean) / (a_ + b_ + 1))
    knots = {mean + k * sd for k in range(-40, 41, 2)}
    pts = sorted({mp.mpf(0), x_} | {t for t in knots if 0 < t < x_})
    psi = mp.digamma(a_ + b_)
    return (
        mp.quad(lambda t: (mp.log(t) - mp.digamma(a_) + psi) * dens(t), pts),
        mp.quad(lambda t: (mp.log1p(-t) - mp.digamma(b_) + psi) * dens(t), pts),
        dens(x_),
    )


@pytest.mark.parametrize(
    "a,b,x",
    [
        (0.3, 2.0, 0.1),  # small shape, below the mean
        (5.0, 3.0, 0.8),  # above the mean (the reflected continued fraction)
        (2.0, 2.0, 0.5),  # at the switch
        (0.05, 0.05, 0.999),  # both shapes tiny, next to 1
        (400.0, 900.0, 0.3075),  # large shapes next to the mean (slow convergence)
        (5000.0, 9000.0, 0.357),
        (3.0, 40.0, 1e-4),  # deep lower tail
    ],
)
def test_betainc_derivatives_match_mpmath(a, b, x):
    """jax's betainc has no derivative in a, b; likelax's adds them (forward-mode
    derivatives of the continued fraction) and the density for x. The reference
    is mpmath: numerical derivatives of its betainc, or for shapes in the
    thousands the integral form (at (400, 900) the two agree to float64 precision
    in all three derivatives; at (5000, 9000) in the b-derivative to 26 digits)."""
    from likelax._noise._positive import betainc

    grads = jax.grad(betainc, argnums=(0, 1, 2))(a, b, x)
    inc = lambda aa, bb, xx: mp.betainc(aa, bb, 0, xx, regularized=True)
    with mp.workdps(30):
        if min(a, b) > 1000:
            want = _betainc_derivatives_by_quadrature(a, b, x)
        else:
            want = (
                mp.diff(lambda t: inc(t, b, x), a),
                mp.diff(lambda t: inc(a, t, x), b),
                mp.diff(lambda t: inc(a, b, t), x),
            )
    for got, ref in zip(grads, want, strict=True):
        assert float(got) == pytest.approx(float(ref), rel=1e-9)


def test_betainc_derivatives_vanish_outside_the_unit_interval():
    from likelax._noise._positive import betainc

    for x in (0.0, 1.0, -0.5, 1.5):
        grads = jax.grad(betainc, argnums=(0, 1, 2))(2.0, 3.0, x)
        assert [float(g) for g in grads] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("x", [1e-30, 0.2, 0.6, 1 - 1e-9])
def test_beta_distribution_functions_differentiate_in_x_hat_and_concentration(x):
    """cdf, log_cdf and log_sf of Beta against central differences of scipy's
    beta distribution (in the bulk and where a tail underflows to the continued
    fraction)."""
    phi, logit = 6.0, 0.4
    for method, ref in (("cdf", "cdf"), ("log_cdf", "logcdf"), ("log_sf", "logsf")):

        def ours(logit_, phi_, m=method):
            return getattr(llx.Beta(phi_), m)(x, logit_)

        def scipys(logit_, phi_, r=ref):
            mu = 1 / (1 + np.exp(-logit_))
            return getattr(stats.beta(phi_ * mu, phi_ * (1 - mu)), r)(x)

        g_logit, g_phi = jax.jit(jax.grad(ours, argnums=(0, 1)))(logit, phi)
        h = 1e-6
        fd_logit = (scipys(logit + h, phi) - scipys(logit - h, phi)) / (2 * h)
        fd_phi = (scipys(logit, phi + h) - scipys(logit, phi - h)) / (2 * h)
        # the differences carry rounding of about eps |f| / h
        floor = 1e-9 * max(1.0, abs(scipys(logit, phi)))
        assert float(g_logit) == pytest.approx(fd_logit, rel=1e-6, abs=floor)
        assert float(g_phi) == pytest.approx(fd_phi, rel=1e-6, abs=floor)
