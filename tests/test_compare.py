"""llx.compare and llx.select_noise against statsmodels and separate fits."""

import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm

import likelax as llx


def linear(p, u):
    return u @ p["w"] + p["b"]


@pytest.fixture(scope="module")
def stackloss():
    d = llx.load_dataset("stackloss")
    X = np.column_stack([d[c] for c in ("AIRFLOW", "WATERTEMP", "ACIDCONC")])
    Xs = (X - X.mean(0)) / X.std(0)
    return jnp.asarray(Xs), jnp.asarray(d["STACKLOSS"])


P0 = {"w": jnp.zeros(3), "b": jnp.asarray(15.0)}


def test_compare_matches_statsmodels_aic_bic(stackloss):
    X, y = stackloss
    res = llx.fit(llx.likelihood(linear, llx.Gaussian(3.0), learn="scale"), P0, (X, y))
    ols = sm.OLS(np.asarray(y), sm.add_constant(np.asarray(X))).fit()
    table = llx.compare({"gaussian": res}, (X, y))
    row = table["gaussian"]
    # statsmodels counts the 4 coefficients; the learned scale is a 5th parameter
    assert row["k"] == 5 and row["n"] == 21
    assert row["nll"] == pytest.approx(-ols.llf, rel=1e-9)
    assert row["aic"] == pytest.approx(ols.aic + 2, rel=1e-9)
    assert row["bic"] == pytest.approx(ols.bic + np.log(21), rel=1e-9)


def test_compare_ranks_and_reports_held_out(stackloss):
    X, y = stackloss
    train, test = (X[:16], y[:16]), (X[16:], y[16:])
    results = {
        name: llx.fit(llx.likelihood(linear, noise, learn="scale"), P0, train)
        for name, noise in {
            "gaussian": llx.Gaussian(3.0),
            "cauchy": llx.Cauchy(3.0),
        }.items()
    }
    table = llx.compare(results, train, held_out=test)
    assert table.criterion == "held_out"
    for name, r in results.items():
        term = r.objective.terms[0]
        want = float(jnp.sum(term.noise.nll(test[1], linear(r.params, test[0]))))
        assert table[name]["held_out_nll"] == pytest.approx(want, rel=1e-12)
    values = [row["held_out_nll"] for row in table.rows]
    assert values == sorted(values) and table.rows[0]["delta"] == 0.0
    text = str(table)
    assert "held-out NLL" in text and table.best in text.splitlines()[2]
    assert table.to_dict()["best"] == table.best


def test_compare_refuses_a_loss_that_is_not_a_likelihood(stackloss):
    X, y = stackloss

    class Unnormalised(llx.AbstractNoise):
        _normalised = False

        def _loss(self, x, x_hat):
            return 0.5 * (x - x_hat) ** 2

    ok = llx.fit(llx.likelihood(linear, llx.Gaussian()), P0, (X, y))
    bad = llx.fit(llx.likelihood(linear, Unnormalised()), P0, (X, y))
    with pytest.raises(ValueError, match="not normalised: it is a loss"):
        llx.compare({"gaussian": ok, "l2": bad}, (X, y))


def test_compare_argument_errors(stackloss):
    X, y = stackloss
    ok = llx.fit(llx.likelihood(linear, llx.Gaussian()), P0, (X, y))
    with pytest.raises(ValueError, match="no results"):
        llx.compare({}, (X, y))
    with pytest.raises(ValueError, match="needs `held_out=`"):
        llx.compare({"a": ok}, (X, y), criterion="held_out")
    with pytest.raises(ValueError, match="criterion must be"):
        llx.compare({"a": ok}, (X, y), criterion="r2")


def test_compare_refuses_results_fitted_on_different_data(stackloss):
    X, y = stackloss
    objective = llx.likelihood(linear, llx.Gaussian(3.0))
    full = llx.fit(objective, P0, (X, y))
    first = llx.fit(objective, P0, (X[:16], y[:16]))
    shifted = llx.fit(objective, P0, (X, y.at[3].add(1.0)))
    with pytest.raises(ValueError, match="fitted on different data"):
        llx.compare({"full": full, "first16": first}, (X, y))
    with pytest.raises(ValueError, match="fitted on different data"):
        llx.compare({"full": full, "shifted": shifted}, (X, y))
    # the same data as numpy arrays
    assert llx.compare({"a": full}, (np.asarray(X), np.asarray(y))).best == "a"


def test_select_noise_equals_separate_fits(stackloss):
    X, y = stackloss
    candidates = {
        "gaussian": llx.Gaussian(3.0),
        "laplace": llx.Laplace(3.0),
        "student-t": llx.StudentT(4.0, 3.0),
        "cauchy": llx.Cauchy(3.0),
    }
    objective = llx.likelihood(linear, llx.Gaussian(3.0), learn="scale")
    table = llx.select_noise(objective, P0, (X, y), candidates, steps=300)
    assert {r["name"] for r in table.rows} == set(candidates)
    for name in ("gaussian", "student-t", "cauchy"):
        alone = llx.fit(
            llx.likelihood(linear, candidates[name], learn="scale"), P0, (X, y), steps=300
        )
        got = table.results[name]
        np.testing.assert_allclose(got.params["w"], alone.params["w"], rtol=1e-7, atol=1e-9)
        assert table[name]["nll"] == pytest.approx(float(alone.value), rel=1e-9)
        # the result's objective holds the candidate itself, with its fitted scale
        fitted = got.objective.terms[0].noise
        assert type(fitted) is type(candidates[name])
        np.testing.assert_allclose(
            fitted.scale, alone.objective.terms[0].noise.scale, rtol=1e-6
        )
    assert table["student-t"]["k"] == 5  # 4 coefficients + the learned scale (df fixed)
    assert table.best in ("cauchy", "student-t")  # stackloss has outliers


def test_select_noise_needs_one_likelihood_term(stackloss):
    X, y = stackloss
    obj = llx.likelihood(linear, llx.Gaussian()) + llx.likelihood(linear, llx.Laplace())
    with pytest.raises(ValueError, match="2 likelihood terms"):
        llx.select_noise(obj, P0, (X, y), [llx.Gaussian()])
