r"""The noise-model interface, and everything that is written once for all families.

A family implements one pointwise formula (`_loss`, plus `_const` for the part that
does not depend on `x_hat`) on arrays that are already broadcast-compatible, in the
compute dtype, with `x` already inside the support. The public methods here add:

- argument checks at trace time (dtypes, shapes), naming the argument;
- the dtype policy: float64 stays float64; float16/bfloat16 are computed in float32
  and the result is returned in the input dtype;
- broadcasting without implicit rank promotion (every array is brought to the batch
  rank with leading size-1 axes; scalars stay scalars, so a shared hyperparameter is
  hoisted out of the per-element work);
- support handling: an impossible observation gives exactly `+inf`, with a finite
  (zero) gradient, and never disturbs the other elements (double `where`);
- `where=` masks: a masked element contributes exactly 0 to the value and gradient,
  even when it holds NaN;
- value checks behind the global switch (`likelax.set_checks`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, PRNGKeyArray

from .._config import get_checks

__all__ = [
    "NONNEGATIVE_INTEGER",
    "POSITIVE",
    "REAL",
    "UNIT_INTERVAL_OPEN",
    "AbstractNoise",
    "Domain",
    "as_param",
    "constrained",
    "unconstrained",
]


class Domain(eqx.Module):
    """The valid set of a hyperparameter, e.g. `POSITIVE`: `value > 0`.

    `constrain` maps an unconstrained real to the domain and `unconstrain` is its
    inverse (None for domains that cannot be learned by gradient, e.g. integers):
    a learned hyperparameter is stored unconstrained, so it stays valid by
    construction.
    """

    description: str = eqx.field(static=True)
    contains: Callable[[Any], Any] = eqx.field(static=True)
    constrain: Callable[[Any], Any] | None = eqx.field(static=True, default=None)
    unconstrain: Callable[[Any], Any] | None = eqx.field(static=True, default=None)


# The tests work on numpy arrays too (concrete values are checked at construction
# in numpy: no eager XLA operation to compile), and on jax arrays under tracing.
def _xp(v):
    return np if isinstance(v, np.ndarray) else jnp


def _positive(v):
    return v > 0


def _unit_open(v):
    return (v > 0) & (v < 1)


def _nonneg_int(v):
    xp = _xp(v)
    return (v >= 0) & (v == xp.floor(v)) & xp.isfinite(v)


def _real(v):
    return ~_xp(v).isnan(v)


def _identity(v):
    return v


POSITIVE = Domain("> 0", _positive, jnp.exp, jnp.log)
UNIT_INTERVAL_OPEN = Domain(
    "in the open interval (0, 1)", _unit_open, jax.nn.sigmoid, jax.scipy.special.logit
)
NONNEGATIVE_INTEGER = Domain("a non-negative integer", _nonneg_int)
REAL = Domain("a real number (not NaN)", _real, _identity, _identity)


_Tracer = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]


def as_param(value: ArrayLike) -> Array:
    """A hyperparameter as a floating array leaf (ints become the default float)."""
    if isinstance(value, _Tracer):
        traced: Array = value  # pyright: ignore[reportAssignmentType]
        if not jnp.issubdtype(traced.dtype, jnp.floating):
            return traced.astype(jnp.result_type(float))
        return traced
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    elif getattr(arr, "weak_type", False):
        arr = jnp.asarray(arr, dtype=arr.dtype)  # strong type: no retrace on dtype
    return arr


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, _Tracer)


_SIXTEEN = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def _compute_dtype(*arrays: Array) -> tuple[Any, Any]:
    """(compute dtype, result dtype) for the floating data arguments."""
    floats = [a for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    out = jnp.result_type(*floats) if floats else jnp.result_type(float)
    out = jnp.dtype(out)
    ct = jnp.dtype(jnp.float32) if out in _SIXTEEN else out
    return ct, out


def _to_rank(a: Array, rank: int) -> Array:
    """Prepend size-1 axes so `a` has `rank` dims (scalars stay scalars)."""
    if a.ndim == 0 or a.ndim >= rank:
        return a
    return a.reshape((1,) * (rank - a.ndim) + a.shape)


def _check_data(name: str, a: Any, method: str, integer: bool = False) -> Array:
    try:
        arr = jnp.asarray(a)
    except TypeError as e:
        raise TypeError(
            f"{method}: `{name}` must be an array of numbers, got {type(a).__name__}."
        ) from e
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(
            f"{method}: `{name}` must be real, got dtype {arr.dtype}. "
            "Pass the real part (or the modulus) explicitly."
        )
    if integer and not (jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == jnp.bool_):
        raise TypeError(
            f"{method}: `{name}` must hold integer labels, got dtype {arr.dtype}. "
            f"Cast with `{name}.astype(jnp.int32)` if the values are whole numbers."
        )
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
        raise TypeError(f"{method}: `{name}` must be numeric, got dtype {arr.dtype}.")
    return arr


class AbstractNoise(eqx.Module):
    r"""A noise model $p(x \mid \hat x)$.

    Public methods (all broadcast over leading batch axes and never reduce over them):

    - `nll(x, x_hat, where=None)`: the exact $-\log p(x\mid\hat x)$;
    - `log_prob(x, x_hat, where=None)`: $\log p(x\mid\hat x)$;
    - `loss(x, x_hat, where=None)`: `nll` minus the terms that do not depend on
      `x_hat` (the familiar loss; each family documents the dropped constant);
    - `predict(x_hat)`: the optimal point prediction for this noise;
    - `sample(key, x_hat, shape=())`: draws of shape `shape + batch_shape`;
    - `cdf`, `log_cdf`, `log_sf` for univariate families.

    Subclasses are final; they implement `_loss` (and `_const`, `_predict`,
    `_sample`, `_cdf`, ...) as one unbatched formula.
    """

    # Hyperparameter fields and their domains; checked at construction when
    # concrete (ValueError) and in every call when checks are on (error_if).
    _domains: ClassVar[dict[str, Domain]] = {}
    # Number of trailing axes of `x_hat` that belong to one observation
    # (1 for Categorical logits and for heteroscedastic (location, scale) pairs).
    _x_hat_event_ndim: ClassVar[int] = 0
    # Observations must have an integer dtype (Categorical labels).
    _integer_x: ClassVar[bool] = False
    # Observations are integers (a mass, not a density): PIT is randomised, and
    # mixtures refuse to mix densities with masses.
    _discrete: ClassVar[bool] = False
    # The nll is exactly normalised (False only for user noise built from a bare
    # loss without its normaliser): model comparison refuses to rank otherwise.
    _normalised: ClassVar[bool] = True
    # A value inside the support, substituted for impossible observations so the
    # formula (and its gradient) stays finite there; `None`: support is all reals.
    _safe_x: ClassVar[float | None] = None
    # `nll = loss + const` with `const` free of `x` (the location families): a sum of
    # nlls is then `Σ loss + N·const`, the constant added once (`total_nll`).
    _const_free_of_x: ClassVar[bool] = False

    def __check_init__(self):
        for field, domain in self._domains.items():
            value = getattr(self, field)
            if _is_concrete(value):
                arr = np.asarray(value)
                ok = np.asarray(domain.contains(arr))
                if not ok.all():
                    bad = arr[~ok] if arr.ndim else arr
                    raise ValueError(
                        f"{type(self).__name__}: `{field}` must be "
                        f"{domain.description}, got {np.ravel(bad)[0].item()!r}."
                    )

    # ----------------------------------------------------------------- the formula

    @abc.abstractmethod
    def _loss(self, x: Array, x_hat: Array) -> Array:
        """The part of the nll that depends on `x_hat` (x inside the support)."""

    def _const(self, x: Array) -> Array | float:
        """The part of the nll that does not depend on `x_hat` (dropped by `loss`)."""
        return 0.0

    def _shared_nll(self, x: Array, x_hat: Array) -> tuple[Array, Array, Array] | None:
        r"""The nll as $a\,T + b$ (or None): a statistic $T(x, \hat x)$ free of the
        hyperparameters, and $a$, $b$ free of the data. On a module with stacked
        hyperparameters (a leading component axis on $a$ and $b$) $T$ is shared by
        the components, so a mixture of one such family forms it once per element,
        not once per component (`Mixture` asks; families without a support
        restriction). Returns `(T, a, b)`."""
        return None

    def _sum_loss(self, x: Array, x_hat: Array) -> Array:
        """Σ `_loss` over every observation, every hyperparameter a scalar (see
        `_total`); families override it where a sum is cheaper than summing the
        elements (a shared factor applied once to the sum)."""
        return jnp.sum(self._loss(x, x_hat))

    def _nll(self, x: Array, x_hat: Array) -> Array:
        return self._loss(x, x_hat) + self._const(x)

    def _in_support(self, x: Array) -> Array | None:
        """Boolean mask of possible observations, or None when every real is."""
        return None

    def _predict(self, x_hat: Array) -> Array:
        raise NotImplementedError(f"{type(self).__name__} has no `predict`.")

    def _sample(self, key: PRNGKeyArray, x_hat: Array, shape: tuple[int, ...]):
        raise NotImplementedError(f"{type(self).__name__} has no `sample`.")

    def _cdf(self, x: Array, x_hat: Array) -> Array:
        raise NotImplementedError(
            f"{type(self).__name__} is not univariate: it has no `cdf`."
        )

    def _log_cdf(self, x: Array, x_hat: Array) -> Array:
        return jnp.log(self._cdf(x, x_hat))

    def _log_sf(self, x: Array, x_hat: Array) -> Array:
        return jnp.log1p(-self._cdf(x, x_hat))

    # ------------------------------------------------------------ written once

    def _hyperparameters(self) -> dict[str, Array]:
        return {f: getattr(self, f) for f in self._domains}

    def _prepared(self, dtype: Any, rank: int) -> AbstractNoise:
        """A copy with hyperparameters cast to `dtype` and brought to `rank`.

        Combinators override this to prepare their components too.
        """
        params = self._hyperparameters()
        if not params:
            return self
        names = list(params)
        new = [_to_rank(jnp.asarray(params[n]).astype(dtype), rank) for n in names]
        return eqx.tree_at(
            lambda m: [getattr(m, n) for n in names], self, new, is_leaf=lambda v: v is None
        )

    def _batch_shape(self, method: str, **arrays: tuple[int, ...]) -> tuple[int, ...]:
        shapes = dict(arrays)
        for n, p in self._hyperparameters().items():
            shapes[f"{type(self).__name__}.{n}"] = jnp.shape(p)
        try:
            return tuple(np.broadcast_shapes(*shapes.values()))
        except ValueError:
            desc = ", ".join(f"`{k}` {v}" for k, v in shapes.items())
            raise ValueError(
                f"{type(self).__name__}.{method}: shapes do not broadcast: {desc}. "
                "Batch axes must match or be 1 (trailing axes are aligned)."
            ) from None

    def _hyperparameter_paths(self) -> dict[str, Domain]:
        """Every hyperparameter as a dotted path (e.g. `"scale"`, `"components.1.df"`)
        with its domain. Combinators override this to add their components'."""
        return dict(self._domains)

    def _split_x_hat(self, x_hat: Array, method: str) -> tuple[int, ...]:
        k = self._x_hat_event_ndim
        if x_hat.ndim < k:
            raise ValueError(
                f"{type(self).__name__}.{method}: `x_hat` needs at least {k} "
                f"trailing event axis (got shape {x_hat.shape})."
            )
        return x_hat.shape[: x_hat.ndim - k]

    def _inputs(self, x, x_hat, where, method):
        x = _check_data("x", x, f"{type(self).__name__}.{method}", self._integer_x)
        x_hat = _check_data("x_hat", x_hat, f"{type(self).__name__}.{method}")
        xh_batch = self._split_x_hat(x_hat, method)
        shapes = {"x": x.shape, "x_hat": xh_batch}
        if where is not None:
            where = jnp.asarray(where)
            if where.dtype != jnp.bool_:
                raise TypeError(
                    f"{type(self).__name__}.{method}: `where` must be a boolean mask, "
                    f"got dtype {where.dtype}."
                )
            shapes["where"] = where.shape
        batch = self._batch_shape(method, **shapes)
        ct, out = _compute_dtype(x_hat, x)
        rank = len(batch)
        k = self._x_hat_event_ndim
        if not self._integer_x:
            x = x.astype(ct)
        x = _to_rank(x, rank)
        x_hat = x_hat.astype(ct)
        if x_hat.ndim - k < rank and x_hat.ndim > k:
            x_hat = x_hat.reshape((1,) * (rank - x_hat.ndim + k) + x_hat.shape)
        elif x_hat.ndim == k and rank > 0 and k > 0:
            x_hat = x_hat.reshape((1,) * rank + x_hat.shape)
        if where is not None:
            where = _to_rank(where, rank)
        m, check, carried = self._prepared(ct, rank)._guarded(ct)
        return m, None if carried else check, x, x_hat, where, out

    def _mask_nan_and_support(self, x: Array):
        """(ok, x_safe): ok is True where x is possible or NaN."""
        inside = self._in_support(x)
        if inside is None:
            return None, x
        if jnp.issubdtype(x.dtype, jnp.floating):
            inside = inside | jnp.isnan(x)
        safe = jnp.asarray(self._safe_x if self._safe_x is not None else 0, x.dtype)
        return inside, jnp.where(inside, x, safe)

    def _violations(self) -> list[tuple[str, Array]]:
        """(message, bad mask) for every hyperparameter; combinators add their
        components' (the module must already be `_prepared`)."""
        return [
            (
                f"{type(self).__name__}: `{field}` must be {domain.description}.",
                ~domain.contains(getattr(self, field)),
            )
            for field, domain in self._domains.items()
        ]

    def _guarded(self, dtype: Any) -> tuple[AbstractNoise, Array | None, bool]:
        """This (prepared) module with its value checks attached; the check; and
        whether a floating leaf carries it.

        The check is one scalar of `dtype`: 0 when every hyperparameter is valid,
        otherwise, checks on, a runtime error with the first violation's message
        (one `eqx.branched_error_if`), checks off, NaN. It is added to every
        floating leaf of the module, so whatever reads a hyperparameter — the
        value, or a gradient that does not need the value (`jit(grad)` drops an
        unused value) — keeps the check. Being a scalar it leaves the per-element
        computation untouched, so XLA still fuses the nll into the reduction that
        consumes it (a select or a callback on the full nll array would make it
        write the whole array out). Where the leaves may not carry it (checks
        off; `predict`, which need not read every hyperparameter) the callers add
        it to the result as well.
        """
        violations = self._violations()
        if not violations:
            return self, None, False
        bad = jnp.stack([jnp.any(b) for _, b in violations])
        zero = jnp.zeros((), dtype)
        if get_checks() == "off":
            check = jnp.where(jnp.any(bad), jnp.asarray(jnp.nan, dtype), zero)
        else:
            msgs = [msg for msg, _ in violations]
            check = eqx.branched_error_if(zero, jnp.any(bad), jnp.argmax(bad), msgs)
        # With checks off, a NaN hyperparameter need not make the value NaN (a
        # support test `x <= n` is False for n = NaN): the result carries it too.
        carried = get_checks() != "off" and any(
            eqx.is_inexact_array(v) for v in jax.tree.leaves(self)
        )
        guarded = jax.tree.map(
            lambda v: v + check.astype(v.dtype) if eqx.is_inexact_array(v) else v,
            self,
        )
        return guarded, check, carried

    @staticmethod
    def _checked(check: Array | None, value: Array) -> Array:
        if check is None or not jnp.issubdtype(value.dtype, jnp.inexact):
            return value
        return value + check.astype(value.dtype)

    def _strict(self, value: Array, x: Array) -> Array:
        """In `"strict"` mode, raise when an observation has probability 0."""
        if get_checks() != "strict":
            return value
        impossible = jnp.isposinf(value)
        if jnp.issubdtype(x.dtype, jnp.floating):
            impossible = impossible & ~jnp.isnan(x)
        return eqx.error_if(
            value,
            jnp.any(impossible),
            f"{type(self).__name__}: an observation `x` has probability 0 "
            "(nll = +inf): it is outside the support.",
        )

    def _masked(self, formula, x: Array, x_hat: Array) -> Array:
        """`formula` with impossible observations mapped to exactly `+inf` (and a
        zero gradient): the building block combinators call on their components."""
        ok, x_safe = self._mask_nan_and_support(x)
        value = formula(self, x_safe, x_hat)
        if ok is not None:
            value = jnp.where(ok, value, jnp.asarray(jnp.inf, value.dtype))
        return value

    def _inner_nll(self, x: Array, x_hat: Array) -> Array:
        """The nll on prepared inputs (no dtype, shape or value checks)."""
        return self._masked(type(self)._nll, x, x_hat)

    def _inner_loss(self, x: Array, x_hat: Array) -> Array:
        return self._masked(type(self)._loss, x, x_hat)

    def _evaluate(self, formula, x, x_hat, where, method, cast: bool = True) -> Array:
        """The per-observation values, in the result dtype (`cast=False`: in the
        compute dtype, float32 for 16-bit inputs)."""
        m, check, x, x_hat, where, out = self._inputs(x, x_hat, where, method)
        out = out if cast else x_hat.dtype
        if where is not None:
            safe_x = self._safe_x if self._safe_x is not None else 0
            x = jnp.where(where, x, jnp.asarray(safe_x, x.dtype))
            mask = where if self._x_hat_event_ndim == 0 else where[..., None]
            x_hat = jnp.where(mask, x_hat, jnp.zeros((), x_hat.dtype))
        value = m._masked(formula, x, x_hat)
        if where is not None:
            value = jnp.where(where, value, jnp.zeros((), value.dtype))
        return self._strict(self._checked(check, value), x).astype(out)

    def nll(
        self, x: ArrayLike, x_hat: ArrayLike, where: Bool[ArrayLike, ...] | None = None
    ) -> Array:
        r"""Exact $-\log p(x \mid \hat x)$ per observation (broadcast, not reduced).

        Impossible observations give `+inf`; elements where `where` is False give
        exactly 0 with a zero gradient.
        """
        return self._evaluate(type(self)._nll, x, x_hat, where, "nll")

    def log_prob(
        self, x: ArrayLike, x_hat: ArrayLike, where: Bool[ArrayLike, ...] | None = None
    ) -> Array:
        r"""$\log p(x \mid \hat x) = -$`nll`."""
        return -self.nll(x, x_hat, where)

    def loss(
        self, x: ArrayLike, x_hat: ArrayLike, where: Bool[ArrayLike, ...] | None = None
    ) -> Array:
        """`nll` minus the terms that do not depend on `x_hat` (see the family)."""
        return self._evaluate(type(self)._loss, x, x_hat, where, "loss")

    def _total(
        self, exact: bool, x: ArrayLike, x_hat: ArrayLike, where: Any = None
    ) -> tuple[Array, tuple[int, ...]]:
        """(Σ nll or Σ loss, the per-observation shape summed over).

        With every hyperparameter a scalar and `nll = loss + const` (`const` free of
        `x`; no support restriction), the sum is `_sum_loss + N · const`: no
        per-element constant, and a shared factor applied once to the sum, so XLA
        fuses the whole nll into one reduction (Gaussian value at N = 1e6: 1.5x
        faster than the sum of `nll`). Otherwise, or with `where` or strict checks
        (which inspect each element), it is the sum of `nll` / `loss`. 16-bit inputs
        are computed, summed and returned in float32.
        """
        formula = type(self)._nll if exact else type(self)._loss
        method = "nll" if exact else "loss"
        if where is not None or get_checks() == "strict" or not self._const_free_of_x:
            values = self._evaluate(formula, x, x_hat, where, method, cast=False)
            return jnp.sum(values), tuple(values.shape)
        m, check, x, x_hat, _, _ = self._inputs(x, x_hat, None, method)
        per_element = any(jnp.ndim(v) for v in m._hyperparameters().values())
        if per_element or m._in_support(x) is not None:
            values = m._masked(formula, x, x_hat)
            total, shape = jnp.sum(values), values.shape
        else:
            shape = jnp.broadcast_shapes(x.shape, x_hat.shape)
            total = m._sum_loss(x, x_hat)
            if exact:
                total = total + math.prod(shape) * m._const(x)
        total = self._checked(check, total)
        return total, tuple(shape)  # in the compute dtype

    def total_nll(
        self, x: ArrayLike, x_hat: ArrayLike, where: Bool[ArrayLike, ...] | None = None
    ) -> Array:
        r"""$\sum_i \mathrm{nll}(x_i, \hat x_i)$ over every observation: `nll` summed,
        computed as one fused reduction where the family allows it (a shared scale
        and constant are applied once to the sum, not per element). Equal to
        `jnp.sum(noise.nll(x, x_hat, where))` to rounding; 16-bit inputs are summed,
        and returned, in float32. This is what `llx.likelihood` evaluates."""
        return self._total(True, x, x_hat, where)[0]

    def total_loss(
        self, x: ArrayLike, x_hat: ArrayLike, where: Bool[ArrayLike, ...] | None = None
    ) -> Array:
        """`loss` summed over every observation (see `total_nll`)."""
        return self._total(False, x, x_hat, where)[0]

    def _x_hat_only(self, x_hat: ArrayLike, method: str, extra_rank: int = 0):
        x_hat = _check_data("x_hat", x_hat, f"{type(self).__name__}.{method}")
        batch = self._batch_shape(method, x_hat=self._split_x_hat(x_hat, method))
        ct, out = _compute_dtype(x_hat)
        rank = len(batch) + extra_rank
        k = self._x_hat_event_ndim
        x_hat = x_hat.astype(ct)
        lead = rank - (x_hat.ndim - k)
        if lead > 0 and (x_hat.ndim > k or k > 0):
            x_hat = x_hat.reshape((1,) * lead + x_hat.shape)
        m, check, _ = self._prepared(ct, rank)._guarded(ct)
        return m, check, x_hat, batch, out

    def predict(self, x_hat: ArrayLike) -> Array:
        """The optimal point prediction under this noise (see the family)."""
        m, check, x_hat, _, out = self._x_hat_only(x_hat, "predict")
        return self._checked(check, m._predict(x_hat)).astype(out)

    def sample(
        self, key: PRNGKeyArray, x_hat: ArrayLike, shape: tuple[int, ...] = ()
    ) -> Array:
        """Draw observations, of shape `shape + batch_shape`."""
        shape = tuple(shape)
        m, check, x_hat, batch, out = self._x_hat_only(x_hat, "sample", len(shape))
        draws = self._checked(check, m._sample(key, x_hat, shape + batch))
        if jnp.issubdtype(draws.dtype, jnp.floating):
            draws = draws.astype(out)
        return draws

    def _univariate(self, formula, x, x_hat, method) -> Array:
        m, check, x, x_hat, _, out = self._inputs(x, x_hat, None, method)
        return self._checked(check, formula(m, x, x_hat)).astype(out)

    def cdf(self, x: ArrayLike, x_hat: ArrayLike) -> Array:
        r"""$P(X \le x \mid \hat x)$."""
        return self._univariate(type(self)._cdf, x, x_hat, "cdf")

    def log_cdf(self, x: ArrayLike, x_hat: ArrayLike) -> Array:
        r"""$\log P(X \le x \mid \hat x)$, accurate in the lower tail."""
        return self._univariate(type(self)._log_cdf, x, x_hat, "log_cdf")

    def log_sf(self, x: ArrayLike, x_hat: ArrayLike) -> Array:
        r"""$\log P(X > x \mid \hat x)$, accurate in the upper tail."""
        return self._univariate(type(self)._log_sf, x, x_hat, "log_sf")


def _resolve(noise: Any, path: str) -> Any:
    for part in path.split("."):
        noise = noise[int(part)] if part.isdigit() else getattr(noise, part)
    return noise


def unconstrained(noise: AbstractNoise, paths: list[str]) -> dict[str, Array]:
    """The named hyperparameters mapped to the real line by their domains."""
    domains = noise._hyperparameter_paths()
    out = {}
    for path in paths:
        if path not in domains:
            raise ValueError(
                f"{type(noise).__name__} has no hyperparameter {path!r}; it has "
                f"{sorted(domains)}."
            )
        domain = domains[path]
        if domain.unconstrain is None:
            raise ValueError(
                f"{type(noise).__name__}.{path} is {domain.description} and cannot be "
                "learned by gradient."
            )
        out[path] = domain.unconstrain(_resolve(noise, path))
    return out


def constrained(noise: AbstractNoise, values: dict[str, Array]) -> AbstractNoise:
    """`noise` with the hyperparameters in `values` (unconstrained) mapped back."""
    if not values:
        return noise
    domains = noise._hyperparameter_paths()
    paths = list(values)
    new = [domains[p].constrain(values[p]) for p in paths]  # type: ignore[misc]
    return eqx.tree_at(lambda m: [_resolve(m, p) for p in paths], noise, new)
