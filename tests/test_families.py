"""Generic tests for every noise family, driven by the one table in `cases.py`.

Each family is checked against an independent float64 oracle (scipy.stats or an exact
reference density), for normalisation, gradients, transformations, sampling and the
loss convention.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from case import Case, logdensity
from cases import CASES, IDS
from jax.test_util import check_grads
from scipy import integrate, stats

import likelax as llx

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)

parametrize = pytest.mark.parametrize("case", CASES, ids=IDS)


def _data(case: Case, noise, seed: int = 0):
    """(x, x_hat) float64 numpy arrays: x drawn from the oracle at each x_hat."""
    rng = np.random.default_rng(seed)
    x_hat = case.x_hat(rng)
    dist = case.oracle(noise, x_hat)
    x = np.asarray(dist.rvs(random_state=rng))
    return x, x_hat


def _ref_nll(case: Case, noise, x, x_hat):
    return -np.asarray(logdensity(case.oracle(noise, x_hat), x), dtype=np.float64)


def _x_dtype(x, dtype):
    return x if np.issubdtype(np.asarray(x).dtype, np.integer) else np.asarray(x, dtype)


@parametrize
def test_nll_matches_oracle_float64(case):
    for i, noise in enumerate(case.instances()):
        x, x_hat = _data(case, noise, seed=i)
        got = np.asarray(noise.nll(x, x_hat))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, _ref_nll(case, noise, x, x_hat), rtol=1e-10, atol=0)
        np.testing.assert_allclose(
            np.asarray(noise.log_prob(x, x_hat)), -got, rtol=0, atol=0
        )


@parametrize
@pytest.mark.parametrize(
    "dtype,rtol", [(np.float32, 1e-5), (jnp.float16, 2e-3), (jnp.bfloat16, 1.6e-2)]
)
def test_nll_low_precision(case, dtype, rtol):
    """float32 matches to 1e-5; 16-bit inputs are computed in float32 and returned
    in their own dtype."""
    noise = case.instances()[0]
    x, x_hat = _data(case, noise)
    x_lo, xh_lo = _x_dtype(x, dtype), np.asarray(x_hat).astype(dtype)
    got = noise.nll(x_lo, xh_lo)
    assert got.dtype == jnp.dtype(dtype)
    x_r = np.asarray(x_lo).astype(np.float64)
    xh_r = np.asarray(xh_lo).astype(np.float64)
    ref = _ref_nll(case, noise, x_r, xh_r)
    got = np.asarray(got, np.float64)
    # an impossible point (a 16-bit rounding can put x on a support boundary)
    # must be +inf in both; everywhere else the relative error is bounded
    same_inf = np.isinf(got) & (got == ref)
    assert not np.isnan(got).any()
    err = np.abs(np.where(same_inf, 0.0, got - ref)) / np.maximum(1.0, np.abs(ref))
    assert err.max() <= rtol


@parametrize
def test_normalised(case):
    """The density integrates to 1 (quadrature); the mass sums to 1."""
    for noise in case.instances():
        x_hat = case.x_hat(np.random.default_rng(3))[:2]
        for xh in x_hat:
            lo, hi = case.support(noise, xh)
            f = jax.jit(lambda t, xh=xh: jnp.exp(-noise.nll(t, xh)))
            if case.kind == "continuous":
                dist = case.oracle(noise, np.asarray(xh))
                mid = float(dist.median()) if hasattr(dist, "median") else 0.0
                pieces = [(lo, mid), (mid, hi)]
                total = sum(
                    integrate.quad(
                        lambda t: float(f(t)), a, b, epsabs=1e-13, epsrel=1e-12, limit=500
                    )[0]
                    for a, b in pieces
                )
                assert total == pytest.approx(1.0, abs=1e-8)
            else:
                ks = np.arange(int(lo), int(hi) + 1)
                total = float(jnp.sum(f(jnp.asarray(ks))))
                assert total == pytest.approx(1.0, abs=1e-10)


@parametrize
def test_gradients_finite_differences(case):
    """check_grads order 2 (reverse and forward) wrt x_hat and every hyperparameter."""
    noise = case.instances()[1]
    x, x_hat = _data(case, noise, seed=5)
    x, x_hat = x[:5], x_hat[:5]
    fields = [f for f in noise._domains if f not in case.no_grad]

    def f(xh, *params):
        m = eqx.tree_at(lambda n: [getattr(n, k) for k in fields], noise, list(params))
        return m.nll(x, xh)

    params = [getattr(noise, k) for k in fields]
    check_grads(
        f,
        (jnp.asarray(x_hat), *params),
        order=2,
        modes=("fwd", "rev"),
        eps=1e-5,
        atol=1e-5,
        rtol=1e-5,
    )


@parametrize
def test_jit_equals_eager(case):
    noise = case.instances()[0]
    x, x_hat = _data(case, noise, seed=7)
    eager = noise.nll(x, x_hat)
    jitted = jax.jit(lambda n, a, b: n.nll(a, b))(noise, x, x_hat)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-12)
    g_eager = jax.grad(lambda b: noise.nll(x, b).sum())(jnp.asarray(x_hat))
    g_jit = jax.jit(jax.grad(lambda b: noise.nll(x, b).sum()))(jnp.asarray(x_hat))
    np.testing.assert_allclose(g_jit, g_eager, rtol=1e-12, atol=1e-12)


@parametrize
def test_vmap_over_stacked_models_equals_loop(case):
    instances = case.instances()
    x, x_hat = _data(case, instances[0], seed=9)
    if not jax.tree.leaves(instances[0]):  # no hyperparameters: vmap over x_hat
        x_hats = jnp.stack([jnp.asarray(x_hat), -jnp.asarray(x_hat)])
        batched = jax.vmap(lambda b: instances[0].nll(x, b))(x_hats)
        loop = jnp.stack([instances[0].nll(x, b) for b in x_hats])
        np.testing.assert_allclose(batched, loop, rtol=1e-12, atol=1e-12)
        return
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *instances)
    batched = jax.vmap(lambda n: n.nll(x, x_hat))(stacked)
    loop = jnp.stack([n.nll(x, x_hat) for n in instances])
    np.testing.assert_allclose(batched, loop, rtol=1e-12, atol=1e-12)


@parametrize
def test_new_hyperparameters_do_not_retrace(case):
    instances = case.instances()
    x, x_hat = _data(case, instances[0], seed=11)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(noise, a, b):
        return noise.nll(a, b).sum()

    values = [float(f(n, x, x_hat)) for n in instances]
    if jax.tree.leaves(instances[0]):
        assert len(set(values)) == len(instances)  # really different models
    else:  # no hyperparameters: new x_hat values must not retrace either
        assert float(f(instances[0], x, -np.asarray(x_hat))) != values[0]


@parametrize
def test_loss_drops_only_x_hat_free_terms(case):
    """nll - loss does not depend on x_hat; loss has the same x_hat-gradient."""
    noise = case.instances()[1]
    x, x_hat = _data(case, noise, seed=13)
    other = case.x_hat(np.random.default_rng(99))
    d1 = noise.nll(x, x_hat) - noise.loss(x, x_hat)
    d2 = noise.nll(x, other) - noise.loss(x, other)
    np.testing.assert_allclose(d1, d2, rtol=1e-10, atol=1e-10)
    g_nll = jax.grad(lambda b: noise.nll(x, b).sum())(jnp.asarray(x_hat))
    g_loss = jax.grad(lambda b: noise.loss(x, b).sum())(jnp.asarray(x_hat))
    np.testing.assert_allclose(g_loss, g_nll, rtol=1e-10, atol=1e-12)


@parametrize
def test_loss_is_the_familiar_loss(case):
    if case.familiar_loss is None:
        pytest.skip(f"{case.id}: no established loss to compare with")
    for i, noise in enumerate(case.instances()):
        x, x_hat = _data(case, noise, seed=17 + i)
        np.testing.assert_allclose(
            noise.loss(x, x_hat),
            case.familiar_loss(noise, x, x_hat),
            rtol=1e-10,
            atol=1e-12,
        )


@parametrize
def test_predict(case):
    for noise in case.instances():
        x_hat = case.x_hat(np.random.default_rng(21))
        want = case.predict(case.oracle(noise, x_hat))
        np.testing.assert_allclose(noise.predict(x_hat), want, rtol=1e-10, atol=1e-12)


def _chi_square_p(draws, pmf, support):
    ks = np.arange(int(support[0]), int(support[1]) + 1)
    expected = pmf(ks) * len(draws)
    observed = np.array([(draws == k).sum() for k in ks], dtype=float)
    # merge sparse cells into their neighbours until every cell expects >= 5
    obs_m, exp_m, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            obs_m.append(acc_o)
            exp_m.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 and exp_m:
        obs_m[-1] += acc_o
        exp_m[-1] += acc_e
    obs_m, exp_m = np.array(obs_m), np.array(exp_m)
    exp_m *= obs_m.sum() / exp_m.sum()
    return stats.chisquare(obs_m, exp_m).pvalue


@parametrize
def test_sample_follows_the_distribution(case, getkey):
    """KS (continuous) or chi-square (discrete) test at a fixed key, p > 1e-3."""
    for noise in case.instances():
        xh = case.x_hat(np.random.default_rng(23))[0]
        draws = np.asarray(noise.sample(getkey(), xh, (case.sample_size,)))
        event = 1 if case.kind == "categorical" else 0
        assert draws.shape == (case.sample_size, *np.shape(xh)[: np.ndim(xh) - event])
        dist = case.oracle(noise, np.asarray(xh))
        if case.kind == "continuous":
            p = stats.kstest(draws, dist.cdf).pvalue
        else:
            p = _chi_square_p(draws, dist.pmf, case.support(noise, xh))
        assert p > 1e-3, f"{case.id}: p = {p}"


@parametrize
def test_sample_shapes_and_batch(case, getkey):
    noise = case.instances()[0]
    x_hat = case.x_hat(np.random.default_rng(0))
    batch = x_hat.shape[: x_hat.ndim - (1 if case.kind == "categorical" else 0)]
    assert noise.sample(getkey(), x_hat).shape == batch
    assert noise.sample(getkey(), x_hat, (3, 2)).shape == (3, 2, *batch)


@parametrize
def test_cdf_and_tails(case):
    if not case.univariate:
        with pytest.raises(NotImplementedError, match="cdf"):
            case.instances()[0].cdf(0, case.x_hat(np.random.default_rng(0)))
        return
    for i, noise in enumerate(case.instances()):
        x, x_hat = _data(case, noise, seed=29 + i)
        dist = case.oracle(noise, x_hat)
        np.testing.assert_allclose(noise.cdf(x, x_hat), dist.cdf(x), rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(
            noise.log_cdf(x, x_hat), dist.logcdf(x), rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(
            noise.log_sf(x, x_hat), dist.logsf(x), rtol=1e-9, atol=1e-12
        )


_INVALID = {
    "> 0": -1.0,
    "in the open interval (0, 1)": 1.5,
    "a non-negative integer": 2.5,
    "a real number (not NaN)": float("nan"),
}


@parametrize
def test_invalid_hyperparameters(case):
    """ValueError at construction; runtime error under jit/vmap/grad with checks on;
    NaN (never a finite value) with checks off, and no callback in the program."""
    noise = case.instances()[0]
    x, x_hat = _data(case, noise)
    kwargs = {f: getattr(noise, f) for f in noise._domains}
    for field, domain in noise._domains.items():
        bad = _INVALID[domain.description]
        with pytest.raises(ValueError, match=f"`{field}` must be"):
            type(noise)(**{**kwargs, field: bad})
        broken = eqx.tree_at(
            lambda n, field=field: getattr(n, field),
            noise,
            jnp.full_like(getattr(noise, field), bad),
        )
        f = lambda n: n.nll(x, x_hat).sum()
        for transform in (
            jax.jit,
            jax.grad,
            lambda g: jax.jit(jax.grad(g)),
            lambda g: jax.vmap(g, in_axes=None, axis_size=2),
        ):
            with pytest.raises(RUNTIME_ERRORS, match=f"`{field}` must be"):
                jax.block_until_ready(transform(f)(broken))
        # The gradient users take (wrt x_hat) reads the hyperparameters but not
        # the value: the check must survive XLA's dead-code elimination.
        g = jax.jit(jax.grad(lambda xh, n: n.nll(x, xh).sum()))
        with pytest.raises(RUNTIME_ERRORS, match=f"`{field}` must be"):
            jax.block_until_ready(g(x_hat, broken))
        with llx.checks("off"):
            assert np.isnan(jax.jit(f)(broken))
            assert np.isnan(g(x_hat, broken)).all()
            text = jax.jit(f).lower(noise).as_text()
            assert "callback" not in text
        assert "callback" in jax.jit(f).lower(noise).as_text()
    if not noise._domains:  # no hyperparameters: nothing to check, nothing staged
        text = jax.jit(lambda n: n.nll(x, x_hat).sum()).lower(noise).as_text()
        assert "callback" not in text


@parametrize
def test_where_mask_isolates_nan(case):
    """A masked element holding NaN contributes exactly 0 to value and gradient."""
    noise = case.instances()[0]
    x, x_hat = _data(case, noise, seed=31)
    x_hat = jnp.asarray(x_hat).at[0].set(jnp.nan)
    mask = jnp.ones(x_hat.shape[: x_hat.ndim - (case.kind == "categorical")], bool)
    mask = mask.at[0].set(False)

    def total(xh, n):
        return n.nll(x, xh, where=mask).sum()

    value, (g_xh, g_n) = jax.value_and_grad(total, argnums=(0, 1))(x_hat, noise)
    ref = jnp.sum(noise.nll(x, x_hat)[1:])
    np.testing.assert_allclose(value, ref, rtol=1e-12)
    assert np.all(np.asarray(g_xh)[0] == 0)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g_n))
    assert np.all(np.isfinite(g_xh))


@parametrize
def test_nan_propagates(case):
    noise = case.instances()[0]
    x, x_hat = _data(case, noise, seed=37)
    x_hat = np.asarray(x_hat, np.float64).copy()
    x_hat[0] = np.nan
    out = np.asarray(noise.nll(x, x_hat))
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))


def test_shape_mismatch_names_the_arguments():
    with pytest.raises(ValueError, match=r"`x` \(3,\), `x_hat` \(4,\)"):
        llx.Gaussian().nll(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"Gaussian.scale"):
        llx.Gaussian(jnp.ones(2)).nll(jnp.zeros(3), jnp.zeros(3))


def test_complex_and_string_inputs_fail_at_trace_time():
    with pytest.raises(TypeError, match="`x` must be real"):
        jax.jit(lambda a, b: llx.Gaussian().nll(a, b))(
            jnp.zeros(2, jnp.complex64), jnp.zeros(2)
        )
    with pytest.raises(TypeError, match="`x_hat` must be"):
        llx.Gaussian().nll(0.0, "a")


def test_strict_mode_raises_on_impossible_observation():
    f = jax.jit(lambda x: llx.Gaussian().nll(x, 0.0))
    with llx.checks("strict"), pytest.raises(RUNTIME_ERRORS, match="probability 0"):
        jax.block_until_ready(jax.jit(lambda x: llx.Gaussian().nll(x, 0.0))(jnp.inf))
    assert f(jnp.inf) == jnp.inf  # default mode: +inf, no error


def test_checks_switch_parses():
    with pytest.raises(ValueError, match="checks: expected one of"):
        llx.set_checks("loud")  # type: ignore[arg-type]
    with llx.checks(False):
        assert llx.get_checks() == "off"
    assert llx.get_checks() == "on"
