"""Test configuration: float64 for oracle comparisons, strict rank promotion."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402

import likelax as llx  # noqa: E402


@pytest.fixture(autouse=True)
def _default_checks():
    """Every test starts (and ends) with the default check mode."""
    old = llx.get_checks()
    llx.set_checks("on")
    yield
    llx.set_checks(old)


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    counter = iter(range(10**6))
    return lambda: jax.random.key(next(counter))
