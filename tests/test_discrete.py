"""Binary and categorical families beyond the generic table: the Bernoulli and
Categorical rows of RELIABILITY.md (value and gradient, float32 and float64, eager and
jit), structural errors, and the identities between the families (hypothesis)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import likelax as llx

RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, eqx.EquinoxRuntimeError)
DTYPES = [jnp.float32, jnp.float64]
MODES = {"eager": lambda f: f, "jit": jax.jit}


# ------------------------------------------------------------------ Bernoulli


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logit", [1e4, -1e4, 1e30, -1e30])
@pytest.mark.parametrize("x", [0.0, 1.0])
def test_bernoulli_huge_logits_are_exact(dtype, mode, logit, x):
    """-log sigmoid(+-l): 0 or |l| exactly (e^-1e4 is below every ulp), gradient
    0 or +-1."""
    f = MODES[mode](jax.value_and_grad(lambda lg: llx.Bernoulli().nll(x, lg)))
    value, grad = f(jnp.asarray(logit, dtype))
    z = (1 - 2 * x) * logit  # nll = softplus(z)
    assert value == (z if z > 0 else 0.0)
    assert grad == ((1 - 2 * x) if z > 0 else 0.0)
    assert value.dtype == dtype and grad.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_bernoulli_infinite_logits(dtype, mode):
    f = MODES[mode](jax.vmap(jax.value_and_grad(lambda lg, x: llx.Bernoulli().nll(x, lg))))
    logits = jnp.asarray([jnp.inf, -jnp.inf, jnp.inf, -jnp.inf], dtype)
    value, grad = f(logits, jnp.asarray([1.0, 0.0, 0.0, 1.0], dtype))
    np.testing.assert_array_equal(value, [0.0, 0.0, jnp.inf, jnp.inf])
    assert not np.any(np.isnan(grad))
    np.testing.assert_array_equal(grad[:2], [0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_bernoulli_non_binary_observations_are_impossible(dtype, mode):
    x = jnp.asarray([0.5, 2.0, -1.0, 1.0, jnp.nan], dtype)
    value = MODES[mode](lambda lg: llx.Bernoulli().nll(x, lg))(jnp.zeros(5, dtype))
    np.testing.assert_array_equal(np.isposinf(value), [True, True, True, False, False])
    assert np.isnan(value[4])
    grad = MODES[mode](jax.grad(lambda lg: llx.Bernoulli().nll(x[:4], lg).sum()))(
        jnp.zeros(4, dtype)
    )
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, -0.5])


def test_bernoulli_strict_mode_names_the_problem():
    with llx.checks("strict"), pytest.raises(RUNTIME_ERRORS, match="probability 0"):
        jax.block_until_ready(jax.jit(lambda x: llx.Bernoulli().nll(x, 0.0))(0.5))


def test_bernoulli_accepts_bool_and_int_observations():
    logits = jnp.array([-2.0, 0.5, 3.0])
    want = llx.Bernoulli().nll(jnp.array([0.0, 1.0, 1.0]), logits)
    np.testing.assert_array_equal(
        llx.Bernoulli().nll(jnp.array([False, True, True]), logits), want
    )
    np.testing.assert_array_equal(llx.Bernoulli().nll(jnp.array([0, 1, 1]), logits), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_is_optax_value_and_gradient(dtype):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(0, 8, 200), dtype)
    x = jnp.asarray(rng.integers(0, 2, 200), dtype)
    mine = jax.value_and_grad(lambda lg: llx.Bernoulli().nll(x, lg).sum())(logits)
    ref = jax.value_and_grad(lambda lg: optax.sigmoid_binary_cross_entropy(lg, x).sum())(
        logits
    )
    rtol = 1e-6 if dtype == jnp.float32 else 1e-13
    np.testing.assert_allclose(mine[0], ref[0], rtol=rtol)
    np.testing.assert_allclose(mine[1], ref[1], rtol=rtol, atol=rtol)


def test_bernoulli_gradient_at_zero_logit_is_exact():
    g = jax.grad(lambda lg: llx.Bernoulli().nll(jnp.array([0.0, 1.0]), lg).sum())(
        jnp.zeros(2)
    )
    np.testing.assert_array_equal(g, [0.5, -0.5])


# ------------------------------------------------------------------ Categorical


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_categorical_minus_inf_logit(dtype, mode):
    logits = jnp.asarray([0.0, -jnp.inf, 0.0], dtype)
    f = MODES[mode](jax.value_and_grad(lambda lg: llx.Categorical().nll(0, lg)))
    value, grad = f(logits)
    np.testing.assert_allclose(
        value, np.log(2.0), rtol=1e-7 if dtype == jnp.float32 else 1e-15
    )
    np.testing.assert_array_equal(grad, np.asarray([-0.5, 0.0, 0.5], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_categorical_out_of_range_labels_never_wrap(dtype, mode):
    logits = jnp.asarray([[1.0, 2.0, 3.0]] * 4, dtype)
    labels = jnp.array([3, -1, 2, 100])
    value = MODES[mode](lambda lg: llx.Categorical().nll(labels, lg))(logits)
    np.testing.assert_array_equal(np.isposinf(value), [True, True, False, True])
    grad = MODES[mode](jax.grad(lambda lg: llx.Categorical().nll(labels, lg).sum()))(logits)
    assert np.all(np.asarray(grad)[[0, 1, 3]] == 0)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(grad[2], p - [0, 0, 1], rtol=1e-6, atol=1e-7)


def test_categorical_out_of_range_label_raises_in_strict_mode():
    f = jax.jit(lambda y: llx.Categorical().nll(y, jnp.zeros(3)))
    with llx.checks("strict"), pytest.raises(RUNTIME_ERRORS, match="probability 0"):
        jax.block_until_ready(jax.jit(lambda y: llx.Categorical().nll(y, jnp.zeros(3)))(3))
    assert f(3) == jnp.inf


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit, eqx.filter_jit])
def test_categorical_float_labels_fail_at_trace_time(transform):
    f = transform(lambda y, lg: llx.Categorical().nll(y, lg))
    with pytest.raises(TypeError, match="`x` must hold integer labels"):
        f(jnp.array([0.0, 1.0]), jnp.zeros((2, 3)))


def test_categorical_needs_a_class_axis():
    with pytest.raises(ValueError, match="trailing event axis"):
        llx.Categorical().nll(0, jnp.asarray(0.5))


def test_categorical_shapes_broadcast_and_predict_sample():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(4, 1, 6)))
    labels = jnp.arange(5) % 6  # (5,) against batch (4, 1)
    assert llx.Categorical().nll(labels, logits).shape == (4, 5)
    probs = llx.Categorical().predict(logits)
    assert probs.shape == (4, 1, 6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-14)
    draws = llx.Categorical().sample(jax.random.key(0), logits, (3,))
    assert draws.shape == (3, 4, 1) and jnp.issubdtype(draws.dtype, jnp.integer)


def test_categorical_degenerate_rows():
    """A +inf logit is a point mass (0 for its class, +inf for others); a row of
    -inf only has no valid class (+inf). No NaN reaches the gradient."""
    rows = jnp.array([[jnp.inf, 0.0, 1.0], [-jnp.inf, -jnp.inf, -jnp.inf]])
    for label, want in [(0, [0.0, jnp.inf]), (1, [jnp.inf, jnp.inf])]:
        labels = jnp.array([label, label])
        np.testing.assert_array_equal(llx.Categorical().nll(labels, rows), want)
        g = jax.grad(lambda lg, y=labels: llx.Categorical().nll(y, lg).sum())(rows)
        assert not np.any(np.isnan(g))


def test_categorical_zero_probability_labels_have_zero_gradient():
    """A label whose logit is -inf stays impossible under any finite change of the
    logits: value +inf, gradient 0 (also for a row of -inf only)."""
    rows = jnp.array([[0.0, -jnp.inf, 1.0], [-jnp.inf, -jnp.inf, -jnp.inf]])
    labels = jnp.array([1, 2])
    f = jax.jit(jax.value_and_grad(lambda lg: llx.Categorical().nll(labels, lg).sum()))
    value, grad = f(rows)
    assert value == jnp.inf
    np.testing.assert_array_equal(grad, np.zeros((2, 3)))


@pytest.mark.parametrize("mode", MODES)
def test_categorical_plus_inf_row_leaves_the_batch_alone(mode):
    """One row holding +inf (it takes the exact lowered path for the whole batch)
    does not change the other rows' values or gradients (numpy reference)."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (6, 4))
    labels = jnp.asarray(rng.integers(0, 4, 6))
    lse = np.log(np.exp(logits).sum(-1))
    want = lse - logits[np.arange(6), labels]
    p = np.exp(logits - lse[:, None])
    want_grad = p - np.eye(4)[labels]
    value_fn = MODES[mode](lambda lg: llx.Categorical().nll(labels, lg))
    grad_fn = MODES[mode](jax.grad(lambda lg: llx.Categorical().nll(labels, lg).sum()))
    for top in [False, True]:
        rows = logits.copy()
        if top:
            rows[0] = [jnp.inf, 0.0, jnp.inf, 1.0]
        value, grad = value_fn(jnp.asarray(rows)), grad_fn(jnp.asarray(rows))
        np.testing.assert_allclose(value[1:], want[1:], rtol=1e-13)
        np.testing.assert_allclose(grad[1:], want_grad[1:], rtol=1e-12, atol=1e-15)
    # the +inf row: mass 1/2 on each +inf class
    label0 = int(labels[0])
    assert value[0] == (np.log(2.0) if label0 in (0, 2) else np.inf)


def test_categorical_is_optax_in_float32():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(0, 5, (100, 7)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 7, 100))
    mine = jax.value_and_grad(lambda lg: llx.Categorical().nll(labels, lg).sum())(logits)
    ref = jax.value_and_grad(
        lambda lg: optax.softmax_cross_entropy_with_integer_labels(lg, labels).sum()
    )(logits)
    np.testing.assert_allclose(mine[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(mine[1], ref[1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ identities (hypothesis)

_logit = st.floats(-60.0, 60.0)


@jax.jit
def _bernoulli_vs_categorical(logits, x):
    b = jax.vmap(jax.value_and_grad(lambda lg, y: llx.Bernoulli().nll(y, lg)))(logits, x)

    def cat(lg, y):
        return llx.Categorical().nll(
            y.astype(jnp.int32), jnp.stack([jnp.zeros_like(lg), lg])
        )

    c = jax.vmap(jax.value_and_grad(cat))(logits, x)
    return b, c


@settings(max_examples=40, deadline=None)
@given(
    st.lists(_logit, min_size=8, max_size=8),
    st.lists(st.integers(0, 1), min_size=8, max_size=8),
)
def test_bernoulli_is_categorical_with_logits_0_l(logits, labels):
    (vb, gb), (vc, gc) = _bernoulli_vs_categorical(
        jnp.asarray(logits), jnp.asarray(labels, jnp.float64)
    )
    np.testing.assert_allclose(vb, vc, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gb, gc, rtol=1e-13, atol=1e-15)


@jax.jit
def _categorical_nll_and_grad(logits, labels):
    return jax.value_and_grad(lambda lg: llx.Categorical().nll(labels, lg).sum())(logits)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**20), 2**20), min_size=12, max_size=12),
    st.lists(st.integers(0, 3), min_size=3, max_size=3),
    st.sampled_from([1e6, -1e6, 3.0, 1e3, -7.5]),
)
def test_categorical_shift_invariance(numerators, labels, shift):
    """Adding a constant to every logit changes nothing. The logits are multiples of
    2^-20 below 2, so `logits + shift` is exact in float64 even for shift 1e6 and any
    change would come from the algorithm, not from rounding the inputs."""
    logits = jnp.asarray(numerators, jnp.float64).reshape(3, 4) / 2**20
    shifted = logits + shift
    np.testing.assert_array_equal(np.asarray(shifted) - shift, np.asarray(logits))
    y = jnp.asarray(labels)
    v0, g0 = _categorical_nll_and_grad(logits, y)
    v1, g1 = _categorical_nll_and_grad(shifted, y)
    np.testing.assert_allclose(v1, v0, rtol=1e-14, atol=0)
    np.testing.assert_allclose(g1, g0, rtol=1e-13, atol=1e-15)


@jax.jit
def _binomial_1_vs_bernoulli(logits, x):
    one = llx.Binomial(1.0)
    b = jax.vmap(jax.value_and_grad(lambda lg, y: one.nll(y, lg)))(logits, x)
    c = jax.vmap(jax.value_and_grad(lambda lg, y: llx.Bernoulli().nll(y, lg)))(logits, x)
    return b, c


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(_logit, st.sampled_from([1e4, -1e30, jnp.inf])), min_size=8, max_size=8
    ),
    st.lists(st.integers(0, 1), min_size=8, max_size=8),
)
def test_binomial_with_one_trial_is_bernoulli(logits, labels):
    (vb, gb), (vc, gc) = _binomial_1_vs_bernoulli(
        jnp.asarray(logits), jnp.asarray(labels, jnp.float64)
    )
    np.testing.assert_allclose(vb, vc, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(gb, gc, rtol=1e-14, atol=1e-300)


# ------------------------------------------------------------------ Binomial


def _mp_binomial_nll(n, x, logit):
    n, x, lg = (mpmath.mpf(v) for v in (n, x, logit))
    log_choose = (
        mpmath.loggamma(n + 1) - mpmath.loggamma(x + 1) - mpmath.loggamma(n - x + 1)
    )
    softplus = lambda t: mpmath.log1p(mpmath.exp(t))
    return float(-log_choose + x * softplus(-lg) + (n - x) * softplus(lg))


def test_binomial_extreme_logits_match_mpmath():
    mpmath.mp.dps = 60
    n = 40.0
    x = np.array([0.0, 1.0, 20.0, 39.0, 40.0] * 3)
    logits = np.repeat([-50.0, 37.0, 700.0], 5)
    want = np.array([_mp_binomial_nll(n, a, b) for a, b in zip(x, logits, strict=True)])
    np.testing.assert_allclose(llx.Binomial(n).nll(x, logits), want, rtol=1e-13)


def test_binomial_support_and_infinite_logits():
    binom = llx.Binomial(jnp.array([5.0]))
    values = binom.nll(jnp.array([-1.0, 2.5, 6.0, 0.0, 5.0]), 0.3)
    np.testing.assert_array_equal(np.isposinf(values), [True, True, True, False, False])
    v, g = jax.value_and_grad(lambda lg: binom.nll(jnp.array([5.0]), lg).sum())(jnp.inf)
    assert v == 0 and g == 0
    v, g = jax.value_and_grad(lambda lg: binom.nll(jnp.array([0.0]), lg).sum())(-jnp.inf)
    assert v == 0 and g == 0
    v, g = jax.value_and_grad(lambda lg: binom.nll(jnp.array([2.0]), lg).sum())(jnp.inf)
    assert v == jnp.inf and not np.isnan(g)


def test_binomial_total_count_gradient():
    """`total_count` is not learned, but a gradient wrt the module gives the
    derivative of the log-gamma continuation (an mpmath central difference), in
    every regime of the coefficient, and no NaN at infinite logits (there it was
    NaN, and in the exact-table regime the table's derivative, 0)."""
    mpmath.mp.dps = 40

    def nll(n, x, lg):
        log_choose = mpmath.loggamma(n + 1) - mpmath.loggamma(n - x + 1)
        return -log_choose + n * mpmath.log1p(mpmath.exp(lg)) - x * lg

    for n, x, logit in [(10.0, 3.0, 0.4), (25.0, 25.0, 1.0), (1000.0, 400.0, 0.2)]:
        g = jax.grad(lambda m: m.nll(x, logit))(llx.Binomial(n)).total_count
        h, n_mp, lg = mpmath.mpf(10) ** -12, mpmath.mpf(n), mpmath.mpf(logit)
        want = (nll(n_mp + h, x, lg) - nll(n_mp - h, x, lg)) / (2 * h)
        assert float(g) == pytest.approx(float(want), rel=1e-9)
    for x, logit in [(10.0, np.inf), (0.0, -np.inf), (4.0, np.inf)]:
        g = jax.grad(lambda m, x=x, lg=logit: m.nll(x, lg))(llx.Binomial(10.0))
        assert not np.isnan(g.total_count)


def test_binomial_zero_trials():
    v, g = jax.value_and_grad(lambda lg: llx.Binomial(0.0).nll(0.0, lg))(1.3)
    assert v == 0 and g == 0
    assert llx.Binomial(0.0).nll(1.0, 1.3) == jnp.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_binomial_many_trials_no_cancellation(dtype):
    """log C(n, x) from three log-factorials loses ~n log n * eps (13% at n = 1e6 in
    float32); the saddle-point form does not (mpmath oracle at the rounded inputs)."""
    mpmath.mp.dps = 60
    cases = []
    for n in (1000.0, 1e6, 1e9 if dtype == jnp.float64 else 1e7):
        for frac in (0.0, 3 / n, 0.31, 0.5, 1 - 5 / n, 1.0):
            x = float(np.round(frac * n))
            logit = float(np.log((x + 0.5) / (n - x + 0.5)))
            cases.append((n, x, logit))
    n, x, logit = (np.asarray(c, dtype) for c in zip(*cases, strict=True))
    got = np.asarray(jax.jit(lambda n, x, lg: llx.Binomial(n).nll(x, lg))(n, x, logit))
    want = np.array(
        [_mp_binomial_nll(*map(float, c)) for c in zip(n, x, logit, strict=True)]
    )
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    assert np.max(np.abs(got - want) / np.maximum(1, np.abs(want))) < tol


def test_categorical_scalar_label_broadcasts_against_batched_logits():
    logits = jnp.log(jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))
    got = llx.Categorical().nll(2, logits)
    np.testing.assert_allclose(got, [-np.log(0.5), -np.log(0.1)], rtol=1e-12)
    rows = llx.Categorical().nll(jnp.array([[0], [2]]), logits[0])
    np.testing.assert_allclose(rows, [[-np.log(0.2)], [-np.log(0.5)]], rtol=1e-12)
