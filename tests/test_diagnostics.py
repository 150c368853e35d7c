"""PIT values and the calibration summary against scipy."""

import jax
import numpy as np
import pytest
from scipy import stats

import likelax as llx


def test_pit_is_the_cdf_and_uniform_under_the_model():
    rng = np.random.default_rng(0)
    x_hat = rng.normal(size=3000)
    x = x_hat + 2.0 * rng.normal(size=3000)
    u = np.asarray(llx.pit(llx.Gaussian(2.0), x, x_hat))
    np.testing.assert_allclose(u, stats.norm(x_hat, 2.0).cdf(x), rtol=1e-12)
    summary = llx.calibration(u)
    ref = stats.kstest(u, "uniform")
    assert summary["ks"] == pytest.approx(ref.statistic, rel=1e-12)
    assert summary["ks_pvalue"] == pytest.approx(
        stats.kstwobign.sf(np.sqrt(3000) * ref.statistic), rel=1e-8
    )
    for level in (50, 80, 90, 95):
        assert abs(summary[f"coverage_{level}"] - level / 100) < 0.03


def test_miscalibrated_model_is_flagged():
    rng = np.random.default_rng(1)
    x = 3.0 * rng.standard_t(2, size=2000)
    u = llx.pit(llx.Gaussian(1.0), x, np.zeros(2000))
    summary = llx.calibration(u)
    assert summary["ks_pvalue"] < 1e-6
    assert summary["coverage_50"] < 0.4  # too many observations in the tails


def test_discrete_pit_needs_a_key():
    class _Discrete(llx.Gaussian):  # stand-in flag check, no discrete family needed
        _discrete = True

    with pytest.raises(ValueError, match="pass `key="):
        llx.pit(_Discrete(1.0), 0.0, 0.0)
    u = llx.pit(_Discrete(1.0), 0.0, 0.0, key=jax.random.key(0))
    assert 0.0 <= float(u) <= 1.0


def test_calibration_rejects_empty():
    with pytest.raises(ValueError, match="no finite PIT"):
        llx.calibration(np.array([np.nan]))
