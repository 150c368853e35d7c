r"""What every combinator shares: the recursion over components, and a stable
elementwise `logsumexp`.

A combinator is a noise model built from noise models. It evaluates its components
through their `_inner_nll` / `_inner_loss` (support-masked formulas on prepared
inputs: no checks, no broadcasting), and forwards the rest of the machinery of
`AbstractNoise` to them:

- `_prepared(dtype, rank)` prepares the components too (cast + rank);
- `_violations()` includes the components' (so one `error_if` covers the tree);
- `_hyperparameter_paths()` exposes the components' hyperparameters under dotted
  paths (`"components.0.scale"`, `"noise.df"`), which is how a fit marks and learns
  them;
- `_batch_shape` broadcasts the data with every hyperparameter of the tree.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._noise._base import AbstractNoise, Domain

__all__ = [
    "AbstractCombinator",
    "check_noise",
    "logsumexp_list",
    "lse_parts",
    "prediction_kind",
]


def check_noise(fn: str, name: str, value: Any) -> AbstractNoise:
    """`value` must be a noise model (an instance, not a class)."""
    if isinstance(value, type) and issubclass(value, AbstractNoise):
        raise TypeError(
            f"{fn}: `{name}` must be a noise model instance, got the class "
            f"{value.__name__}; did you mean `{value.__name__}()`?"
        )
    if not isinstance(value, AbstractNoise):
        raise TypeError(
            f"{fn}: `{name}` must be a noise model (e.g. `llx.Gaussian(1.0)`), "
            f"got {type(value).__name__}."
        )
    return value


def _shapes_of(noise: AbstractNoise) -> dict[str, tuple[int, ...]]:
    """The batch shape of every hyperparameter in the tree, by display name."""
    if isinstance(noise, AbstractCombinator):
        return noise._param_shapes()
    return {
        f"{type(noise).__name__}.{n}": tuple(jnp.shape(p))
        for n, p in noise._hyperparameters().items()
    }


class AbstractCombinator(AbstractNoise):
    """A noise model built from noise models (its *components*).

    Subclasses list the fields holding components in `_child_fields` (a field holds
    one noise model or a tuple of them). The defaults below prepare, check and
    expose the components; the class-level properties of the tree (discrete,
    event axes of `x_hat`, integer labels, a safe observation) are the first
    component's unless a subclass says otherwise.
    """

    _child_fields: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------- the tree

    def _children(self) -> list[tuple[str, AbstractNoise]]:
        out = []
        for field in self._child_fields:
            value = getattr(self, field)
            if isinstance(value, tuple):
                out.extend((f"{field}.{i}", c) for i, c in enumerate(value))
            else:
                out.append((field, value))
        return out

    def _first(self) -> AbstractNoise:
        return self._children()[0][1]

    @property
    def _discrete(self) -> bool:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self._first()._discrete

    @property
    def _integer_x(self) -> bool:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self._first()._integer_x

    @property
    def _x_hat_event_ndim(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self._first()._x_hat_event_ndim

    @property
    def _safe_x(self) -> float | None:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self._first()._safe_x

    @property
    def _normalised(self) -> bool:  # pyright: ignore[reportIncompatibleVariableOverride]
        return all(c._normalised for _, c in self._children())

    # ------------------------------------------------- hooks of AbstractNoise

    def _own_shapes(self) -> dict[str, tuple[int, ...]]:
        """Batch shapes of this combinator's own array fields (not the children's)."""
        return {
            f"{type(self).__name__}.{n}": tuple(jnp.shape(p))
            for n, p in self._hyperparameters().items()
        }

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        out = dict(self._own_shapes())
        for _, child in self._children():
            out.update(_shapes_of(child))
        return out

    def _batch_shape(self, method: str, **arrays: tuple[int, ...]) -> tuple[int, ...]:
        shapes = dict(arrays)
        shapes.update(self._param_shapes())
        try:
            return tuple(np.broadcast_shapes(*shapes.values()))
        except ValueError:
            desc = ", ".join(f"`{k}` {v}" for k, v in shapes.items())
            raise ValueError(
                f"{type(self).__name__}.{method}: shapes do not broadcast: {desc}. "
                "Batch axes must match or be 1 (trailing axes are aligned)."
            ) from None

    def _prepare_children(self, new: AbstractNoise, dtype: Any, rank: int):
        for field in self._child_fields:
            value = getattr(new, field)
            if isinstance(value, tuple):
                value = tuple(c._prepared(dtype, rank) for c in value)
            else:
                value = value._prepared(dtype, rank)
            new = eqx.tree_at(lambda m, f=field: getattr(m, f), new, value)
        return new

    def _prepared(self, dtype: Any, rank: int) -> AbstractNoise:
        own = AbstractNoise._prepared(self, dtype, rank)
        return self._prepare_children(own, dtype, rank)

    def _violations(self) -> list[tuple[str, Array]]:
        out = AbstractNoise._violations(self)
        for _, child in self._children():
            out.extend(child._violations())
        return out

    def _hyperparameter_paths(self) -> dict[str, Domain]:
        out = dict(self._domains)
        for prefix, child in self._children():
            for path, domain in child._hyperparameter_paths().items():
                out[f"{prefix}.{path}"] = domain
        return out

    def _loss(self, x: Array, x_hat: Array) -> Array:  # pragma: no cover - overridden
        raise NotImplementedError


# ------------------------------------------------------------------ prediction

# What a family's `predict` returns: "both" (the mean, and the centre x_hat of a
# symmetric law), "mean", "centre" (the centre of symmetry, x_hat; the mean may not
# exist) or "other" (a quantile, a mode, ...). Combinators answer through
# `_prediction_kind()`. Used to decide when a weighted average of predictions is
# still the optimal prediction (a mixture's mean, or its centre).
_KINDS = {
    "Gaussian": "both",
    "Laplace": "both",
    "Huber": "both",
    "GeneralizedNormal": "both",
    "StudentT": "centre",
    "Cauchy": "centre",
    "VonMises": "centre",
    "Bernoulli": "mean",
    "Binomial": "mean",
    "Categorical": "mean",
    "Poisson": "mean",
    "NegativeBinomial": "mean",
    "Gamma": "mean",
    "Beta": "mean",
}


def prediction_kind(noise: AbstractNoise) -> str:
    hook = getattr(noise, "_prediction_kind", None)
    if callable(hook):
        return str(hook())
    return _KINDS.get(type(noise).__name__, "other")


def common_kind(kinds: list[str]) -> str:
    """The kind of a weighted average of predictions of these kinds."""
    s = set(kinds)
    if s <= {"both"}:
        return "both"
    if s <= {"both", "mean"}:
        return "mean"
    if s <= {"both", "centre"}:
        return "centre"
    return "other"


# ------------------------------------------------------------------ logsumexp


def _pair(a: Array, b: Array) -> tuple[Array, Array]:
    # the max, and the difference of the terms raised to the lowest float (0 where
    # both are -inf, so that no -inf - -inf = NaN)
    lowest = jnp.finfo(a.dtype).min
    return jnp.maximum(a, b), jnp.maximum(a, lowest) - jnp.maximum(b, lowest)


def lse_parts(a: Sequence[Array]) -> tuple[Array, list[Array], Array | None]:
    r"""$(\log\sum_k e^{a_k},\ [w_k],\ c)$ elementwise, with the responsibilities
    $e^{a_k} / \sum_j e^{a_j} = w_k c$ ($c$ = None means 1).

    Two terms: $\max(a, b) + \log(1 + e^{-|a-b|})$ (one `exp` and a `log1p`) and
    $w = 1/(1 + e^{\mp(a-b)})$, each formed directly (exactly 0 for a term of
    $-\infty$, accurate when tiny; both 0 where both terms are $-\infty$).

    More terms: the max plus the log of $s = \sum_k e^{a_k - \max}$, with
    $w_k = e^{a_k - \max}$ and $c = 1/\max(s, 1)$ ($s = 0$ only where every term
    is $-\infty$: then the value is $-\infty$ and every $w_k = 0$).

    No per-element `where` in the value: on XLA:CPU it stops the sum of the nll
    fusing into a single loop. The shift is the max raised to the lowest float,
    finite when every term is $-\infty$.
    """
    if len(a) == 2:
        m, d = _pair(a[0], a[1])
        out = m + jnp.log1p(jnp.exp(-jnp.abs(d)))
        # 0 where both terms are -inf (d = 0 there), 1 elsewhere, select-free
        live = jnp.minimum(
            jnp.maximum(m, jnp.finfo(m.dtype).min) - jnp.finfo(m.dtype).min, 1
        )
        return out, [live / (1 + jnp.exp(-d)), live / (1 + jnp.exp(d))], None
    m = functools.reduce(jnp.maximum, a)
    shift = jnp.maximum(m, jnp.finfo(m.dtype).min)
    e = [jnp.exp(ai - shift) for ai in a]
    s = functools.reduce(operator.add, e)
    return m + jnp.log(s), e, 1.0 / jnp.maximum(s, jnp.ones((), s.dtype))


@jax.custom_jvp
def logsumexp_list(a: tuple[Array, ...]) -> Array:
    r"""$\log\sum_k e^{a_k}$ over a tuple of same-shape arrays, elementwise
    (`lse_parts`).

    Combining K per-element arrays (rather than stacking them into an `(N, K)`
    array) keeps the work fused into one loop. Exact where the terms underflow;
    `-inf` when every term is `-inf` (never NaN); NaN in, NaN out. A term of
    `+inf` (an infinite density) gives NaN (`+inf` with two terms). The tangent is
    $\sum_k w_k\,da_k$ with the responsibilities of `lse_parts`.
    """
    return lse_parts(a)[0]


@logsumexp_list.defjvp
def _logsumexp_list_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    out, resp, scale = lse_parts(a)
    dot = functools.reduce(operator.add, [w * d for w, d in zip(resp, da, strict=True)])
    return out, dot if scale is None else dot * scale
