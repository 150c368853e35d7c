r"""Objectives as data: likelihood and prior terms that add, scale and print.

An objective is a sum of weighted terms, each an exact negative log-likelihood:

$$
\mathcal L(\theta) \;=\; \sum_t w_t\,\ell_t(\theta),\qquad
\ell^{\text{lik}}(\theta) = \sum_i -\log p\big(y_i \mid f(\theta, u_i)\big),\qquad
\ell^{\text{prior}}(\theta) = \sum_{j\in\text{on}} -\log p(\theta_j \mid 0).
$$

With only likelihood terms, minimising $\mathcal L$ is maximum likelihood (MLE); with a
prior it is the MAP estimate, $\hat\theta_{\text{MAP}} = \arg\min\,
\sum_i -\log p(y_i\mid f(\theta,u_i)) - \log p(\theta)$.

- `likelihood(model, noise)` is the term $\sum_i \mathrm{nll}(y_i, f(\theta, u_i))$ for
  `data = (u, y)`: `model(params, u)` is applied to the **whole batch** `u` at once
  (the model is batched: write it with `@`, `jax.vmap`, ...). Every leaf of `data`
  holds the observations on its leading axis. An autoencoder uses `data = (x, x)`;
  an unconditional density uses `data = (None, y)` and a model that ignores `u`.
- `prior(noise, on=None)` is the term $-\log p(\theta) = \sum_j \mathrm{nll}(\theta_j, 0)$
  over the floating-point array leaves of `params` that `on` selects: the prior is a
  noise model over the parameters, centred at 0. `prior(Gaussian(s))` is L2 (weight
  decay), `prior(Laplace(b))` is L1, `prior(StudentT(df, s))` a heavy-tailed prior.
- Terms add (`a + b`, `sum([a, b])`) and scale (`w * term`, `term * w`,
  `term / w`, with a scalar $w \ge 0$: a tempered likelihood or a prior strength).
  The result is an `equinox.Module`, called as `objective(params, data)`; it prints
  its formula (`str(objective)`), lists its `terms`, and swaps one with `replace` or
  `with_noise` without rebuilding the rest.

**The model convention.** `model` is any callable `(params, u) -> x_hat`; the trained
parameters are the separate `params` pytree. For an Equinox network, pass the network
as `params` and a function that applies it, e.g.
`likelihood(lambda net, u: jax.vmap(net)(u), llx.Gaussian(0.5))`. Arrays captured
inside `model` (an `equinox.Module` or `jax.tree_util.Partial` with array fields) are
leaves of the objective and are **held fixed** by a fit; everything else about
`model` is a static field. So an objective passes through plain `jax.jit` as an
argument, `jax.jit(lambda obj, p, d: obj(p, d))(objective, params, data)`: define the
model, selectors and `on` functions once (a new `lambda` is a new static value and
retraces). New hyperparameter values or weights (same structure) do not retrace.
`jax.jit(objective)` itself does not work, as for every Equinox module holding arrays
(`jax.jit` hashes the function it wraps): pass the objective as an argument, or use
`eqx.filter_jit(objective)`. In multi-task objectives, give every head the same
`model` object: the model then runs once per call.

**Weight decay is MAP with a Gaussian prior; AdamW is not.** With a prior
$\mathcal N(0, \tau^2)$ on the weights, $\nabla_\theta[-\log p(\theta)] = \theta/\tau^2$,
so the gradient of the MAP objective is the likelihood gradient plus
`optax.add_decayed_weights(1 / tau**2)`'s update, and any optimiser applied to that
gradient (SGD, Adam, L-BFGS) targets the MAP estimate. The mapping is $\lambda =
1/\tau^2$ on the *summed* nll (on a mean nll over $N$ observations,
$\lambda = 1/(N\tau^2)$). `optax.adamw` is different: its decay is *decoupled*, added
after Adam's preconditioning, so its update is $-\eta\,(\hat m/(\sqrt{\hat v}+\epsilon)
+ \lambda\theta)$ and its fixed points solve $\hat m/(\sqrt{\hat v}+\epsilon) =
-\lambda\theta$, not $\nabla\ell(\theta) = -\lambda\theta$. Since Adam's direction is
roughly $\operatorname{sign}(\nabla\ell)$ per coordinate whatever the gradient's size,
the decoupled decay is not the gradient of any prior under that preconditioning:
AdamW's solution depends on the learning-rate schedule, $\epsilon$ and the gradient
scale, and differs from the MAP estimate (`tests/test_objective.py` shows it).

**Minibatches.** `objective(params, batch, likelihood_scale=N / B)` multiplies every
likelihood term (not the priors) by `likelihood_scale`, so a minibatch estimate of
the objective is unbiased for the full-data one and MAP targets the same optimum.

**Learned noise hyperparameters.** `likelihood(..., learn=True | "scale" |
("scale", "df"))` marks hyperparameters of that term's noise model (by the dotted
paths of `noise._hyperparameter_paths()`, e.g. `"components.0.scale"`) as learnable;
`learn=True` takes every one that has an unconstrained parametrisation. A fit trains
`(params, objective.learned())` on `objective.with_learned(u)(params, data)`;
`learned()` holds unconstrained values (`log scale`, `logit prob`, ...), so learned
values stay in their domain by construction; `with_learned` holds a value beyond
what the dtype can map safely (a log-scale beyond ±44 in float32) at the edge of
that range, with a straight-through gradient, so the objective stays finite.
Priors' hyperparameters are never learned.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import operator
import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._noise._base import (
    POSITIVE,
    UNIT_INTERVAL_OPEN,
    AbstractNoise,
    Domain,
    as_param,
    constrained,
    unconstrained,
)

__all__ = [
    "AbstractObjective",
    "AbstractTerm",
    "Likelihood",
    "Objective",
    "Prior",
    "likelihood",
    "prior",
]

_Tracer = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]

# A selector picks one array out of the model output or out of `y`: None (the whole
# thing), a key / index, a tuple of keys (a path), or a function.
Selector = None | str | int | tuple[str | int, ...] | Callable[[Any], Any]


# ------------------------------------------------------------------- display


# Family -> (symbol, {hyperparameter: symbol}); other noise models print their class
# name and dotted hyperparameter paths, unless they define
# `_describe(self, x: str, x_hat: str, learned: tuple[str, ...]) -> str`.
_FAMILIES: dict[str, tuple[str, dict[str, str]]] = {
    "Gaussian": ("N", {"scale": "σ"}),
    "Laplace": ("Laplace", {"scale": "b"}),
    "StudentT": ("StudentT", {"df": "ν", "scale": "σ"}),
    "Cauchy": ("Cauchy", {"scale": "γ"}),
    "Huber": ("Huber", {"delta": "δ", "scale": "σ"}),
    "GeneralizedNormal": ("GenNormal", {"power": "β", "scale": "α"}),
    "AsymmetricLaplace": ("AsymLaplace", {"quantile": "τ", "scale": "σ"}),
    "Bernoulli": ("Bernoulli", {}),
    "Binomial": ("Binomial", {"total_count": "n"}),
    "Categorical": ("Cat", {}),
    "Poisson": ("Poisson", {}),
    "NegativeBinomial": ("NegBin", {"concentration": "r"}),
    "Gamma": ("Gamma", {"concentration": "k"}),
    "Beta": ("Beta", {"concentration": "φ"}),
    "VonMises": ("VonMises", {"concentration": "κ"}),
}


def _fmt_number(v: float) -> str:
    return f"{v:.6g}"


def _fmt_value(value: Any) -> str | None:
    """A hyperparameter value for display; None when it is traced (unknown)."""
    if isinstance(value, _Tracer):
        return None
    arr = np.asarray(value)
    if arr.size == 1:
        return _fmt_number(float(arr.reshape(())))
    if arr.size <= 4:
        return "[" + ", ".join(_fmt_number(float(v)) for v in arr.ravel()) + "]"
    return "array" + "×".join(str(d) for d in arr.shape).join("[]")


def _noise_args(noise: AbstractNoise, prefix: str, learned) -> tuple[str, list[str]]:
    """(symbol, arguments): nested noise models (of combinators) first, rendered as
    `Family(args)`, then the model's own hyperparameters `σ=0.5`."""
    symbol, names = _FAMILIES.get(type(noise).__name__, (type(noise).__name__, {}))
    args: list[str] = []
    for field in dataclasses.fields(noise):
        value = getattr(noise, field.name, None)
        if isinstance(value, AbstractNoise):
            args.append(_nested(value, f"{prefix}{field.name}.", learned))
        elif (
            isinstance(value, (tuple, list))
            and value
            and all(isinstance(c, AbstractNoise) for c in value)
        ):
            args.extend(
                _nested(c, f"{prefix}{field.name}.{i}.", learned)
                for i, c in enumerate(value)
            )
    for field in type(noise)._domains:
        shown = _fmt_value(getattr(noise, field))
        name = names.get(field, field)
        arg = name if shown is None else f"{name}={shown}"
        if prefix + field in learned:
            arg += " (learned)"
        args.append(arg)
    return symbol, args


def _nested(noise: AbstractNoise, prefix: str, learned) -> str:
    symbol, args = _noise_args(noise, prefix, learned)
    return f"{symbol}({', '.join(args)})" if args else symbol


def _describe_noise(noise: AbstractNoise, x: str, x_hat: str, learned=()) -> str:
    """`N(y | f(θ, u), σ=0.5)`: the family, its argument and its hyperparameters.

    A noise model may define `_describe(x, x_hat, learned) -> str` to print itself;
    otherwise a combinator prints its components recursively, e.g.
    `Mixture(y | f(θ, u), N(σ=1), Laplace(b=2), logits=[0, 0])`.
    """
    hook = getattr(noise, "_describe", None)
    if callable(hook):
        return str(hook(x, x_hat, tuple(learned)))
    symbol, args = _noise_args(noise, "", tuple(learned))
    return f"{symbol}({x} | {', '.join([x_hat, *args])})"


def _resolve_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _fn_name(fn: Any) -> str | None:
    """A callable's name for display, or None for lambdas and anonymous callables."""
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name.isidentifier():
        return name
    return None


_LAMBDA = re.compile(r"\blambda\b[^:]*:")


def _lambda_body(fn: Any) -> str | None:
    """The source text of a one-line lambda's body (`p["w"]`), or None."""
    if getattr(fn, "__name__", None) != "<lambda>":
        return None
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    matches = list(_LAMBDA.finditer(source))
    if len(matches) != 1:
        return None
    text = source[matches[0].end() :]
    depth, quote, end = 0, None, len(text)
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                end = i
                break
            depth -= 1
        elif (c == "," and depth == 0) or c == "\n":
            end = i
            break
    body = " ".join(text[:end].split())
    return body or None


def _fmt_key(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return f".{key.key}"
    if isinstance(key, jax.tree_util.GetAttrKey):
        return f".{key.name}"
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return f"[{key.key}]"
    return f"[{key}]"


def _fmt_path(path: tuple[Any, ...]) -> str:
    text = "".join(_fmt_key(k) for k in path)
    return text[1:] if text.startswith(".") else text or "θ"


def _fmt_selector(base: str, selector: Selector, what: str) -> str:
    if selector is None:
        return base
    if callable(selector):
        return f"{_fn_name(selector) or what}({base})"
    keys = selector if isinstance(selector, tuple) else (selector,)
    return base + "".join(f"[{k}]" for k in keys)


# ------------------------------------------------------------------ helpers


def _check_weight(w: Any, op: str) -> Array:
    """A term weight: a scalar >= 0 (checked when concrete)."""
    if isinstance(w, AbstractObjective):
        raise TypeError(
            f"objective {op} objective: an objective can only be scaled by a number "
            "(a weight); add objectives with `+`."
        )
    try:
        arr = jnp.asarray(w)
    except TypeError:
        raise TypeError(
            f"objective {op} {type(w).__name__}: a weight must be a real scalar."
        ) from None
    if not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(
            f"objective {op} w: a weight must be a real scalar, got {arr.dtype}."
        )
    if arr.shape != ():
        raise TypeError(
            f"objective {op} w: a weight must be a scalar, got shape {arr.shape}. "
            "(Per-observation weights belong in the data, not in the objective.)"
        )
    if not isinstance(w, _Tracer):
        value = float(arr)
        if not (value >= 0 and np.isfinite(value)):
            raise ValueError(
                f"objective {op} w: a weight must be finite and >= 0, got {value!r} "
                "(a negative weight would turn a negative log-likelihood into a reward)."
            )
    return as_param(w)


def _data_desc(data: Any) -> str:
    if isinstance(data, (tuple, list)):
        return f"a {type(data).__name__} of length {len(data)}"
    shape = getattr(data, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)}"
    return f"a {type(data).__name__}"


def _split_data(data: Any) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(
            "likelihood: `data` must be a pair `(u, y)` of inputs and observations "
            "(every leaf with the observations on its leading axis; for an "
            "autoencoder pass `(x, x)`, without inputs `(None, y)`), got "
            f"{_data_desc(data)}."
        )
    _check_leading_axes(data)
    return data[0], data[1]


def _check_leading_axes(data: Any) -> None:
    sizes: dict[str, int] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
        shape = getattr(leaf, "shape", None)
        if shape is not None and len(shape) >= 1:
            sizes["data" + jax.tree_util.keystr(path)] = shape[0]
    if len(set(sizes.values())) > 1:
        desc = ", ".join(f"`{k}` has {v}" for k, v in sizes.items())
        raise ValueError(
            "likelihood: every leaf of `data` holds the observations on its leading "
            f"axis, but the leading sizes differ: {desc}."
        )


def _select(tree: Any, selector: Selector, arg: str, what: str) -> Any:
    """Pick one leaf out of the model output (`arg="output"`) or `y` (`"target"`)."""
    if selector is None:
        return tree
    if callable(selector):
        return selector(tree)
    keys = selector if isinstance(selector, tuple) else (selector,)
    node = tree
    for key in keys:
        try:
            if isinstance(key, str) and not isinstance(node, Mapping):
                node = getattr(node, key)
            else:
                node = node[key]
        except (KeyError, IndexError, AttributeError, TypeError):
            avail = ""
            if isinstance(node, Mapping):
                avail = f"; it has keys {sorted(map(str, node))}"
            elif isinstance(node, (tuple, list)):
                avail = f"; it has {len(node)} entries"
            raise ValueError(
                f"likelihood: `{arg}={selector!r}` does not select from {what}: "
                f"no entry {key!r} in a value of type {type(node).__name__}{avail}."
            ) from None
    return node


def _single_array(value: Any, arg: str, what: str) -> Array:
    if not eqx.is_array_like(value):
        leaves = jax.tree.leaves(value)
        raise TypeError(
            f"likelihood: {what} is a {type(value).__name__} with {len(leaves)} leaves, "
            f"not one array: pick one with `{arg}=` (a key, an index, a path tuple or "
            "a function)."
        )
    return jnp.asarray(value)


def _normalise_selector(selector: Any, arg: str) -> Selector:
    if selector is None or callable(selector):
        return selector
    if isinstance(selector, list):
        selector = tuple(selector)
    keys = selector if isinstance(selector, tuple) else (selector,)
    if not keys or not all(isinstance(k, (str, int)) for k in keys):
        raise TypeError(
            f"likelihood: `{arg}` must be None, a key (str), an index (int), a tuple "
            f"of keys/indices (a path) or a function, got {selector!r}."
        )
    return selector


def _resolve_learn(noise: AbstractNoise, learn: Any) -> tuple[str, ...]:
    domains = noise._hyperparameter_paths()
    if learn is None or learn is False:
        return ()
    if learn is True:
        return tuple(p for p, d in domains.items() if d.constrain is not None)
    paths = (learn,) if isinstance(learn, str) else tuple(learn)
    for path in paths:
        if not isinstance(path, str):
            raise TypeError(
                f"likelihood: `learn` must be True, False, a hyperparameter name or a "
                f"tuple of names, got an entry {path!r}."
            )
        if path not in domains:
            raise ValueError(
                f"likelihood: `learn={learn!r}`: {type(noise).__name__} has no "
                f"hyperparameter {path!r}; it has {sorted(domains)}."
            )
        if domains[path].constrain is None:
            raise ValueError(
                f"likelihood: `learn={learn!r}`: {type(noise).__name__}.{path} is "
                f"{domains[path].description} and cannot be learned by gradient."
            )
    return tuple(dict.fromkeys(paths))


def _check_noise(noise: Any, where: str) -> AbstractNoise:
    if isinstance(noise, type) and issubclass(noise, AbstractNoise):
        raise TypeError(
            f"{where}: `noise` must be a noise model instance, got the class "
            f"{noise.__name__}; did you mean `{noise.__name__}(...)`?"
        )
    if not isinstance(noise, AbstractNoise):
        raise TypeError(
            f"{where}: `noise` must be a likelax noise model, got {type(noise).__name__}."
        )
    return noise


_SIXTEEN = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def _raw_range(domain: Domain, dtype: Any) -> tuple[float, float] | None:
    r"""The unconstrained values of `domain` that are safe to compute with in
    `dtype` (None: all of them; see `_held`)."""
    if not (domain is POSITIVE or domain is UNIT_INTERVAL_OPEN):
        return None
    info = jnp.finfo(dtype)
    lo = 0.5 * float(np.log(info.tiny))
    hi = 0.5 * float(np.log(info.max)) if domain is POSITIVE else -float(np.log(info.eps))
    return lo, hi


def _compute_raw(raw: Any) -> Array:
    raw = jnp.asarray(raw)
    return raw.astype(jnp.float32) if raw.dtype in _SIXTEEN else raw


def _held(domain: Domain, raw: Any) -> Array:
    r"""An unconstrained value held where its domain's map is safe to compute with.

    The constrained value $v$ must be finite, valid and keep $v^2$ and $1/v^2$
    finite (the nll's derivatives in $v$ grow like $1/v$ and $1/v^2$, summed over the
    observations): `POSITIVE` ($v = e^r$) holds $r \in [\tfrac12\log t,
    \tfrac12\log M]$, `UNIT_INTERVAL_OPEN` ($v = \sigma(r)$) holds $r \in
    [\tfrac12\log t, -\log\varepsilon]$ (so $1 - v \ge \varepsilon$), with $t$, $M$,
    $\varepsilon$ the smallest normal, largest and epsilon of the compute dtype:
    $|r| \lesssim 44$ in float32 ($v \in [10^{-19}, 1.8\cdot10^{19}]$), $354$ in float64.
    Without it, $e^{100}$ overflows float32 (an infinite objective, a NaN gradient)
    and $e^{-100}$ flushes to 0 (an invalid scale). Inside the range nothing
    changes; beyond it the value is that at the edge and the gradient passes
    through as at the edge (straight through), so an optimiser that stepped out is
    led back (`fit` does not call a fit converged while a value is held). 16-bit
    values are held and mapped in float32 (the compute dtype of the families).
    Other domains pass unchanged."""
    raw = _compute_raw(raw)
    bounds = (
        _raw_range(domain, raw.dtype) if jnp.issubdtype(raw.dtype, jnp.floating) else None
    )
    if bounds is None:
        return raw
    return raw + jax.lax.stop_gradient(jnp.clip(raw, *bounds) - raw)


def held_out(objective: AbstractObjective, tree: Mapping[int, Mapping[str, Any]]) -> Array:
    """Whether any of the unconstrained values `tree` (the structure of
    `objective.learned()`) lies beyond its safe range, so `with_learned` holds it
    at the edge (see `_held`)."""
    out = jnp.asarray(False)
    if not isinstance(objective, AbstractObjective):  # a user's own learned()
        return out
    for i, values in tree.items():
        domains = objective.terms[i].noise._hyperparameter_paths()  # pyright: ignore[reportAttributeAccessIssue]
        for path, raw in values.items():
            raw = _compute_raw(raw)
            if not jnp.issubdtype(raw.dtype, jnp.floating):
                continue
            bounds = _raw_range(domains[path], raw.dtype)
            if bounds is not None:
                out = out | jnp.any((raw < bounds[0]) | (raw > bounds[1]))
    return out


def _weighted(value: Array, weight: Array | None) -> Array:
    return value if weight is None else value * weight.astype(value.dtype)


def _scale_value(value: Array, scale: Any) -> Array:
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale == 1:
        return value
    return value * jnp.asarray(scale).astype(value.dtype)


# --------------------------------------------------------------- the objects


class AbstractObjective(eqx.Module):
    """A sum of weighted terms (a single term is a sum of one).

    `objective(params, data=None, *, likelihood_scale=1.0) -> scalar`: the exact
    value $\\sum_t w_t \\ell_t$, each likelihood term multiplied by
    `likelihood_scale` (use $N/B$ for a minibatch of $B$ out of $N$ observations).
    """

    @property
    @abc.abstractmethod
    def terms(self) -> tuple[AbstractTerm, ...]:
        """The terms, in order."""

    # ------------------------------------------------------------ evaluation

    def _each(self, params, data, likelihood_scale, exact) -> list[Array]:
        cache: dict[Hashable, Any] = {}
        return [
            t._term_value(params, data, cache, likelihood_scale, exact) for t in self.terms
        ]

    def __call__(
        self, params: Any, data: Any = None, *, likelihood_scale: ArrayLike = 1.0
    ) -> Array:
        """The exact objective: $\\sum$ weighted likelihood nlls + prior nlls."""
        return functools.reduce(
            operator.add, self._each(params, data, likelihood_scale, True)
        )

    def values(
        self, params: Any, data: Any = None, *, likelihood_scale: ArrayLike = 1.0
    ) -> tuple[Array, ...]:
        """Each term's (weighted) value, in the order of `terms`; they sum to the
        objective."""
        return tuple(self._each(params, data, likelihood_scale, True))

    def loss(
        self, params: Any, data: Any = None, *, likelihood_scale: ArrayLike = 1.0
    ) -> Array:
        """The objective minus constants: each term uses `noise.loss` (dropping what
        depends on neither `params` nor learned hyperparameters), except likelihood
        terms with learned hyperparameters, which keep the exact `nll` (their
        normaliser depends on the learned values). Same minimiser and gradient in
        `params` and in `learned()` as `__call__`; cheaper for families with
        per-observation constants (e.g. $\\log x!$ for counts)."""
        return functools.reduce(
            operator.add, self._each(params, data, likelihood_scale, False)
        )

    # ----------------------------------------------------------- the algebra

    def __add__(self, other: Any) -> AbstractObjective:
        if isinstance(other, AbstractObjective):
            return Objective((*self.terms, *other.terms))
        if isinstance(other, (int, float)) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def __radd__(self, other: Any) -> AbstractObjective:
        # `sum([a, b])` starts from 0.
        if isinstance(other, (int, float)) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def __mul__(self, w: Any) -> AbstractObjective:
        weight = _check_weight(w, "*")
        return _from_terms([t._scaled(weight) for t in self.terms])

    __rmul__ = __mul__

    def __truediv__(self, w: Any) -> AbstractObjective:
        weight = _check_weight(w, "/")
        if not isinstance(w, _Tracer) and float(weight) == 0:
            raise ZeroDivisionError("objective / 0")
        return _from_terms([t._scaled(1 / weight) for t in self.terms])

    def __neg__(self):
        raise TypeError(
            "-objective: an objective is a negative log-likelihood; negating it is not "
            "one. Scale terms with non-negative weights."
        )

    # ------------------------------------------------------------ editing

    def _index(self, which: Any) -> int:
        terms = self.terms
        if isinstance(which, AbstractTerm):
            for i, t in enumerate(terms):
                if t is which:
                    return i
            raise ValueError("replace: that term is not one of `objective.terms`.")
        if isinstance(which, int) and not isinstance(which, bool):
            if not -len(terms) <= which < len(terms):
                raise IndexError(
                    f"replace: term index {which} out of range for {len(terms)} terms."
                )
            return which % len(terms)
        raise TypeError(
            "replace: pick a term by index or by the term itself, got "
            f"{type(which).__name__}."
        )

    def replace(
        self, which: int | AbstractTerm, new: AbstractObjective
    ) -> AbstractObjective:
        """The objective with term `which` (an index or one of `terms`) replaced by
        `new` (a term, or an objective whose terms are spliced in)."""
        i = self._index(which)
        if not isinstance(new, AbstractObjective):
            raise TypeError(f"replace: `new` must be a term, got {type(new).__name__}.")
        terms = list(self.terms)
        terms[i : i + 1] = list(new.terms)
        return _from_terms(terms)

    def with_noise(
        self, which: int | AbstractTerm, noise: AbstractNoise, **kwargs: Any
    ) -> AbstractObjective:
        """The objective with term `which`'s noise model swapped for `noise` (its
        model, selectors, weight and coverage kept; `learn=` may be given again)."""
        i = self._index(which)
        return self.replace(i, self.terms[i].with_noise(noise, **kwargs))

    # ------------------------------------------------- learned hyperparameters

    def learned(self) -> dict[int, dict[str, Array]]:
        """`{term index: {hyperparameter path: unconstrained value}}` for every term
        with learnable hyperparameters (`{}` when none)."""
        return {i: unconstrained(t.noise, list(t.learn)) for i, t in self._learning()}

    def _learned_shapes(self) -> dict[int, dict[str, jax.ShapeDtypeStruct]]:
        """The shapes and dtypes of `learned()`, without computing it (the maps to
        the real line keep both)."""
        return {
            i: {
                p: jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v))
                for p in t.learn
                for v in [_resolve_path(t.noise, p)]
            }
            for i, t in self._learning()
        }

    def _learning(self) -> list[tuple[int, Likelihood]]:
        return [
            (i, t)
            for i, t in enumerate(self.terms)
            if isinstance(t, Likelihood) and t.learn
        ]

    def with_learned(self, tree: Mapping[int, Mapping[str, Any]]) -> AbstractObjective:
        """The objective with its learnable hyperparameters set from unconstrained
        values (the structure `learned()` returns)."""
        expected = {i: set(t.learn) for i, t in self._learning()}
        got = {i: set(v) for i, v in dict(tree).items()}
        if got != expected:
            raise ValueError(
                f"with_learned: expected the structure of `learned()`, i.e. keys "
                f"{ {i: sorted(v) for i, v in expected.items()} }, got "
                f"{ {i: sorted(v) for i, v in got.items()} }."
            )
        terms = list(self.terms)
        for i, values in tree.items():
            t = terms[i]
            assert isinstance(t, Likelihood)
            domains = t.noise._hyperparameter_paths()
            held = {p: _held(domains[p], v) for p, v in values.items()}
            terms[i] = eqx.tree_at(lambda s: s.noise, t, constrained(t.noise, held))
        return _from_terms(terms)

    # ------------------------------------------------------------ display

    def __str__(self) -> str:
        return "−" + " − ".join(t._display() for t in self.terms)


def _from_terms(terms: list[AbstractTerm]) -> AbstractObjective:
    return terms[0] if len(terms) == 1 else Objective(tuple(terms))


class AbstractTerm(AbstractObjective):
    """One term $w\\,\\ell(\\theta)$ of an objective."""

    weight: eqx.AbstractVar[Array | None]

    @property
    def terms(self) -> tuple[AbstractTerm, ...]:
        return (self,)

    @abc.abstractmethod
    def _raw(self, params, data, cache, exact) -> Array:
        """The unweighted value."""

    @abc.abstractmethod
    def _body(self) -> str:
        """`Σ log N(y | f(θ, u), σ=1)`: the display without sign and weight."""

    @abc.abstractmethod
    def with_noise(self, noise: AbstractNoise, **kwargs: Any) -> AbstractTerm:
        """The same term with another noise model."""

    def _term_value(self, params, data, cache, likelihood_scale, exact) -> Array:
        return _weighted(self._raw(params, data, cache, exact), self.weight)

    def _scaled(self, w: Array) -> AbstractTerm:
        new = w if self.weight is None else self.weight * w
        return eqx.tree_at(lambda t: t.weight, self, new, is_leaf=lambda v: v is None)

    def _display(self) -> str:
        if self.weight is None:
            return self._body()
        shown = _fmt_value(self.weight)
        return f"{'w' if shown is None else shown} {self._body()}"


class Likelihood(AbstractTerm):
    r"""The term $\sum_i -\log p(y_i \mid \hat x_i)$, $\hat x = f(\theta, u)$.

    Called with `data = (u, y)`: `model(params, u)` maps the whole batch of inputs
    to `x_hat`, `noise.nll(y, x_hat)` is summed over every observation. With
    `output=` / `target=` the term reads one part of the model output / of `y`
    (multi-task: several terms on the heads of one model; the model runs once per
    objective call when the terms share the same `model` object).

    The model output's batch shape (without the family's event axes, e.g.
    Categorical's class axis) must broadcast **to** `y`'s shape: an `(N, 1)` output
    against `(N,)` observations is an error rather than an `(N, N)` outer sum.
    """

    noise: AbstractNoise
    weight: Array | None
    _model_dyn: Any
    _model_static: Any = eqx.field(static=True)
    learn: tuple[str, ...] = eqx.field(static=True)
    output: Selector = eqx.field(static=True)
    target: Selector = eqx.field(static=True)
    label: str | None = eqx.field(static=True)
    _learn_spec: Any = eqx.field(static=True)

    def __init__(
        self,
        model: Callable[[Any, Any], Any],
        noise: AbstractNoise,
        *,
        learn: bool | str | tuple[str, ...] = False,
        output: Selector = None,
        target: Selector = None,
        label: str | None = None,
        weight: ArrayLike | None = None,
    ):
        if not callable(model):
            raise TypeError(
                "likelihood: `model` must be a callable `(params, u) -> x_hat`, got "
                f"{type(model).__name__}."
            )
        self.noise = _check_noise(noise, "likelihood")
        self._model_dyn, self._model_static = eqx.partition(model, eqx.is_array)
        try:
            hash(self._model_static)
        except TypeError:
            raise TypeError(
                "likelihood: `model` must be hashable apart from its arrays (it is a "
                "static field, so the objective passes through `jax.jit`)."
            ) from None
        self._learn_spec = (
            learn if isinstance(learn, (bool, str)) or learn is None else tuple(learn)
        )
        self.learn = _resolve_learn(self.noise, learn)
        self.output = _normalise_selector(output, "output")
        self.target = _normalise_selector(target, "target")
        self.label = label
        self.weight = None if weight is None else _check_weight(weight, "*")

    @property
    def model(self) -> Callable[[Any, Any], Any]:
        """The model callable `(params, u) -> x_hat`."""
        return eqx.combine(self._model_dyn, self._model_static)

    def _term_value(self, params, data, cache, likelihood_scale, exact) -> Array:
        value = _scale_value(self._raw(params, data, cache, exact), likelihood_scale)
        return _weighted(value, self.weight)

    def _raw(self, params, data, cache, exact) -> Array:
        u, y = _split_data(data)
        key = None
        if self._model_dyn is None:
            key = ("model", self._model_static)
        if key is not None and key in cache:
            out = cache[key]
        else:
            out = self.model(params, u)
            if key is not None:
                cache[key] = out
        out_desc = _fmt_selector("the model output", self.output, "output")
        y_desc = _fmt_selector("y", self.target, "target")
        x_hat = _single_array(
            _select(out, self.output, "output", "the model output"), "output", out_desc
        )
        obs = _single_array(_select(y, self.target, "target", "y"), "target", y_desc)
        k = getattr(self.noise, "_x_hat_event_ndim", 0)
        batch = x_hat.shape[: max(x_hat.ndim - k, 0)]
        try:
            shape = tuple(np.broadcast_shapes(batch, obs.shape))
        except ValueError:
            shape = None
        if shape != tuple(obs.shape):
            event = f" (its last {k} axis is the event axis)" if k else ""
            grown = "" if shape is None else f" would broadcast to {shape}, which"
            raise ValueError(
                f"likelihood: {out_desc} has shape {tuple(x_hat.shape)}{event} and "
                f"{y_desc} has shape {tuple(obs.shape)}: they{grown or ' do not'} "
                f"{'does not match the observations' if grown else 'broadcast'}. "
                "The model must output one prediction per observation (e.g. squeeze a "
                "trailing size-1 axis with `x_hat[..., 0]`)."
            )
        total, per_obs = self.noise._total(bool(exact or self.learn), obs, x_hat)
        if per_obs != tuple(obs.shape):
            raise ValueError(
                f"likelihood: the noise model's hyperparameters broadcast the "
                f"per-observation nll to shape {per_obs}, not the shape of "
                f"{y_desc} {tuple(obs.shape)}."
            )
        return total

    def _body(self) -> str:
        name = self.label or _fn_name(self._model_static) or "f"
        x_hat = _fmt_selector(f"{name}(θ, u)", self.output, "output")
        x = _fmt_selector("y", self.target, "target")
        return f"Σ log {_describe_noise(self.noise, x, x_hat, self.learn)}"

    def with_noise(self, noise: AbstractNoise, **kwargs: Any) -> Likelihood:
        """The same term (model, selectors, label, weight) with `noise`; the learned
        hyperparameters are resolved again on the new noise unless `learn=` is given."""
        unknown = set(kwargs) - {"learn"}
        if unknown:
            raise TypeError(
                f"Likelihood.with_noise: unexpected arguments {sorted(unknown)}."
            )
        return Likelihood(
            self.model,
            noise,
            learn=kwargs.get("learn", self._learn_spec),
            output=self.output,
            target=self.target,
            label=self.label,
            weight=self.weight,
        )


def _short(obj: Any, limit: int = 160) -> str:
    text = " ".join(str(obj).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_inexact(v: Any) -> bool:
    """A floating-point array (or tracer), or a Python float: a parameter a prior covers."""
    if isinstance(v, (jax.Array, np.ndarray, np.generic)):
        return bool(jnp.issubdtype(v.dtype, jnp.inexact))
    return isinstance(v, (float, complex))


def _is_mask_leaf(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


class Prior(AbstractTerm):
    r"""The term $-\log p(\theta) = \sum_{j \in \text{on}} \mathrm{nll}(\theta_j, 0)$.

    Covers the floating-point array leaves of `params` selected by `on`: every one
    (`on=None`), the leaves of `on(params)` (a function, like `eqx.tree_at`'s
    `where`), or those under the `True` leaves of a boolean mask pytree with the
    structure of `params` or a prefix of it (e.g. `{"w": True, "b": False}`).
    Integer and boolean leaves are never covered. The prior's hyperparameters are
    constants (never learned).
    """

    noise: AbstractNoise
    weight: Array | None
    on: Callable[[Any], Any] | None = eqx.field(static=True)
    _mask: tuple[Any, tuple[bool, ...]] | None = eqx.field(static=True)
    label: str | None = eqx.field(static=True)

    def __init__(
        self,
        noise: AbstractNoise,
        on: Any = None,
        *,
        label: str | None = None,
        weight: ArrayLike | None = None,
    ):
        self.noise = _check_noise(noise, "prior")
        self.label = label
        self.weight = None if weight is None else _check_weight(weight, "*")
        if on is None:
            self.on, self._mask = None, None
            return
        leaves, treedef = jax.tree_util.tree_flatten(on)
        if leaves and all(_is_mask_leaf(v) for v in leaves):
            self.on, self._mask = None, (treedef, tuple(bool(v) for v in leaves))
        elif callable(on) and not isinstance(on, (Mapping, tuple, list)):
            self.on, self._mask = on, None
        elif not leaves:
            self.on, self._mask = None, (treedef, ())
        else:
            bad = next(v for v in leaves if not _is_mask_leaf(v))
            raise TypeError(
                "prior: `on` must be a function `params -> subtree` or a boolean mask "
                "pytree whose leaves are Python bools (one per leaf or subtree of "
                f"params), got a leaf {bad!r}. For element-wise selection use a "
                "function, e.g. `on=lambda p: p['w'][1:]`."
            )

    def _mask_tree(self) -> Any:
        assert self._mask is not None
        treedef, flags = self._mask
        return jax.tree_util.tree_unflatten(treedef, flags)

    def _selected(self, params: Any) -> list[tuple[tuple[Any, ...], Any]]:
        """(key path, leaf) of the covered floating-point array leaves."""
        if self.on is not None:
            try:
                chosen = self.on(params)
            except Exception as e:
                raise ValueError(
                    f"prior: `on` raised {type(e).__name__}: {e} when applied to params."
                ) from e
            index = {id(v): p for p, v in jax.tree_util.tree_leaves_with_path(params)}
            pairs = [
                (index.get(id(v), ("<computed>",)), v) for v in jax.tree.leaves(chosen)
            ]
        elif self._mask is not None:
            mask = self._mask_tree()
            try:
                picked = jax.tree.map(lambda m, sub: sub if m else None, mask, params)
            except (ValueError, TypeError):
                raise ValueError(
                    "prior: the `on` mask does not match the structure of params (it "
                    "must have the structure of params or a prefix of it, with a bool "
                    f"per leaf or subtree): the mask is {_short(jax.tree.structure(mask))}"
                    f", params is {_short(jax.tree.structure(params))}. Build the mask "
                    "from params, e.g. `jax.tree.map(lambda x: x.ndim > 1, params)`."
                ) from None
            pairs = jax.tree_util.tree_leaves_with_path(picked)
        else:
            pairs = jax.tree_util.tree_leaves_with_path(params)
        return [(p, v) for p, v in pairs if _is_inexact(v)]

    def covers(self, params: Any) -> list[str]:
        """The paths (`"layers[0].weight"`) of the leaves of `params` this prior covers."""
        return [
            p[0] if p == ("<computed>",) else _fmt_path(p)
            for p, _ in self._selected(params)
        ]

    def _raw(self, params, data, cache, exact) -> Array:
        total = None
        for _, theta in self._selected(params):
            theta = jnp.asarray(theta)
            s = self.noise._total(exact, theta, jnp.zeros((), theta.dtype))[0]
            total = s if total is None else total + s
        if total is None:
            return jnp.zeros((), jnp.result_type(float))
        return total

    def _subscript(self) -> str:
        if self.label is not None:
            return self.label
        if self.on is not None:
            return _fn_name(self.on) or _lambda_body(self.on) or "on"
        if self._mask is None:
            return ""
        mask = self._mask_tree()
        paths = jax.tree_util.tree_leaves_with_path(mask)
        chosen = [_fmt_path(p) for p, m in paths if m]
        if len(chosen) == len(paths) and chosen:
            return ""
        return ", ".join(chosen) if chosen else "∅"

    def _body(self) -> str:
        sub = self._subscript()
        sigma = f"Σ_{{{sub}}}" if sub else "Σ"
        return f"{sigma} log {_describe_noise(self.noise, 'θ', '0')}"

    def with_noise(self, noise: AbstractNoise, **kwargs: Any) -> Prior:
        """The same prior (coverage, label, weight) with another noise model."""
        if kwargs:
            raise TypeError(f"Prior.with_noise: unexpected arguments {sorted(kwargs)}.")
        on = (
            self.on
            if self.on is not None
            else (self._mask_tree() if self._mask is not None else None)
        )
        new = Prior(noise, on, label=self.label)
        return eqx.tree_at(
            lambda t: t.weight, new, self.weight, is_leaf=lambda v: v is None
        )


class Objective(AbstractObjective):
    """A sum of terms: `objective(params, data) = Σ_t terms[t](params, data)`."""

    _terms: tuple[AbstractTerm, ...]

    def __init__(self, terms):
        flat: list[AbstractTerm] = []
        for t in terms:
            if not isinstance(t, AbstractObjective):
                raise TypeError(
                    f"Objective: every term must be a likelihood or prior term, got "
                    f"{type(t).__name__}."
                )
            flat.extend(t.terms)
        if not flat:
            raise ValueError("Objective: needs at least one term.")
        self._terms = tuple(flat)

    @property
    def terms(self) -> tuple[AbstractTerm, ...]:
        return self._terms


# ------------------------------------------------------------ the public API


def likelihood(
    model: Callable[[Any, Any], Any],
    noise: AbstractNoise,
    *,
    learn: bool | str | tuple[str, ...] = False,
    output: Selector = None,
    target: Selector = None,
    label: str | None = None,
) -> Likelihood:
    r"""The likelihood term $\sum_i -\log p(y_i \mid f(\theta, u_i))$ for `data = (u, y)`.

    Arguments:
        model: `(params, u) -> x_hat`, applied to the whole batch `u` (batched).
            `x_hat` is what `noise` expects (the mean for `Gaussian`, logits for
            `Categorical`, the log-rate for `Poisson`, ...).
        noise: the noise model $p(y \mid \hat x)$.
        learn: which of `noise`'s hyperparameters a fit learns: `False` (none),
            `True` (all that can be), a dotted path (`"scale"`,
            `"components.0.scale"`) or a tuple of them.
        output: selects this term's `x_hat` from the model output: a key, an index,
            a tuple path (`("heads", 0)`) or a function of the output.
        target: selects this term's observations from `y`, in the same way.
        label: the model's name in `str(objective)` (default: the function's
            `__name__`, or `f`).

    Returns:
        A term; call it as `term(params, data)`, add it to others with `+`.
    """
    return Likelihood(model, noise, learn=learn, output=output, target=target, label=label)


def prior(noise: AbstractNoise, on: Any = None, *, label: str | None = None) -> Prior:
    r"""The prior term $-\log p(\theta) = \sum_{j} \mathrm{nll}(\theta_j, 0)$.

    A prior is a noise model over the parameters, centred at 0:
    `prior(Gaussian(tau))` adds $\sum_j \theta_j^2 / 2\tau^2 + \log\tau
    + \tfrac12\log 2\pi$ per covered element (L2 / weight decay with
    $\lambda = 1/\tau^2$), `prior(Laplace(b))` adds $\sum_j |\theta_j|/b + \log 2b$
    (L1 with $\lambda = 1/b$).

    Arguments:
        noise: the noise model of each covered parameter around 0.
        on: what the prior covers: `None` (every floating-point array leaf of
            `params`), a function `params -> subtree` (e.g.
            `lambda p: p["w"]`, `lambda net: [l.weight for l in net.layers]`), or a
            boolean mask pytree with the structure of `params` or a prefix of it
            (e.g. `{"w": True, "b": False}`).
        label: how `str(objective)` names the covered leaves (default: the mask's
            paths, the function's name or its one-line lambda body).
    """
    return Prior(noise, on, label=label)
