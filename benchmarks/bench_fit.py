r"""Benchmark `llx.fit` against the optimisation loops users write by hand (issue 4).

    python benchmarks/bench_fit.py [--quick] [--out fit.md] [--reps 5]
        [--sections loop,compile,vmap,shard,glm] [--stat median|min]

One process (the sharded section in one child process, which needs forced host
devices before JAX starts). Sections:

- `loop`: linear regression ($X$ of N × 32) with Student-t noise ($\nu = 4$) and a
  learned scale, 500 Adam steps, float32, at N = 100000 and 1000. Candidates, all
  running the full budget (`tol=0`, `ftol=-1`) and recording the objective per step:
  `llx.fit` (`progress=False`, and with its progress bar), a hand-written optax
  `lax.scan` loop over the same likelax objective, the same loop over the
  hand-written Student-t formula (`_formulas._t_hoisted`), and a Python loop
  calling a jitted step (the common pattern; asynchronous, no host sync per step).
- `compile`: first call minus a warm call after `jax.clear_caches()`, with a fresh
  optimiser: `llx.fit` vs the hand-written `lax.scan` loop (same objective).
- `vmap`: 64 Student-t fits ($\nu$ from 1.5 to 50, learned scale, Adam) as one
  `jax.jit(jax.vmap(llx.fit ...))` vs a Python loop of 64 `llx.fit` calls.
- `shard`: the `loop` problem at N = 100000 in a child process with
  `XLA_FLAGS=--xla_force_host_platform_device_count=2`: `llx.fit` with
  `mesh=` over 2 devices vs on 1, and the hand-written scan on row-sharded vs
  unsharded data.
- `glm`: Poisson regression, $X$ of 1e6 × 20 plus an intercept, float64: `llx.fit`
  with its default optimiser (L-BFGS) vs statsmodels `GLM(...).fit()` (IRLS) and
  scikit-learn's `PoissonRegressor` (`alpha=0`: lbfgs at its default `tol=1e-4`,
  and lbfgs and newton-cholesky at `tol=1e-6`, the loosest that agree with
  statsmodels to 1e-6), with the largest relative coefficient difference to
  statsmodels.

Timing: `_harness.time_interleaved` (every candidate compiled and warmed up first,
then timed round-robin; the median, or with `--stat min` the fastest, of the
repetitions). `--quick` shrinks every size for a smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

if "--_child" in sys.argv:  # forced host devices must be set before JAX starts
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _formulas import _t_hoisted
from _harness import (
    Report,
    Timing,
    fmt_ratio,
    fmt_time,
    machine_description,
    markdown_table,
    package_version,
    set_statistic,
    size_label,
    time_interleaved,
)

import likelax as llx

SECTIONS = ("loop", "compile", "vmap", "shard", "glm")
DF = 4.0
LR = 1e-2
D = 32

# ------------------------------------------------------------------- problems


def linear(p, u):
    return u @ p["w"] + p["b"]


def regression(n: int, d: int = D, seed: int = 0):
    """(X, y) float32: y = X w + 0.3 + 0.5 t_4 noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = X @ rng.normal(size=d) + 0.3 + 0.5 * rng.standard_t(DF, size=n)
    return jnp.asarray(X), jnp.asarray(y.astype(np.float32))


def start(d: int = D, dtype: Any = jnp.float32):
    return {"w": jnp.zeros(d, dtype), "b": jnp.zeros((), dtype)}


def student_t(df: Any = DF):
    return llx.likelihood(
        linear, llx.StudentT(jnp.float32(df), jnp.float32(1.0)), learn="scale"
    )


def fit_value(objective, data, optimizer, steps: int, **kwargs):
    """`llx.fit` over the whole budget; its final objective."""
    res = llx.fit(
        objective,
        start(),
        data,
        optimizer=optimizer,
        steps=steps,
        tol=0.0,
        ftol=-1.0,
        **{"progress": False, **kwargs},
    )
    return res.value


# The hand-written loops train theta = (params, log scale).


def likelax_loss(theta, X, y):
    params, log_scale = theta
    return student_t().with_learned({0: {"scale": log_scale}})(params, (X, y))


def formula_loss(theta, X, y):
    params, log_scale = theta
    hyper = {"df": jnp.float32(DF), "scale": jnp.exp(log_scale)}
    return _t_hoisted(linear(params, X), hyper, y)


def theta0():
    return start(), jnp.zeros((), jnp.float32)


def make_scan(loss: Callable, opt, steps: int):
    """The hand-written loop: `lax.scan` over value_and_grad + optax update."""

    def run(theta, X, y):
        def body(carry, _):
            theta, state = carry
            value, grad = jax.value_and_grad(loss)(theta, X, y)
            updates, state = opt.update(grad, state, theta)
            return (optax.apply_updates(theta, updates), state), value

        (theta, _), history = jax.lax.scan(body, (theta, opt.init(theta)), length=steps)
        return loss(theta, X, y), theta, history

    return jax.jit(run)


def make_python_loop(loss: Callable, opt, steps: int):
    """The common user pattern: a Python loop over a jitted step."""

    @jax.jit
    def step(theta, state, X, y):
        value, grad = jax.value_and_grad(loss)(theta, X, y)
        updates, state = opt.update(grad, state, theta)
        return optax.apply_updates(theta, updates), state, value

    final = jax.jit(loss)

    def run(theta, X, y):
        state, history = opt.init(theta), []
        for _ in range(steps):
            theta, state, value = step(theta, state, X, y)
            history.append(value)
        return final(theta, X, y), theta, history

    return run


# ----------------------------------------------------------------- sections


def loop_calls(n: int, steps: int) -> dict[str, Callable[[], Any]]:
    X, y = regression(n)
    opt = optax.adam(LR)
    objective = student_t()
    scan = make_scan(likelax_loss, opt, steps)
    scan_formula = make_scan(formula_loss, opt, steps)
    python = make_python_loop(likelax_loss, opt, steps)

    def with_bar():
        with contextlib.redirect_stderr(io.StringIO()):
            return fit_value(objective, (X, y), opt, steps, progress=True)

    return {
        "llx.fit": lambda: fit_value(objective, (X, y), opt, steps),
        "llx.fit, progress bar": with_bar,
        "hand lax.scan": lambda: scan(theta0(), X, y)[0],
        "hand lax.scan, jnp formula": lambda: scan_formula(theta0(), X, y)[0],
        "Python loop, jitted step": lambda: python(theta0(), X, y)[0],
    }


def timing_table(results: dict[str, Timing], base: str, extra: dict | None = None):
    """Rows: candidate, time, ratio to `base`, final objective."""
    ref = results[base]
    rows = []
    for name, t in results.items():
        if t.error:
            rows.append([name, "error", t.error, ""])
            continue
        cells = [name, fmt_time(t.stat), fmt_ratio(t.stat / ref.stat), f"{t.value:.6g}"]
        if extra is not None:
            cells.append(extra.get(name, ""))
        rows.append(cells)
    return rows


def section_loop(args, emit) -> None:
    emit("### Loop cost: Student-t regression, learned scale, Adam\n")
    emit(
        f"{args.steps} Adam steps (lr {LR}), X of N × {D}, float32; every candidate "
        "runs the whole budget and records the objective per step. Ratio to the "
        "hand-written `lax.scan` loop over the same likelax objective; the last "
        "column is the objective at the returned parameters.\n"
    )
    for n in args.loop_rows:
        results = time_interleaved(loop_calls(n, args.steps), args.reps, 0.0, 1)
        emit(f"N = {size_label(n)}:\n")
        header = ["candidate", f"time ({args.stat})", "vs hand scan", "final objective"]
        emit(markdown_table(header, timing_table(results, "hand lax.scan")) + "\n")


def cold_seconds(makers: dict[str, Callable[[], Callable[[], Any]]], reps: int):
    """Median over `reps` of (first call − second call) of a freshly made callable
    after `jax.clear_caches()`: tracing and compilation as a user meets them."""
    samples: dict[str, list[float]] = {name: [] for name in makers}
    names = list(makers)
    for r in range(reps):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            jax.clear_caches()
            call = makers[name]()
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                jax.block_until_ready(call())
                times.append(time.perf_counter() - t0)
            samples[name].append(times[0] - times[1])
    return {name: statistics.median(s) for name, s in samples.items()}


def section_compile(args, emit) -> None:
    n, steps = args.compile_rows, args.steps
    X, y = regression(n)

    def llx_fit():
        opt, objective = optax.adam(LR), student_t()  # a new optimiser: a new program
        return lambda: fit_value(objective, (X, y), opt, steps)

    def hand_scan():
        scan = make_scan(likelax_loss, optax.adam(LR), steps)
        return lambda: scan(theta0(), X, y)[0]

    seconds = cold_seconds(
        {"llx.fit": llx_fit, "hand lax.scan": hand_scan}, args.compile_reps
    )
    emit("### Compile time\n")
    emit(
        f"First call minus second call after `jax.clear_caches()` with a fresh "
        f"optimiser (tracing + compilation), the `loop` problem at N = "
        f"{size_label(n)}, {steps} steps, median of {args.compile_reps}.\n"
    )
    base = seconds["hand lax.scan"]
    rows = [[k, fmt_time(v), fmt_ratio(v / base)] for k, v in seconds.items()]
    emit(markdown_table(["candidate", "compile", "vs hand scan"], rows) + "\n")


def section_vmap(args, emit) -> None:
    n, steps, k = args.vmap_rows, args.steps, 64
    X, y = regression(n)
    dfs = jnp.geomspace(1.5, 50.0, k).astype(jnp.float32)
    opt = optax.adam(LR)

    @jax.jit
    def batched(dfs, X, y):
        one = lambda df: fit_value(student_t(df), (X, y), opt, steps)
        return jnp.sum(jax.vmap(one)(dfs))

    def loop():
        return jnp.sum(
            jnp.stack([fit_value(student_t(df), (X, y), opt, steps) for df in dfs])
        )

    calls = {
        "jit(vmap(llx.fit)), 64 df": lambda: batched(dfs, X, y),
        "Python loop of 64 llx.fit": loop,
    }
    results = time_interleaved(calls, args.reps, 0.0, 1)
    emit("### vmap over 64 Student-t degrees of freedom\n")
    emit(
        f"{k} fits (ν from 1.5 to 50, learned scale, {steps} Adam steps), X of "
        f"{size_label(n)} × {D}, float32. Last column: the sum of the 64 final "
        "objectives (equal when vmap equals the separate fits); the ratio column is "
        "time over the vmapped time (throughput gain of vmap).\n"
    )
    rows = timing_table(results, "jit(vmap(llx.fit)), 64 df")
    emit(
        markdown_table(
            ["candidate", f"time ({args.stat})", "vs vmap", "Σ final objectives"], rows
        )
        + "\n"
    )


def shard_child(args) -> None:
    """In the child process (2 forced host devices): print the timings as JSON."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    n, steps = args.shard_rows, args.steps
    X, y = regression(n)
    mesh = Mesh(np.array(jax.devices()[:2]), ("rows",))
    rows = NamedSharding(mesh, PartitionSpec("rows"))
    Xs, ys = jax.device_put(X, rows), jax.device_put(y, rows)
    theta_rep = jax.device_put(theta0(), NamedSharding(mesh, PartitionSpec()))
    opt = optax.adam(LR)
    objective = student_t()
    scan = make_scan(likelax_loss, opt, steps)
    calls = {
        "llx.fit, 1 device": lambda: fit_value(objective, (X, y), opt, steps),
        "llx.fit, mesh of 2": lambda: fit_value(objective, (Xs, ys), opt, steps, mesh=mesh),
        "hand lax.scan, 1 device": lambda: scan(theta0(), X, y)[0],
        "hand lax.scan, rows sharded over 2": lambda: scan(theta_rep, Xs, ys)[0],
    }
    results = time_interleaved(calls, args.reps, 0.0, 1)
    out = {
        name: {"median": t.median, "min": t.min, "value": t.value, "error": t.error}
        for name, t in results.items()
    }
    print(json.dumps({"devices": len(jax.devices()), "results": out}))


def section_shard(args, emit) -> None:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--_child",
        "--shard-rows",
        str(args.shard_rows),
        "--steps",
        str(args.steps),
        "--reps",
        str(args.reps),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    emit("### Data-parallel: 2 forced host devices vs 1\n")
    if proc.returncode != 0:
        emit(f"child process failed:\n\n```\n{proc.stderr[-2000:]}\n```\n")
        return
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = {
        name: Timing(r["median"], math.nan, r["value"], r["error"], r["min"])
        for name, r in report["results"].items()
    }
    emit(
        f"The `loop` problem at N = {size_label(args.shard_rows)}, {args.steps} Adam "
        f"steps, in a child process with {report['devices']} forced host devices "
        "(`XLA_FLAGS=--xla_force_host_platform_device_count=2`) sharing this "
        "machine's cores; rows sharded, parameters replicated.\n"
    )
    header = ["candidate", f"time ({args.stat})", "vs llx.fit, 1 device", "final objective"]
    emit(markdown_table(header, timing_table(results, "llx.fit, 1 device")) + "\n")


def section_glm(args, emit) -> None:
    import statsmodels.api as sm
    from sklearn.linear_model import PoissonRegressor

    n, d = args.glm_rows, 20
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d))
    coef = rng.uniform(0.02, 0.15, size=d) * rng.choice([-1, 1], size=d)
    y = rng.poisson(np.exp(0.5 + X @ coef)).astype(float)
    Xc = sm.add_constant(X)

    with jax.enable_x64(True):
        data = (jnp.asarray(X), jnp.asarray(y))
        objective = llx.likelihood(linear, llx.Poisson())
        status = {}

        def likelax():
            res = llx.fit(objective, start(d, jnp.float64), data, progress=False)
            state = "converged" if bool(res.converged) else "NOT converged"
            status["llx"] = f"{state} in {int(res.steps)} steps"
            return np.r_[float(res.params["b"]), np.asarray(res.params["w"])]

        def statsmodels_():
            res = sm.GLM(y, Xc, family=sm.families.Poisson()).fit()
            return np.asarray(res.params)

        def sklearn(solver: str, tol: float):
            def run():
                m = PoissonRegressor(alpha=0.0, solver=solver, tol=tol, max_iter=10_000)
                m.fit(X, y)
                return np.r_[m.intercept_, m.coef_]

            return run

        fits = {
            "llx.fit (default: L-BFGS)": likelax,
            "statsmodels GLM (IRLS)": statsmodels_,
            "sklearn PoissonRegressor (lbfgs, default tol 1e-4)": sklearn("lbfgs", 1e-4),
            "sklearn PoissonRegressor (lbfgs, tol 1e-6)": sklearn("lbfgs", 1e-6),
            "sklearn PoissonRegressor (newton-cholesky, tol 1e-6)": sklearn(
                "newton-cholesky", 1e-6
            ),
        }
        coefs = {name: f() for name, f in fits.items()}  # also compiles llx.fit
        compile_s = cold_seconds({"llx": lambda: likelax}, args.compile_reps)["llx"]
        results = time_interleaved(
            {name: (lambda f=f: float(f()[0])) for name, f in fits.items()},
            args.glm_reps,
            0.0,
            1,
        )
    ref = coefs["statsmodels GLM (IRLS)"]
    emit("### Poisson GLM: default optimiser vs statsmodels and scikit-learn\n")
    emit(
        f"X of {size_label(n)} × {d} plus an intercept, float64, y ~ Poisson(exp(0.5 + "
        f"X β)). Median of {args.glm_reps} fits each (`--stat` applies), compile "
        f"excluded (llx.fit compile: {fmt_time(compile_s)}). Last column: "
        "max_i |β_i − β_i(statsmodels)| / |β_i(statsmodels)|.\n"
    )
    base = results["llx.fit (default: L-BFGS)"].stat
    rows = []
    for name, t in results.items():
        diff = float(np.max(np.abs(coefs[name] - ref) / np.abs(ref)))
        note = f" ({status['llx']})" if name.startswith("llx") else ""
        rows.append(
            [name + note, fmt_time(t.stat), fmt_ratio(t.stat / base), f"{diff:.1e}"]
        )
    emit(
        markdown_table(
            ["fit", f"time ({args.stat})", "vs llx.fit", "max rel. coef. diff"], rows
        )
        + "\n"
    )


# ------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--loop-rows", default="100000,1000")
    ap.add_argument("--compile-rows", type=int, default=1000)
    ap.add_argument("--compile-reps", type=int, default=3)
    ap.add_argument("--vmap-rows", type=int, default=10_000)
    ap.add_argument("--shard-rows", type=int, default=100_000)
    ap.add_argument("--glm-rows", type=int, default=1_000_000)
    ap.add_argument("--glm-reps", type=int, default=3)
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    set_statistic(args.stat)
    args.loop_rows = [int(float(s)) for s in args.loop_rows.split(",") if s.strip()]
    if args.quick:
        args.steps, args.reps, args.compile_reps, args.glm_reps = 100, 2, 1, 1
        args.loop_rows, args.vmap_rows = [10_000, 1000], 1000
        args.shard_rows, args.glm_rows = 10_000, 100_000
    if args._child:
        shard_child(args)
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")

    emit = Report()

    emit("## likelax fit benchmark\n")
    emit(machine_description())
    emit(
        f"- scikit-learn {package_version('scikit-learn')}, statsmodels "
        f"{package_version('statsmodels')}; the GLM section runs in float64"
    )
    emit(f"- likelax checks mode: {llx.get_checks()!r}\n")
    runners = {
        "loop": section_loop,
        "compile": section_compile,
        "vmap": section_vmap,
        "shard": section_shard,
        "glm": section_glm,
    }
    for name in sections:
        runners[name](args, emit)
    emit.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
