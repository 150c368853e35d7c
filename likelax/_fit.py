r"""Fitting: maximum likelihood and MAP as one compiled optax program.

`fit` minimises an objective $F(\theta, \phi) = \sum_i \mathrm{nll}(y_i \mid
m_\theta(u_i); \phi) - \log p(\theta)$ over the model parameters $\theta$ (every
inexact-array leaf of `params`) and the noise hyperparameters $\phi$ that the
objective marks learnable (`llx.likelihood(..., learn=...)`; they are trained
unconstrained, $\phi = c(\tilde\phi)$ with the bijection $c$ of their domain, so they
stay valid by construction). Priors' hyperparameters are never trained.

**One program.** The loop is a `lax.while_loop` inside one jitted function: a step
is an optax update, an evaluation of the objective and its gradient at the new
point (read from the optimiser's state when a line search already computed it), a
finiteness check and a convergence check, all on device, with no host round trip.
The initial point is evaluated inside the same program, so the objective is
compiled once. A progress bar or checkpoints split the run into chunks: one call of
the same compiled program per chunk, the end of the chunk being a runtime argument,
so a chunked run and a single-call run execute the same program on the same states
and end bit-identical. The chunk length adapts to about a quarter of a second, so
the host sync between chunks costs well under 1% of the loop.

**The target is the exact objective.** History and value include every constant
(`nll`, not `loss`): the constants depend only on the data, which is loop-invariant,
so XLA hoists them out of the loop (measured: optimising `objective.loss` instead
saves ~7% per evaluation on a Poisson GLM, not worth an inexact history).

**Under `jax.jit` or `jax.vmap`** (any argument traced), `fit` stages the whole loop
into the caller's program: no progress bar, no checkpoints, statuses are arrays.
Under `vmap` the while loop runs until every member has stopped; a member that has
stopped no longer changes, so each member equals its separate fit (up to the
rounding of batched arithmetic).

**Beyond one device.** Data-parallel fitting shards the rows of `data` and
replicates the parameters: pass `mesh=jax.sharding.Mesh(jax.devices(), ("rows",))`
(or `jax.device_put` the data with `NamedSharding(mesh, P("rows"))` yourself). XLA
(GSPMD) partitions the program: each device evaluates its rows, the sums over rows
(the objective and its gradient) become all-reduces, and the optimiser update runs
replicated, so the result equals the one-device fit up to the order of the
reduction. The same code runs on a multi-GPU or TPU host (the mesh over its
devices; keep `float32` there unless the hardware has fast `float64`). On several
hosts, call `jax.distributed.initialize()` on each process first, build the mesh
over the global `jax.devices()`, and give `fit` global arrays (each process
contributing its rows with `jax.make_array_from_process_local_data(rows_sharding,
local_rows)`); every process runs the same `fit` call. Progress bars and checkpoints
then run on every process: show progress on process 0 only (`progress=
jax.process_index() == 0`) and give each process its own checkpoint path (the state
is replicated, each writes its local copy) or use a shared one written by process 0
only. Minibatches over a mesh gather the batch rows across devices (correct, but a
communication per step); for large meshes prefer full-batch steps or shard-local
batches in your own objective.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from ._objective import AbstractObjective, held_out

__all__ = ["FitError", "FitResult", "Status", "fit"]

_Tracer = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]
# A line-search step that raises the objective by at most this many ulps of it is
# the end of progress at an optimum, not a failure.
_ROUNDING = 1024


class Status(eqx.Enumeration):
    """Why a fit stopped (`FitResult.status`).

    Compare with `==` (`result.status == llx.Status.converged`); under `jax.vmap`
    the comparison is a boolean array. `llx.Status[result.status]` is the message.
    """

    converged = (
        "converged: the gradient norm, or the relative change of the objective, "
        "fell below its tolerance"
    )
    budget = "the step budget ran out before convergence"
    stalled = (
        "stalled: the line search found no decrease although the gradient is not "
        "small (a kink of a non-smooth objective, or a NaN region in the way); the "
        "parameters are the best point found"
    )
    nonfinite = (
        "the objective or its gradient became non-finite (NaN or inf); the "
        "parameters are the last ones with a finite objective and gradient"
    )


_StatusItem = Any  # an `eqx.Enumeration` item of `Status`


def _code(item) -> int:
    return int(jax.tree.leaves(item)[0])


# Status codes in the loop state: the indices of `Status`'s items (a fit still
# running when the budget ends is `Status.budget`).
_CONVERGED = _code(Status.converged)
_RUNNING = _code(Status.budget)
_NONFINITE = _code(Status.nonfinite)
_STALLED = _code(Status.stalled)


class FitError(RuntimeError):
    """Raised by `fit(..., throw=True)` when a fit does not converge."""


class FitResult(eqx.Module):
    r"""The outcome of `fit`.

    - `params`: the fitted parameters (the last finite ones if the fit hit NaN/inf);
    - `objective`: the objective with its learned noise hyperparameters set to their
      fitted values (the fitted noise model is inside it);
    - `history`: shape `(steps + 1,)`; `history[0]` is the objective at the initial
      parameters and `history[k]` after `k` optimiser steps. Full batch: the exact
      objective (every constant included). Minibatches: the $N/B$-rescaled
      minibatch objective, an unbiased estimate of it. `history[: steps + 1]` is
      the trajectory; after it come NaN (plotting skips them), except that a
      rejected step's value (non-finite, or a rise under a line search) is kept at
      `history[steps + 1]`;
    - `status`: a `Status` (converged / budget / nonfinite / stalled); compare with
      `==`, or read `result.message`;
    - `steps`: the number of optimiser steps taken (for `nonfinite` and `stalled`,
      step `steps + 1` was rejected);
    - `value`: the exact objective at `params` (on the full data, also for
      minibatch fits); `grad_norm`: the Euclidean norm of its gradient over every
      trained leaf (parameters and learned hyperparameters);
    - `data_fingerprint`: a few moments of the data the fit saw (`llx.compare`
      refuses to rank results fitted on different data).

    Under `jax.vmap` every field is batched.
    """

    params: PyTree
    objective: Any
    history: Array
    status: _StatusItem
    steps: Array
    value: Array
    grad_norm: Array
    data_fingerprint: Array

    @property
    def converged(self) -> Array:
        """`status == Status.converged` (a boolean array)."""
        return self.status == Status.converged

    @property
    def message(self) -> str:
        """The status message, with the step (concrete results only)."""
        return _message(self.status, int(self.steps))


def _message(status: _StatusItem, steps: int) -> str:
    text = Status[status]
    if bool(status == Status.nonfinite):
        return f"{text} (non-finite at step {steps + 1}; returned step {steps})"
    if bool(status == Status.stalled):
        return f"{text} (the objective rose at step {steps + 1}; returned step {steps})"
    return f"{text} (after {steps} steps)"


# ----------------------------------------------------------------------------- state


class _Problem(eqx.Module):
    """Everything the compiled loop reads but does not change."""

    objective: Any
    params_static: Any
    key: Any
    gtol: ArrayLike  # numpy arrays where given as Python numbers: no eager program
    ftol: ArrayLike
    until: ArrayLike
    optimizer: optax.GradientTransformationExtraArgs = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True)
    n: int = eqx.field(static=True)
    learn: bool = eqx.field(static=True)
    check: bool = eqx.field(static=True)


class _State(eqx.Module):
    """The loop carry: the iterate and everything needed to continue from it."""

    x: Any  # (trained params, learned unconstrained hyperparameters)
    opt_state: Any
    value: Array  # objective at x (minibatch: on the batch of this step)
    grad: Any  # its gradient
    gnorm: Array  # its Euclidean norm
    step: Array  # optimiser steps accepted so far
    done: Array
    status: Array  # _RUNNING / _CONVERGED / _NONFINITE / _STALLED
    history: Array
    perm: Array | None  # the current epoch's permutation of the rows
    fresh: Array  # x0 not evaluated yet


def _objective_value(problem: _Problem, x, batch, scale):
    params = eqx.combine(x[0], problem.params_static)
    objective = problem.objective
    if problem.learn:
        objective = objective.with_learned(x[1])
    if scale is None:
        value = objective(params, batch)
    else:
        value = objective(params, batch, likelihood_scale=scale)
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(
            f"fit: the objective must return a scalar, got shape {value.shape}. "
            "Sum (or average) the per-observation values inside the objective."
        )
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"fit: the objective must return a float, got {value.dtype}.")
    return value


# The objective as one jitted function: the loop, the line search (which calls it
# several times) and `vmap` (`select_noise`) reuse its trace and its batched and
# differentiated forms instead of re-tracing the objective at each call site (the
# CLI's default comparison: 55 s -> 45 s with a cold compilation cache); XLA
# inlines it, so the compiled loop is the same.
_objective_program = eqx.filter_jit(_objective_value)


def _batch(problem: _Problem, data, perm, step):
    """The rows of minibatch number `step` (within its epoch) and the N/B scale."""
    if problem.batch_size is None:
        return data, None
    size = problem.batch_size
    per_epoch = problem.n // size
    start = (step % per_epoch) * size
    idx = jax.lax.dynamic_slice_in_dim(perm, start, size)
    batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
    return batch, problem.n / size


def _epoch_perm(problem: _Problem, step, perm):
    """The permutation for the epoch containing `step`: a fresh shuffle (from
    `fold_in(key, epoch)`) at the first step of each epoch, else the current one."""
    if problem.batch_size is None:
        return perm
    per_epoch = problem.n // problem.batch_size
    epoch = step // per_epoch

    def shuffle():
        return jax.random.permutation(
            jax.random.fold_in(problem.key, epoch), problem.n
        ).astype(jnp.int32)

    if perm is None:
        return shuffle()
    return jax.lax.cond(step % per_epoch == 0, shuffle, lambda: perm)


def _cached(opt_state, x):
    """(value, grad) at the new iterate stored by a line search (optax's L-BFGS and
    linesearch transforms store them), with the gradient in the structure of `x`;
    or None. The line search may see only the parameters (nothing learned): its
    gradient has the leaves of `x`, in the same order."""
    try:
        value = optax.tree.get(opt_state, "value")
        grad = optax.tree.get(opt_state, "grad")
    except (KeyError, ValueError):
        return None
    if value is None or grad is None or getattr(value, "shape", None) != ():
        return None
    leaves, x_leaves = jax.tree.leaves(grad), jax.tree.leaves(x)
    if [(a.shape, a.dtype) for a in leaves] != [(a.shape, a.dtype) for a in x_leaves]:
        return None
    return value, jax.tree.unflatten(jax.tree.structure(x), leaves)


def _tree_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    out = jnp.asarray(True)
    for leaf in leaves:
        out = out & leaf
    return out


def _norm(tree) -> Array:
    return optax.tree.norm(tree)


def _converged(problem: _Problem, value, gnorm, x, previous=None) -> Array:
    r"""$\|g\|\,\max(\|x\|, 1) \le$ tol $\max(|F|, 1)$ (both sides in units of
    the objective, so the test does not depend on how the parameters are scaled),
    or $|F_{k+1} - F_k| \le$ ftol $\max(|F_k|, |F_{k+1}|, 1)$; never while a learned
    value is held at the edge of its safe range (`likelax._objective._held`)."""
    if not problem.check:
        return jnp.asarray(False)
    size = jnp.maximum(jnp.abs(value), 1.0)
    out = gnorm * jnp.maximum(_norm(x), 1.0) <= problem.gtol * size
    if previous is not None:
        size = jnp.maximum(size, jnp.abs(previous))
        out = out | (jnp.abs(value - previous) <= problem.ftol * size)
    if problem.learn:  # a held value's objective is flat, not optimal
        out = out & ~held_out(problem.objective, x[1])
    return out


def _where(pred, new, old):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _uses_cache(problem: _Problem, opt_state, x) -> bool:
    """Whether the optimiser's state carries the objective at its new iterate (a
    line search): then the loop reads it instead of evaluating again. Full batch
    only (a minibatch changes the objective between steps)."""
    return problem.batch_size is None and _cached(opt_state, x) is not None


def _value_and_grad(problem: _Problem, data, perm, step, x):
    batch, scale = _batch(problem, data, perm, step)
    return jax.value_and_grad(lambda x_: _objective_program(problem, x_, batch, scale))(x)


def _init_impl(problem: _Problem, data, params_dyn) -> _State:
    """The state before the first step, not evaluated yet (`fresh`): the initial
    point is evaluated by the loop program (`_advance`), so a fit compiles one
    program."""
    learned = problem.objective.learned() if problem.learn else {}
    x = (params_dyn, learned)
    opt_state = problem.optimizer.init(x)
    step = jnp.asarray(0, jnp.int32)
    perm = _epoch_perm(problem, step, None)
    batch, scale = _batch(problem, data, perm, step)
    shape = jax.eval_shape(lambda x_: _objective_value(problem, x_, batch, scale), x)
    value = jnp.full((), jnp.nan, shape.dtype)
    state = _State(
        x=x,
        opt_state=opt_state,
        value=value,
        grad=jax.tree.map(jnp.zeros_like, x),
        gnorm=jnp.full((), jnp.nan, value.dtype),
        step=step,
        done=jnp.asarray(False),
        status=jnp.asarray(_RUNNING, jnp.int32),
        history=jnp.full((problem.steps + 1,), jnp.nan, value.dtype),
        perm=perm,
        fresh=jnp.asarray(True),
    )
    # Strong dtypes, so that a state read back from a checkpoint has exactly the
    # types of a new one: same compiled program, bit-identical continuation.
    return jax.tree.map(lambda a: jnp.asarray(a, dtype=a.dtype), state)


# Traced once per problem: by `_init_shapes`, then (from jax's cache) inside the loop
# program.
_init = eqx.filter_jit(_init_impl)


def _init_shapes(problem: _Problem, data, params_dyn) -> _State:
    """`_init`'s output shapes, remembered per structure and input shapes (tracing
    for them costs ~5 ms, a third of a small fit's call)."""
    return _cache_if_hashable(_init_shapes_of, _spec((problem, data, params_dyn)))


def _init_shapes_of(spec) -> _State:
    return eqx.filter_eval_shape(_init, *_unspec(spec))


def _blank(problem: _Problem, data, params_dyn) -> _State:
    """A placeholder of the initial state's shapes and dtypes, made in numpy with
    `fresh` set: the loop program replaces it by `_init_impl`'s state, so starting a
    fit compiles no program of its own. (An optimiser state holding typed PRNG keys,
    which numpy cannot make, gets the real initial state from a small program.)"""
    like = _init_shapes(problem, data, params_dyn)
    if any(
        jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended) for a in jax.tree.leaves(like)
    ):
        return _init(problem, data, params_dyn)
    blank = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), like)
    return eqx.tree_at(lambda s: s.fresh, blank, np.ones((), bool))


def _evaluate_first(problem: _Problem, data, s: _State) -> _State:
    """Evaluate the initial point (on the first minibatch with `batch_size`)."""
    value, grad = _value_and_grad(problem, data, s.perm, s.step, s.x)
    value = value.astype(s.value.dtype)
    finite = jnp.isfinite(value) & _tree_finite(grad)
    gnorm = _norm(grad)
    converged = finite & _converged(problem, value, gnorm, s.x)
    status = jnp.where(finite, jnp.where(converged, _CONVERGED, _RUNNING), _NONFINITE)
    return eqx.tree_at(
        lambda t: (t.value, t.grad, t.gnorm, t.done, t.status, t.history, t.fresh),
        s,
        (
            value,
            grad,
            gnorm,
            ~finite | converged,
            status.astype(jnp.int32),
            s.history.at[s.step].set(value),
            jnp.asarray(False),
        ),
    )


def _step(problem: _Problem, data, s: _State) -> _State:
    """One optimiser step and the evaluation at the new point."""
    batch, scale = _batch(problem, data, s.perm, s.step)
    value_fn = lambda x_: _objective_program(problem, x_, batch, scale)
    updates, opt_state = problem.optimizer.update(
        s.grad, s.opt_state, s.x, value=s.value, grad=s.grad, value_fn=value_fn
    )
    x = optax.apply_updates(s.x, updates)
    line_search = _uses_cache(problem, opt_state, x)
    if line_search:  # never fresh: see `_advance_impl`
        step = s.step + 1
        value, grad = _cached(opt_state, x)  # pyright: ignore[reportGeneralTypeIssues]
        perm = s.perm
    else:
        # A fresh state's first iteration only evaluates the initial point (the
        # update is computed and dropped): one copy of the objective in the program.
        x = _where(s.fresh, s.x, x)
        opt_state = _where(s.fresh, s.opt_state, opt_state)
        step = s.step + jnp.where(s.fresh, 0, 1).astype(s.step.dtype)
        perm = _epoch_perm(problem, step, s.perm)
        value, grad = _value_and_grad(problem, data, perm, step, x)
    value = value.astype(s.value.dtype)
    finite = jnp.isfinite(value) & _tree_finite(grad)
    gnorm = _norm(grad)
    converged = finite & _converged(problem, value, gnorm, x, s.value)
    if line_search:
        # A line search only accepts decreasing steps; a rise means it failed. Keep
        # the better point. A rise within rounding of the objective is the end of
        # progress at an optimum (converged); a larger one is a stall (a kink, or
        # a NaN region the search backed away from).
        rise = value - s.value
        rose = finite & (rise > 0)
        eps = float(jnp.finfo(value.dtype).eps)
        in_rounding = rise <= _ROUNDING * eps * jnp.maximum(jnp.abs(s.value), 1.0)
        failed = jnp.where(in_rounding, _CONVERGED, _STALLED)
    else:
        rose = jnp.asarray(False)
        failed = jnp.asarray(_NONFINITE)
    ok = finite & ~rose
    # A rejected step ends the fit: only the iterate (and what describes it) goes
    # back to the previous one; the optimiser state is not used again.
    keep = _where(
        ok, (x, value, grad, gnorm, step), (s.x, s.value, s.grad, s.gnorm, s.step)
    )
    status = jnp.where(
        ok,
        jnp.where(converged, _CONVERGED, _RUNNING),
        jnp.where(finite, failed, _NONFINITE),
    )
    return _State(
        x=keep[0],
        opt_state=opt_state,
        value=keep[1],
        grad=keep[2],
        gnorm=keep[3],
        step=keep[4],
        done=converged | ~ok,
        status=status.astype(jnp.int32),
        history=s.history.at[step].set(value),
        perm=perm,
        fresh=jnp.asarray(False),
    )


def _advance_impl(problem: _Problem, data, params_dyn, state: _State):
    """Run the loop until `problem.until` steps (or convergence / failure); the
    state and `(fitted objective, data fingerprint)`: the fitted objective (None when
    nothing is learned) and the fingerprint are made in this program, not eagerly.

    `params_dyn` (None: `state` is already initialised) replaces a fresh `state`
    (a `_blank`) by the initial state, in a `cond`. With a line search the initial
    point is then evaluated, outside the loop (one evaluation per call, not per
    step), so the loop body is only step + evaluation + checks, as in a
    hand-written loop."""
    line_search = _uses_cache(problem, state.opt_state, state.x)

    def begin(s: _State) -> _State:
        if params_dyn is not None:
            s = _init(problem, data, params_dyn)
        return _evaluate_first(problem, data, s) if line_search else s

    if params_dyn is not None or line_search:
        state = jax.lax.cond(state.fresh, begin, lambda s: s, state)
    until = jnp.minimum(problem.until, problem.steps)
    state = jax.lax.while_loop(
        lambda s: s.fresh | ((s.step < until) & ~s.done),
        lambda s: _step(problem, data, s),
        state,
    )
    fitted = _fitted(problem, state.x) if problem.learn else None
    return state, (fitted, data_fingerprint(data))


def _fitted(problem: _Problem, x):
    """The objective with the learned values of `x` (the fitted noise models)."""
    return problem.objective.with_learned(x[1]) if problem.learn else problem.objective


# The first argument, `(problem, data, params_dyn)`, is not donated.
_advance = eqx.filter_jit(
    lambda inputs, state: _advance_impl(inputs[0], inputs[1], inputs[2], state),
    donate="all-except-first",
)


@eqx.filter_jit
def _full_value_and_grad(problem: _Problem, data, x):
    return jax.value_and_grad(lambda x_: _objective_value(problem, x_, data, None))(x)


def data_fingerprint(data: PyTree) -> Array:
    """A cheap fingerprint of a data pytree (traceable): per leaf, its size, sum,
    sum of squares and a position-weighted sum (non-finite entries count as 0), in
    the leaf's floating dtype. Two fits are on the same data when their
    fingerprints agree to rounding (`llx.compare` checks it)."""
    parts = []
    for leaf in jax.tree.leaves(data):
        a = jnp.ravel(jnp.asarray(leaf))
        dtype = a.dtype if jnp.issubdtype(a.dtype, jnp.floating) else jnp.result_type(float)
        a = a.astype(dtype)
        a = jnp.where(jnp.isfinite(a), a, jnp.zeros((), dtype))
        weight = (jnp.arange(a.size) % 7).astype(dtype)
        sums = [jnp.sum(a), jnp.sum(a * a), jnp.sum(a * weight)]
        parts += [jnp.asarray(a.size, jnp.float32)] + [v.astype(jnp.float32) for v in sums]
    return jnp.stack(parts) if parts else jnp.zeros((0,), jnp.float32)


_fingerprint_program = jax.jit(data_fingerprint)


def _finish(problem: _Problem, data, state: _State, outs, throw: bool) -> FitResult:
    """The result: no array work here for full-batch fits (it would be a
    compiled program of its own, or eager operations); `outs` is the fitted
    objective and data fingerprint from the loop program (None: made here)."""
    fitted, finger = (None, _fingerprint_program(data)) if outs is None else outs
    x = state.x
    if problem.batch_size is None:
        value, gnorm = state.value, state.gnorm
    else:  # the exact objective on the full data
        value, grad = _full_value_and_grad(problem, data, x)
        gnorm = _norm(grad)
    # `state.status` holds the index of a `Status` item.
    status = jax.tree.unflatten(jax.tree.structure(Status.converged), [state.status])
    params = eqx.combine(x[0], problem.params_static)
    objective = _fitted(problem, x) if fitted is None else fitted
    if throw:
        for item in (Status.nonfinite, Status.budget, Status.stalled):
            value = eqx.error_if(value, status == item, "fit: " + Status[item])
    return FitResult(
        params=params,
        objective=objective,
        history=state.history,
        status=status,
        steps=state.step,
        value=value,
        grad_norm=gnorm,
        data_fingerprint=finger,
    )


# ------------------------------------------------------------------ configuration


@functools.cache
def _default_lbfgs() -> optax.GradientTransformationExtraArgs:
    return optax.lbfgs()


@functools.cache
def _default_adam() -> optax.GradientTransformationExtraArgs:
    return optax.with_extra_args_support(optax.adam(1e-3))


def _extra_args(optimizer, name: str) -> optax.GradientTransformationExtraArgs:
    if not (
        callable(getattr(optimizer, "init", None))
        and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"fit: `{name}` must be an optax GradientTransformation (e.g. "
            f"`optax.adam(1e-2)`), got {type(optimizer).__name__}."
        )
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        return optimizer
    return _cache_if_hashable(optax.with_extra_args_support, optimizer)


def _cache_if_hashable(make, *args):
    """`make(*args)`, the same object for the same hashable arguments: a new
    optimiser object is a new static argument of the compiled loop (a retrace)."""
    try:
        hash(args)
    except TypeError:  # unhashable: made anew (retraces per call)
        return make(*args)
    return _cached_call(make, *args)


@functools.lru_cache(maxsize=1024)
def _cached_call(make, *args):
    return make(*args)


def _blocks(params_opt, learned_opt) -> optax.GradientTransformationExtraArgs:
    r"""The loop's transformation of $x = (\theta, \tilde\phi)$ made of one per
    block: `params_opt` on the parameters and `learned_opt` on the learned
    hyperparameters (None: nothing learned), each with its own state, each seeing
    only its block (its `value_fn` varies that block, the other held)."""

    def init(params) -> Any:
        own, learned = params
        return (
            params_opt.init(own),
            None if learned_opt is None else learned_opt.init(learned),
        )

    def update(
        updates,
        state,
        params=None,
        *,
        value=None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra,
    ) -> Any:
        extra.pop("grad", None)  # the gradient is `updates` (the loop passes both)
        own, learned = params  # pyright: ignore[reportGeneralTypeIssues]

        def block(opt, g, s, x, combine):
            fn = None if value_fn is None else functools.partial(_then, combine, value_fn)
            return opt.update(g, s, x, value=value, grad=g, value_fn=fn, **extra)

        up, sp = block(params_opt, updates[0], state[0], own, lambda v: (v, learned))
        if learned_opt is None:
            return (up, updates[1]), (sp, None)
        ul, sl = block(learned_opt, updates[1], state[1], learned, lambda v: (own, v))
        return (up, ul), (sp, sl)

    return optax.GradientTransformationExtraArgs(init, update)


def _then(first, second, v):
    return second(first(v))


def _is_line_search(optimizer, params_dyn) -> bool:
    """Whether the optimiser's state carries the objective and its gradient (optax's
    L-BFGS, `scale_by_zoom_linesearch`, ...)."""
    return _cached(jax.eval_shape(optimizer.init, params_dyn), params_dyn) is not None


def _check_init(optimizer, tree, what: str, default: bool = False) -> None:
    """A clear error when the optimiser cannot be initialised on `tree` (shapes; a
    mask or partition written for another structure)."""
    try:
        jax.eval_shape(optimizer.init, tree)
    except Exception as e:
        fix = (
            "Pass `learned_optimizer=` (e.g. `optax.adam(1e-2)`) for them"
            if default
            else "A line search steps both together: write its mask for that pair"
        )
        shapes = jax.tree.map(lambda a: a.shape, tree)
        raise TypeError(
            f"fit: `optimizer` steps {what}"
            f"{' (by default)' if default else ''}, {shapes}, "
            f"but cannot be initialised on them (a mask or partition written for "
            f"`params`?). {fix}. ({str(e).splitlines()[0]})"
        ) from e


def _optimizer(
    optimizer, learned_optimizer, batch_size, params_dyn, learned
) -> optax.GradientTransformationExtraArgs:
    """The transformation of the loop's iterate `(params, learned)` (see `fit`'s
    `optimizer` and `learned_optimizer`), made once per optimiser and shapes."""
    return _cache_if_hashable(
        _make_optimizer,
        optimizer,
        learned_optimizer,
        batch_size is None,
        _spec(params_dyn),
        _spec(learned),
    )


def _spec(tree):
    """A hashable description of `tree`: its structure, with each array leaf as its
    `jax.ShapeDtypeStruct` (other leaves as they are); `_unspec` rebuilds the tree."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = (
        jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False))
        if eqx.is_array(a)
        else a
        for a in leaves
    )
    return treedef, tuple(shapes)


def _unspec(spec):
    return jax.tree.unflatten(*spec)


def _make_optimizer(
    optimizer, learned_optimizer, full_batch: bool, params_spec, learned_spec
) -> optax.GradientTransformationExtraArgs:
    params_dyn, learned = _unspec(params_spec), _unspec(learned_spec)
    if optimizer is None:
        base = _default_lbfgs() if full_batch else _default_adam()
        line_search = full_batch
    else:
        base = _extra_args(optimizer, "optimizer")
        line_search = bool(jax.tree.leaves(learned)) and _is_line_search(base, params_dyn)
    if not jax.tree.leaves(learned):
        if learned_optimizer is not None:
            raise ValueError(
                "fit: `learned_optimizer` is given but the objective learns no noise "
                "hyperparameters (mark them with `llx.likelihood(..., learn=...)`)."
            )
        return _cache_if_hashable(_blocks, base, None)
    if line_search:
        if learned_optimizer is not None:
            raise ValueError(
                "fit: a line-search optimiser (here "
                f"{'the default L-BFGS' if optimizer is None else '`optimizer`'}) "
                "steps the parameters and the learned hyperparameters together; "
                "`learned_optimizer` cannot be used with it."
            )
        if optimizer is not None:
            _check_init(base, (params_dyn, learned), "`(params, objective.learned())`")
        return base
    if learned_optimizer is None:
        other = base
        _check_init(other, learned, "the learned hyperparameters", default=True)
    else:
        other = _extra_args(learned_optimizer, "learned_optimizer")
    return _cache_if_hashable(_blocks, base, other)


def _is_traced(tree) -> bool:
    return any(isinstance(leaf, _Tracer) for leaf in jax.tree.leaves(tree))


def _rows(data) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("fit: `data` has no arrays; pass e.g. `(u, y)`.")
    shapes = [jnp.shape(leaf) for leaf in leaves]
    if any(len(s) == 0 for s in shapes):
        raise ValueError(
            "fit: every leaf of `data` needs a leading observation axis; got shapes "
            f"{shapes}."
        )
    ns = {s[0] for s in shapes}
    if len(ns) != 1:
        raise ValueError(
            "fit: every leaf of `data` must have the observations on its leading "
            f"axis, with the same length; got shapes {shapes}."
        )
    return ns.pop()


def _tolerances(params_dyn, learned, tol, ftol) -> tuple[Any, Any]:
    """`(tol, ftol)` with their defaults, as arrays of the trained leaves' dtype:
    numpy arrays for Python numbers (no eager XLA program), jax arrays as given."""
    leaves = jax.tree.leaves((params_dyn, learned))
    dtype = (
        jnp.result_type(*(a.dtype for a in leaves)) if leaves else jnp.result_type(float)
    )

    def array(value, default: float):
        if isinstance(value, jax.Array):
            return value
        return np.asarray(default if value is None else value, dtype)

    return array(tol, float(jnp.finfo(dtype).eps) ** 0.6), array(ftol, 0.0)


def _learned_shapes(objective):
    """`objective.learned()` as shapes and dtypes (traced, not computed: no eager
    operations); `{}` when nothing is learned."""
    if isinstance(objective, AbstractObjective):
        return objective._learned_shapes()
    learned = getattr(objective, "learned", None)
    if not callable(learned) or not callable(getattr(objective, "with_learned", None)):
        return {}
    return jax.eval_shape(learned)


# ---------------------------------------------------------------------- checkpoints


def _fingerprint(problem: _Problem, state: _State) -> np.ndarray:
    shapes = jax.tree.map(lambda a: (jnp.shape(a), str(jnp.result_type(a))), state)
    text = repr(
        (
            str(jax.tree.structure(state)),
            jax.tree.leaves(shapes, is_leaf=lambda v: isinstance(v, tuple)),
            problem.steps,
            problem.batch_size,
            problem.n,
        )
    )
    return np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8).copy()


def _host(state: _State) -> _State:
    """A host copy of the state (a replicated array's local copy on multi-host)."""

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(a.addressable_data(0))
        return np.asarray(a)

    return jax.tree.map(one, state)


def _save(path: pathlib.Path, problem: _Problem, state: _State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            eqx.tree_serialise_leaves(f, (_fingerprint(problem, state), _host(state)))
        os.replace(tmp, path)  # atomic: a crash mid-write keeps the old checkpoint
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(path: pathlib.Path, problem: _Problem, like: _State) -> _State:
    expected = _fingerprint(problem, like)
    with open(path, "rb") as f:
        try:
            stored, state = eqx.tree_deserialise_leaves(f, (expected, like))
        except Exception as e:
            raise ValueError(
                f"fit: cannot resume from {str(path)!r}: it was written by a different "
                f"fit (different parameters, optimiser, data shape, steps or "
                f"batch_size): {e}"
            ) from e
    if not np.array_equal(np.asarray(stored), expected):
        raise ValueError(
            f"fit: cannot resume from {str(path)!r}: it was written by a different fit "
            "(different parameters, optimiser state, data shape, steps or batch_size)."
        )
    return state


# ------------------------------------------------------------------------ progress


def _progress_bar(progress: bool | None, total: int, initial: int):
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(
        total=total,
        initial=initial,
        desc="fit",
        unit="step",
        delay=0.0 if progress else 1.0,
        dynamic_ncols=True,
        leave=True,
    )


# ------------------------------------------------------------------------------ fit


def fit(
    objective: Callable[..., Any],
    params: PyTree,
    data: PyTree,
    *,
    optimizer: optax.GradientTransformation | None = None,
    learned_optimizer: optax.GradientTransformation | None = None,
    steps: int = 1000,
    batch_size: int | None = None,
    key: PRNGKeyArray | None = None,
    tol: float | ArrayLike | None = None,
    ftol: float | ArrayLike | None = None,
    progress: bool | None = None,
    checkpoint_every: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike | None = None,
    throw: bool = False,
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    r"""Minimise `objective(params, data)` (MLE or MAP) in one compiled program.

    **What is trained.** Every inexact-array leaf of `params` and every Python
    float (other leaves, e.g. integer arrays and functions, are held fixed), and
    the noise hyperparameters that the objective marks learnable
    (`llx.likelihood(model, noise, learn=...)`), trained unconstrained so they stay
    in their domain. `FitResult.objective` is the objective with the fitted noise.
    An unconstrained value that an optimiser throws beyond the dtype's safe range
    (a log-scale beyond about ±44 in float32, ±354 in float64) is held at the edge
    of that range, with its gradient passed through, so the objective stays
    finite and the optimiser is led back; a fit is not called converged while a
    value is held.

    **Arguments.**

    - `objective`: an `llx` objective (`llx.likelihood(...) + llx.prior(...)`), or
      any function `objective(params, data) -> scalar`; with `batch_size` it is
      called as `objective(params, batch, likelihood_scale=N / B)`.
    - `params`: the initial parameters (a pytree).
    - `data`: a pytree whose every leaf has the $N$ observations on its leading
      axis (for `llx.likelihood`, `(u, y)`).
    - `optimizer`: any optax `GradientTransformation`. Default: `optax.lbfgs()`
      (zoom line search) for full-batch fits, which reaches ~1e-6 relative accuracy
      on smooth problems in float64; `optax.adam(1e-3)` with `batch_size`.
      Create it once and reuse it: a new optimiser object retraces. It sees
      `params` as a hand-written optax loop would: the pytree `params` with its
      untrained leaves set to None (`eqx.partition(params, eqx.is_inexact_array)`),
      so masks and partitions written for `params` work
      (`optax.adamw(lr, mask=...)`, `optax.masked`, `optax.partition`).
    - `learned_optimizer`: steps the learned noise hyperparameters, the dict
      `objective.learned()` = `{term index: {path: unconstrained value}}`, with a
      state of its own. Default: `optimizer` itself, applied to that dict
      separately (for element-wise rules such as SGD, Adam or AdamW, the same
      steps as one optimiser over both; a global rule such as
      `clip_by_global_norm` acts on each block separately). Pass one when
      `optimizer` cannot take that dict (a mask pytree written for `params`: a
      clear error says so) or should not (AdamW without a mask also decays the
      log-scale towards 0, i.e. the scale towards 1). Exception: a line search
      (the default L-BFGS, or any optimiser whose state holds the objective's
      `value` and `grad`, e.g. `optax.lbfgs()`) must move every coordinate along
      one direction, so it steps `(params, objective.learned())` together and
      `learned_optimizer` is refused.
    - `steps`: the step budget (a static size: the history has `steps + 1`
      entries); the fit stops earlier when converged.
    - `batch_size`, `key`: minibatches of `batch_size` rows, drawn without
      replacement; each epoch ($\lfloor N/B \rfloor$ steps) reshuffles the rows with
      `jax.random.permutation(jax.random.fold_in(key, epoch), N)` inside the
      compiled loop. The likelihood terms are scaled by $N/B$ (priors are not), so
      the minibatch objective is an unbiased estimate of the full one and MAP keeps
      its optimum. Convergence is not tested on noisy minibatch values: a minibatch
      fit runs its budget (or stops on a non-finite value).
    - `tol`: converged when
      $\|\nabla F\|_2\,\max(\|\theta\|_2, 1) \le \mathrm{tol}\cdot\max(|F|, 1)$
      (norms over every trained leaf; both sides are in units of the objective, so
      rescaling the data or the parameters does not change when a fit stops).
      `ftol`: converged when
      $|F_{k+1} - F_k| \le \mathrm{ftol}\cdot\max(|F_k|, |F_{k+1}|, 1)$ (no further
      progress). Defaults: `tol` $=\varepsilon^{0.6}$ of the parameters' dtype
      ($4.2\times10^{-10}$ in float64, $7.1\times10^{-5}$ in float32) and `ftol`
      $=0$: the fit also stops when a step leaves the objective exactly unchanged,
      which is where a line search ends once the objective's rounding hides any
      further decrease (a relative-change tolerance above 0 stops quasi-Newton
      methods early: near the optimum the objective changes quadratically less
      than the parameters). With a line-search optimiser (the default L-BFGS), a
      step that raises the objective is rejected and the fit stops at the better
      point: `converged` when the rise is within rounding of the objective
      (1024 ulps), `stalled` otherwise (a kink of a non-smooth objective, such as
      quantile regression's, or a NaN region in the way). `tol=0.0` and
      `ftol=-1.0` (any negative value) switch the two tests off, so the fit runs
      its whole budget unless it turns non-finite (or stalls).
    - `progress`: `None` (default) shows a progress bar with the current objective
      once a fit has run for a second; `True` shows it at once; `False` never.
      Always off inside `jit`/`vmap`.
    - `checkpoint_every`, `checkpoint_path`: save the full loop state (equinox
      serialisation, written atomically) every `checkpoint_every` steps and at the
      end. `resume`: a checkpoint path to continue from, or `True` to continue from
      `checkpoint_path` if it exists (else start afresh). A resumed fit ends
      bit-identical to an uninterrupted one; call it with the same arguments. On
      `KeyboardInterrupt` the last completed state is saved before re-raising.
    - `throw`: raise `FitError` (under `jit`/`vmap`: a runtime error) unless the
      fit converged.
    - `mesh`: data-parallel fitting: the rows of `data` are sharded across every
      device of the `jax.sharding.Mesh` (the row count must be divisible by the
      number of devices) and the parameters are replicated; XLA inserts the
      cross-device sums. Equivalent to `jax.device_put`-ing the data yourself with
      `NamedSharding(mesh, P(mesh.axis_names))`, which also works. Multi-GPU, TPU
      and multi-host use: see the module documentation (`likelax._fit`); on
      several hosts pass `checkpoint_path` on process 0 only (each process holds
      the whole replicated state).

    **Nothing lost.** A non-finite objective or gradient stops the loop; the result
    holds the last finite parameters and `status == Status.nonfinite` (the step
    that failed is `result.steps + 1`). A line search that can only go uphill
    stops with the best point. Checkpoints keep long fits safe from crashes.

    **Under `jax.vmap`.** `jax.vmap(lambda df: llx.fit(obj(df), p, data).params)`
    fits one problem per batch element in one program, equal to separate fits;
    return arrays (or use `eqx.filter_vmap` to map the whole `FitResult`).
    """
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"fit: `steps` must be a non-negative integer, got {steps!r}.")
    steps = int(steps)
    if batch_size is not None:
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(
                f"fit: `batch_size` must be a positive integer, got {batch_size!r}."
            )
        batch_size = int(batch_size)
        if key is None:
            raise ValueError(
                "fit: minibatches need a PRNG key to shuffle the rows: pass "
                "`key=jax.random.key(0)` with `batch_size`."
            )
    if checkpoint_every is not None and (
        not isinstance(checkpoint_every, int | np.integer) or checkpoint_every < 1
    ):
        raise ValueError(
            f"fit: `checkpoint_every` must be a positive integer, got {checkpoint_every!r}."
        )
    if checkpoint_every is not None and checkpoint_path is None:
        raise ValueError("fit: `checkpoint_every` needs a `checkpoint_path`.")
    if resume is True and checkpoint_path is None:
        raise ValueError("fit: `resume=True` needs a `checkpoint_path`.")

    n = _rows(data)
    if batch_size is not None:
        _check_scale_argument(objective)
    if batch_size is not None and batch_size > n:
        raise ValueError(
            f"fit: `batch_size` ({batch_size}) exceeds the number of rows ({n})."
        )
    # Python floats are trained like float arrays (as `jax.jit` traces them).
    params = jax.tree.map(lambda v: jnp.asarray(v) if isinstance(v, float) else v, params)
    params_dyn, params_static = eqx.partition(params, eqx.is_inexact_array)
    learned0 = _learned_shapes(objective)
    learn = bool(jax.tree.leaves(learned0))
    gtol, ftol_ = _tolerances(params_dyn, learned0, tol, ftol)

    traced = _is_traced((objective, params, data, key, gtol, ftol_))
    if traced and (checkpoint_path is not None or resume):
        raise ValueError(
            "fit: checkpoints need concrete arrays; they are not available inside "
            "`jax.jit` or `jax.vmap`."
        )
    if mesh is not None:
        if traced:
            raise ValueError("fit: `mesh=` is not available inside `jax.jit`/`jax.vmap`.")
        data, params_dyn, objective, key = _shard(mesh, n, data, params_dyn, objective, key)

    problem = _Problem(
        objective=objective,
        params_static=params_static,
        key=key,
        gtol=gtol,
        ftol=ftol_,
        until=np.asarray(steps, np.int32),
        optimizer=_optimizer(
            optimizer, learned_optimizer, batch_size, params_dyn, learned0
        ),
        steps=steps,
        batch_size=batch_size,
        n=n,
        learn=learn,
        check=batch_size is None,
    )

    if traced:
        state = _init_impl(problem, data, params_dyn)  # staged into the caller's
        state, outs = _advance_impl(problem, data, None, state)
        return _finish(problem, data, state, outs, throw)

    path = None if checkpoint_path is None else pathlib.Path(checkpoint_path)
    resume_path = None
    if resume is True:
        assert path is not None
        resume_path = path if path.exists() else None
    elif resume not in (None, False):
        resume_path = pathlib.Path(resume)  # pyright: ignore[reportArgumentType]
        if not resume_path.exists():
            raise FileNotFoundError(f"fit: no checkpoint at {str(resume_path)!r}.")

    if resume_path is not None:
        like = _init_shapes(problem, data, params_dyn)
        state = _load(resume_path, problem, like)
        state = jax.tree.map(jnp.asarray, state)
        if mesh is not None:
            state = jax.device_put(state, jax.sharding.NamedSharding(mesh, _P()))
    else:
        state = _blank(problem, data, params_dyn)

    inputs = (problem, data, params_dyn)
    state, outs = _run(inputs, state, progress, checkpoint_every, path)
    result = _finish(problem, data, state, outs, False)
    if throw and not bool(result.status == Status.converged):
        raise FitError("fit: " + result.message)
    return result


def _check_scale_argument(objective) -> None:
    try:
        signature = inspect.signature(objective)
    except (TypeError, ValueError):  # not introspectable: let the call decide
        return
    try:
        signature.bind(None, None, likelihood_scale=1.0)
    except TypeError:
        raise TypeError(
            "fit: with `batch_size`, the objective is called as `objective(params, "
            "batch, likelihood_scale=N / B)` and must multiply its likelihood terms "
            "(not its priors) by `likelihood_scale`; this objective does not accept "
            "that keyword. `llx.likelihood(...)` objectives do."
        ) from None


def _P(*args):
    return jax.sharding.PartitionSpec(*args)


def _shard(mesh, n, data, params_dyn, objective, key):
    devices = mesh.devices.size
    if n % devices:
        raise ValueError(
            f"fit: `mesh=` shards the {n} rows over {devices} devices; the row count "
            "must be divisible by the device count (drop or pad rows, with a `where` "
            "mask, to a multiple)."
        )
    rows = jax.sharding.NamedSharding(mesh, _P(mesh.axis_names))
    replicated = jax.sharding.NamedSharding(mesh, _P())
    data = jax.tree.map(lambda a: jax.device_put(a, rows), data)
    params_dyn = jax.device_put(params_dyn, replicated)
    dyn, static = eqx.partition(objective, eqx.is_array)
    objective = eqx.combine(jax.device_put(dyn, replicated), static)
    if key is not None:
        key = jax.device_put(key, replicated)
    return data, params_dyn, objective, key


def _run(inputs, state, progress, checkpoint_every, path):
    """The host loop: one compiled call per chunk (one call in all when neither a
    progress bar nor checkpoints ask for chunks). The final state and the extra
    outputs of the last call (None: no call)."""
    problem = inputs[0]
    steps = problem.steps
    step, done, fresh = jax.device_get((state.step, state.done, state.fresh))
    chunked = progress is not False or checkpoint_every is not None
    outs = None
    if not chunked:
        if not done:
            state, outs = _advance(inputs, state)
        return state, outs

    bar = _progress_bar(progress, steps, int(step))
    chunk = max(1, min(16, steps))
    first = True
    last_saved = -1
    try:
        while fresh or (not done and step < steps):
            target = min(steps, int(step) + chunk)
            if checkpoint_every is not None:
                target = min(target, (int(step) // checkpoint_every + 1) * checkpoint_every)
            until = np.asarray(target, np.int32)
            call = (eqx.tree_at(lambda p: p.until, problem, until), *inputs[1:])
            t0 = time.perf_counter()
            state, outs = _advance(call, state)
            step, done, value = jax.device_get((state.step, state.done, state.value))
            fresh = False
            elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.update(int(step) - bar.n)
                bar.set_postfix(objective=f"{float(value):.6g}", refresh=False)
            if (
                checkpoint_every is not None
                and path is not None
                and (int(step) % checkpoint_every == 0 or done or step >= steps)
            ):
                _save(path, problem, state)
                last_saved = int(step)
            if not first:  # the first call includes compilation
                factor = 0.25 / max(elapsed, 1e-6)
                chunk = int(min(max(chunk * factor, chunk / 4, 1), chunk * 8))
            first = False
    except KeyboardInterrupt:
        if path is not None and int(step) != last_saved:
            # Interrupted inside the call, its input donated: the last periodic
            # checkpoint stands.
            with contextlib.suppress(RuntimeError):
                _save(path, problem, state)
        raise
    finally:
        if bar is not None:
            bar.close()
    if path is not None and int(step) != last_saved:
        _save(path, problem, state)
    return state, outs
