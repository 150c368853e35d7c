"""Data-parallel `llx.fit` over a `jax.sharding.Mesh` equals the single-device fit.

Runs in a subprocess with 4 forced host (CPU) devices: the device count is fixed
when JAX starts, so it cannot be changed inside the test process.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import likelax as llx

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    n, d = 4000, 5
    u = rng.normal(size=(n, d))
    y = rng.poisson(np.exp(u @ rng.normal(scale=0.3, size=d) + 0.5)).astype(float)

    def linear(p, u):
        return u @ p["w"] + p["b"]

    obj = llx.likelihood(linear, llx.Poisson()) + llx.prior(llx.Gaussian(10.0))
    p0 = {"w": jnp.zeros(d), "b": jnp.asarray(0.0)}
    mesh = Mesh(np.array(jax.devices()), ("rows",))

    def flat(p):
        return np.r_[np.asarray(p["w"]), np.asarray(p["b"])]

    # 1. default L-BFGS: mesh= vs one device vs data sharded by hand
    one = llx.fit(obj, p0, (u, y), progress=False)
    sharded = llx.fit(obj, p0, (u, y), mesh=mesh, progress=True)
    rows = NamedSharding(mesh, P("rows"))
    by_hand = llx.fit(obj, p0, jax.device_put((u, y), rows), progress=False)
    for res in (one, sharded, by_hand):
        assert res.status == llx.Status.converged, res.message
    np.testing.assert_allclose(flat(sharded.params), flat(one.params), rtol=1e-9)
    np.testing.assert_allclose(flat(by_hand.params), flat(one.params), rtol=1e-9)
    np.testing.assert_allclose(sharded.value, one.value, rtol=1e-13)
    # parameters come back replicated over the mesh
    assert len(sharded.params["w"].sharding.device_set) == 4
    assert sharded.params["w"].sharding.is_fully_replicated

    # 2. Adam with progress chunks (a host loop over a multi-device program) and
    #    checkpoints: same iterates as one device, no deadlock.
    import tempfile, pathlib
    kw = dict(optimizer=optax.adam(0.05), steps=120, tol=0.0, ftol=-1.0)
    one = llx.fit(obj, p0, (u, y), progress=False, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "c.eqx"
        sharded = llx.fit(obj, p0, (u, y), mesh=mesh, progress=True,
                          checkpoint_every=40, checkpoint_path=path, **kw)
        assert path.exists()
    np.testing.assert_allclose(flat(sharded.params), flat(one.params), rtol=1e-9)
    np.testing.assert_allclose(sharded.history, one.history, rtol=1e-12)

    # 3. minibatches: the shuffle and gather run across the mesh
    kw = dict(optimizer=optax.adam(0.02), steps=60, batch_size=400, key=jax.random.key(0))
    one = llx.fit(obj, p0, (u, y), progress=False, **kw)
    sharded = llx.fit(obj, p0, (u, y), mesh=mesh, progress=False, **kw)
    np.testing.assert_allclose(flat(sharded.params), flat(one.params), rtol=1e-9)

    # 4. rows not divisible by the device count: a clear error
    try:
        llx.fit(obj, p0, (u[:-1], y[:-1]), mesh=mesh)
    except ValueError as e:
        assert "divisible" in str(e), e
    else:
        raise AssertionError("no error for 3999 rows on 4 devices")
    print("SHARDING-OK")
    """
)


def test_mesh_fit_equals_single_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "SHARDING-OK" in proc.stdout
