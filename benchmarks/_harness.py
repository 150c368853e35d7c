"""Timing machinery shared by the benchmark scripts.

Everything runs in ONE process. For each configuration (family, N, mode) every
candidate is compiled and warmed up first (compile and the first calls are excluded),
then the candidates are timed round-robin: repetition r times candidate
(r + i) mod C in position i, so no candidate always runs first or last while the
machine's load drifts. Each sample is a batch of calls long enough to be well
above the timer's resolution (the batch size is calibrated once during warm-up);
the reported number is the median per-call time over the repetitions.

Candidates are functions `f(x_hat, params, x) -> scalar` (the summed nll).
`params` is a pytree: a dict of hyperparameters for hand-written formulas and
peers, the noise model itself for likelax (passed as a `jax.jit` argument, as users
do). "value" times `jax.jit(f)`; "grad" times `jax.jit(jax.value_and_grad(f,
argnums=(0, 1)))`, i.e. with respect to `x_hat` and every hyperparameter (only
`x_hat` for families whose hyperparameters are integers or absent).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

# ----------------------------------------------------------------------- peers


class Report:
    """The markdown report: each line printed as it comes and kept, to be written
    to `--out` at the end (`save`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def save(self, path: str | None) -> None:
        if path:
            with open(path, "w") as f:
                f.write("\n".join(self.lines) + "\n")


def try_import(module: str) -> tuple[Any, str | None]:
    """(module, None), or (None, reason) when it is missing or does not import."""
    try:
        mod = __import__(module, fromlist=["_"])
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"does not import on jax {jax.__version__}: {type(e).__name__} {first}"
    return mod, None


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------- candidates


@dataclasses.dataclass
class Candidate:
    """One way of computing sum(nll): `fn(x_hat, params, x) -> scalar`."""

    name: str
    group: str  # "likelax" | "hand" | "peer" | "null"
    fn: Callable[..., Any]
    params: Any
    diff: bool = True  # differentiate with respect to params too
    note: str = ""


def jitted(c: Candidate, mode: str) -> Callable[..., Any]:
    if mode == "value":
        return jax.jit(c.fn)
    argnums = (0, 1) if c.diff else 0
    return jax.jit(jax.value_and_grad(c.fn, argnums=argnums))


def _block(out: Any) -> Any:
    return jax.block_until_ready(out)


def scalar_value(out: Any) -> float:
    """The nll value of a value / value_and_grad output."""
    v = out[0] if isinstance(out, tuple) else out
    return float(np.asarray(v))


# Which statistic the reports use: "median" (default) or "min" (the fastest
# repetition, less sensitive to other processes on a loaded machine).
STATISTIC = {"name": "median"}


def set_statistic(name: str) -> None:
    if name not in ("median", "min"):
        raise ValueError(f"statistic must be 'median' or 'min', got {name!r}")
    STATISTIC["name"] = name


@dataclasses.dataclass
class Timing:
    median: float  # seconds per call
    iqr: float
    value: float  # the sum(nll) it returned
    error: str | None = None
    min: float = math.nan  # fastest sample: less sensitive to a loaded machine

    @property
    def stat(self) -> float:
        """The reported time per call (see `set_statistic`)."""
        return self.min if STATISTIC["name"] == "min" else self.median


def time_interleaved(
    calls: dict[str, Callable[[], Any]],
    reps: int,
    min_sample_s: float = 2e-3,
    max_batch: int = 10_000,
) -> dict[str, Timing]:
    """Median seconds per call of each zero-argument callable, interleaved.

    A callable that raises during warm-up is reported with `error` and skipped.
    """
    live: dict[str, Callable[[], Any]] = {}
    batch: dict[str, int] = {}
    values: dict[str, float] = {}
    results: dict[str, Timing] = {}
    for name, call in calls.items():
        try:
            out = _block(call())  # compile
            values[name] = scalar_value(out)
            t0 = time.perf_counter()
            _block(call())
            one = max(time.perf_counter() - t0, 1e-7)
            n = int(min(max_batch, max(1, math.ceil(min_sample_s / one))))
            for _ in range(min(n, 3)):  # warm caches / allocator
                _block(call())
            live[name] = call
            batch[name] = n
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            results[name] = Timing(
                math.nan, math.nan, math.nan, f"{type(e).__name__}: {msg}"
            )
    samples: dict[str, list[float]] = {n: [] for n in live}
    names = list(live)
    for r in range(reps):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            call, n = live[name], batch[name]
            t0 = time.perf_counter()
            for _ in range(n):
                out = call()
            _block(out)
            samples[name].append((time.perf_counter() - t0) / n)
    for name in names:
        s = samples[name]
        q = np.percentile(s, [25, 75]) if len(s) > 1 else [s[0], s[0]]
        results[name] = Timing(
            statistics.median(s), float(q[1] - q[0]), values[name], None, min(s)
        )
    return {n: results[n] for n in calls}


def compile_seconds(make: Callable[[], Callable[..., Any]], args: Sequence[Any]) -> float:
    """Wall time of `jit(...).lower(*args).compile()` for a freshly built function."""
    f = make()
    t0 = time.perf_counter()
    f.lower(*args).compile()  # pyright: ignore[reportFunctionMemberAccess]
    return time.perf_counter() - t0


# ------------------------------------------------------------------- reporting


def fmt_time(t: float) -> str:
    if not math.isfinite(t):
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def fmt_ratio(r: float) -> str:
    if not math.isfinite(r):
        return "—"
    return f"{r:.2f}×"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def machine_description() -> str:
    dev = jax.devices()[0]
    try:
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        git = "?"
    return (
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}\n"
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"device {dev.platform} ({dev.device_kind}); load average at start "
        f"(1/5/15 min): {load_average()}\n"
        f"- python {sys.version.split()[0]}, jax {jax.__version__}, "
        f"jaxlib {package_version('jaxlib')}, numpyro {package_version('numpyro')}, "
        f"optax {package_version('optax')}, flowjax {package_version('flowjax')}, "
        f"distrax {package_version('distrax')}, "
        f"tfp-nightly {package_version('tfp-nightly')}, "
        f"equinox {package_version('equinox')}; likelax commit {git or '?'}\n"
        f"- dtype float32 (jax default); times per call are the {STATISTIC['name']} "
        f"over interleaved repetitions, compile and warm-up excluded"
    )


def parse_sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def size_label(n: int) -> str:
    e = math.log10(n) if n > 0 else 0
    return f"1e{int(e)}" if float(e).is_integer() else str(n)
