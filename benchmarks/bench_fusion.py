"""Count the full-size arrays each compiled nll writes to memory (no timing).

    python benchmarks/bench_fusion.py [--families A,B] [--n 1000000]

On CPU an nll over N elements is memory-bound once its elementwise work fuses into
the reduction: every extra N-element intermediate written and read back costs
about one more pass over the data. This script compiles the same candidates as
`bench_nll.py` (jitted `sum(nll)`, value and value_and_grad) and counts, in the
optimised HLO's entry computation, the instructions that produce an array with N
elements (fusions, custom calls, copies; parameters, tuples, bitcasts and
conditionals, which pass a buffer through, excluded). For `grad` the gradient with
respect to `x_hat` is itself an N-element output, so 1 is the floor there; for
`value` the floor is 0.

The count is deterministic, so it is a useful signal on a loaded machine where
timings are noisy.
"""

from __future__ import annotations

import argparse
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _formulas import FAMILIES
from _harness import Candidate, jitted, markdown_table
from bench_nll import MODES, candidates

# opcodes that write no new array (views, pass-throughs, inputs)
_SKIP = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant", "conditional"}
_INSTR = re.compile(r"=\s*(\([^=]*?\)|\S+)\s+([\w-]+)\(")
_DIMS = re.compile(r"\[([\d,]*)\]")


def materialised(c: Candidate, mode: str, x, m, n: int) -> int:
    text = jitted(c, mode).lower(m, c.params, x).compile().as_text()
    entry = text[text.index("ENTRY") :]
    count = 0
    for line in entry.splitlines()[1:]:
        match = _INSTR.search(line)
        if match is None or match.group(2) in _SKIP:
            continue
        for dims in _DIMS.findall(match.group(1)):
            size = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            if size >= n:
                count += 1
                break
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.families.split(",") if s.strip()]
    out = [
        f"## Full-size arrays written per call (N = {args.n:.0e}, jax {jax.__version__})\n",
        "Cells: value / grad. Floors: 0 / 1.\n",
    ]
    header: list[str] = []
    rows = []
    for name in names:
        fam = FAMILIES[name]
        x_np, m_np = fam.data(np.random.default_rng(0), args.n)
        x, m = jnp.asarray(x_np), jnp.asarray(m_np)
        cands = [c for c in candidates(fam, True) if c.group != "peer"]
        cells = {}
        for c in cands:
            vals = [materialised(c, mode, x, m, args.n) for mode in MODES]
            cells[c.name] = " / ".join(map(str, vals))
        for k in cells:
            if k not in header:
                header.append(k)
        rows.append((name, cells))
    table = [[name, *[cells.get(k, "") for k in header]] for name, cells in rows]
    out.append(markdown_table(["family", *header], table))
    text = "\n".join(out)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
