"""Objectives as data: the seed's identities, checked against independent oracles.

Oracles: numpy's linear solvers (ridge, least squares), scikit-learn's `Ridge`,
statsmodels' OLS log-likelihood, scipy.stats log densities, optax's own transforms.
"""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats as st
from jax.flatten_util import ravel_pytree

import likelax as llx

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.exists():  # the checkout may sit elsewhere; fall back to the shared copy
    DATA = Path("/work/shared/data")


def _standardised(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with every column standardised; y is the first column."""
    table = np.genfromtxt(DATA / name, delimiter=",", names=True)
    cols = table.dtype.names
    assert cols is not None
    y = np.asarray(table[cols[0]], float)
    X = np.stack([np.asarray(table[c], float) for c in cols[1:]], axis=1)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def linear(p, u):
    return u @ p["w"] + p["b"]


def _params(k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=k)), "b": jnp.asarray(rng.normal())}


def _newton_minimiser(objective, params, data):
    """The exact minimiser of a quadratic objective: one Newton step from `params`
    (a direct solve with the objective's own Hessian, no iterative optimiser)."""
    flat, unravel = ravel_pytree(params)
    f = lambda v: objective(unravel(v), data)
    g = jax.grad(f)(flat)
    H = jax.hessian(f)(flat)
    return unravel(flat - np.linalg.solve(np.asarray(H), np.asarray(g)))


def _gauss_nll_sum(x, loc, scale):
    return -np.sum(st.norm.logpdf(np.asarray(x), np.asarray(loc), scale))


# --------------------------------------------------------------- MAP identities


@pytest.mark.parametrize("masked", [False, True], ids=["all-leaves", "weights-only"])
def test_gaussian_prior_gradient_is_add_decayed_weights(masked):
    """∇[Σ nll + Σ θ²/2τ²] = ∇Σ nll + add_decayed_weights(λ = 1/τ²) applied to it."""
    X, y = _standardised("longley.csv")
    tau = 0.7
    lam = 1 / tau**2
    mask = {"w": True, "b": False} if masked else None
    lik = llx.likelihood(linear, llx.Gaussian(0.3))
    objective = lik + llx.prior(llx.Gaussian(tau), on=mask)
    params = _params(X.shape[1])
    g_map = jax.grad(objective)(params, (X, y))
    g_lik = jax.grad(lik)(params, (X, y))
    decay = optax.add_decayed_weights(lam, mask=mask)
    g_decayed, _ = decay.update(g_lik, decay.init(params), params)
    for k in params:
        np.testing.assert_allclose(g_map[k], g_decayed[k], rtol=1e-12, atol=1e-12)
    if masked:  # the bias is not decayed
        np.testing.assert_allclose(g_map["b"], g_lik["b"], rtol=1e-13)


def test_gaussian_map_is_ridge_on_longley():
    """MAP with N(0, τ²) on the weights (not the intercept) and N(·, σ²) noise is
    ridge regression with α = σ²/τ² (numpy normal equations; scikit-learn Ridge)."""
    from sklearn.linear_model import Ridge

    X, y = _standardised("longley.csv")
    sigma, tau = 0.2, 0.5
    objective = llx.likelihood(linear, llx.Gaussian(sigma)) + llx.prior(
        llx.Gaussian(tau), on=lambda p: p["w"]
    )
    p_map = _newton_minimiser(objective, _params(X.shape[1]), (X, y))

    n, k = X.shape
    alpha = sigma**2 / tau**2
    A = np.c_[X, np.ones(n)]
    penalty = np.diag([alpha] * k + [0.0])
    coef = np.linalg.solve(A.T @ A + penalty, A.T @ y)
    np.testing.assert_allclose(p_map["w"], coef[:k], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p_map["b"], coef[k], atol=1e-10)

    ridge = Ridge(alpha=alpha, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(p_map["w"], ridge.coef_, rtol=1e-8, atol=1e-10)
    # and it is a stationary point of the objective itself
    grad = ravel_pytree(jax.grad(objective)(p_map, (X, y)))[0]
    assert np.max(np.abs(grad)) < 1e-8


def _run(opt, f, p0, data, steps):
    def step(carry, _):
        p, s = carry
        upd, s = opt.update(jax.grad(f)(p, data), s, p)
        return (optax.apply_updates(p, upd), s), None

    (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, steps)
    return p


def test_adamw_is_not_map():
    """Decoupled decay is not a prior's gradient under Adam's preconditioning.

    AdamW's fixed point solves m̂/(√v̂+ε) = −λθ; since |m̂/√v̂| ≤ 1, it can never
    leave the box |θ| ≤ 1/λ, while the MAP estimate (ridge) does. Adam on the MAP
    gradient (add_decayed_weights *before* Adam) reaches the MAP estimate with the
    same schedule, so the gap is not an optimisation failure.
    """
    X, y = _standardised("stackloss.csv")
    sigma, tau = 0.5, 0.5
    lam = 1 / tau**2
    mask = {"w": True, "b": False}
    lik = llx.likelihood(linear, llx.Gaussian(sigma))
    objective = lik + llx.prior(llx.Gaussian(tau), on=mask)
    n, k = X.shape
    A = np.c_[X, np.ones(n)]
    ridge = np.linalg.solve(A.T @ A + np.diag([sigma**2 / tau**2] * k + [0.0]), A.T @ y)
    assert np.max(np.abs(ridge[:k])) > 2 / lam  # MAP lies outside AdamW's box

    p0 = {"w": jnp.zeros(k), "b": jnp.zeros(())}
    steps = 6000
    sched = optax.exponential_decay(0.05, steps, 1e-4)
    adamw = optax.adamw(sched, weight_decay=lam, mask=mask)
    coupled = optax.chain(optax.add_decayed_weights(lam, mask=mask), optax.adam(sched))
    p_adamw = jax.jit(lambda: _run(adamw, lik, p0, (X, y), steps))()
    p_coupled = jax.jit(lambda: _run(coupled, lik, p0, (X, y), steps))()

    np.testing.assert_allclose(p_coupled["w"], ridge[:k], atol=1e-5)
    assert np.max(np.abs(p_adamw["w"])) <= 1 / lam * (1 + 1e-6)
    assert np.max(np.abs(p_adamw["w"] - ridge[:k])) > 0.3
    g = jax.grad(objective)(p_adamw, (X, y))
    assert np.max(np.abs(g["w"])) > 10.0  # far from stationary for the MAP objective


def test_laplace_map_is_lasso_on_longley():
    """MAP with a Laplace(b) prior on the weights and N(·, σ²) noise is the lasso with
    α = σ²/(N b) (scikit-learn's objective is ‖r‖²/2N + α‖w‖₁): sklearn's solution
    satisfies the KKT conditions of the likelax objective and no nearby point is
    lower (the objective is convex)."""
    from sklearn.linear_model import Lasso

    X, y = _standardised("longley.csv")
    n = len(y)
    sigma, b = 0.1, 0.1
    lasso = Lasso(alpha=sigma**2 / (n * b), tol=1e-14, max_iter=10**6).fit(X, y)
    w = lasso.coef_
    assert 0 < np.sum(w == 0) < len(w)  # a sparse solution, with both kinds of KKT
    lik = llx.likelihood(linear, llx.Gaussian(sigma))
    objective = lik + llx.prior(llx.Laplace(b), on=lambda p: p["w"])
    p = {"w": jnp.asarray(w), "b": jnp.asarray(lasso.intercept_)}
    g = jax.grad(lik)(p, (X, y))
    nz = w != 0
    np.testing.assert_allclose(g["w"][nz] * b, -np.sign(w[nz]), atol=1e-7)
    assert np.all(np.abs(g["w"][~nz] * b) < 1)
    g_map = jax.grad(objective)(p, (X, y))  # the prior's gradient is sign(w)/b
    np.testing.assert_allclose(g_map["w"][nz] * b, 0, atol=1e-7)
    np.testing.assert_allclose(g_map["b"], 0, atol=1e-9)
    v = objective(p, (X, y))
    rng = np.random.default_rng(0)
    for _ in range(20):
        dp = jax.tree.map(lambda x: x + 1e-4 * rng.normal(size=np.shape(x)), p)
        assert objective(dp, (X, y)) >= v - 1e-12


def test_l1_and_heavy_tailed_priors_match_scipy():
    params = {"w": jnp.asarray([0.3, -2.0, 7.5]), "b": jnp.asarray(-0.4)}
    w = np.asarray(params["w"])
    l1 = llx.prior(llx.Laplace(0.5), on={"w": True, "b": False})
    np.testing.assert_allclose(
        l1(params), -np.sum(st.laplace.logpdf(w, 0, 0.5)), rtol=1e-13
    )
    heavy = llx.prior(llx.StudentT(3.0, 0.2))
    expected = -np.sum(st.t.logpdf(np.r_[w, -0.4], 3.0, 0, 0.2))
    np.testing.assert_allclose(heavy(params), expected, rtol=1e-13)
    assert str(l1) == "−Σ_{w} log Laplace(θ | 0, b=0.5)"
    assert str(heavy) == "−Σ log StudentT(θ | 0, ν=3, σ=0.2)"


def test_mse_and_gaussian_mle_have_the_same_minimiser():
    """argmin MSE = argmin Σ Gaussian nll for any σ; at the optimum the MLE of σ is
    √(RSS/N) and the maximised log-likelihood is statsmodels OLS's `llf`."""
    import statsmodels.api as sm

    X, y = _standardised("stackloss.csv")
    n, k = X.shape
    coef, *_ = np.linalg.lstsq(np.c_[X, np.ones(n)], y, rcond=None)
    mse = lambda p, d: jnp.mean(optax.l2_loss(linear(p, d[0]), d[1]))
    p_mse = _newton_minimiser(mse, _params(k), (X, y))
    np.testing.assert_allclose(p_mse["w"], coef[:k], rtol=1e-10, atol=1e-12)
    for sigma in (0.1, 3.7):
        mle = llx.likelihood(linear, llx.Gaussian(sigma))
        p_mle = _newton_minimiser(mle, _params(k, 1), (X, y))
        np.testing.assert_allclose(p_mle["w"], p_mse["w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(p_mle["b"], p_mse["b"], atol=1e-12)

    # learned scale: the gradient in log σ vanishes at σ̂² = RSS/N
    objective = llx.likelihood(linear, llx.Gaussian(1.0), learn="scale")
    rss = float(np.sum((y - np.c_[X, np.ones(n)] @ coef) ** 2))
    u_hat = {0: {"scale": jnp.asarray(0.5 * np.log(rss / n))}}
    value, grad = jax.value_and_grad(lambda u: objective.with_learned(u)(p_mse, (X, y)))(
        u_hat
    )
    assert abs(float(grad[0]["scale"])) < 1e-10
    llf = sm.OLS(y, sm.add_constant(X)).fit().llf
    np.testing.assert_allclose(value, -llf, rtol=1e-12)


# ---------------------------------------------------------------- the algebra


def _lik_prior():
    X, y = _standardised("stackloss.csv")
    lik = llx.likelihood(linear, llx.Gaussian(0.8))
    prior = llx.prior(llx.Gaussian(1.5), on={"w": True, "b": False})
    return lik, prior, _params(X.shape[1]), (X, y)


def test_value_matches_scipy():
    lik, prior, p, (X, y) = _lik_prior()
    expected_lik = _gauss_nll_sum(y, X @ p["w"] + p["b"], 0.8)
    expected_prior = _gauss_nll_sum(p["w"], 0.0, 1.5)
    np.testing.assert_allclose(lik(p, (X, y)), expected_lik, rtol=1e-13)
    np.testing.assert_allclose(prior(p), expected_prior, rtol=1e-13)
    objective = lik + prior
    np.testing.assert_allclose(
        objective(p, (X, y)), expected_lik + expected_prior, rtol=1e-13
    )
    values = objective.values(p, (X, y))
    np.testing.assert_allclose(values, [expected_lik, expected_prior], rtol=1e-13)


@pytest.mark.parametrize("w", [0.25, 3.0])
def test_tempered_term_scales_exactly(w):
    lik, prior, p, data = _lik_prior()
    v, g = jax.value_and_grad(lik)(p, data)
    for tempered in (w * lik, lik * w, lik / (1 / w), np.float64(w) * lik):
        vt, gt = jax.value_and_grad(tempered)(p, data)
        np.testing.assert_allclose(vt, w * v, rtol=1e-14)
        for key in p:
            np.testing.assert_allclose(gt[key], w * g[key], rtol=1e-14)
    # weights compose and distribute over sums
    np.testing.assert_allclose((2 * lik * w)(p, data), 2 * w * v, rtol=1e-14)
    both = w * (lik + prior)
    np.testing.assert_allclose(both(p, data), w * (v + prior(p)), rtol=1e-14)
    # likelihood_scale multiplies the likelihood terms only (minibatch rescaling)
    np.testing.assert_allclose(
        (lik + w * prior)(p, data, likelihood_scale=7.0), 7.0 * v + w * prior(p), rtol=1e-14
    )


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16])
def test_low_precision_dtypes(dtype):
    """float32 stays float32 (weights and likelihood_scale are cast, not promoted to
    float64); 16-bit nlls are summed in float32."""
    lik, prior, p, (X, y) = _lik_prior()
    cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)
    objective = 0.5 * lik + prior
    value = objective(cast(p), cast((X, y)), likelihood_scale=3.0)
    assert value.dtype == jnp.float32
    expected = 1.5 * lik(p, (X, y)) + prior(p)
    rtol = 1e-5 if dtype == np.float32 else 2e-2
    np.testing.assert_allclose(float(value), float(expected), rtol=rtol)
    g = jax.grad(objective)(cast(p), cast((X, y)))
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(g))


def test_sum_builtin_and_flattening():
    lik, prior, p, data = _lik_prior()
    total = sum([lik, prior, 0.5 * prior])
    assert isinstance(total, llx.Objective)
    assert len(total.terms) == 3
    assert (lik + (prior + prior)).terms == (lik, prior, prior)
    np.testing.assert_allclose(total(p, data), lik(p, data) + 1.5 * prior(p), rtol=1e-14)


def test_algebra_errors():
    lik, prior, _, _ = _lik_prior()
    with pytest.raises(TypeError, match="scaled by a number"):
        lik * prior
    with pytest.raises(TypeError, match="must be a scalar"):
        jnp.ones(2) * lik
    with pytest.raises(TypeError, match="must be a scalar"):
        lik * np.ones(3)
    with pytest.raises(ValueError, match=">= 0"):
        -1.0 * lik
    with pytest.raises(TypeError, match="negating it"):
        -lik  # noqa: B018
    with pytest.raises(TypeError):
        lik + 1.0


def test_loss_drops_only_constants():
    X, y = _standardised("stackloss.csv")
    objective = llx.likelihood(linear, llx.Gaussian(0.8)) + llx.prior(llx.Gaussian(1.5))
    p1, p2 = _params(X.shape[1], 1), _params(X.shape[1], 2)
    d1 = objective(p1, (X, y)) - objective.loss(p1, (X, y))
    d2 = objective(p2, (X, y)) - objective.loss(p2, (X, y))
    n_theta = X.shape[1] + 1
    const = len(y) * (np.log(0.8) + 0.5 * np.log(2 * np.pi))
    const += n_theta * (np.log(1.5) + 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose([d1, d2], [const, const], rtol=1e-13)
    g, gl = jax.grad(objective)(p1, (X, y)), jax.grad(objective.loss)(p1, (X, y))
    for k in p1:
        np.testing.assert_allclose(g[k], gl[k], rtol=1e-13)


# ------------------------------------------------------------------ priors


def test_prior_selection_mask_prefix_and_function():
    params = {
        "enc": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)},
        "dec": {"w": jnp.full((3, 2), -0.5), "b": jnp.zeros(2)},
        "step": jnp.asarray(3),  # an integer leaf: never covered
    }
    tau = 2.0
    by_mask = llx.prior(llx.Gaussian(tau), on={"enc": True, "dec": False, "step": True})
    by_fn = llx.prior(llx.Gaussian(tau), on=lambda p: [p["enc"]["w"], p["enc"]["b"]])
    everything = llx.prior(llx.Gaussian(tau))
    enc = np.r_[np.ravel(params["enc"]["w"]), params["enc"]["b"]]
    dec = np.r_[np.ravel(params["dec"]["w"]), params["dec"]["b"]]
    np.testing.assert_allclose(by_mask(params), _gauss_nll_sum(enc, 0, tau), rtol=1e-13)
    np.testing.assert_allclose(by_fn(params), _gauss_nll_sum(enc, 0, tau), rtol=1e-13)
    np.testing.assert_allclose(
        everything(params), _gauss_nll_sum(np.r_[enc, dec], 0, tau), rtol=1e-13
    )
    assert by_mask.covers(params) == ["enc.b", "enc.w"]
    assert by_fn.covers(params) == ["enc.w", "enc.b"]
    assert everything.covers(params) == ["dec.b", "dec.w", "enc.b", "enc.w"]
    # a full-structure mask
    mask = jax.tree.map(lambda x: bool(jnp.ndim(x) == 2), params)
    assert llx.prior(llx.Gaussian(tau), on=mask).covers(params) == ["dec.w", "enc.w"]


def test_prior_eager_equals_jit_with_python_scalars():
    """A Python float leaf is a parameter (jit makes it an array); an int is not."""
    params = {"a": 0.7, "n": 3, "w": jnp.asarray([1.0, -2.0])}
    prior = llx.prior(llx.Gaussian(2.0))
    expected = _gauss_nll_sum([0.7, 1.0, -2.0], 0, 2.0)
    np.testing.assert_allclose(prior(params), expected, rtol=1e-13)
    np.testing.assert_allclose(jax.jit(lambda o, p: o(p))(prior, params), expected)
    assert prior.covers(params) == ["a", "w"]


def test_prior_on_equinox_mlp_weights_not_biases():
    net = eqx.nn.MLP(3, 1, 8, 2, key=jax.random.key(0))
    weights = lambda m: [layer.weight for layer in m.layers]
    prior = llx.prior(llx.Gaussian(0.5), on=weights)
    w = np.concatenate([np.ravel(layer.weight) for layer in net.layers])
    np.testing.assert_allclose(prior(net), _gauss_nll_sum(w, 0, 0.5), rtol=1e-12)
    assert prior.covers(net) == ["layers[0].weight", "layers[1].weight", "layers[2].weight"]
    mask = jax.tree.map(lambda x: eqx.is_array(x) and x.ndim == 2, net)
    by_mask = llx.prior(llx.Gaussian(0.5), on=mask)
    np.testing.assert_allclose(by_mask(net), prior(net), rtol=1e-14)


def test_prior_errors():
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    bad = llx.prior(llx.Gaussian(1.0), on={"w": True, "c": False})
    with pytest.raises(
        ValueError, match="`on` mask does not match the structure of params"
    ):
        bad(params)
    with pytest.raises(ValueError, match="`on` mask does not match"):
        eqx.filter_jit(bad)(params)
    with pytest.raises(TypeError, match="boolean mask pytree"):
        llx.prior(llx.Gaussian(1.0), on={"w": np.array([True, False, True]), "b": False})
    with pytest.raises(ValueError, match="`on` raised KeyError"):
        llx.prior(llx.Gaussian(1.0), on=lambda p: p["missing"])(params)
    with pytest.raises(TypeError, match=r"did you mean `Gaussian\(...\)`"):
        llx.prior(llx.Gaussian)  # type: ignore[arg-type]


# ------------------------------------------------------------------- display


def weights(p):
    return p["w"]


def test_str():
    lik = llx.likelihood(linear, llx.Gaussian(0.5))
    l2 = llx.prior(llx.Gaussian(1.0), on={"w": True, "b": False})
    assert str(lik + l2) == "−Σ log N(y | linear(θ, u), σ=0.5) − Σ_{w} log N(θ | 0, σ=1)"
    assert str(0.25 * lik + 2 * llx.prior(llx.Gaussian(3.0))) == (
        "−0.25 Σ log N(y | linear(θ, u), σ=0.5) − 2 Σ log N(θ | 0, σ=3)"
    )
    learned = llx.likelihood(lambda p, u: u @ p, llx.Gaussian(0.5), learn=True)
    assert str(learned) == "−Σ log N(y | f(θ, u), σ=0.5 (learned))"
    assert (
        str(llx.prior(llx.Gaussian(1e-3), on=weights))
        == "−Σ_{weights} log N(θ | 0, σ=0.001)"
    )
    assert str(llx.prior(llx.Gaussian(1.0), on=lambda p: p["w"])) == (
        '−Σ_{p["w"]} log N(θ | 0, σ=1)'
    )
    nested = {"layers": [{"w": True, "b": False}, {"w": True, "b": False}]}
    assert str(llx.prior(llx.Gaussian(2.0), on=nested)) == (
        "−Σ_{layers[0].w, layers[1].w} log N(θ | 0, σ=2)"
    )
    assert str(llx.prior(llx.Gaussian(2.0), on=weights, label="W")) == (
        "−Σ_{W} log N(θ | 0, σ=2)"
    )
    heads = llx.likelihood(linear, llx.Gaussian(jnp.asarray([1.0, 2.0])), label="g")
    assert str(heads) == "−Σ log N(y | g(θ, u), σ=[1, 2])"
    multi = llx.likelihood(linear, llx.Gaussian(2.0), output="mean", target="reg") + (
        llx.likelihood(linear, llx.Gaussian(1.0), output=("aux", 0), target=1)
    )
    assert str(multi) == (
        "−Σ log N(y[reg] | linear(θ, u)[mean], σ=2) "
        "− Σ log N(y[1] | linear(θ, u)[aux][0], σ=1)"
    )


# ------------------------------------------------------------ editing terms


def test_replace_and_with_noise():
    lik, prior, p, (X, y) = _lik_prior()
    objective = lik + prior
    swapped = objective.with_noise(0, llx.Gaussian(2.0))
    assert str(swapped) == "−Σ log N(y | linear(θ, u), σ=2) − Σ_{w} log N(θ | 0, σ=1.5)"
    expected = _gauss_nll_sum(y, X @ p["w"] + p["b"], 2.0) + _gauss_nll_sum(p["w"], 0, 1.5)
    np.testing.assert_allclose(swapped(p, (X, y)), expected, rtol=1e-13)
    assert str(objective).startswith("−Σ log N(y | linear(θ, u), σ=0.8)")  # unchanged

    by_term = objective.replace(
        prior, llx.prior(llx.Gaussian(0.1), on={"w": True, "b": True})
    )
    assert str(by_term) == "−Σ log N(y | linear(θ, u), σ=0.8) − Σ log N(θ | 0, σ=0.1)"
    assert objective.replace(-1, prior + prior).terms == (lik, prior, prior)
    # the weight and coverage survive a noise swap
    tempered = (0.5 * lik + prior).with_noise(1, llx.Gaussian(3.0))
    assert (
        str(tempered) == "−0.5 Σ log N(y | linear(θ, u), σ=0.8) − Σ_{w} log N(θ | 0, σ=3)"
    )
    assert lik.with_noise(llx.Gaussian(1.0), learn="scale").learn == ("scale",)
    with pytest.raises(IndexError, match="out of range"):
        objective.replace(2, lik)
    with pytest.raises(ValueError, match="not one of"):
        objective.replace(llx.prior(llx.Gaussian(1.0)), lik)


# -------------------------------------------------------------- multi-task


def test_multitask_heads_of_one_model():
    """Two likelihood terms on two outputs of one model are one objective, whose value
    is the sum of the heads' nlls; the model runs once per call."""
    rng = np.random.default_rng(3)
    n = 40
    u = rng.normal(size=(n, 2))
    y = {"reg": rng.normal(size=n), "aux": rng.normal(size=(n, 2))}
    calls = []

    def net(p, u):
        calls.append(None)
        return {"mean": u @ p["a"], "aux": u * p["c"][None, :]}

    p = {"a": jnp.asarray([0.3, -0.2]), "c": jnp.asarray([1.5, 0.5])}
    objective = llx.likelihood(net, llx.Gaussian(0.7), output="mean", target="reg") + (
        llx.likelihood(
            net, llx.Gaussian(jnp.asarray([1.0, 2.0])), output="aux", target="aux"
        )
    )
    expected = _gauss_nll_sum(y["reg"], u @ np.asarray(p["a"]), 0.7)
    expected -= np.sum(st.norm.logpdf(y["aux"], u * np.asarray(p["c"]), [1.0, 2.0]))
    np.testing.assert_allclose(objective(p, (u, y)), expected, rtol=1e-13)
    assert len(calls) == 1
    calls.clear()
    eqx.filter_jit(objective)(p, (u, y))
    assert len(calls) == 1


def test_multitask_gaussian_and_categorical_heads():
    """A regression head and a classification head of one network: one objective whose
    value is the Gaussian nll of one head plus the softmax cross-entropy of the other."""
    from scipy.special import log_softmax

    rng = np.random.default_rng(4)
    n, k = 30, 4
    u = rng.normal(size=(n, 3))
    y = {"reg": rng.normal(size=n), "cls": rng.integers(0, k, size=n).astype(np.int32)}
    p = {
        "trunk": jnp.asarray(rng.normal(size=(3, 5))),
        "out": jnp.asarray(rng.normal(size=(5, 1 + k))),
    }

    def net(p, u):
        z = jnp.tanh(u @ p["trunk"]) @ p["out"]
        return {"mean": z[:, 0], "logits": z[:, 1:]}

    objective = llx.likelihood(net, llx.Gaussian(0.5), output="mean", target="reg") + (
        llx.likelihood(net, llx.Categorical(), output="logits", target="cls")
    )
    z = np.tanh(u @ np.asarray(p["trunk"])) @ np.asarray(p["out"])
    expected_reg = _gauss_nll_sum(y["reg"], z[:, 0], 0.5)
    expected_cls = -np.sum(log_softmax(z[:, 1:], axis=1)[np.arange(n), y["cls"]])
    np.testing.assert_allclose(
        objective.values(p, (u, y)), [expected_reg, expected_cls], rtol=1e-12
    )
    np.testing.assert_allclose(
        objective(p, (u, y)), expected_reg + expected_cls, rtol=1e-12
    )
    g = jax.grad(objective)(p, (u, y))
    g_sep = [jax.grad(t)(p, (u, y)) for t in objective.terms]
    for key in p:
        np.testing.assert_allclose(g[key], g_sep[0][key] + g_sep[1][key], rtol=1e-12)
    assert str(objective) == (
        "−Σ log N(y[reg] | net(θ, u)[mean], σ=0.5) − Σ log Cat(y[cls] | net(θ, u)[logits])"
    )


def test_generic_display_of_combinators():
    """A noise model without a `_describe` hook prints its nested components."""

    class Wrapped(llx.AbstractNoise):
        inner: llx.AbstractNoise
        parts: tuple

        def _loss(self, x, x_hat):
            return self.inner._inner_nll(x, x_hat)

        def _hyperparameter_paths(self):
            paths = {f"inner.{k}": d for k, d in self.inner._hyperparameter_paths().items()}
            for i, c in enumerate(self.parts):
                paths.update(
                    {f"parts.{i}.{k}": d for k, d in c._hyperparameter_paths().items()}
                )
            return paths

    noise = Wrapped(llx.Gaussian(2.0), (llx.Laplace(1.0), llx.StudentT(4.0, 0.5)))
    assert str(llx.likelihood(linear, noise, learn="parts.1.df")) == (
        "−Σ log Wrapped(y | linear(θ, u), N(σ=2), Laplace(b=1), "
        "StudentT(ν=4 (learned), σ=0.5))"
    )


def test_equinox_model_and_captured_arrays():
    """An Equinox network as params; a model holding fixed arrays passes through jit."""
    net = eqx.nn.MLP(2, "scalar", 4, 1, key=jax.random.key(1))
    u = np.random.default_rng(0).normal(size=(8, 2))
    y = np.random.default_rng(1).normal(size=8)
    apply = lambda m, u: jax.vmap(m)(u)
    lik = llx.likelihood(apply, llx.Gaussian(1.0))
    expected = _gauss_nll_sum(y, np.asarray(jax.vmap(net)(u)), 1.0)
    np.testing.assert_allclose(lik(net, (u, y)), expected, rtol=1e-12)

    class Shifted(eqx.Module):
        offset: jax.Array

        def __call__(self, p, u):
            return u @ p + self.offset

    model = Shifted(jnp.asarray(0.25))
    term = llx.likelihood(model, llx.Gaussian(1.0))
    w = jnp.asarray([1.0, -1.0])
    value = jax.jit(lambda o, p, d: o(p, d))(term, w, (u, y))
    np.testing.assert_allclose(value, _gauss_nll_sum(y, u @ np.asarray(w) + 0.25, 1.0))
    assert any(leaf is model.offset for leaf in jax.tree.leaves(term))


# ------------------------------------------------------------------- jit


def test_jit_with_objective_as_argument():
    lik, prior, p, data = _lik_prior()
    objective = 0.5 * lik + prior
    traces = []

    @jax.jit
    def value_and_grad(obj, params, data):
        traces.append(None)
        return jax.value_and_grad(obj)(params, data)

    v, g = value_and_grad(objective, p, data)
    ve, ge = jax.value_and_grad(objective)(p, data)
    np.testing.assert_allclose(v, ve, rtol=1e-12)
    for k in p:
        np.testing.assert_allclose(g[k], ge[k], rtol=1e-12)
    # new hyperparameter values and weights: same structure, no retrace
    other = 2.0 * lik.with_noise(llx.Gaussian(3.0)) + prior.with_noise(llx.Gaussian(0.1))
    v2, _ = value_and_grad(other, p, data)
    np.testing.assert_allclose(v2, other(p, data), rtol=1e-12)
    assert len(traces) == 1


def test_vmap_over_weights_and_hyperparameters():
    """Weights and noise hyperparameters are array leaves: vmap runs many objectives
    in one program, equal to the separate calls."""
    lik, prior, p, (X, y) = _lik_prior()
    temps = jnp.asarray([0.0, 0.5, 2.0])
    scales = jnp.asarray([0.3, 1.0, 4.0])
    by_temp = jax.vmap(lambda w: (w * lik + prior)(p, (X, y)))(temps)
    by_scale = jax.vmap(lambda s: lik.with_noise(llx.Gaussian(s))(p, (X, y)))(scales)
    mean = X @ np.asarray(p["w"]) + float(p["b"])
    prior_value = _gauss_nll_sum(p["w"], 0, 1.5)
    np.testing.assert_allclose(
        by_temp, [w * _gauss_nll_sum(y, mean, 0.8) + prior_value for w in temps], rtol=1e-13
    )
    np.testing.assert_allclose(by_scale, [_gauss_nll_sum(y, mean, s) for s in scales])


# ---------------------------------------------------------------- learned


def test_learned_round_trip_and_domain():
    _, prior, p, (X, y) = _lik_prior()
    lik = llx.likelihood(linear, llx.Gaussian(0.8), learn=True)
    objective = prior + lik
    u = objective.learned()
    assert set(u) == {1} and set(u[1]) == {"scale"}
    np.testing.assert_allclose(u[1]["scale"], np.log(0.8), rtol=1e-14)
    same = objective.with_learned(u)
    np.testing.assert_allclose(same(p, (X, y)), objective(p, (X, y)), rtol=1e-14)
    for raw in (-50.0, 0.0, 50.0):
        moved = objective.with_learned({1: {"scale": jnp.asarray(raw)}})
        scale = moved.terms[1].noise.scale  # type: ignore[attr-defined]
        assert np.isfinite(scale) and scale > 0
        np.testing.assert_allclose(scale, np.exp(raw), rtol=1e-14)
        np.testing.assert_allclose(moved.learned()[1]["scale"], raw, atol=1e-12)
    # gradient in log σ: d/dlogσ Σ[r²/2σ² + log σ] = N − Σ r²/σ²
    r = y - (X @ np.asarray(p["w"]) + float(p["b"]))
    g = jax.grad(lambda v: objective.with_learned(v)(p, (X, y)))(u)
    np.testing.assert_allclose(g[1]["scale"], len(y) - np.sum(r**2) / 0.8**2, rtol=1e-12)
    assert llx.likelihood(linear, llx.Gaussian(1.0)).learned() == {}
    with pytest.raises(ValueError, match="structure of `learned\\(\\)`"):
        objective.with_learned({0: {"scale": jnp.asarray(0.0)}})


F32 = np.finfo(np.float32)


@pytest.mark.parametrize("raw", [100.0, 40.0, -40.0, -100.0])
def test_learned_log_scale_at_raw_100_in_float32(raw):
    """RELIABILITY: a learned log-scale at ±100 gives a finite value and gradient in
    float32 (exp(100) overflows it, exp(-100) flushes to 0). Oracle: the Gaussian
    nll in log space, Σ [r + z²/2 + log(2π)/2] with z = e^{-r}(y − x̂), in float64 at
    the log-scale held to the documented range [½ log tiny, ½ log max] of float32
    (inside it, e.g. ±40, the map is unchanged)."""
    rng = np.random.default_rng(3)
    u = rng.normal(size=(50, 2)).astype(np.float32)
    # Below the range every residual must vanish for the nll to be finite at all
    # (r² e^{200} overflows float32): y = u[:, 0] exactly, the model's output.
    noise = 0.0 if raw < 0 else rng.normal(size=50)
    y = (u[:, 0] + noise).astype(np.float32)
    p = {"w": jnp.asarray([1.0, 0.0], jnp.float32), "b": jnp.float32(0.0)}
    objective = llx.likelihood(linear, llx.Gaussian(jnp.float32(1.0)), learn="scale")
    f = lambda h: objective.with_learned({0: {"scale": h}})(p, (u, y))
    value, grad = jax.jit(jax.value_and_grad(f))(jnp.float32(raw))
    assert value.dtype == grad.dtype == jnp.float32
    held = np.clip(raw, 0.5 * np.log(F32.tiny), 0.5 * np.log(F32.max))
    r2 = (y.astype(float) - u[:, 0].astype(float)) ** 2
    expected = np.sum(held + 0.5 * r2 * np.exp(-2 * held) + 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # d/dr in log space, evaluated at the held value (the gradient passes through)
    np.testing.assert_allclose(grad, np.sum(1 - r2 * np.exp(-2 * held)), rtol=1e-5)


def test_learned_log_scale_at_raw_minus_100_with_residuals_is_inf_not_nan():
    """The true nll, Σ r_i² e^{200}/2, overflows float32 (as it does at the held
    log-scale, ½ log tiny, for residuals of 10): +inf, and no NaN anywhere."""
    u = np.linspace(-20, 20, 20, dtype=np.float32)[:, None]
    objective = llx.likelihood(
        lambda p, u: u[:, 0] * p, llx.Gaussian(jnp.float32(1.0)), learn="scale"
    )
    f = lambda h: objective.with_learned({0: {"scale": h}})(jnp.float32(0.5), (u, u[:, 0]))
    value, grad = jax.jit(jax.value_and_grad(f))(jnp.float32(-100.0))
    assert np.isposinf(value) and not np.isnan(grad)


@pytest.mark.parametrize("raw", [100.0, -100.0])
def test_learned_logit_at_raw_100_in_float32(raw):
    """A learned zero-inflation probability at logit ±100 (σ(100) rounds to 1 in
    float32, σ(−100) to 0): finite, equal to the scipy ZIP nll at the logit held to
    [½ log tiny, −log ε] of float32."""
    y = np.array([0, 0, 1, 3, 0, 2, 5, 0], np.float32)
    log_rate = np.float32(0.4)
    objective = llx.likelihood(
        lambda p, u: p + 0 * u,  # Poisson's x_hat is the log-rate
        llx.ZeroInflated(llx.Poisson(), jnp.float32(0.3)),
        learn="prob",
    )
    f = lambda h: objective.with_learned({0: {"prob": h}})(log_rate, (y, y))
    value, grad = jax.jit(jax.value_and_grad(f))(jnp.float32(raw))
    assert np.isfinite(value) and np.isfinite(grad)
    held = np.clip(raw, 0.5 * np.log(F32.tiny), -np.log(F32.eps))
    prob = 1 / (1 + np.exp(-held))
    pmf = st.poisson.pmf(y, np.exp(float(log_rate)))
    expected = -np.sum(np.log(prob * (y == 0) + (1 - prob) * pmf))
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_learn_errors():
    with pytest.raises(ValueError, match="has no hyperparameter 'df'"):
        llx.likelihood(linear, llx.Gaussian(1.0), learn="df")
    with pytest.raises(TypeError, match="learn"):
        llx.likelihood(linear, llx.Gaussian(1.0), learn=(1,))  # type: ignore[arg-type]


# ------------------------------------------------------------------- errors


def test_data_structure_errors():
    lik, _, p, (X, y) = _lik_prior()
    with pytest.raises(
        TypeError, match=r"`data` must be a pair `\(u, y\)`.*array of shape"
    ):
        lik(p, X)
    with pytest.raises(TypeError, match=r"`data` must be a pair.*tuple of length 3"):
        lik(p, (X, y, y))
    with pytest.raises(ValueError, match=r"leading sizes differ: `data\[0\]` has 21"):
        lik(p, (X, y[:-1]))
    column = lambda p, u: (u @ p["w"] + p["b"])[:, None]
    with pytest.raises(ValueError, match=r"model output has shape \(21, 1\).*\(21, 21\)"):
        llx.likelihood(column, llx.Gaussian(1.0))(p, (X, y))
    with pytest.raises(ValueError, match=r"model output has shape \(21, 1\)"):
        eqx.filter_jit(llx.likelihood(column, llx.Gaussian(1.0)))(p, (X, y))
    wrong = lambda p, u: jnp.ones(5)
    with pytest.raises(ValueError, match=r"do not broadcast"):
        llx.likelihood(wrong, llx.Gaussian(1.0))(p, (X, y))
    pair = lambda p, u: (linear(p, u), linear(p, u))
    with pytest.raises(TypeError, match="pick one with `output=`"):
        llx.likelihood(pair, llx.Gaussian(1.0))(p, (X, y))
    with pytest.raises(ValueError, match=r"`target='reg'` does not select from y"):
        llx.likelihood(linear, llx.Gaussian(1.0), target="reg")(p, (X, {"cls": y}))
    with pytest.raises(TypeError, match="`model` must be a callable"):
        llx.likelihood(3.0, llx.Gaussian(1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="noise model instance"):
        llx.likelihood(linear, llx.Gaussian)  # type: ignore[arg-type]
