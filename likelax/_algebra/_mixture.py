r"""Finite mixtures of noise models, of any families."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._config import get_checks
from .._noise._base import REAL, AbstractNoise, _is_concrete, as_param
from ._common import (
    AbstractCombinator,
    check_noise,
    common_kind,
    lse_parts,
    prediction_kind,
)

__all__ = ["Mixture", "mixture"]

# Components are evaluated one by one, fused elementwise, up to this many; beyond,
# a stacked family is scanned in chunks of `_CHUNK` (each chunk fused elementwise)
# with a running logsumexp. A `(K, N)` array reduced over K is 5-15x slower on CPU.
_UNROLL = 32
_CHUNK = 16
# The value alone of more than this many components of one family is scanned in
# chunks of this size (see `Mixture._combine`).
_VALUE_CHUNK = 4

# Families whose nll, cdf and tails depend on (x, x_hat) through x - x_hat only.
_TRANSLATION_INVARIANT = frozenset(
    {
        "Gaussian",
        "Laplace",
        "StudentT",
        "Cauchy",
        "Huber",
        "GeneralizedNormal",
        "AsymmetricLaplace",
        "FromLoss",
    }
)


def _stacked_size(noise: AbstractNoise) -> int | None:
    """The common leading size of the non-scalar leaves (None if all are scalar)."""
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(noise) if jnp.ndim(leaf) >= 1}
    if len(sizes) > 1:
        raise ValueError(
            "mixture: a stacked `components` module needs the same leading axis "
            f"(the component axis) on every non-scalar hyperparameter, got sizes "
            f"{sorted(sizes)}."
        )
    return sizes.pop() if sizes else None


def _leaf_axes(noise: AbstractNoise) -> Any:
    return jax.tree.map(lambda leaf: 0 if jnp.ndim(leaf) >= 1 else None, noise)


def _take(noise: AbstractNoise, k: int) -> AbstractNoise:
    return jax.tree.map(lambda leaf: leaf[k], noise)


class Mixture(AbstractCombinator):
    r"""A finite mixture: $p(x\mid\hat x) = \sum_{k=1}^K w_k\,p_k(x\mid\hat x)$,

    $$-\log p(x\mid\hat x) = -\operatorname{logsumexp}_k\big(\log w_k
      - \mathrm{nll}_k(x,\hat x)\big),\qquad w = \operatorname{softmax}(\ell).$$

    Every component sees the same `x_hat` (a scale mixture such as a contaminated
    normal `0.9·N(σ) + 0.1·N(10σ)`, or a Gaussian core with a heavy-tailed
    component). Components may be of different families, as long as they are all
    densities or all masses (a point mass at 0 is `llx.zero_inflated`).

    - `components`: a sequence of noise models (evaluated elementwise and combined
      with a fused `logsumexp`), or **one** noise model whose hyperparameters have a
      leading axis of size K: K components of one family, evaluated vectorised
      (scalar hyperparameters are shared by the K components).
    - `logits`: $\ell$, shape `(K,)`, or `(*batch, K)` for per-observation weights.
      A weight of exactly 0 is a logit of `-inf` (allowed).

    `loss` is `nll` (no term of a mixture is free of `x_hat` in general), except for
    one component, where the mixture is exactly that component. `predict` is the
    mixture mean $\sum_k w_k\,\mathrm{predict}_k$ when every component predicts its
    mean, or the common centre `x_hat` when every component is symmetric about it
    (Student-t, Cauchy); otherwise it raises. `sample` is exact (a component drawn
    per observation); `cdf` is $\sum_k w_k F_k$, and `log_cdf` / `log_sf` are
    combined with `logsumexp` so tails stay accurate.

    Evaluation: the K per-observation terms are combined elementwise (never stacked
    into an `(N, K)` array) by a `logsumexp` without selects, so XLA fuses it into
    one loop (two terms: $\max(a, b) + \log(1 + e^{-|a-b|})$, one `exp` fewer); for
    location families $x - \hat x$ is formed once. The value of more
    than 4 components of one family (stacked, or a list of one family) is a scan
    over chunks of 4, and a stacked family of more than 32 is differentiated
    through a scan over chunks of 16. Every term `-inf` (an impossible observation)
    gives `+inf` with zero gradients; a component with an infinite density
    (`nll = -inf`) gives NaN (`-inf` with two components).

    Hyperparameter paths: `"logits"`, `"components.<k>.<field>"` (a sequence of
    components) or `"components.<field>"` (one stacked module).
    """

    components: tuple[AbstractNoise, ...] | AbstractNoise
    logits: Float[Array, "*#batch k"]
    stacked: bool = eqx.field(static=True)
    _domains = {"logits": REAL}
    _child_fields = ("components",)

    def __init__(
        self,
        components: Sequence[AbstractNoise] | AbstractNoise,
        logits: Float[ArrayLike, "*#batch k"] | None = None,
    ):
        if isinstance(components, AbstractNoise):
            check_noise("mixture", "components", components)
            size = _stacked_size(components)
            self.stacked = True
            self.components = components
        else:
            if isinstance(components, (str, bytes)) or not isinstance(components, Sequence):
                raise TypeError(
                    "mixture: `components` must be a sequence of noise models, or one "
                    f"noise model with stacked hyperparameters; got "
                    f"{type(components).__name__}."
                )
            comps = tuple(components)
            if not comps:
                raise ValueError("mixture: `components` is empty; give at least one.")
            for i, c in enumerate(comps):
                check_noise("mixture", f"components[{i}]", c)
            _check_compatible(comps)
            size = len(comps)
            self.stacked = False
            self.components = comps
        if logits is None:
            k = size if size is not None else 1
            self.logits = as_param(jnp.zeros((k,)))
        else:
            self.logits = as_param(logits)
            if self.logits.ndim == 0:
                raise ValueError(
                    "mixture: `logits` needs a trailing component axis, got a scalar."
                )
            if size is not None and self.logits.shape[-1] != size:
                raise ValueError(
                    f"mixture: {self.logits.shape[-1]} weights for {size} components."
                )

    # ------------------------------------------------------------ structure

    @property
    def n_components(self) -> int:
        return int(self.logits.shape[-1])

    def _children(self) -> list[tuple[str, AbstractNoise]]:
        if self.stacked:
            return [("components", self.components)]  # type: ignore[list-item]
        return [(f"components.{i}", c) for i, c in enumerate(self.components)]  # type: ignore[arg-type]

    def _own_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"Mixture.logits": tuple(self.logits.shape[:-1])}

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        out = self._own_shapes()
        if self.stacked:
            inner = AbstractCombinator._param_shapes(self)
            inner.pop("Mixture.logits")
            out.update({k: v[1:] for k, v in inner.items()})
            return out
        return AbstractCombinator._param_shapes(self)

    def _prepared(self, dtype: Any, rank: int) -> AbstractNoise:
        logits = jnp.asarray(self.logits).astype(dtype)
        if logits.ndim > 1 and logits.ndim < rank + 1:
            logits = logits.reshape((1,) * (rank + 1 - logits.ndim) + logits.shape)
        new = eqx.tree_at(lambda m: m.logits, self, logits)
        if not self.stacked:
            return self._prepare_children(new, dtype, rank)
        comp: AbstractNoise = self.components  # type: ignore[assignment]
        prepared = jax.vmap(
            lambda c: c._prepared(dtype, rank),
            in_axes=(_leaf_axes(comp),),
            axis_size=self.n_components,
        )(comp)
        return eqx.tree_at(lambda m: m.components, new, prepared)

    def _components_list(self) -> list[AbstractNoise]:
        """The K components as separate modules (prepared module only)."""
        if not self.stacked:
            return list(self.components)  # type: ignore[arg-type]
        return [_take(self.components, k) for k in range(self.n_components)]  # type: ignore[arg-type]

    def _log_weights(self) -> Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    # ------------------------------------------------------------- formulas

    def _shifted(self, x: Array, x_hat: Array) -> tuple[Array, Array]:
        """`(x - x_hat, 0)` when every component depends on `x - x_hat` only (the
        location families): the residual is formed once, so its gradient is summed
        over the components before it is negated for `x_hat` (one full-size array
        instead of one per component); otherwise `(x, x_hat)`."""
        kinds = {type(c).__name__ for _, c in self._children()}
        if kinds <= _TRANSLATION_INVARIANT and jnp.issubdtype(x.dtype, jnp.floating):
            return x - x_hat, jnp.zeros((), x_hat.dtype)
        return x, x_hat

    def _term(self, method: str, c: AbstractNoise, x: Array, x_hat: Array) -> Array:
        """log p_k (`method="_inner_nll"`), or a log tail of component `c`."""
        if method == "_inner_nll":
            return -c._inner_nll(x, x_hat)
        return getattr(type(c), method)(c, x, x_hat)

    def _uniform(self) -> AbstractNoise | None:
        """The components as one stacked module when they are all of one family
        (a stacked module, or a list of modules with the same structure), else None."""
        if self.stacked:
            return self.components  # type: ignore[return-value]
        comps: list[AbstractNoise] = list(self.components)  # type: ignore[arg-type]
        structures = {jax.tree.structure(c) for c in comps}
        if len({type(c) for c in comps}) != 1 or len(structures) != 1:
            return None
        leaves = [jax.tree.leaves(c) for c in comps]
        stacked = []
        for same in zip(*leaves, strict=True):
            shape = jnp.broadcast_shapes(*[jnp.shape(v) for v in same])
            stacked.append(jnp.stack([jnp.broadcast_to(v, shape) for v in same]))
        return jax.tree.unflatten(structures.pop(), stacked)

    def _combine(self, method: str, x: Array, x_hat: Array) -> Array:
        r"""$\log\sum_k w_k\,e^{\text{term}_k}$ (terms: log densities or log tails).

        The value of many components of one family is a scan over chunks of 4 (each
        chunk one fused loop: XLA:CPU stops fusing beyond ~5 components); its
        derivatives are those of the unrolled form (a scan's backward pass is slow).
        """
        if self.n_components > _VALUE_CHUNK and self._uniform() is not None:
            return _fast_value(self, method, x, x_hat)
        return self._combine_unrolled(method, x, x_hat)

    def _combine_unrolled(self, method: str, x: Array, x_hat: Array) -> Array:
        log_w = self._log_weights()
        if self.stacked and self.n_components > _UNROLL:
            uniform: AbstractNoise = self.components  # type: ignore[assignment]
            return self._scan_combine(method, uniform, log_w, x, x_hat, _CHUNK)
        comps = self._components_list()
        log_ws = tuple(log_w[..., i] for i in range(len(comps)))
        family = self._uniform() if method == "_inner_nll" else None
        shared = None if family is None else family._shared_nll(x, x_hat)
        if shared is not None:
            # one family whose nll is a_k T + b_k in a statistic T formed once per
            # element, not once per component (Gaussian: r² up to a scale, Laplace |r|)
            stat, a, b = shared
            return _log_mixture(
                log_ws, tuple(a[j] * stat + b[j] for j in range(len(comps)))
            )
        # nll_k itself for the density (a term -nll_k would negate each component's
        # cotangent separately: K more full-size arrays in a gradient), else -log tail
        costs = [
            c._inner_nll(x, x_hat)
            if method == "_inner_nll"
            else -self._term(method, c, x, x_hat)
            for c in comps
        ]
        return _log_mixture(log_ws, tuple(costs))

    def _combine_scanned(self, method: str, x: Array, x_hat: Array) -> Array:
        uniform = self._uniform()
        assert uniform is not None
        return self._scan_combine(
            method, uniform, self._log_weights(), x, x_hat, _VALUE_CHUNK
        )

    def _scan_combine(
        self, method: str, comps: AbstractNoise, log_w: Array, x, x_hat, chunk: int
    ) -> Array:
        """Running logsumexp over chunks of a stacked family (many components)."""
        k = self.n_components
        n = -(-k // chunk)
        pad = n * chunk - k

        def chunked(leaf, fill=None):
            extra = jnp.repeat(leaf[:1], pad, axis=0)  # copies of component 0 ...
            if fill is not None:
                extra = jnp.full_like(extra, fill)  # ... with weight 0
            leaf = jnp.concatenate([leaf, extra], axis=0)
            return leaf.reshape((n, chunk, *leaf.shape[1:]))

        comps = jax.tree.map(chunked, comps)
        lw = chunked(jnp.moveaxis(log_w, -1, 0), -jnp.inf)

        def term(c):
            return self._term(method, c, x, x_hat)

        first = jax.eval_shape(lambda c: term(_take(c, 0)), _take(comps, 0))
        shape = jnp.broadcast_shapes(first.shape, lw.shape[2:])
        lowest = jnp.finfo(first.dtype).min

        def step(carry, part):
            m, acc = carry  # the running max (maybe -inf) and sum of exp(term - shift)
            cs, lwc = part
            terms = [lwc[i] + term(_take(cs, i)) for i in range(chunk)]
            new_m = jax.lax.stop_gradient(
                jnp.maximum(m, functools.reduce(jnp.maximum, terms))
            )
            shift, new_shift = jnp.maximum(m, lowest), jnp.maximum(new_m, lowest)
            acc = acc * jnp.exp(shift - new_shift) + functools.reduce(
                operator.add, [jnp.exp(t - new_shift) for t in terms]
            )
            return (new_m, acc), None

        init = (jnp.full(shape, -jnp.inf, first.dtype), jnp.zeros(shape, first.dtype))
        (m, acc), _ = jax.lax.scan(step, init, (comps, lw))
        # acc >= 1 unless every term is -inf (then m = -inf: the value is -inf, and
        # the floor keeps the gradient of the log finite)
        tiny = jnp.finfo(first.dtype).tiny
        return m + jnp.log(jnp.maximum(acc, tiny))

    def _nll(self, x, x_hat):
        if self.n_components == 1:
            return self._components_list()[0]._inner_nll(x, x_hat)
        x, x_hat = self._shifted(x, x_hat)
        return -self._combine("_inner_nll", x, x_hat)

    def _loss(self, x, x_hat):
        if self.n_components == 1:
            return self._components_list()[0]._inner_loss(x, x_hat)
        return self._nll(x, x_hat)

    def _prediction_kind(self) -> str:
        return common_kind([prediction_kind(c) for _, c in self._children()])

    def _predict(self, x_hat):
        comps = self._components_list()
        if len(comps) == 1:
            return comps[0]._predict(x_hat)
        if self._prediction_kind() == "other":
            names = ", ".join(type(c).__name__ for _, c in self._children())
            raise NotImplementedError(
                f"Mixture.predict: the optimal prediction of a mixture of {names} has "
                "no closed form (a weighted average of the components' predictions is "
                "the mixture mean only when every component predicts its mean, or "
                "when all are symmetric about `x_hat`)."
            )
        w = jax.nn.softmax(self.logits, axis=-1)
        out = None
        for i, c in enumerate(comps):
            term = w[..., i] * c._predict(x_hat)
            out = term if out is None else out + term
        return out

    def _sample(self, key, x_hat, shape):
        comps = self._components_list()
        if len(comps) == 1:
            return comps[0]._sample(key, x_hat, shape)
        keys = jax.random.split(key, len(comps) + 1)
        logits = jnp.broadcast_to(self._log_weights(), (*shape, self.n_components))
        which = jax.random.categorical(keys[-1], logits, axis=-1)
        draws = [c._sample(keys[i], x_hat, shape) for i, c in enumerate(comps)]
        dtype = jnp.result_type(*draws)
        out = draws[0].astype(dtype)
        for i in range(1, len(draws)):
            out = jnp.where(which == i, draws[i].astype(dtype), out)
        return out

    def _cdf(self, x, x_hat):
        comps = self._components_list()
        w = jax.nn.softmax(self.logits, axis=-1)
        out = None
        for i, c in enumerate(comps):
            term = w[..., i] * _masked_cdf(c, x, x_hat)
            out = term if out is None else out + term
        return out

    def _log_cdf(self, x, x_hat):
        if self.n_components == 1:
            return _masked_tail(self._components_list()[0], "_log_cdf", x, x_hat)
        x, x_hat = self._shifted(x, x_hat)
        return self._combine("_log_cdf", x, x_hat)

    def _log_sf(self, x, x_hat):
        if self.n_components == 1:
            return _masked_tail(self._components_list()[0], "_log_sf", x, x_hat)
        x, x_hat = self._shifted(x, x_hat)
        return self._combine("_log_sf", x, x_hat)


def _log_mixture_parts(log_w, cost):
    r"""(value, responsibilities, their scale) of `lse_parts` on $\ell_k - c_k$."""
    return lse_parts([lw - c for lw, c in zip(log_w, cost, strict=True)])


@jax.custom_jvp
def _log_mixture(log_w: tuple[Array, ...], cost: tuple[Array, ...]) -> Array:
    r"""$\log\sum_k e^{\ell_k - c_k}$ elementwise, from log-weights $\ell_k$ and costs
    $c_k$ (the components' nll, or minus their log tails).

    Combined elementwise, never stacked into an `(N, K)` array, and without
    selects, so that XLA fuses it into the reduction that consumes it. Two terms:
    $\max(a, b) + \log(1 + e^{-|a-b|})$ (one `exp` and a `log1p`); more: their max
    plus the log of $\sum_k e^{a_k - \max}$. Exact where the terms underflow; `-inf`
    when every term is `-inf` (zero tangent); NaN in, NaN out; a term of `+inf`
    gives NaN (`+inf` with two terms).

    The tangent is $-\sum_k \rho_k\,(dc_k - d\ell_k)$ with the responsibilities
    $\rho_k$ ($e^{a_k - \max}/\sum_j e^{a_j - \max}$; for two terms
    $1/(1 + e^{\mp(a-b)})$, each formed directly, so exactly 0 for a term of
    $-\infty$ and accurate when tiny). The minus sits outside the sum: a gradient
    multiplies each component's cotangent by $\rho_k$ only (no per-component
    negation, which XLA would write out as one more full-size array each).
    """
    return _log_mixture_parts(log_w, cost)[0]


@_log_mixture.defjvp
def _log_mixture_jvp(primals, tangents):
    (log_w, cost), (d_log_w, d_cost) = primals, tangents
    out, resp, scale = _log_mixture_parts(log_w, cost)
    dot = functools.reduce(
        operator.add,
        [r * (dc - dl) for r, dc, dl in zip(resp, d_cost, d_log_w, strict=True)],
    )
    return out, -(dot if scale is None else dot * scale)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _fast_value(mix: Mixture, method: str, x: Array, x_hat: Array) -> Array:
    """The scanned value of `mix._combine`, differentiated as the unrolled form."""
    return mix._combine_scanned(method, x, x_hat)


@_fast_value.defjvp
def _fast_value_jvp(method, primals, tangents):
    return jax.jvp(lambda m, a, b: m._combine_unrolled(method, a, b), primals, tangents)


def _masked_cdf(c: AbstractNoise, x: Array, x_hat: Array) -> Array:
    return type(c)._cdf(c, x, x_hat)


def _masked_tail(c: AbstractNoise, name: str, x: Array, x_hat: Array) -> Array:
    return getattr(type(c), name)(c, x, x_hat)


def _check_compatible(comps: tuple[AbstractNoise, ...]) -> None:
    kinds = {c._discrete for c in comps}
    if len(kinds) > 1:
        dens = ", ".join(type(c).__name__ for c in comps if not c._discrete)
        mass = ", ".join(type(c).__name__ for c in comps if c._discrete)
        raise TypeError(
            f"mixture: cannot mix densities ({dens}) with probability masses ({mass}): "
            "a density and a mass are not comparable, so their weighted sum is not a "
            "likelihood. For a point mass at 0 plus a model use `llx.zero_inflated`."
        )
    events = {c._x_hat_event_ndim for c in comps}
    if len(events) > 1:
        raise TypeError(
            "mixture: the components disagree on the trailing event axes of `x_hat` "
            f"({', '.join(f'{type(c).__name__}: {c._x_hat_event_ndim}' for c in comps)})."
        )
    labels = {c._integer_x for c in comps}
    if len(labels) > 1:
        raise TypeError(
            "mixture: some components take integer class labels and others do not."
        )


def mixture(
    components: Sequence[AbstractNoise] | AbstractNoise,
    weights: Float[ArrayLike, "*#batch k"] | None = None,
) -> Mixture:
    r"""A mixture $p(x\mid\hat x) = \sum_k w_k\,p_k(x\mid\hat x)$ of noise models.

    `components`: a sequence of noise models of any families (all densities or all
    masses), or one noise model whose hyperparameters have a leading axis of size K
    (K components of one family, evaluated vectorised). `weights`: non-negative,
    shape `(K,)` (or `(*batch, K)`), normalised here; default uniform. They are held
    as logits (`Mixture.logits`, learnable); a zero weight is a logit of `-inf`.
    See `Mixture`.
    """
    if weights is None:
        return Mixture(components)
    w = jnp.asarray(weights)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.result_type(float))
    if _is_concrete(w):
        arr = np.asarray(w)
        if arr.ndim == 0:
            raise ValueError("mixture: `weights` needs a component axis, got a scalar.")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(
                f"mixture: `weights` must be finite and non-negative, got {arr.tolist()}."
            )
        if np.any(arr.sum(axis=-1) <= 0):
            raise ValueError("mixture: `weights` sum to 0; give at least one positive.")
    elif get_checks() != "off":
        w = eqx.error_if(
            w,
            jnp.any(~(w >= 0) | ~jnp.isfinite(w)) | jnp.any(jnp.sum(w, axis=-1) <= 0),
            "mixture: `weights` must be finite, non-negative, with a positive sum.",
        )
    with np.errstate(divide="ignore"):
        logits = jnp.log(w) - jnp.log(jnp.sum(w, axis=-1, keepdims=True))
    return Mixture(components, logits)
