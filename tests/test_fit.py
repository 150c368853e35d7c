"""`llx.fit`: stopping, statuses, nothing lost, checkpoints, minibatches, vmap, jit.

Oracles: closed forms (least squares, the Gaussian MLE of the scale), hand-written
optax loops (the same optimiser stepped in Python), and separate fits for vmap.
Real-data comparisons with statsmodels / scikit-learn are in `test_fit_data.py`.
"""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import likelax as llx
import likelax._fit as fit_module

N, D = 200, 3
# Optimisers created once and shared: the same static configuration reuses the
# compiled loop across tests (as it does for a user).
ADAM = optax.adam(0.05)
SGD = optax.sgd(0.1)


def linear(p, u):
    return u @ p["w"] + p["b"]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(N, D))
    y = u @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.7 * rng.normal(size=N)
    p0 = {"w": jnp.zeros(D), "b": jnp.asarray(0.0)}
    return jnp.asarray(u), jnp.asarray(y), p0


def least_squares(u, y):
    design = np.c_[np.asarray(u), np.ones(len(u))]
    coef, *_ = np.linalg.lstsq(design, np.asarray(y), rcond=None)
    return coef


def flat(p):
    return np.r_[np.asarray(p["w"]), np.asarray(p["b"])]


# ------------------------------------------------------------- default optimiser


def test_default_lbfgs_reaches_least_squares(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(0.7))
    res = llx.fit(obj, p0, (u, y), progress=False)
    assert res.status == llx.Status.converged
    assert bool(res.converged)
    np.testing.assert_allclose(flat(res.params), least_squares(u, y), rtol=1e-8)
    # history: exact objective (constants included) at x0 and at the end.
    assert res.history.shape == (1000 + 1,)
    np.testing.assert_allclose(res.history[0], obj(p0, (u, y)), rtol=1e-14)
    np.testing.assert_allclose(res.history[int(res.steps)], res.value, rtol=1e-14)
    np.testing.assert_allclose(res.value, obj(res.params, (u, y)), rtol=1e-12)
    assert np.all(np.isnan(res.history[int(res.steps) + 1 :]))
    assert int(res.steps) < 50
    assert float(res.grad_norm) <= 1e-6 * abs(float(res.value))


def test_learned_scale_is_the_gaussian_mle(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale")
    res = llx.fit(obj, p0, (u, y), progress=False)
    assert res.status == llx.Status.converged
    coef = least_squares(u, y)
    rss = np.sum((np.asarray(y) - np.c_[np.asarray(u), np.ones(N)] @ coef) ** 2)
    fitted = res.objective.terms[0].noise
    assert isinstance(fitted, llx.Gaussian)
    np.testing.assert_allclose(fitted.scale, np.sqrt(rss / N), rtol=1e-7)
    np.testing.assert_allclose(flat(res.params), coef, rtol=1e-7)
    # The exact Gaussian log-likelihood at the MLE: N/2 (1 + log 2π σ̂²).
    np.testing.assert_allclose(
        res.value, N / 2 * (1 + np.log(2 * np.pi * rss / N)), rtol=1e-12
    )


def test_python_float_leaves_are_trained_and_other_leaves_held(problem):
    u, y, _ = problem
    p0 = {"w": jnp.zeros(D), "b": 0.0, "tag": jnp.arange(3), "act": jnp.tanh}
    model = lambda p, u: linear(p, u) + 0.0 * p["tag"][0]
    res = llx.fit(llx.likelihood(model, llx.Gaussian(1.0)), p0, (u, y))
    np.testing.assert_allclose(flat(res.params), least_squares(u, y), rtol=1e-8)
    np.testing.assert_array_equal(res.params["tag"], np.arange(3))
    assert res.params["act"] is jnp.tanh


def test_prior_hyperparameters_stay_fixed(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale") + llx.prior(
        llx.Gaussian(0.5)
    )
    res = llx.fit(obj, p0, (u, y), progress=False)
    assert res.status == llx.Status.converged
    assert float(res.objective.terms[1].noise.scale) == 0.5
    assert float(res.objective.terms[0].noise.scale) != 1.0


# ---------------------------------------------------------- any optax optimiser


def hand_loop(loss, opt, p, steps):
    """The oracle: a plain Python loop over the same optax optimiser."""
    state = opt.init(p)
    values = []
    for _ in range(steps):
        v, g = jax.value_and_grad(loss)(p)
        values.append(float(v))
        updates, state = opt.update(g, state, p)
        p = optax.apply_updates(p, updates)
    values.append(float(loss(p)))
    return p, np.array(values)


@pytest.mark.parametrize(
    "opt",
    [
        optax.adam(0.05),
        optax.chain(optax.clip_by_global_norm(50.0), optax.sgd(1e-3, momentum=0.9)),
    ],
    ids=["adam", "clip+sgd"],
)
def test_any_optax_transformation_matches_a_hand_loop(problem, opt):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(0.7))
    steps = 40
    res = llx.fit(obj, p0, (u, y), optimizer=opt, steps=steps, tol=0.0, ftol=-1.0)
    assert res.status == llx.Status.budget
    assert int(res.steps) == steps
    p_ref, values = hand_loop(lambda p: obj(p, (u, y)), opt, p0, steps)
    np.testing.assert_allclose(flat(res.params), flat(p_ref), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.history, values, rtol=1e-10)


# Weight decay on the weights, not on the bias: as a mask pytree and as a function.
DECAY_MASKS = {
    "pytree": {"w": True, "b": False},
    "function": lambda p: jax.tree.map(lambda a: jnp.ndim(a) > 0, p),
}


@pytest.mark.parametrize("mask", DECAY_MASKS.values(), ids=DECAY_MASKS.keys())
def test_masked_adamw_sees_params_as_a_hand_loop_does(problem, mask):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(0.7))
    opt = optax.adamw(0.05, weight_decay=0.5, mask=mask)
    res = llx.fit(obj, p0, (u, y), optimizer=opt, steps=40, tol=0.0, ftol=-1.0)
    p_ref, values = hand_loop(lambda p: obj(p, (u, y)), opt, p0, 40)
    np.testing.assert_allclose(flat(res.params), flat(p_ref), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.history, values, rtol=1e-10)


def hand_loop_learned(obj, data, opt, learned_opt, p, steps):
    """The oracle with learned hyperparameters: `opt` steps the parameters and
    `learned_opt` the unconstrained hyperparameters, each with its own state."""
    grad = jax.jit(jax.grad(lambda p, h: obj.with_learned(h)(p, data), argnums=(0, 1)))
    h = obj.learned()
    state, h_state = opt.init(p), learned_opt.init(h)
    for _ in range(steps):
        g, g_h = grad(p, h)
        updates, state = opt.update(g, state, p)
        h_updates, h_state = learned_opt.update(g_h, h_state, h)
        p, h = optax.apply_updates(p, updates), optax.apply_updates(h, h_updates)
    return p, h


@pytest.mark.parametrize("mask", DECAY_MASKS.values(), ids=DECAY_MASKS.keys())
def test_masked_adamw_with_a_learned_scale_matches_a_hand_loop(problem, mask):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale")
    opt = optax.adamw(0.05, weight_decay=0.5, mask=mask)
    if isinstance(mask, dict):  # written for `params`: the scale needs its own
        learned_opt = ADAM
        with pytest.raises(TypeError, match="learned_optimizer="):
            llx.fit(obj, p0, (u, y), optimizer=opt, steps=40)
    else:  # by default `opt` itself; the mask function exempts the scalar scale
        learned_opt = None
    res = llx.fit(
        obj,
        p0,
        (u, y),
        optimizer=opt,
        learned_optimizer=learned_opt,
        steps=40,
        tol=0.0,
        ftol=-1.0,
    )
    p_ref, h_ref = hand_loop_learned(obj, (u, y), opt, learned_opt or opt, p0, 40)
    np.testing.assert_allclose(flat(res.params), flat(p_ref), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        res.objective.noise.scale, np.exp(h_ref[0]["scale"]), rtol=1e-10
    )
    assert float(res.objective.noise.scale) != 1.0


def test_learned_optimizer_errors(problem):
    u, y, p0 = problem
    learned = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale")
    with pytest.raises(ValueError, match="together"):  # a line search is joint
        llx.fit(learned, p0, (u, y), learned_optimizer=ADAM)
    with pytest.raises(ValueError, match="learns no noise hyperparameters"):
        llx.fit(
            llx.likelihood(linear, llx.Gaussian(1.0)),
            p0,
            (u, y),
            optimizer=ADAM,
            learned_optimizer=ADAM,
        )


def test_no_retrace_for_new_data_or_new_start(problem):
    u, y, p0 = problem
    traces = []

    def counted(p, u):
        traces.append(None)
        return linear(p, u)

    obj = llx.likelihood(counted, llx.Gaussian(1.0), learn="scale")
    for default in (None, ADAM):
        steps = 1000 if default is None else 30
        llx.fit(obj, p0, (u, y), optimizer=default, steps=steps, progress=False)
        before = len(traces)
        for shift in (1.0, 2.0):
            p_new = jax.tree.map(lambda a: a + shift, p0)
            new_obj = obj.with_noise(llx.Gaussian(shift), learn="scale")
            llx.fit(new_obj, p_new, (u + shift, y * shift), optimizer=default, steps=steps)
        assert len(traces) == before, "a fit with new data of the same shape retraced"


# ------------------------------------------------------------------- stopping


def test_converged_at_the_start(problem):
    u, y, _ = problem
    coef = least_squares(u, y)
    p = {"w": jnp.asarray(coef[:D]), "b": jnp.asarray(coef[D])}
    for opt in (None, ADAM):
        res = llx.fit(llx.likelihood(linear, llx.Gaussian(1.0)), p, (u, y), optimizer=opt)
        assert res.status == llx.Status.converged
        assert int(res.steps) == 0
        np.testing.assert_array_equal(flat(res.params), coef)


@pytest.mark.parametrize("progress", [False, True])
def test_zero_steps_evaluates_the_start(problem, progress):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0))
    for opt in (None, ADAM):
        res = llx.fit(obj, p0, (u, y), optimizer=opt, steps=0, progress=progress)
        assert res.status == llx.Status.budget
        assert int(res.steps) == 0
        np.testing.assert_allclose(res.value, obj(p0, (u, y)), rtol=1e-14)
        np.testing.assert_allclose(res.history, [obj(p0, (u, y))], rtol=1e-14)


def test_budget_and_throw(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0))
    res = llx.fit(obj, p0, (u, y), optimizer=optax.sgd(1e-5), steps=5)
    assert res.status == llx.Status.budget
    assert int(res.steps) == 5
    assert "budget" in res.message
    with pytest.raises(llx.FitError, match="step budget ran out"):
        llx.fit(obj, p0, (u, y), optimizer=optax.sgd(1e-5), steps=5, throw=True)
    with pytest.raises(Exception, match="step budget ran out"):
        fitted = jax.jit(
            lambda data: llx.fit(
                obj, p0, data, optimizer=optax.sgd(1e-5), steps=5, throw=True
            )
        )
        jax.block_until_ready(fitted((u, y)).params)


def sqrt_objective(p, data):
    """Σ (y - w)² / 2 + sqrt(c - w): finite for w < c, NaN beyond."""
    (y, c) = data
    return 0.5 * jnp.sum((y - p["w"]) ** 2) + jnp.sqrt(c[0] - p["w"])


def test_learned_log_scale_thrown_past_100_in_float32_comes_back():
    """A first SGD step throws the learned log-scale from 0 to ~+125 (the residuals
    are 10× the initial scale): exp overflows float32 there, which used to end the
    fit as non-finite. The log-scale is held at ½ log max(float32) (the objective
    there is N (½ log max + ½ log 2π) + ~0), its gradient passes through, and SGD
    brings it back to the scale's MLE at the fitted parameters, √(mean r²)."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(N, D)).astype(np.float32)
    y = (u @ np.float32([1, -2, 0.5]) + 10 * rng.normal(size=N)).astype(np.float32)
    p0 = {"w": jnp.zeros(D, jnp.float32), "b": jnp.float32(0)}
    obj = llx.likelihood(linear, llx.Gaussian(jnp.float32(1.0)), learn="scale")
    # step 1 at lr 6e-3: +6e-3 (Σ y² − N) ≈ +125; then 4e-3 (stable at the optimum)
    sgd = optax.sgd(optax.piecewise_constant_schedule(6e-3, {1: 2 / 3}))
    res = llx.fit(
        obj, p0, (u, y), optimizer=ADAM, learned_optimizer=sgd, steps=400, tol=0.0
    )
    assert res.status == llx.Status.budget
    assert np.all(np.isfinite(res.history))
    held = 0.5 * np.log(np.finfo(np.float32).max)
    assert 6e-3 * (np.sum(y.astype(float) ** 2) - N) > 100
    np.testing.assert_allclose(
        res.history[1], N * (held + 0.5 * np.log(2 * np.pi)), rtol=1e-6
    )
    r = y - np.asarray(linear(res.params, u))
    np.testing.assert_allclose(res.objective.noise.scale, np.sqrt(np.mean(r**2)), rtol=1e-3)


def test_nonfinite_stops_and_keeps_the_last_finite_parameters():
    y = jnp.full((4,), 10.0)
    c = jnp.full((4,), 3.0)
    p0 = {"w": jnp.asarray(0.0)}
    opt = SGD
    res = llx.fit(sqrt_objective, p0, (y, c), optimizer=opt, steps=50, progress=False)
    # Oracle: step plain SGD in Python until the objective is no longer finite.
    p, last_finite, k = p0, None, 0
    while True:
        v, g = jax.value_and_grad(sqrt_objective)(p, (y, c))
        if not (np.isfinite(v) and np.isfinite(g["w"])):
            break
        last_finite = p
        updates, _ = opt.update(g, opt.init(p), p)
        p = optax.apply_updates(p, updates)
        k += 1
    assert last_finite is not None
    assert res.status == llx.Status.nonfinite
    assert int(res.steps) == k - 1
    assert float(res.params["w"]) == float(last_finite["w"])
    assert float(res.params["w"]) < 3.0
    assert np.isfinite(res.value)
    assert np.all(np.isfinite(res.history[:k]))
    assert not np.isfinite(res.history[k])
    assert f"non-finite at step {k}" in res.message
    with pytest.raises(llx.FitError, match="non-finite"):
        llx.fit(sqrt_objective, p0, (y, c), optimizer=opt, steps=50, throw=True)


def test_nonfinite_at_the_start():
    y = jnp.full((4,), 10.0)
    c = jnp.full((4,), -1.0)
    p0 = {"w": jnp.asarray(0.0)}
    for opt, steps in ((None, 100), (SGD, 50)):
        res = llx.fit(sqrt_objective, p0, (y, c), optimizer=opt, steps=steps)
        assert res.status == llx.Status.nonfinite
        assert int(res.steps) == 0
        assert float(res.params["w"]) == 0.0
        assert np.isnan(res.value)


def test_default_lbfgs_stalls_at_a_nan_boundary():
    # The objective decreases towards w = 3 and is NaN beyond: the line search
    # backs away from the NaN region and can no longer decrease the objective.
    y = jnp.full((4,), 10.0)
    c = jnp.full((4,), 3.0)
    res = llx.fit(sqrt_objective, {"w": jnp.asarray(0.0)}, (y, c), steps=100)
    assert res.status == llx.Status.stalled
    assert "stalled" in res.message
    assert float(res.params["w"]) < 3.0
    np.testing.assert_allclose(res.value, sqrt_objective(res.params, (y, c)), rtol=1e-14)
    # the best point is kept: no recorded value is lower than the returned one
    assert float(res.value) == np.nanmin(np.asarray(res.history))
    assert float(res.grad_norm) > 1.0  # not a stationary point


# ---------------------------------------------------------------- minibatches


def test_minibatch_visits_every_row_once_per_epoch():
    # objective = scale * Σ_batch p[row]: SGD(1) after e epochs gives p = -e N/B,
    # for every row, iff each epoch visits each row exactly once with scale N/B.
    n, b = 12, 4

    def visits(p, data, likelihood_scale=1.0):
        (rows,) = data
        return likelihood_scale * jnp.sum(p[rows])

    p0 = jnp.zeros(n)
    for epochs in (1, 3):
        res = llx.fit(
            visits,
            p0,
            (jnp.arange(n),),
            optimizer=optax.sgd(1.0),
            steps=epochs * n // b,
            batch_size=b,
            key=jax.random.key(0),
            progress=False,
        )
        np.testing.assert_array_equal(res.params, np.full(n, -epochs * n / b))
        # The last history entry is the minibatch objective; `value` is the full one.
        np.testing.assert_allclose(res.value, visits(res.params, (jnp.arange(n),)))


def test_minibatch_order_is_reshuffled_each_epoch():
    n, b = 8, 2

    def first_rows(p, data, likelihood_scale=1.0):
        (rows,) = data
        # Gradient wrt p[k] at step t: t-independent indicator of the batch.
        return jnp.sum(p[rows])

    # SGD with a schedule 2^t tags each step: p[row] = -2^t for the step t that saw it.
    sched = lambda t: 2.0**t
    res = llx.fit(
        first_rows,
        jnp.zeros(n),
        (jnp.arange(n),),
        optimizer=optax.sgd(sched),
        steps=2 * n // b,
        batch_size=b,
        key=jax.random.key(1),
    )
    tags = -np.asarray(res.params).astype(np.int64)
    # each row was seen once in epoch 0 (bits 0..3) and once in epoch 1 (bits 4..7)
    epoch0 = tags & 0b1111
    epoch1 = tags >> 4
    assert sorted(np.log2(epoch0).astype(int).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sorted(np.log2(epoch1).astype(int).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not np.array_equal(epoch0, epoch1), "the second epoch reused the first order"


def test_minibatch_map_targets_the_full_batch_optimum(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(0.7)) + llx.prior(llx.Gaussian(0.1))
    full = llx.fit(obj, p0, (u, y), progress=False)
    schedule = optax.exponential_decay(0.1, transition_steps=200, decay_rate=0.01)
    mini = llx.fit(
        obj,
        p0,
        (u, y),
        optimizer=optax.adam(schedule),
        steps=1000,
        batch_size=20,
        key=jax.random.key(0),
        progress=False,
    )
    assert mini.status == llx.Status.budget  # minibatch fits run their budget
    np.testing.assert_allclose(flat(mini.params), flat(full.params), atol=5e-3)
    # The MAP optimum is shrunk: a prior term on the unscaled side of N/B.
    unscaled = llx.fit(
        lambda p, d, likelihood_scale=1.0: obj(p, d),
        p0,
        (u, y),
        optimizer=optax.adam(schedule),
        steps=1000,
        batch_size=20,
        key=jax.random.key(0),
    )
    assert np.max(np.abs(flat(unscaled.params) - flat(full.params))) > 5e-2


# ------------------------------------------------------------- jit and vmap


def test_fit_under_jit_equals_eager(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale")
    eager = llx.fit(obj, p0, (u, y), progress=False)
    jitted = eqx.filter_jit(lambda o, d: llx.fit(o, p0, d, progress=True))(obj, (u, y))
    assert jitted.status == llx.Status.converged
    np.testing.assert_allclose(flat(jitted.params), flat(eager.params), rtol=1e-12)
    np.testing.assert_allclose(jitted.history, eager.history, rtol=1e-12)


def test_vmap_over_prior_strengths_equals_separate_fits(problem):
    u, y, p0 = problem
    sigma = 0.7
    taus = jnp.geomspace(0.01, 10.0, 8)

    def one(tau):
        obj = llx.likelihood(linear, llx.Gaussian(sigma)) + llx.prior(llx.Gaussian(tau))
        res = llx.fit(obj, p0, (u, y), progress=True)  # progress: off inside vmap
        return res.params, res.status == llx.Status.converged, res.value

    params, ok, values = jax.vmap(one)(taus)
    assert bool(jnp.all(ok))
    design = np.c_[np.asarray(u), np.ones(N)]
    for i, tau in enumerate(np.asarray(taus)):
        # Oracle: the ridge normal equations, (AᵀA/σ² + I/τ²) θ = Aᵀy/σ².
        ridge = np.linalg.solve(
            design.T @ design / sigma**2 + np.eye(D + 1) / tau**2,
            design.T @ np.asarray(y) / sigma**2,
        )
        p, _, v = one(tau)
        batched = flat(jax.tree.map(lambda a: a[i], params))
        np.testing.assert_allclose(batched, ridge, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(flat(p), ridge, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(values[i], v, rtol=1e-13)


@pytest.fixture(scope="module")
def stackloss():
    rng = np.random.default_rng(5)
    u = rng.normal(size=(40, 2))
    y = u @ np.array([1.5, -0.5]) + 2.0 + rng.standard_t(2.5, size=40)
    return jnp.asarray(u), jnp.asarray(y)


def student_t_fit(df, u, y):
    obj = llx.likelihood(linear, llx.StudentT(df, 1.0), learn="scale")
    return llx.fit(obj, {"w": jnp.zeros(2), "b": jnp.asarray(0.0)}, (u, y))


def test_vmap_over_64_student_t_df_equals_separate_fits(stackloss):
    from scipy import optimize, stats

    u, y = stackloss
    dfs = jnp.geomspace(0.5, 200.0, 64)

    def one(df):
        res = student_t_fit(df, u, y)
        return res.params, res.objective.noise.scale, res.status == llx.Status.converged

    params, scales, ok = jax.vmap(one)(dfs)
    assert bool(jnp.all(ok))
    for i in range(0, 64, 7):
        p, s, _ = one(dfs[i])  # a separate fit (same compiled program: df is a leaf)
        np.testing.assert_allclose(params["w"][i], p["w"], rtol=1e-6)
        np.testing.assert_allclose(params["b"][i], p["b"], rtol=1e-6)
        np.testing.assert_allclose(scales[i], s, rtol=1e-6)
    # Independent oracle for a few df: scipy's t density minimised by BFGS.
    for i in (0, 31, 63):
        df = float(dfs[i])

        def nll(theta, df=df):
            loc = np.asarray(u) @ theta[:2] + theta[2]
            return -np.sum(
                stats.t.logpdf(np.asarray(y), df, loc=loc, scale=np.exp(theta[3]))
            )

        ref = optimize.minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-9})
        ours = np.r_[params["w"][i], params["b"][i], np.log(scales[i])]
        np.testing.assert_allclose(ours, ref.x, rtol=1e-5, atol=1e-6)


def test_vmap_over_families_with_switch(stackloss):
    # Adam here: under vmap, `lax.switch` evaluates every family at every
    # evaluation, and a line search would compile three evaluations per step.
    u, y = stackloss
    sw = llx.switch([llx.Gaussian(1.0), llx.StudentT(4.0, 1.0), llx.Cauchy(1.0)])
    p0 = {"w": jnp.zeros(2), "b": jnp.asarray(0.0)}

    def one(index):
        obj = llx.likelihood(linear, sw.at(index), learn=True)
        res = llx.fit(obj, p0, (u, y), optimizer=ADAM, steps=300, tol=0.0)
        return res.params, res.history

    params, history = jax.vmap(one)(jnp.arange(3))
    for k in range(3):  # separate fits (one compiled program: the index is a leaf)
        p, h = one(jnp.asarray(k, jnp.int32))
        np.testing.assert_allclose(params["w"][k], p["w"], rtol=1e-10)
        np.testing.assert_allclose(history[k], h, rtol=1e-10)
    # the families differ: the heavy-tailed fits are not the Gaussian one
    w = np.asarray(params["w"])
    assert np.min(np.abs(w[1:] - w[0][None])) > 1e-3


# ---------------------------------------------------------------- checkpoints


class Interrupt:
    """Raise KeyboardInterrupt on the k-th chunk, as a user's Ctrl-C would."""

    def __init__(self, monkeypatch, k):
        self.calls = 0
        self.k = k
        real = fit_module._advance

        def advance(*args):
            self.calls += 1
            if self.calls == self.k:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(fit_module, "_advance", advance)


@pytest.mark.parametrize("mode", ["lbfgs", "minibatch-adam"])
def test_interrupted_and_resumed_fit_is_bit_identical(problem, tmp_path, monkeypatch, mode):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale") + llx.prior(
        llx.Gaussian(3.0)
    )
    kwargs = dict(steps=60, tol=0.0, ftol=-1.0, progress=False)
    if mode == "minibatch-adam":
        kwargs.update(optimizer=ADAM, batch_size=32, key=jax.random.key(3))
    else:
        kwargs.update(steps=1000)  # converges (within rounding) after 15 steps
    every = 7 if mode == "minibatch-adam" else 5
    whole = llx.fit(obj, p0, (u, y), **kwargs)

    path = tmp_path / "fit.eqx"
    with monkeypatch.context() as m:
        Interrupt(m, 3)
        with pytest.raises(KeyboardInterrupt):
            llx.fit(obj, p0, (u, y), checkpoint_every=every, checkpoint_path=path, **kwargs)
    assert path.exists()
    resumed = llx.fit(
        obj, p0, (u, y), checkpoint_every=every, checkpoint_path=path, resume=True, **kwargs
    )
    assert int(resumed.steps) == int(whole.steps)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)  # bit-identical
    # A finished checkpoint resumes to the same result at once.
    again = llx.fit(obj, p0, (u, y), resume=path, **kwargs)
    np.testing.assert_array_equal(flat(again.params), flat(whole.params))


def test_checkpoints_are_written_every_k_steps(problem, tmp_path, monkeypatch):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0))
    saved = []
    real = fit_module._save
    monkeypatch.setattr(
        fit_module,
        "_save",
        lambda path, pr, st: (saved.append(int(st.step)), real(path, pr, st)),
    )
    llx.fit(
        obj,
        p0,
        (u, y),
        optimizer=ADAM,
        steps=23,
        tol=0.0,
        checkpoint_every=5,
        checkpoint_path=tmp_path / "c.eqx",
        progress=False,
    )
    assert saved == [5, 10, 15, 20, 23]


def test_resume_from_a_different_fit_raises(problem, tmp_path):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0))
    path = tmp_path / "c.eqx"
    llx.fit(
        obj, p0, (u, y), optimizer=ADAM, steps=30, checkpoint_every=5, checkpoint_path=path
    )
    with pytest.raises(ValueError, match="different fit"):
        llx.fit(obj, p0, (u, y), optimizer=ADAM, steps=23, resume=path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        llx.fit(obj, p0, (u, y), resume=tmp_path / "missing.eqx")
    # resume=True with no file yet starts afresh
    res = llx.fit(obj, p0, (u, y), checkpoint_path=tmp_path / "new.eqx", resume=True)
    assert res.status == llx.Status.converged
    assert (tmp_path / "new.eqx").exists()


# ------------------------------------------------------------------- progress


def test_progress_bar_shows_the_objective(problem, capsys):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0))
    llx.fit(obj, p0, (u, y), optimizer=ADAM, steps=30, tol=0.0, progress=True)
    err = capsys.readouterr().err
    assert "30/30" in err
    assert re.search(r"objective=[0-9.e+]+", err)
    llx.fit(obj, p0, (u, y), optimizer=ADAM, steps=30, tol=0.0, progress=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------- errors


def test_argument_errors(problem):
    u, y, p0 = problem
    obj = llx.likelihood(linear, llx.Gaussian(1.0))
    with pytest.raises(ValueError, match="same length"):
        llx.fit(obj, p0, (u, y[:-1]))
    with pytest.raises(ValueError, match="need a PRNG key"):
        llx.fit(obj, p0, (u, y), batch_size=10)
    with pytest.raises(ValueError, match="exceeds the number of rows"):
        llx.fit(obj, p0, (u, y), batch_size=N + 1, key=jax.random.key(0))
    with pytest.raises(TypeError, match="likelihood_scale"):
        llx.fit(lambda p, d: obj(p, d), p0, (u, y), batch_size=10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="must return a scalar"):
        llx.fit(lambda p, d: d[1] - linear(p, d[0]), p0, (u, y))
    with pytest.raises(ValueError, match="`steps`"):
        llx.fit(obj, p0, (u, y), steps=-1)
    with pytest.raises(ValueError, match="checkpoint_path"):
        llx.fit(obj, p0, (u, y), checkpoint_every=3)
    with pytest.raises(TypeError, match="GradientTransformation"):
        llx.fit(obj, p0, (u, y), optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoints need concrete arrays"):
        jax.jit(lambda d: llx.fit(obj, p0, d, checkpoint_path="x.eqx").params)((u, y))
