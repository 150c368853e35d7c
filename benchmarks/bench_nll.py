"""Benchmark likelax's jitted nll against hand-written formulas and peer libraries.

    python benchmarks/bench_nll.py [--families Gaussian,Laplace] [--sizes 1e3,1e5,1e6]
                                   [--quick] [--out results.md] [--check]

Sections (all in one process, candidates interleaved, medians, warm-up excluded):

1. per family, N in --sizes: jitted value and jitted value_and_grad of sum(nll) with
   respect to x_hat and the hyperparameters; every time with its ratio to the best
   hand-written formula at that (N, mode);
2. at --null-size (1e7): value time of likelax and of the best hand-written formula
   relative to a bandwidth "null kernel" that reads x and x_hat once;
3. compile time (lower + compile) of likelax vs the natural hand-written formula;
4. per-call overhead of a jitted function taking the noise model as an argument vs
   one taking plain arrays.

`--check` compares every hand-written formula (and each peer, and likelax where the
family exists) with scipy in float64, and shows the naive Student-t / Cauchy forms
overflowing where the safe forms do not. It runs instead of the timings.
"""

from __future__ import annotations

import sys

if "--check" in sys.argv:  # float64 must be switched on before any array exists
    import jax

    jax.config.update("jax_enable_x64", True)

import argparse
import contextlib
import math
import statistics
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _formulas import FAMILIES, PEER_STATUS, PEERS, Family
from _harness import (
    Candidate,
    Report,
    compile_seconds,
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

import likelax as llx

MODES = ("value", "grad")
_NO_PEERS = False


def likelax_noise(fam: Family, dtype: Any = jnp.float32) -> Any | None:
    cls = getattr(llx, fam.name, None)
    if cls is None:
        return None
    return cls(**{k: jnp.asarray(v, dtype) for k, v in fam.hyper.items()})


def _llx_sum(m, noise, x):
    return jnp.sum(noise.nll(x, m))


def _llx_total(m, noise, x):
    # the summed path (what `llx.likelihood` evaluates): constants applied once
    return noise.total_nll(x, m)


def _llx_total_off(m, noise, x):
    with llx.checks("off"):
        return noise.total_nll(x, m)


def _llx_sum_off(m, noise, x):
    # checks are read at trace time: switching them off inside the traced function
    # compiles the unchecked program without a per-call context switch.
    with llx.checks("off"):
        return jnp.sum(noise.nll(x, m))


def candidates(fam: Family, with_off: bool) -> list[Candidate]:
    out: list[Candidate] = []
    noise = likelax_noise(fam)
    if noise is not None:
        out.append(Candidate("likelax", "likelax", _llx_sum, noise, fam.diff))
        if hasattr(noise, "total_nll"):
            out.append(Candidate("likelax total", "likelax", _llx_total, noise, fam.diff))
        if with_off:
            out.append(Candidate("likelax[off]", "likelax", _llx_sum_off, noise, fam.diff))
    p = fam.params()
    for name, f in fam.hand.items():
        out.append(Candidate(f"hand: {name}", "hand", f, p, fam.diff))
    if not _NO_PEERS:
        for name, f in fam.peer_candidates().items():
            out.append(Candidate(name, "peer", f, p, fam.diff))
    return out


def make_call(c: Candidate, mode: str, x, m) -> Callable[[], Any]:
    f = jitted(c, mode)
    p = c.params
    return lambda: f(m, p, x)


# ---------------------------------------------------------------------- sections


def bench_family(fam: Family, sizes, reps, min_sample, with_off, seed=0):
    """{(n, mode): {candidate: Timing}} and the list of candidate names."""
    cands = candidates(fam, with_off)
    results = {}
    for n in sizes:
        x_np, m_np = fam.data(np.random.default_rng(seed), n)
        x, m = jnp.asarray(x_np), jnp.asarray(m_np)
        for mode in MODES:
            calls = {c.name: make_call(c, mode, x, m) for c in cands}
            results[(n, mode)] = time_interleaved(calls, reps, min_sample)
    return results, [c.name for c in cands]


def _best_hand(timings: dict[str, Any]) -> tuple[str, float]:
    hand = {k: t.stat for k, t in timings.items() if k.startswith("hand:")}
    hand = {k: v for k, v in hand.items() if math.isfinite(v)}
    name = min(hand, key=hand.__getitem__)
    return name, hand[name]


def _reference_value(timings: dict[str, Any]) -> float:
    vals = [t.value for k, t in timings.items() if k.startswith("hand:")]
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.median(vals) if vals else math.nan


def family_table(fam: Family, results, names) -> tuple[str, list[str]]:
    notes: list[str] = []
    rows = []
    for (n, mode), timings in results.items():
        best_name, best = _best_hand(timings)
        ref = _reference_value(timings)
        row = [size_label(n), mode]
        for name in names:
            t = timings[name]
            if t.error:
                row.append("error")
                notes.append(f"{name} ({size_label(n)}, {mode}): {t.error}")
                continue
            cell = f"{fmt_time(t.stat)} ({fmt_ratio(t.stat / best)})"
            if name == best_name:
                cell = f"**{cell}**"
            if not (abs(t.value - ref) <= 1e-3 * abs(ref) + 1e-3):
                cell += " ≠"
                notes.append(
                    f"{name} ({size_label(n)}, {mode}): value {t.value:.6g} differs from "
                    f"the hand-written {ref:.6g}"
                )
            row.append(cell)
        rows.append(row)
    return markdown_table(["N", "mode", *names], rows), sorted(set(notes))


def summary_rows(fam: Family, results, n: int) -> list[str] | None:
    """Ratios at size n: likelax and fastest peer relative to the best hand form."""
    row = [fam.name]
    for mode in MODES:
        timings = results.get((n, mode))
        if timings is None:
            return None
        _, best = _best_hand(timings)
        lx_r = _ratio(timings.get("likelax"), best)
        total_r = _ratio(timings.get("likelax total"), best)
        fastest = min(lx_r, total_r)  # nan only when both are
        peers = {
            k: t.stat
            for k, t in timings.items()
            if k in PEERS and not t.error and math.isfinite(t.stat)
        }
        if peers:
            pk = min(peers, key=peers.__getitem__)
            peer_txt = f"{fmt_ratio(peers[pk] / best)} ({pk})"
            ok_peer = not math.isfinite(fastest) or fastest * best <= peers[pk]
        else:
            peer_txt, ok_peer = "—", True
        verdict = (
            "—" if not math.isfinite(fastest) else ("met" if fastest <= 1.05 else "MISSED")
        )
        if verdict == "met" and not ok_peer:
            verdict = "MISSED (peer faster)"
        row += [fmt_ratio(lx_r), fmt_ratio(total_r), peer_txt, verdict]
    return row


def _ratio(t: Any, best: float) -> float:
    return t.stat / best if t is not None and not t.error else math.nan


def null_section(fams: list[Family], n: int, reps: int, min_sample: float) -> str:
    rows = []
    for fam in fams:
        x_np, m_np = fam.data(np.random.default_rng(1), n)
        x, m = jnp.asarray(x_np), jnp.asarray(m_np)
        null = Candidate(
            "null", "null", lambda m, p, x: jnp.sum(m) + jnp.sum(x.astype(m.dtype)), None
        )
        cands = [null, *[c for c in candidates(fam, True) if c.group != "peer"]]
        calls = {c.name: make_call(c, "value", x, m) for c in cands}
        t = time_interleaved(calls, reps, min_sample)
        t0 = t["null"].stat
        best_name, best = _best_hand(t)
        lx = t.get("likelax")
        lx_off = t.get("likelax[off]")
        target = 3.0 if fam.name == "Poisson" else 2.0
        target_families = ("Gaussian", "Laplace", "StudentT", "Cauchy", "Poisson")
        total_r = _ratio(t.get("likelax total"), t0)
        lx_r = min(_ratio(lx, t0), total_r)
        if fam.name not in target_families or not math.isfinite(lx_r):
            verdict = "—"
        else:
            verdict = "met" if lx_r <= target else "MISSED"
        rows.append(
            [
                fam.name,
                fmt_time(t0),
                fmt_time(lx.stat) if lx is not None else "—",
                fmt_ratio(_ratio(lx, t0)),
                fmt_ratio(lx_off.stat / t0) if lx_off is not None else "—",
                fmt_ratio(total_r),
                f"{fmt_ratio(best / t0)} ({best_name[6:]})",
                f"≤ {target:g}× {verdict}" if fam.name in target_families else "",
            ]
        )
        del x, m, x_np, m_np
    head = [
        "family",
        "null kernel",
        "likelax",
        "likelax / null",
        "likelax[off] / null",
        "total_nll / null",
        "best hand / null",
        "target",
    ]
    return markdown_table(head, rows)


def compile_section(fams: list[Family], n: int, reps: int) -> str:
    """Compile time of `total_nll` (what `llx.likelihood` evaluates), checks on and
    off (the value check is a `cond` around a host callback: its share of the
    trace, lowering and LLVM time is the difference), vs the natural hand form."""
    rows = []
    for fam in fams:
        noise = likelax_noise(fam)
        if noise is None:
            continue
        x_np, m_np = fam.data(np.random.default_rng(2), n)
        x, m = jnp.asarray(x_np), jnp.asarray(m_np)
        cands = [
            Candidate("likelax", "likelax", _llx_total, noise, fam.diff),
            Candidate("likelax[off]", "likelax", _llx_total_off, noise, fam.diff),
            Candidate("hand", "hand", fam.hand["natural"], fam.params(), fam.diff),
        ]
        row = [fam.name]
        for mode in MODES:
            ts: dict[str, list[float]] = {c.name: [] for c in cands}
            for _ in range(reps):  # interleaved, a fresh function each time
                for c in cands:

                    def make(c=c):
                        fn = c.fn
                        return jitted(
                            Candidate(c.name, c.group, lambda *a: fn(*a), None, c.diff),
                            mode,
                        )

                    ts[c.name].append(compile_seconds(make, (m, c.params, x)))
            on, off, hand = (statistics.median(ts[c.name]) for c in cands)
            verdict = "met" if on / hand <= 1.3 else "MISSED"
            row += [
                fmt_time(on),
                fmt_time(off),
                fmt_time(hand),
                f"{fmt_ratio(on / hand)} {verdict}",
                fmt_ratio(off / hand),
            ]
        rows.append(row)
    head = ["family"]
    for mode in MODES:
        head += [
            f"likelax {mode}",
            f"likelax[off] {mode}",
            f"hand {mode}",
            "ratio (≤ 1.3×)",
            "ratio, checks off",
        ]
    return markdown_table(head, rows)


def overhead_section(fams: list[Family], reps: int) -> str:
    """Same computation, two calling conventions: the noise model as a jit argument
    (its leaves flattened on every call) vs its hyperparameters as a dict of arrays
    with the model rebuilt inside the traced function. The difference is the cost
    of passing a module through `jax.jit`."""
    rows = []
    n = 16
    for fam in fams:
        noise = likelax_noise(fam)
        if noise is None:
            continue
        x_np, m_np = fam.data(np.random.default_rng(3), n)
        x, m = jnp.asarray(x_np), jnp.asarray(m_np)
        p = fam.params()
        cls = type(noise)
        hand = fam.hand["natural"]
        f_lx = jax.jit(lambda noise, x, m: jnp.sum(noise.nll(x, m)))
        f_arr = jax.jit(lambda p, x, m: jnp.sum(cls(**p).nll(x, m)))
        f_hand = jax.jit(lambda p, x, m: hand(m, p, x))
        f_eqx = eqx.filter_jit(lambda noise, x, m: jnp.sum(noise.nll(x, m)))
        calls = {
            "module": lambda: f_lx(noise, x, m),
            "arrays": lambda: f_arr(p, x, m),
            "hand": lambda: f_hand(p, x, m),
            "eqx": lambda: f_eqx(noise, x, m),
        }
        t = time_interleaved(calls, reps, 2e-3)
        a, b = t["module"], t["arrays"]
        rows.append(
            [
                fam.name,
                f"{fmt_time(a.median)} ({fmt_time(a.min)})",
                f"{fmt_time(b.median)} ({fmt_time(b.min)})",
                f"{(a.median - b.median) * 1e6:+.1f} µs ({(a.min - b.min) * 1e6:+.1f} µs)",
                f"{fmt_time(t['hand'].median)} ({fmt_time(t['hand'].min)})",
                f"{fmt_time(t['eqx'].median)} ({fmt_time(t['eqx'].min)})",
            ]
        )
    head = [
        "family (N = 16); median (min)",
        "jit(f)(noise, x, x_hat)",
        "jit(g)(params, x, x_hat), model built inside",
        "overhead",
        "hand-written jit(h)(params, x, x_hat)",
        "eqx.filter_jit(f)",
    ]
    return markdown_table(head, rows)


# ------------------------------------------------------------------------ check


def run_check(fams: list[Family]) -> int:
    """Hand-written, peer and likelax formulas vs scipy in float64."""
    failures = 0
    rng = np.random.default_rng(7)
    for fam in fams:
        x_np, m_np = fam.data(rng, 300)
        x_np = x_np.astype(np.int64 if x_np.dtype.kind == "i" else np.float64)
        m_np = m_np.astype(np.float64)
        pf = {k: float(v) for k, v in fam.hyper.items()}
        want = float(np.sum(fam.oracle(x_np, m_np, pf)))
        x, m = jnp.asarray(x_np), jnp.asarray(m_np)
        p = fam.params(jnp.float64)
        lines = []
        grads = {}
        for name, f in fam.hand.items():
            got = float(f(m, p, x))
            rel = abs(got - want) / abs(want)
            ok = rel <= 1e-10
            failures += not ok
            lines.append(f"  hand: {name:16s} rel err {rel:.1e} {'ok' if ok else 'FAIL'}")
            argnums = (0, 1) if fam.diff else 0
            grads[name] = jax.grad(f, argnums=argnums)(m, p, x)
        ref_name = next(iter(grads))
        for name, g in grads.items():
            diffs = jax.tree.map(
                lambda a, b: float(jnp.max(jnp.abs(a - b) / (jnp.abs(b) + 1e-12))),
                g,
                grads[ref_name],
            )
            worst = max(jax.tree.leaves(diffs))
            ok = worst <= 1e-8
            failures += not ok
            if name != ref_name:
                lines.append(
                    f"  grad {name} vs {ref_name}: max rel diff {worst:.1e} "
                    f"{'ok' if ok else 'FAIL'}"
                )
        for name, f in fam.peer_candidates().items():
            try:
                got = float(f(m, p, x))
                rel = abs(got - want) / abs(want)
                lines.append(f"  peer {name:17s} rel err {rel:.1e}")
            except Exception as e:
                lines.append(f"  peer {name:17s} error {type(e).__name__}: {e}")
        noise = likelax_noise(fam, jnp.float64)
        if noise is not None:
            per = np.asarray(noise.nll(x, m))
            per_want = fam.oracle(x_np, m_np, pf)
            rel = float(np.max(np.abs(per - per_want) / np.abs(per_want)))
            lines.append(f"  likelax              max elementwise rel err {rel:.1e}")
        if fam.huge is not None:
            hx, hm = fam.huge
            for name, f in fam.hand.items():
                v32 = float(f(jnp.float32(hm)[None], fam.params(), jnp.float32(hx)[None]))
                g32 = jax.grad(f)(
                    jnp.float32(hm)[None], fam.params(), jnp.float32(hx)[None]
                )
                tag = "finite" if math.isfinite(v32) else "OVERFLOW"
                expect_overflow = name in fam.unsafe
                if math.isfinite(v32) == expect_overflow:
                    failures += 1
                    tag += " (unexpected)"
                lines.append(
                    f"  float32 |r| = {hx:.0e}: hand: {name:16s} nll {v32:.6g} "
                    f"grad {float(g32[0]):.3g} {tag}"
                )
            noise32 = likelax_noise(fam)
            if noise32 is not None:
                hm32, hx32 = jnp.float32(hm)[None], jnp.float32(hx)[None]
                v32 = float(_llx_sum(hm32, noise32, hx32))
                g32 = jax.grad(_llx_sum)(hm32, noise32, hx32)
                ok = math.isfinite(v32) and bool(jnp.all(jnp.isfinite(g32)))
                failures += not ok
                lines.append(
                    f"  float32 |r| = {hx:.0e}: likelax{'':11s} nll {v32:.6g} "
                    f"grad {float(g32[0]):.3g} {'finite' if ok else 'NOT FINITE'}"
                )
        print(f"{fam.name}: scipy sum nll {want:.12g}")
        print("\n".join(lines))
    print(f"\n{failures} failure(s)")
    return failures


# -------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--sizes", default="1e3,1e5,1e6")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--null-size", default="1e7")
    ap.add_argument("--compile-size", default="1e5")
    ap.add_argument("--compile-reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small N, few repetitions")
    ap.add_argument("--no-tables", action="store_true", help="skip the per-family tables")
    ap.add_argument("--no-peers", action="store_true", help="only likelax and hand-written")
    ap.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="statistic over repetitions (min resists a loaded machine)",
    )
    ap.add_argument("--no-null", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-overhead", action="store_true")
    ap.add_argument(
        "--no-checks-off",
        action="store_true",
        help="do not add the likelax column with value checks switched off",
    )
    ap.add_argument("--check", action="store_true", help="formulas vs scipy (float64)")
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args(argv)
    set_statistic(args.stat)
    global _NO_PEERS
    _NO_PEERS = args.no_peers

    names = [s.strip() for s in args.families.split(",") if s.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    fams = [FAMILIES[n] for n in names]
    if args.check:
        return 1 if run_check(fams) else 0

    sizes = parse_sizes(args.sizes)
    null_size = int(float(args.null_size))
    compile_size = int(float(args.compile_size))
    reps, min_sample, compile_reps = args.reps, 2e-3, args.compile_reps
    if args.quick:
        if args.sizes == ap.get_default("sizes"):
            sizes = [1000, 10_000]
        null_size, compile_size = 100_000, 1000
        reps, min_sample, compile_reps = 3, 5e-4, 1

    emit = Report()

    emit("## likelax nll benchmark\n")
    emit(machine_description())
    present = [f.name for f in fams if hasattr(llx, f.name)]
    emit(f"- likelax families present: {', '.join(present) or 'none'}")
    emit(f"- likelax checks mode by default: {llx.get_checks()!r}; `likelax[off]` is the")
    emit("  same nll traced under `llx.checks('off')` (no callback in the program)")
    for k in PEERS:
        emit(f"- {k}: {PEER_STATUS[k] or 'imported'}")
    emit("")
    emit(
        f"Times per call ({args.stat} over {reps} repetitions); in parentheses the "
        "ratio to the best hand-written formula at that (N, mode), which is in bold. "
        "`grad` is `value_and_grad` with respect to "
        "`x_hat` and every hyperparameter (only `x_hat` where they are integers or "
        "absent). ≠ marks a value that disagrees with the hand-written one.\n"
    )
    if not args.no_tables:
        all_results = {}
        for fam in fams:
            results, cand_names = bench_family(
                fam, sizes, reps, min_sample, not args.no_checks_off
            )
            all_results[fam.name] = results
            table, notes = family_table(fam, results, cand_names)
            emit(f"### {fam.name}\n")
            if fam.notes:
                emit(f"{fam.notes}.\n")
            emit(table)
            missing = [k for k in PEERS if k not in fam.peers]
            if missing:
                emit(f"\nNo {', '.join(missing)} version of this family.")
            for note in notes:
                emit(f"- {note}")
            emit("")

        n_sum = max(sizes)
        rows = [r for f in fams if (r := summary_rows(f, all_results[f.name], n_sum))]
        emit(f"### Summary at N = {size_label(n_sum)} (ratio to the best hand-written)\n")
        emit(
            "Target: likelax ≤ 1.05× the best hand-written formula and no slower than the "
            "fastest peer, by `sum(nll)` or `total_nll` (the summed path "
            "`llx.likelihood` evaluates).\n"
        )
        emit(
            markdown_table(
                [
                    "family",
                    "sum(nll) value",
                    "total_nll value",
                    "fastest peer value",
                    "value target",
                    "sum(nll) grad",
                    "total_nll grad",
                    "fastest peer grad",
                    "grad target",
                ],
                rows,
            )
        )
        emit("")

    if not args.no_null:
        emit(f"### Null kernel at N = {size_label(null_size)} (value only)\n")
        emit(
            "The null kernel is `sum(x_hat) + sum(x)`: it reads both inputs once, the "
            "memory-bandwidth limit of any nll.\n"
        )
        emit(null_section(fams, null_size, max(reps // 2, 3), min_sample))
        emit("")
    if not args.no_compile:
        emit(f"### Compile time (lower + compile, N = {size_label(compile_size)})\n")
        emit(compile_section(fams, compile_size, compile_reps))
        emit("")
    if not args.no_overhead:
        emit("### Per-call overhead of passing the noise model through `jax.jit`\n")
        emit(overhead_section(fams, max(reps, 5)))
        emit("")

    emit.save(args.out)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
