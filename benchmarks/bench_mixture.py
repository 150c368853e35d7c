r"""Benchmark likelax mixtures against hand-written logsumexp formulas and peers.

    python benchmarks/bench_mixture.py [--cases hetero3,same2] [--sizes 1e6]
                                       [--quick] [--out results.md]

Every component sees the same location `x_hat`:
$\mathrm{nll} = -\operatorname{logsumexp}_k(\log w_k - \mathrm{nll}_k(x, \hat x))$,
$w = \operatorname{softmax}(\ell)$. Jitted value, and value_and_grad with respect to
`x_hat` and every hyperparameter (logits, scales, degrees of freedom), of the summed
nll. Hand-written forms:

- `elementwise`: K per-element component log-densities (scalar work hoisted),
  combined with their max and one `log(sum(exp))` (two passes over K arrays);
- `running`: the same K arrays folded pairwise,
  `acc <- max(acc, l) + log1p(exp(-|acc - l|))` (one pass);
- `stacked`: the (N, K) array of component log-densities, then
  `jax.nn.logsumexp(axis=-1)`, the layout the peer libraries use.

Peers: numpyro `MixtureGeneral` / `MixtureSameFamily`, TFP `Mixture` /
`MixtureSameFamily`, distrax `MixtureSameFamily`. likelax: `llx.mixture` when it
exists, with a list of components, and for one family also with one stacked module.
"""

from __future__ import annotations

import sys

if "--check" in sys.argv:  # float64 must be switched on before any array exists
    import jax

    jax.config.update("jax_enable_x64", True)

import argparse
import dataclasses
import functools
import math
import statistics
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _formulas import HALF_LOG_2PI, LOG_PI, PEER_STATUS, distrax, log1p_sq, nd, tfd
from _harness import (
    Candidate,
    Report,
    fmt_ratio,
    fmt_time,
    jitted,
    machine_description,
    markdown_table,
    parse_sizes,
    set_statistic,
    size_label,
    time_interleaved,
)
from jax.scipy.special import gammaln
from scipy import stats

import likelax as llx

try:  # the public name once exported, else the combinator module directly
    MIXTURE = getattr(llx, "mixture", None)
    if MIXTURE is None:
        from likelax._algebra import mixture as MIXTURE
    MIXTURE_SOURCE = (
        "llx.mixture" if hasattr(llx, "mixture") else "likelax._algebra.mixture"
    )
except ImportError:
    MIXTURE, MIXTURE_SOURCE = None, "not in likelax yet"

# ------------------------------------------------------------ component maths


def _lp(kind: str, r, q, safe: bool = False):
    """log density of one component at residual r (scalar work hoisted); `safe`:
    Student-t and Cauchy through `log1p_sq` (no overflow at huge residuals)."""
    if safe and kind in _HEAVY:
        df = q["df"] if kind == "StudentT" else jnp.ones((), r.dtype)
        ls = jnp.log(q["scale"])
        c = ls + 0.5 * jnp.log(df) + 0.5 * LOG_PI + gammaln(df / 2) - gammaln((df + 1) / 2)
        t = jnp.abs(r) * jnp.exp(-ls - 0.5 * jnp.log(df))  # |r| / (s √df)
        return -(df + 1) / 2 * log1p_sq(t) - c
    if kind == "Gaussian":
        ls = jnp.log(q["scale"])
        return -0.5 * r * r * jnp.exp(-2 * ls) - (ls + HALF_LOG_2PI)
    if kind == "Laplace":
        lb = jnp.log(q["scale"])
        return -jnp.abs(r) * jnp.exp(-lb) - (lb + math.log(2))
    if kind == "StudentT":
        df, s = q["df"], q["scale"]
        c = jnp.log(s) + 0.5 * jnp.log(df) + 0.5 * LOG_PI
        c = c + gammaln(df / 2) - gammaln((df + 1) / 2)
        a = jnp.exp(-2 * jnp.log(s) - jnp.log(df))
        return -(df + 1) / 2 * jnp.log1p(r * r * a) - c
    if kind == "Cauchy":
        ls = jnp.log(q["scale"])
        return -jnp.log1p(r * r * jnp.exp(-2 * ls)) - (ls + LOG_PI)
    raise ValueError(kind)


_HEAVY = ("StudentT", "Cauchy")


def _logsumexp_list(ls: list[jax.Array]) -> jax.Array:
    # no guard for an all -inf row (every density here is positive): a
    # per-element `where` would stop XLA CPU fusing the sum into the loop.
    mx = jax.lax.stop_gradient(functools.reduce(jnp.maximum, ls))
    return mx + jnp.log(functools.reduce(jnp.add, [jnp.exp(v - mx) for v in ls]))


def _logsumexp_running(ls: list[jax.Array]) -> jax.Array:
    """Pairwise running combination: acc <- max(acc, l) + log1p(exp(-|acc - l|))."""
    acc = ls[0]
    for v in ls[1:]:
        acc = jnp.maximum(acc, v) + jnp.log1p(jnp.exp(-jnp.abs(acc - v)))
    return acc


@dataclasses.dataclass
class Case:
    name: str
    kinds: list[str]  # component families
    hyper: list[dict[str, float]]  # per component
    weights: list[float]

    @property
    def same_family(self) -> bool:
        return len(set(self.kinds)) == 1

    @property
    def k(self) -> int:
        return len(self.kinds)

    # params pytree for hand-written forms and peers
    def params(self, dtype: Any = jnp.float32) -> dict[str, Any]:
        w = np.asarray(self.weights, np.float64)
        logits = jnp.asarray(np.log(w / w.sum()), dtype)
        if self.same_family:
            keys = self.hyper[0].keys()
            comp = {k: jnp.asarray([h[k] for h in self.hyper], dtype) for k in keys}
            return {"logits": logits, "comp": comp}
        comps = [{k: jnp.asarray(v, dtype) for k, v in h.items()} for h in self.hyper]
        return {"logits": logits, "comps": comps}

    def _per_component(self, p) -> list[dict[str, Any]]:
        if self.same_family:
            return [{k: v[i] for k, v in p["comp"].items()} for i in range(self.k)]
        return p["comps"]

    # hand-written
    def elementwise(self, m, p, x):
        r = x - m
        logw = jax.nn.log_softmax(p["logits"])
        qs = self._per_component(p)
        ls = [logw[i] + _lp(kind, r, qs[i]) for i, kind in enumerate(self.kinds)]
        return -jnp.sum(_logsumexp_list(ls))

    @property
    def heavy(self) -> bool:
        """Has Student-t or Cauchy components (whose plain hand forms overflow)."""
        return any(k in _HEAVY for k in self.kinds)

    def elementwise_safe(self, m, p, x):
        r = x - m
        logw = jax.nn.log_softmax(p["logits"])
        qs = self._per_component(p)
        ls = [logw[i] + _lp(kind, r, qs[i], True) for i, kind in enumerate(self.kinds)]
        return -jnp.sum(_logsumexp_list(ls))

    def running(self, m, p, x):
        r = x - m
        logw = jax.nn.log_softmax(p["logits"])
        qs = self._per_component(p)
        ls = [logw[i] + _lp(kind, r, qs[i]) for i, kind in enumerate(self.kinds)]
        return -jnp.sum(_logsumexp_running(ls))

    def stacked(self, m, p, x):
        r = x - m
        logw = jax.nn.log_softmax(p["logits"])
        if self.same_family:  # one broadcast (N, K) expression
            q = {k: v[None, :] for k, v in p["comp"].items()}
            lp = _lp(self.kinds[0], r[:, None], q)
        else:
            qs = p["comps"]
            lp = jnp.stack([_lp(kd, r, qs[i]) for i, kd in enumerate(self.kinds)], -1)
        return -jnp.sum(jax.nn.logsumexp(lp + logw, axis=-1))

    # peers
    def _numpyro_comp(self, kind, m, q):
        if kind == "Gaussian":
            return nd.Normal(m, q["scale"])
        if kind == "Laplace":
            return nd.Laplace(m, q["scale"])
        if kind == "StudentT":
            return nd.StudentT(q["df"], m, q["scale"])
        return nd.Cauchy(m, q["scale"])

    def numpyro(self, m, p, x):
        mix = nd.CategoricalLogits(p["logits"])
        if self.same_family:
            comp = self._numpyro_comp(
                self.kinds[0], m[:, None], {k: v for k, v in p["comp"].items()}
            )
            return -jnp.sum(nd.MixtureSameFamily(mix, comp).log_prob(x))
        comps = [
            self._numpyro_comp(kd, m, p["comps"][i]) for i, kd in enumerate(self.kinds)
        ]
        return -jnp.sum(nd.MixtureGeneral(mix, comps).log_prob(x))

    def _tfp_comp(self, kind, m, q):
        if kind == "Gaussian":
            return tfd.Normal(m, q["scale"])
        if kind == "Laplace":
            return tfd.Laplace(m, q["scale"])
        if kind == "StudentT":
            return tfd.StudentT(q["df"], m, q["scale"])
        return tfd.Cauchy(m, q["scale"])

    def tfp(self, m, p, x):
        if self.same_family:
            comp = self._tfp_comp(self.kinds[0], m[:, None], p["comp"])
            mix = tfd.Categorical(logits=p["logits"])
            return -jnp.sum(tfd.MixtureSameFamily(mix, comp).log_prob(x))
        comps = [self._tfp_comp(kd, m, p["comps"][i]) for i, kd in enumerate(self.kinds)]
        cat = tfd.Categorical(logits=jnp.broadcast_to(p["logits"], (m.shape[0], self.k)))
        return -jnp.sum(tfd.Mixture(cat=cat, components=comps).log_prob(x))

    def distrax(self, m, p, x):
        kind = self.kinds[0]
        if kind == "Gaussian":
            comp = distrax.Normal(m[:, None], p["comp"]["scale"])
        elif kind == "Laplace":
            comp = distrax.Laplace(m[:, None], p["comp"]["scale"])
        else:
            raise NotImplementedError(kind)
        logits = jnp.broadcast_to(p["logits"], (m.shape[0], self.k))
        mix = distrax.Categorical(logits=logits)
        return -jnp.sum(distrax.MixtureSameFamily(mix, comp).log_prob(x))

    # likelax
    def likelax_list(self):
        mixture = MIXTURE
        if mixture is None or not all(hasattr(llx, k) for k in self.kinds):
            return None
        comps = [
            getattr(llx, kd)(**h) for kd, h in zip(self.kinds, self.hyper, strict=True)
        ]
        return mixture(comps, jnp.asarray(self.weights))

    def likelax_stacked(self):
        mixture = MIXTURE
        if mixture is None or not self.same_family or not hasattr(llx, self.kinds[0]):
            return None
        keys = self.hyper[0].keys()
        stacked = {k: jnp.asarray([h[k] for h in self.hyper]) for k in keys}
        return mixture(getattr(llx, self.kinds[0])(**stacked), jnp.asarray(self.weights))


def _llx_sum(m, noise, x):
    return jnp.sum(noise.nll(x, m))


_HET8 = ["Gaussian", "Laplace", "StudentT", "Cauchy"] * 2
_HET8_HYPER = [
    {"scale": 1.0},
    {"scale": 1.2},
    {"df": 4.0, "scale": 1.5},
    {"scale": 2.0},
    {"scale": 3.0},
    {"scale": 4.0},
    {"df": 6.0, "scale": 5.0},
    {"scale": 8.0},
]


def _same(k: int) -> Case:
    scales = np.geomspace(0.5, 20.0, k).tolist()
    return Case(
        f"same{k}",
        ["Gaussian"] * k,
        [{"scale": s} for s in scales],
        np.linspace(1.0, 2.0, k).tolist(),
    )


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case(
            "hetero3",
            ["Gaussian", "Laplace", "StudentT"],
            [{"scale": 1.0}, {"scale": 1.5}, {"df": 4.0, "scale": 2.0}],
            [0.5, 0.3, 0.2],
        ),
        _same(2),
        Case("hetero8", _HET8, _HET8_HYPER, [1, 2, 3, 4, 4, 3, 2, 1]),
        _same(8),
        _same(32),
    )
}
DESCRIPTIONS = {
    "hetero3": "Gaussian + Laplace + Student-t (3 families)",
    "same2": "2 Gaussians (same family)",
    "hetero8": "8 components: Gaussian, Laplace, Student-t, Cauchy, twice",
    "same8": "8 Gaussians (same family)",
    "same32": "32 Gaussians (same family)",
}


def candidates(case: Case) -> list[Candidate]:
    out: list[Candidate] = []
    for label, make in (
        ("likelax", case.likelax_list),
        ("likelax stacked", case.likelax_stacked),
    ):
        try:
            noise = make()
        except Exception as e:  # the API is young: record, do not crash
            out.append(Candidate(label, "likelax", _raise(e), None))
            continue
        if noise is not None:
            out.append(Candidate(label, "likelax", _llx_sum, noise))
    p = case.params()
    out.append(Candidate("hand: elementwise", "hand", case.elementwise, p))
    if case.heavy:
        out.append(Candidate("hand: elementwise (safe)", "hand", case.elementwise_safe, p))
    out.append(Candidate("hand: running", "hand", case.running, p))
    out.append(Candidate("hand: stacked (N,K)", "hand", case.stacked, p))
    if PEER_STATUS["numpyro"] is None:
        out.append(Candidate("numpyro", "peer", case.numpyro, p))
    if PEER_STATUS["tfp"] is None:
        out.append(Candidate("tfp", "peer", case.tfp, p))
    if PEER_STATUS["distrax"] is None and case.same_family:
        out.append(Candidate("distrax", "peer", case.distrax, p))
    return out


def _raise(e: Exception) -> Callable[..., Any]:
    def f(*args):
        raise e

    return f


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=n)
    scale = np.where(rng.random(n) < 0.8, 1.0, 6.0)
    x = m + scale * rng.standard_t(5, size=n)
    return jnp.asarray(x, jnp.float32), jnp.asarray(m, jnp.float32)


def _scipy_nll(case: Case, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    w = np.asarray(case.weights, np.float64)
    w = w / w.sum()
    dens = np.zeros_like(x)
    for wk, kind, h in zip(w, case.kinds, case.hyper, strict=True):
        if kind == "Gaussian":
            d = stats.norm(m, h["scale"])
        elif kind == "Laplace":
            d = stats.laplace(m, h["scale"])
        elif kind == "StudentT":
            d = stats.t(h["df"], m, h["scale"])
        else:
            d = stats.cauchy(m, h["scale"])
        dens += wk * d.pdf(x)
    return -np.log(dens)


def run_check(names: list[str]) -> int:
    """Every candidate's float64 value against scipy (sum of weighted densities)."""
    failures = 0
    for name in names:
        case = CASES[name]
        rng = np.random.default_rng(5)
        m = rng.normal(size=400)
        x = m + rng.standard_t(3, size=400) * 3
        want = float(np.sum(_scipy_nll(case, x, m)))
        print(f"{name}: scipy sum nll {want:.12g}")
        p64 = case.params(jnp.float64)
        for c in candidates(case):
            params = p64 if c.group != "likelax" else c.params
            try:
                got = float(c.fn(jnp.asarray(m), params, jnp.asarray(x)))
            except Exception as e:
                print(f"  {c.name:22s} error {type(e).__name__}: {e}")
                continue
            rel = abs(got - want) / abs(want)
            bad = c.group == "hand" and rel > 1e-10
            failures += bad
            print(f"  {c.name:22s} rel err {rel:.1e}{' FAIL' if bad else ''}")
    print(f"\n{failures} failure(s)")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--sizes", default="1e6")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    ap.add_argument("--check", action="store_true", help="values vs scipy (float64)")
    args = ap.parse_args(argv)
    set_statistic(args.stat)
    names = [s.strip() for s in args.cases.split(",") if s.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    if args.check:
        return 1 if run_check(names) else 0
    sizes = parse_sizes(args.sizes)
    reps, min_sample = args.reps, 2e-3
    if args.quick:
        if args.sizes == ap.get_default("sizes"):
            sizes = [10_000]
        reps, min_sample = 3, 5e-4

    emit = Report()

    emit("## likelax mixture benchmark\n")
    emit(machine_description())
    emit(f"- likelax mixture: {MIXTURE_SOURCE}")
    emit("")
    emit(
        f"Times per call ({args.stat} over {reps} repetitions); in parentheses the "
        "ratio to the best hand-written formula (bold). `grad`: value_and_grad with "
        "respect to `x_hat` and every hyperparameter. ≠: the value disagrees with "
        "the hand-written one.\n"
    )
    summary = []
    for name in names:
        case = CASES[name]
        cands = candidates(case)
        rows, notes = [], []
        for n in sizes:
            x, m = _data(n)
            for mode in ("value", "grad"):
                calls = {c.name: _call(c, mode, x, m) for c in cands}
                t = time_interleaved(calls, reps, min_sample)
                hand = {k: v.stat for k, v in t.items() if k.startswith("hand:")}
                best_name = min(hand, key=hand.__getitem__)
                best = hand[best_name]
                ref = statistics.median(
                    [v.value for k, v in t.items() if k.startswith("hand:")]
                )
                row = [size_label(n), mode]
                for c in cands:
                    v = t[c.name]
                    if v.error:
                        row.append("error")
                        notes.append(f"{c.name}: {v.error}")
                        continue
                    cell = f"{fmt_time(v.stat)} ({fmt_ratio(v.stat / best)})"
                    if c.name == best_name:
                        cell = f"**{cell}**"
                    if not abs(v.value - ref) <= 1e-3 * abs(ref) + 1e-3:
                        cell += " ≠"
                        notes.append(f"{c.name} ({mode}): value {v.value:.6g} vs {ref:.6g}")
                    row.append(cell)
                rows.append(row)
                if n == max(sizes):
                    lx = {k: v.stat for k, v in t.items() if k.startswith("likelax")}
                    lx = {k: v for k, v in lx.items() if math.isfinite(v)}
                    peers = {k: t[k].stat for k in ("numpyro", "tfp", "distrax") if k in t}
                    peers = {k: v for k, v in peers.items() if math.isfinite(v)}
                    lx_r = min(lx.values()) / best if lx else math.nan
                    safe = {
                        k: v for k, v in hand.items() if not case.heavy or "(safe)" in k
                    }
                    safe_r = min(lx.values()) / min(safe.values()) if lx else math.nan
                    verdict = "—" if not lx else ("met" if lx_r <= 1.3 else "MISSED")
                    flat = min(t["hand: elementwise"].stat, t["hand: running"].stat)
                    st = t["hand: stacked (N,K)"].stat / flat
                    pk = min(peers, key=peers.__getitem__) if peers else None
                    summary.append(
                        [
                            name,
                            mode,
                            fmt_ratio(lx_r),
                            fmt_ratio(safe_r),
                            f"{fmt_ratio(peers[pk] / best)} ({pk})" if pk else "—",
                            fmt_ratio(st),
                            f"≤ 1.3× {verdict}",
                        ]
                    )
        emit(f"### {name}: {DESCRIPTIONS[name]}\n")
        emit(markdown_table(["N", "mode", *[c.name for c in cands]], rows))
        for note in sorted(set(notes)):
            emit(f"- {note}")
        emit("")
    emit(f"### Summary at N = {size_label(max(sizes))} (ratio to the best hand-written)\n")
    emit(
        markdown_table(
            [
                "case",
                "mode",
                "likelax",
                "likelax ÷ best overflow-safe hand",
                "fastest peer",
                "hand stacked / best unstacked",
                "target",
            ],
            summary,
        )
    )
    emit.save(args.out)
    return 0


def _call(c: Candidate, mode: str, x, m) -> Callable[[], Any]:
    f = jitted(c, mode)
    p = c.params
    return lambda: f(m, p, x)


if __name__ == "__main__":
    sys.exit(main())
