r"""Comparing noise models fitted to the same data: exact NLL, AIC, BIC, held-out NLL.

Because every likelax nll is exactly normalised, the likelihoods of different noise
models are on one scale and can be compared: for $k$ fitted parameters (the model's
plus every learned noise hyperparameter) and $n$ observations,

$$\mathrm{AIC} = 2k + 2\,\mathrm{NLL}(\hat\theta), \qquad
  \mathrm{BIC} = k\log n + 2\,\mathrm{NLL}(\hat\theta),$$

and the held-out NLL (on data not used for fitting) estimates the expected negative
log predictive density directly. Lower is better for all three. A loss without its
normaliser is not a likelihood: `compare` refuses to rank a noise model whose nll is
not normalised against the others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._fit import _fingerprint_program
from ._noise._base import AbstractNoise
from ._objective import Likelihood

__all__ = ["Comparison", "compare", "select_noise"]


def _same_data(a: Any, b: Any) -> bool:
    """Fingerprints (see `data_fingerprint`) equal up to summation-order rounding:
    per leaf `(n, Σa, Σa², Σ w·a)`, sums within 1e-4 of their scale (`√(nΣa²)`
    bounds `Σ|a|`)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape[-1:] != b.shape[-1:]:
        return False
    a, b = np.broadcast_arrays(a, b)  # a result from a vmapped fit is batched
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    if not np.array_equal(a[:, 0], b[:, 0]):
        return False
    scale = np.sqrt(a[:, 0] * np.maximum(a[:, 2], b[:, 2]))[:, None]
    return bool(np.all(np.abs(a[:, 1:] - b[:, 1:]) <= 1e-4 * scale + 1e-30))


def _noises(tree: Any) -> list[AbstractNoise]:
    """Every noise model inside `tree`, nested combinators included."""
    found: list[AbstractNoise] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, AbstractNoise):
            found.append(node)
            stack.extend(vars(node).values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return found


def _likelihood_terms(objective: Any) -> list[Likelihood]:
    terms = [
        t for t in getattr(objective, "terms", (objective,)) if isinstance(t, Likelihood)
    ]
    if not terms:
        raise ValueError("compare: the objective has no likelihood term to compare")
    return terms


def _count(tree: Any) -> int:
    return int(
        sum(
            np.size(leaf)
            for leaf in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
        )
    )


def _n_obs(data: Any) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("compare: `data` has no arrays")
    return int(jnp.shape(leaves[-1])[0])


@eqx.filter_jit
def _nll_jit(terms: list[Likelihood], params: Any, data: Any) -> Any:
    return sum(term._raw(params, data, {}, True) for term in terms)


def _nll(objective: Any, params: Any, data: Any) -> float:
    """The exact NLL of the likelihood terms (unweighted), compiled once per shape."""
    return float(_nll_jit(_likelihood_terms(objective), params, data))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The ranked table returned by `compare` (best first).

    `rows` is a list of dicts with `name`, `n`, `k`, `nll` (exact, on the fitting
    data), `aic`, `bic`, `held_out_nll` (None without held-out data),
    `held_out_nll_per_obs`, `delta` (the ranking criterion minus the best one's),
    `converged`; `criterion` says what ranked them; `results` maps names to the
    `FitResult`s.
    """

    rows: list[dict[str, Any]]
    criterion: str
    results: Mapping[str, Any]

    @property
    def best(self) -> str:
        """The name of the best-ranked noise model."""
        return self.rows[0]["name"]

    def __getitem__(self, name: str) -> dict[str, Any]:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(name)

    def __str__(self) -> str:
        held = self.rows[0]["held_out_nll"] is not None
        head = ["rank", "noise", "k", "NLL", "AIC", "BIC"] + (
            ["held-out NLL"] if held else []
        )
        lines = []
        for i, r in enumerate(self.rows, 1):
            cells = [str(i), r["name"], str(r["k"])] + [
                f"{r[c]:.4f}" for c in ("nll", "aic", "bic")
            ]
            if held:
                cells.append(f"{r['held_out_nll']:.4f}")
            if not r["converged"]:
                cells[1] += " (not converged)"
            lines.append(cells)
        widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*cells) for cells in lines]
        out.append(
            f"(ranked by {self.criterion}; lower is better; n = {self.rows[0]['n']})"
        )
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no arrays, no results)."""
        return {"criterion": self.criterion, "best": self.best, "rows": self.rows}


def compare(
    results: Mapping[str, Any],
    data: Any,
    *,
    held_out: Any = None,
    criterion: str | None = None,
) -> Comparison:
    r"""Rank fitted results (noise models) on the same data.

    Args:
        results: `{name: FitResult}` from `llx.fit`, all fitted on `data`.
        data: the data they were fitted on (the NLL, AIC and BIC are computed on it).
        held_out: optional data of the same structure that none of them saw; its
            exact NLL is reported and ranks the models.
        criterion: `"held_out"`, `"aic"` or `"bic"`; default `"held_out"` when
            `held_out` is given, else `"aic"`.

    Returns:
        A `Comparison`, best first.

    Raises:
        ValueError: if a noise model's nll is not normalised (it cannot be compared
            with likelihoods), if a result was fitted on different data, or if a
            criterion is unknown.
    """
    if not results:
        raise ValueError("compare: no results to compare")
    criterion = criterion or ("held_out" if held_out is not None else "aic")
    if criterion not in ("held_out", "aic", "bic"):
        raise ValueError(
            f"compare: criterion must be held_out, aic or bic, got {criterion!r}"
        )
    if criterion == "held_out" and held_out is None:
        raise ValueError("compare: criterion 'held_out' needs `held_out=` data")
    finger = _fingerprint_program(data)
    n = _n_obs(data)
    rows = []
    for name, result in results.items():
        for term in _likelihood_terms(result.objective):
            for noise in _noises(term.noise):
                if not noise._normalised:
                    raise ValueError(
                        f"compare: {name!r} uses {type(noise).__name__}, whose nll is "
                        "not normalised: it is a loss, not a likelihood, and cannot be "
                        "ranked against likelihoods."
                    )
        theirs = getattr(result, "data_fingerprint", None)
        if theirs is not None and not _same_data(theirs, finger):
            raise ValueError(
                f"compare: {name!r} was fitted on different data from the `data` "
                "given (and possibly from the others): results are only comparable "
                "on the same data."
            )
        learned = result.objective.learned() if hasattr(result.objective, "learned") else {}
        k = _count(result.params) + _count(learned)
        nll = _nll(result.objective, result.params, data)
        row: dict[str, Any] = {
            "name": name,
            "n": n,
            "k": k,
            "nll": nll,
            "aic": 2 * k + 2 * nll,
            "bic": k * math.log(n) + 2 * nll,
            "held_out_nll": None,
            "held_out_nll_per_obs": None,
            "converged": bool(np.all(np.asarray(result.converged))),
        }
        if held_out is not None:
            h = _nll(result.objective, result.params, held_out)
            row["held_out_nll"] = h
            row["held_out_nll_per_obs"] = h / _n_obs(held_out)
        rows.append(row)
    key = {"held_out": "held_out_nll", "aic": "aic", "bic": "bic"}[criterion]
    rows.sort(key=lambda r: (math.isnan(r[key]), r[key]))
    for r in rows:
        r["delta"] = r[key] - rows[0][key]
    return Comparison(rows=rows, criterion=criterion, results=dict(results))


def _learn_for(candidate: AbstractNoise, spec: Any) -> tuple[str, ...]:
    """The term's `learn` spec applied to one candidate (names it lacks are skipped)."""
    domains = candidate._hyperparameter_paths()
    if spec is None or spec is False:
        return ()
    if spec is True:
        return tuple(p for p, d in domains.items() if d.constrain is not None)
    names = (spec,) if isinstance(spec, str) else tuple(spec)
    return tuple(n for n in names if n in domains and domains[n].constrain is not None)


def _names(candidates: Any) -> list[str]:
    if isinstance(candidates, Mapping):
        return [str(k) for k in candidates]
    names: list[str] = []
    for c in candidates:
        base, k = type(c).__name__, 2
        name = base
        while name in names:
            name, k = f"{base}{k}", k + 1
        names.append(name)
    return names


def select_noise(
    objective: Any,
    params: Any,
    data: Any,
    candidates: Any,
    *,
    term: int | None = None,
    learn: Any = None,
    held_out: Any = None,
    criterion: str | None = None,
    **fit_kwargs: Any,
) -> Comparison:
    r"""Fit every candidate noise model in ONE vmapped program, and rank them.

    The likelihood term's noise model is replaced by `llx.switch(candidates)` and
    `llx.fit` is `jax.vmap`ped over the switch's index, so the fits of all
    candidates compile once and run together; each result is then the ordinary fit
    of `objective` with that candidate (equal to fitting them one by one).

    Args:
        objective: an objective with a likelihood term (`llx.likelihood(...)`, with
            priors if you like).
        params: the initial parameters, shared by every candidate.
        data: the data, `(u, y)`.
        candidates: a sequence of noise models (or `{name: noise}`), all densities
            or all masses, with the same `x_hat` layout.
        term: which term's noise to replace (default: the only likelihood term).
        learn: which hyperparameters each candidate learns: `True` (all its
            learnable ones), a name or tuple of names (each candidate learns those it
            has), `False`; default: the term's own `learn=` setting.
        held_out: optional held-out data, reported and used for ranking.
        criterion: as in `compare`.
        **fit_kwargs: passed to `llx.fit` (`steps`, `optimizer`, `tol`, ...).

    Returns:
        A `Comparison`, best first; `comparison.results[name]` is the `FitResult`
        of that candidate (its `objective` holds the candidate's fitted noise).
    """
    from ._algebra import switch
    from ._fit import fit

    names = _names(candidates)
    cands = (
        list(candidates.values()) if isinstance(candidates, Mapping) else list(candidates)
    )
    if len(cands) < 1:
        raise ValueError("select_noise: no candidates")
    terms = list(objective.terms)
    if term is None:
        lik = [i for i, t in enumerate(terms) if isinstance(t, Likelihood)]
        if len(lik) != 1:
            raise ValueError(
                f"select_noise: the objective has {len(lik)} likelihood terms; say which "
                "with `term=`."
            )
        term = lik[0]
    if not isinstance(terms[term], Likelihood):
        raise ValueError(f"select_noise: term {term} is not a likelihood term")
    spec = terms[term]._learn_spec if learn is None else learn
    per = [_learn_for(c, spec) for c in cands]
    paths = tuple(f"components.{k}.{p}" for k, ps in enumerate(per) for p in ps)
    sw = switch(cands)
    fit_kwargs.setdefault("progress", False)

    def swap(noise: AbstractNoise, learn: Any) -> Any:
        if isinstance(objective, Likelihood):  # a lone term
            return objective.with_noise(noise, learn=learn)
        return objective.with_noise(term, noise, learn=learn)

    def one(index):
        return fit(swap(sw.at(index), paths or False), params, data, **fit_kwargs)

    batched = eqx.filter_vmap(one)(jnp.arange(len(cands), dtype=jnp.int32))
    results = {}
    for k, name in enumerate(names):
        res = jax.tree.map(lambda a, k=k: a[k] if eqx.is_array(a) else a, batched)
        fitted = res.objective.terms[term].noise.components[k]
        obj_k = swap(fitted, per[k] or False)
        results[name] = eqx.tree_at(lambda r: r.objective, res, obj_k)
    return compare(results, data, held_out=held_out, criterion=criterion)
