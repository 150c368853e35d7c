r"""One noise model holding several families, selected by an integer leaf."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Int

from .._noise._base import AbstractNoise, _is_concrete
from ._common import AbstractCombinator, check_noise

__all__ = ["Switch", "switch"]


class Switch(AbstractCombinator):
    r"""The noise model `components[index]`, with `index` an integer array leaf.

    $$-\log p(x\mid\hat x) = \mathrm{nll}_{\text{index}}(x, \hat x).$$

    Because `index` is a leaf (not static), one compiled program serves every
    family: `jax.vmap` over `index` evaluates many families at once (`lax.switch`,
    which under `vmap` computes every branch and selects), and a new index never
    retraces. For example

        sw = llx.switch([llx.Gaussian(), llx.Laplace(), llx.Cauchy()])
        nlls = jax.vmap(lambda i: sw.at(i).nll(x, x_hat))(jnp.arange(3))

    `index` is an `int32` scalar: it is not a hyperparameter and is never trained
    (not inexact, so `eqx.is_inexact_array` filters skip it, and it has no path in
    `_hyperparameter_paths`). An index outside `0..K-1` is an error when checks are
    on and gives NaN when they are off (never a clamped branch).

    Every method (`loss`, `predict`, `sample`, `cdf`, `log_cdf`, `log_sf`) is the
    selected component's; all components must be densities or all masses, with the
    same `x_hat` layout. Hyperparameter paths: `"components.<k>.<field>"`.
    """

    components: tuple[AbstractNoise, ...]
    index: Int[Array, ""]
    _child_fields = ("components",)

    def __init__(self, components: Sequence[AbstractNoise], index: Int[ArrayLike, ""] = 0):
        if isinstance(components, AbstractNoise) or not isinstance(components, Sequence):
            raise TypeError(
                "switch: `components` must be a sequence of noise models, got "
                f"{type(components).__name__}."
            )
        comps = tuple(components)
        if not comps:
            raise ValueError("switch: `components` is empty.")
        for i, c in enumerate(comps):
            check_noise("switch", f"components[{i}]", c)
        for attr, what in (
            ("_discrete", "all densities or all masses"),
            ("_x_hat_event_ndim", "the same trailing event axes of `x_hat`"),
            ("_integer_x", "all integer-labelled or none"),
        ):
            if len({getattr(c, attr) for c in comps}) > 1:
                names = ", ".join(type(c).__name__ for c in comps)
                raise TypeError(f"switch: the components ({names}) must be {what}.")
        self.components = comps
        idx = jnp.asarray(index)
        if not jnp.issubdtype(idx.dtype, jnp.integer):
            raise TypeError(f"switch: `index` must be an integer, got dtype {idx.dtype}.")
        if idx.ndim != 0:
            raise ValueError(
                f"switch: `index` must be a scalar, got shape {idx.shape}; use "
                "`jax.vmap` over the index to evaluate several components."
            )
        self.index = idx.astype(jnp.int32)

    def __check_init__(self):
        if _is_concrete(self.index):
            i = int(np.asarray(self.index))
            if not 0 <= i < len(self.components):
                raise ValueError(
                    f"switch: `index` must be in 0..{len(self.components) - 1}, got {i}."
                )

    def at(self, index: Int[ArrayLike, ""]) -> Switch:
        """The same switch with another `index` (traced values are fine)."""
        return eqx.tree_at(lambda s: s.index, self, jnp.asarray(index, jnp.int32))

    def _own_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def _violations(self) -> list[tuple[str, Array]]:
        out = AbstractCombinator._violations(self)
        k = len(self.components)
        bad = (self.index < 0) | (self.index >= k)
        out.append((f"switch: `index` must be in 0..{k - 1}.", bad))
        return out

    def _branch(self, method: str, *args):
        shapes = [
            jax.eval_shape(lambda c, *a: getattr(type(c), method)(c, *a), c, *args)
            for c in self.components
        ]
        shape = np.broadcast_shapes(*[s.shape for s in shapes])
        dtype = jnp.result_type(*[s.dtype for s in shapes])

        def make(c):
            def branch(*a):
                return jnp.broadcast_to(getattr(type(c), method)(c, *a), shape).astype(
                    dtype
                )

            return branch

        index = jnp.clip(self.index, 0, len(self.components) - 1)
        return jax.lax.switch(index, [make(c) for c in self.components], *args)

    def _nll(self, x, x_hat):
        return self._branch("_inner_nll", x, x_hat)

    def _loss(self, x, x_hat):
        return self._branch("_inner_loss", x, x_hat)

    def _prediction_kind(self) -> str:
        return "other"

    def _predict(self, x_hat):
        return self._branch("_predict", x_hat)

    def _sample(self, key, x_hat, shape):
        shape = tuple(shape)

        def draw(c, k, xh):
            return c._sample(k, xh, shape)

        outs = [jax.eval_shape(draw, c, key, x_hat) for c in self.components]
        dtype = jnp.result_type(*[o.dtype for o in outs])
        branches = [
            lambda k, xh, c=c: draw(c, k, xh).astype(dtype) for c in self.components
        ]
        index = jnp.clip(self.index, 0, len(self.components) - 1)
        return jax.lax.switch(index, branches, key, x_hat)

    def _cdf(self, x, x_hat):
        return self._branch("_cdf", x, x_hat)

    def _log_cdf(self, x, x_hat):
        return self._branch("_log_cdf", x, x_hat)

    def _log_sf(self, x, x_hat):
        return self._branch("_log_sf", x, x_hat)


def switch(components: Sequence[AbstractNoise], index: Int[ArrayLike, ""] = 0) -> Switch:
    r"""Several noise models in one, selected by the integer leaf `index`, so that
    `jax.vmap` over `index` runs one compiled program over many families (see
    `Switch`)."""
    return Switch(components, index)
