"""The ``likelax`` command: fit and compare noise models on tabular data.

    likelax                  # compare noise models on the embedded stackloss data
    likelax fit DATA.csv --target COL [--features A,B] --noise NAME[:k=v,...]
                [--prior NAME:scale] [--learn-noise] [--steps N] [--out DIR]
    likelax compare DATA.csv --target COL --noise gaussian,laplace,student-t,huber
                [--holdout FRACTION] [--seed S] [--out DIR]
    likelax data                          # list the embedded data sets

Every error (a bad file, a missing column, non-numeric data, NaN rows, an unknown
noise name, a target outside the family's support) is one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = "stackloss"
DEFAULT_TARGETS = {
    "stackloss": "STACKLOSS",
    "engel": "foodexp",
    "randhie": "mdvis",
    "anes96": "vote",
    "strikes": "duration",
    "longley": "TOTEMP",
}
DEFAULT_NOISES = "gaussian,laplace,student-t,cauchy,huber"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# ------------------------------------------------------------------ noise models


@dataclass(frozen=True)
class NoiseSpec:
    """How the CLI builds one family: constructor, defaults, link of the intercept."""

    cls_name: str
    defaults: dict[str, float]
    link: str  # "identity" | "log" | "logit": how to initialise the intercept
    scaled: bool = True  # has a `scale` set from the data when learned


NOISES: dict[str, NoiseSpec] = {
    "gaussian": NoiseSpec("Gaussian", {"scale": 1.0}, "identity"),
    "laplace": NoiseSpec("Laplace", {"scale": 1.0}, "identity"),
    "student-t": NoiseSpec("StudentT", {"df": 4.0, "scale": 1.0}, "identity"),
    "cauchy": NoiseSpec("Cauchy", {"scale": 1.0}, "identity"),
    "huber": NoiseSpec("Huber", {"delta": 1.345, "scale": 1.0}, "identity"),
    "generalized-normal": NoiseSpec(
        "GeneralizedNormal", {"power": 1.5, "scale": 1.0}, "identity"
    ),
    "quantile": NoiseSpec("AsymmetricLaplace", {"quantile": 0.5, "scale": 1.0}, "identity"),
    "bernoulli": NoiseSpec("Bernoulli", {}, "logit", scaled=False),
    "poisson": NoiseSpec("Poisson", {}, "log", scaled=False),
    "negative-binomial": NoiseSpec(
        "NegativeBinomial", {"concentration": 1.0}, "log", scaled=False
    ),
    "gamma": NoiseSpec("Gamma", {"concentration": 1.0}, "log", scaled=False),
}
# What `--learn-noise` (and `compare`, always) learns: scales, degrees of freedom,
# concentrations; never a quantile (the user's question) nor Huber's δ.
NOISE_LEARN: dict[str, tuple[str, ...]] = {
    "gaussian": ("scale",),
    "laplace": ("scale",),
    "student-t": ("df", "scale"),
    "cauchy": ("scale",),
    "huber": ("scale",),
    "generalized-normal": ("power", "scale"),
    "quantile": ("scale",),
    "negative-binomial": ("concentration",),
    "gamma": ("concentration",),
}
ALIASES = {
    "normal": "gaussian",
    "studentt": "student-t",
    "t": "student-t",
    "asymmetric-laplace": "quantile",
    "nb": "negative-binomial",
    "negbin": "negative-binomial",
    "logistic": "bernoulli",
    "gennorm": "generalized-normal",
}


def parse_noise(text: str) -> tuple[str, dict[str, float]]:
    """``"student-t:df=3,scale=2"`` -> ``("student-t", {"df": 3.0, "scale": 2.0})``."""
    name, _, rest = text.strip().partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    if name not in NOISES:
        raise CLIError(f"unknown noise {text!r}; choose one of: {', '.join(NOISES)}")
    spec = NOISES[name]
    kwargs: dict[str, float] = dict(spec.defaults)
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in spec.defaults:
            raise CLIError(
                f"noise {name!r}: bad option {item!r}; options are "
                f"{', '.join(f'{k}=<number>' for k in spec.defaults) or 'none'}"
            )
        try:
            kwargs[key] = float(value)
        except ValueError:
            raise CLIError(f"noise {name!r}: {key}={value!r} is not a number") from None
    return name, kwargs


def build_noise(name: str, kwargs: dict[str, float]) -> Any:
    import likelax as llx

    cls = getattr(llx, NOISES[name].cls_name)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise CLIError(f"noise {name!r}: {e}") from None


def parse_prior(text: str | None) -> Any:
    """``"gaussian:2.0"`` -> a `llx.prior(llx.Gaussian(2.0))` over the weights."""
    if text is None:
        return None
    name, _, scale = text.partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    if name not in ("gaussian", "laplace", "student-t", "cauchy"):
        raise CLIError(
            f"--prior {text!r}: use gaussian:S, laplace:S, student-t:S, cauchy:S"
        )
    try:
        s = float(scale) if scale else 1.0
    except ValueError:
        raise CLIError(f"--prior {text!r}: the scale {scale!r} is not a number") from None
    kwargs = {"scale": s, **({"df": 4.0} if name == "student-t" else {})}
    return name, kwargs


# -------------------------------------------------------------------------- data


@dataclass
class Table:
    source: str
    columns: dict[str, np.ndarray]


def load_table(path: str | None, dataset: str | None) -> Table:
    from ._data import DATASETS, load_dataset, read_csv

    if path is None:
        name = dataset or DEFAULT_DATA
        if name not in DATASETS:
            raise CLIError(
                f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}"
            )
        return Table(f"embedded:{name}", load_dataset(name))
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file")
    if p.is_dir():
        raise CLIError(f"{path}: is a directory, not a CSV file")
    try:
        with p.open(newline="") as f:
            return Table(str(p), read_csv(f))
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a text CSV file") from None
    except ValueError as e:
        raise CLIError(f"{path}: {e}") from None


def design(
    table: Table, target: str | None, features: str | None, dataset: str | None
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(X, y, feature names, target name); checks columns and missing values."""
    cols = table.columns
    if target is None:
        key = table.source.removeprefix("embedded:")
        if key in DEFAULT_TARGETS and table.source.startswith("embedded:"):
            target = DEFAULT_TARGETS[key]
        else:
            raise CLIError("--target COL is required for a CSV file")
    if target not in cols:
        raise CLIError(
            f"no column {target!r} in {table.source}; columns: {', '.join(cols)}"
        )
    names = (
        [c.strip() for c in features.split(",") if c.strip()]
        if features
        else [c for c in cols if c != target]
    )
    for c in names:
        if c not in cols:
            raise CLIError(f"no column {c!r} in {table.source}; columns: {', '.join(cols)}")
        if c == target:
            raise CLIError(f"the target {target!r} cannot also be a feature")
    if not names:
        raise CLIError("no feature columns: pass --features A,B,...")
    X = np.column_stack([cols[c] for c in names])
    y = cols[target]
    bad = ~np.isfinite(X).all(axis=1) | ~np.isfinite(y)
    if bad.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(bad)[:5])
        raise CLIError(
            f"{int(bad.sum())} row(s) have missing or non-finite values (file lines "
            f"{rows}{', ...' if bad.sum() > 5 else ''}); remove them first"
        )
    sd = X.std(axis=0)
    const = [n for n, s in zip(names, sd, strict=True) if s == 0]
    if const:
        raise CLIError(f"feature(s) {', '.join(const)} are constant: drop them")
    return X, y, names, target


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``likelax`` command; returns the exit status."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("fit", "compare", "data", "-h", "--help"):
        argv = ["compare", *argv]  # the default command
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"likelax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("likelax: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="likelax",
        description="Fit and compare noise models (exact likelihoods) on tabular data. "
        "With no command: compare robust noise models on the embedded stackloss data.",
    )
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("csv", nargs="?", help="a CSV file with a header row")
        p.add_argument("--data", help="an embedded data set instead of a CSV file")
        p.add_argument("--target", help="the column to model")
        p.add_argument("--features", help="comma-separated feature columns (default: all)")
        p.add_argument("--steps", type=int, default=2000, help="step budget of each fit")
        p.add_argument("--out", help="a directory for the JSON result and PNG plots")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p_fit = sub.add_parser("fit", help="fit one noise model")
    common(p_fit)
    p_fit.add_argument("--noise", default="gaussian", help="NAME[:k=v,...]")
    p_fit.add_argument("--prior", help="a prior on the weights, NAME:scale")
    p_fit.add_argument(
        "--learn-noise", action="store_true", help="also learn the noise hyperparameters"
    )
    p_fit.set_defaults(func=_cmd_fit)

    p_cmp = sub.add_parser("compare", help="rank several noise models")
    common(p_cmp)
    p_cmp.add_argument("--noise", default=DEFAULT_NOISES, help="comma-separated noises")
    p_cmp.add_argument(
        "--holdout", type=float, default=0.25, help="fraction of rows held out (0.25)"
    )
    p_cmp.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p_cmp.set_defaults(func=_cmd_compare)

    p_data = sub.add_parser("data", help="list the embedded data sets")
    p_data.set_defaults(func=_cmd_data)
    return parser


def _cmd_data(args: argparse.Namespace) -> int:
    from ._data import DATASETS, load_dataset

    for name in DATASETS:
        cols = load_dataset(name)
        n = len(next(iter(cols.values())))
        print(
            f"{name:10s} {n:6d} rows  target {DEFAULT_TARGETS[name]:10s} {', '.join(cols)}"
        )
    return 0


def _linear(params: dict[str, Any], X: Any) -> Any:
    """The CLI's model: a linear predictor with an intercept."""
    return X @ params["w"] + params["b"]


def _w_only(params: dict[str, Any]) -> Any:
    return params["w"]


@dataclass
class Fitted:
    name: str
    noise_text: str
    result: Any
    data: tuple[Any, Any]
    mean: np.ndarray
    sd: np.ndarray


def _init(name: str, kwargs: dict[str, float], y: np.ndarray, learn: bool):
    """Starting intercept (on the link scale) and hyperparameters from the data."""
    spec = NOISES[name]
    kwargs = dict(kwargs)
    if spec.link == "log":
        b = math.log(max(float(np.mean(y)), 1e-3))
    elif spec.link == "logit":
        m = min(max(float(np.mean(y)), 1e-3), 1 - 1e-3)
        b = math.log(m / (1 - m))
    else:
        b = float(np.median(y))
    if learn and spec.scaled:
        mad = float(np.median(np.abs(y - np.median(y)))) * 1.4826
        kwargs["scale"] = mad if mad > 0 else float(np.std(y)) or 1.0
    return b, kwargs


def _support_check(noise: Any, name: str, y: np.ndarray, target: str) -> None:
    import jax.numpy as jnp

    # at the observations themselves (location) / a neutral x_hat: +inf only
    # where y is impossible whatever x_hat is
    probe = np.zeros_like(y)
    if NOISES[name].link == "identity":
        probe = y
    nll = np.asarray(noise.nll(jnp.asarray(y), jnp.asarray(probe)))
    bad = np.flatnonzero(np.isposinf(nll))
    if bad.size:
        i = int(bad[0])
        raise CLIError(
            f"target {target!r} has {bad.size} value(s) outside the support of "
            f"{name} (e.g. {y[i]:g} on file line {i + 2})"
        )


def _fit_linear(
    name: str,
    kwargs: dict[str, float],
    X: np.ndarray,
    y: np.ndarray,
    *,
    learn: bool,
    prior: Any,
    steps: int,
    progress: bool,
    target: str,
) -> Fitted:
    import jax.numpy as jnp

    import likelax as llx

    mean, sd = X.mean(axis=0), X.std(axis=0)
    Xs = (X - mean) / sd
    b0, kwargs = _init(name, kwargs, y, learn)
    noise = build_noise(name, kwargs)
    _support_check(noise, name, y, target)
    learnable = NOISE_LEARN.get(name, ()) if learn else ()
    objective = llx.likelihood(_linear, noise, learn=learnable or False)
    if prior is not None:
        pname, pkw = prior
        objective = objective + llx.prior(build_noise(pname, pkw), on=_w_only)
    params = {"w": jnp.zeros(X.shape[1]), "b": jnp.asarray(b0)}
    data = (jnp.asarray(Xs), jnp.asarray(y))
    result = llx.fit(objective, params, data, steps=steps, progress=progress)
    return Fitted(name, name, result, data, mean, sd)


def _noise_summary(objective: Any) -> dict[str, float]:
    import likelax as llx

    term = next(t for t in objective.terms if isinstance(t, llx.Likelihood))
    noise = term.noise
    out = {}
    for path in noise._hyperparameter_paths():
        value = np.asarray(getattr(noise, path))
        if value.size == 1:
            out[path] = float(value)
    return out


def _coefficients(f: Fitted, names: list[str]) -> dict[str, float]:
    w = np.asarray(f.result.params["w"], dtype=np.float64)
    b = float(f.result.params["b"])
    w_orig = w / f.sd
    return {
        "intercept": b - float(np.sum(w_orig * f.mean)),
        **dict(zip(names, w_orig, strict=True)),
    }


def _plots(
    out: Path, f: Fitted, names: list[str], target: str, key_seed: int = 0
) -> list[str]:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import likelax as llx
    from likelax import plot

    written = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    plot.fit_history(f.result.history, ax=axes[0], label=f.name)
    term = next(t for t in f.result.objective.terms if isinstance(t, llx.Likelihood))
    x_hat = _linear(f.result.params, f.data[0])
    try:
        u = llx.pit(term.noise, f.data[1], x_hat, key=jax.random.key(key_seed))
        plot.pit_histogram(u, ax=axes[1])
        plot.pit_qq(u, ax=axes[2], label=f.name)
    except NotImplementedError:
        axes[1].set_visible(False)
        axes[2].set_visible(False)
    path = out / f"fit_{f.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    if len(names) == 1:
        ax = plot.fitted_line(
            np.asarray(f.data[0]) * f.sd + f.mean,
            f.data[1],
            {f.name: np.asarray(term.noise.predict(x_hat))},
            xlabel=names[0],
            ylabel=target,
        )
        path = out / f"line_{f.name}.png"
        ax.figure.savefig(path, dpi=110)
        plt.close(ax.figure)
        written.append(str(path))
    return written


def _setup_jax() -> None:
    """float64 for the fits, value checks off (see below), and a persistent
    compilation cache so that repeated runs skip XLA compilation
    (``LIKELAX_CACHE_DIR``, default ``~/.cache/likelax``)."""
    import os

    import jax

    import likelax as llx

    jax.config.update("jax_enable_x64", True)
    # Inputs are validated here, hyperparameters at construction, and learned ones
    # stay in their domain by construction: runtime checks would add nothing but
    # callbacks, which also keep programs out of the persistent cache.
    llx.set_checks("off")
    cache = os.environ.get("LIKELAX_CACHE_DIR") or str(Path.home() / ".cache" / "likelax")
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except OSError:  # read-only home: run without the cache
        pass


def _cmd_fit(args: argparse.Namespace) -> int:
    _setup_jax()
    import likelax as llx

    table = load_table(args.csv, args.data)
    X, y, names, target = design(table, args.target, args.features, args.data)
    name, kwargs = parse_noise(args.noise)
    if "," in args.noise.split(":")[0]:
        raise CLIError("fit takes one --noise; use `likelax compare` for several")
    prior = parse_prior(args.prior)
    f = _fit_linear(
        name,
        kwargs,
        X,
        y,
        learn=args.learn_noise,
        prior=prior,
        steps=args.steps,
        progress=not args.no_progress,
        target=target,
    )
    cmp = llx.compare({name: f.result}, f.data)
    row = cmp.rows[0]
    coefs = _coefficients(f, names)
    noise = _noise_summary(f.result.objective)
    print(f"data: {table.source} (n = {len(y)}), target {target!r}")
    print(f"noise: {name}  ({f.result.message})")
    print("coefficients (original units):")
    for k, v in coefs.items():
        print(f"  {k:>16s}  {v: .6g}")
    if noise:
        print("noise hyperparameters" + (" (learned):" if args.learn_noise else ":"))
        for k, v in noise.items():
            print(f"  {k:>16s}  {v:.6g}")
    print(
        f"exact NLL {row['nll']:.6f}   AIC {row['aic']:.4f}   BIC {row['bic']:.4f}"
        f"   k = {row['k']}"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "data": table.source,
            "n": len(y),
            "target": target,
            "features": names,
            "noise": name,
            "noise_hyperparameters": noise,
            "learned": args.learn_noise,
            "prior": args.prior,
            "coefficients": coefs,
            "nll": row["nll"],
            "aic": row["aic"],
            "bic": row["bic"],
            "k": row["k"],
            "status": f.result.message,
            "steps": int(f.result.steps),
        }
        payload["plots"] = _plots(out, f, names, target)
        _write_json(out / "result.json", payload)
        print(f"wrote {out / 'result.json'} and {len(payload['plots'])} plot(s)")
    return 0 if bool(f.result.converged) else 1


def _compare_fits(
    specs: list[tuple[str, dict[str, float]]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    target: str,
    held_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Fitted]]:
    """Fit every noise model in one vmapped program (`llx.select_noise`)."""
    import jax.numpy as jnp

    import likelax as llx

    mean, sd = X.mean(axis=0), X.std(axis=0)
    data = (jnp.asarray((X - mean) / sd), jnp.asarray(y))
    candidates, learn = {}, set()
    b0 = 0.0
    for name, kwargs in specs:
        b0, kw = _init(name, kwargs, y, learn=True)
        noise = build_noise(name, kw)
        _support_check(noise, name, y, target)
        candidates[name] = noise
        learn.update(NOISE_LEARN.get(name, ()))
    if len({NOISES[n].link for n, _ in specs}) > 1:
        raise CLIError(
            "compare: the noise models have different links; compare like with like"
        )
    objective = llx.likelihood(_linear, next(iter(candidates.values())))
    params = {"w": jnp.zeros(X.shape[1]), "b": jnp.asarray(b0)}
    test = None
    if held_out is not None:
        test = (jnp.asarray((held_out[0] - mean) / sd), jnp.asarray(held_out[1]))
    try:
        cmp = llx.select_noise(
            objective,
            params,
            data,
            candidates,
            learn=tuple(sorted(learn)),
            held_out=test,
            steps=steps,
        )
    except ValueError as e:
        raise CLIError(str(e)) from None
    fitted = {n: Fitted(n, n, r, data, mean, sd) for n, r in cmp.results.items()}
    return cmp, fitted


def _cmd_compare(args: argparse.Namespace) -> int:
    _setup_jax()
    table = load_table(args.csv, args.data)
    X, y, names, target = design(table, args.target, args.features, args.data)
    specs = [parse_noise(t) for t in args.noise.split(",") if t.strip()]
    if len({n for n, _ in specs}) != len(specs):
        raise CLIError("--noise lists a noise model twice")
    if not 0 < args.holdout < 1:
        raise CLIError("--holdout must be a fraction in (0, 1)")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(y))
    n_test = max(1, round(args.holdout * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    print(
        f"data: {table.source} (n = {len(y)}), target {target!r}, "
        f"features {', '.join(names)}"
    )
    print(f"fitting {len(specs)} noise models in one compiled program ...", flush=True)
    full, fitted = _compare_fits(specs, X, y, steps=args.steps, target=target)
    split, _ = _compare_fits(
        specs,
        X[train],
        y[train],
        steps=args.steps,
        target=target,
        held_out=(X[test], y[test]),
    )
    held = {r["name"]: r["held_out_nll"] for r in split.rows}
    rows = split.rows  # ranked by held-out NLL
    print(
        f"held-out split: {n_test} of {len(y)} rows (seed {args.seed}); "
        "noise hyperparameters learned"
    )
    head = (
        f"{'rank':<5}{'noise':<20}{'k':>3}{'NLL':>12}{'AIC':>12}{'BIC':>12}"
        f"{'held-out NLL':>15}  fitted noise"
    )
    print(head)
    print("-" * len(head))
    for i, r in enumerate(rows, 1):
        f = full[r["name"]]
        hyper = ", ".join(
            f"{k}={v:.4g}"
            for k, v in _noise_summary(full.results[r["name"]].objective).items()
        )
        status = _status(full.results[r["name"]])
        print(
            f"{i:<5}{r['name'] + status:<20}{f['k']:>3}{f['nll']:>12.4f}{f['aic']:>12.4f}"
            f"{f['bic']:>12.4f}{held[r['name']]:>15.4f}  {hyper}"
        )
    print(
        f"best by held-out NLL: {rows[0]['name']}; by AIC: {full.best}; by BIC: "
        f"{min(full.rows, key=lambda r: r['bic'])['name']} (lower is better)"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "data": table.source,
            "n": len(y),
            "target": target,
            "features": names,
            "holdout": {"n_test": n_test, "seed": args.seed},
            "ranking": [
                {
                    **full[r["name"]],
                    "held_out_nll": held[r["name"]],
                    "status": full.results[r["name"]].message,
                    "noise_hyperparameters": _noise_summary(
                        full.results[r["name"]].objective
                    ),
                    "coefficients": _coefficients(fitted[r["name"]], names),
                }
                for r in rows
            ],
        }
        payload["plots"] = _compare_plot(out, full.results, fitted)
        _write_json(out / "comparison.json", payload)
        print(f"wrote {out / 'comparison.json'} and {len(payload['plots'])} plot(s)")
    return 0


def _status(result: Any) -> str:
    import likelax as llx

    if bool(result.status == llx.Status.converged):
        return ""
    for name in ("stalled", "budget", "nonfinite"):
        if hasattr(llx.Status, name) and bool(result.status == getattr(llx.Status, name)):
            return f" ({name})"
    return " (not converged)"


def _compare_plot(out: Path, full: dict[str, Any], fitted: dict[str, Fitted]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import jax.numpy as jnp
    import matplotlib.pyplot as plt

    import likelax as llx
    from likelax import plot

    noises = {}
    residuals = []
    for name, res in full.items():
        term = next(t for t in res.objective.terms if isinstance(t, llx.Likelihood))
        noises[name] = term.noise
        f = fitted[name]
        residuals.append(np.asarray(f.data[1] - _linear(res.params, f.data[0])))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    r = np.asarray(residuals[0])
    lim = float(np.max(np.abs(r))) * 1.2 if r.size else 6.0
    grid = np.linspace(-lim, lim, 401)
    plot.penalty_curves(noises, grid, centred=False, ax=axes[0])
    axes[0].plot(
        r, np.zeros_like(r) + axes[0].get_ylim()[0], "|", color="k", label="residuals"
    )
    for name, res in full.items():
        axes[1].plot(np.asarray(jnp.asarray(res.history)), label=name)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("objective (exact)")
    axes[1].set_xscale("symlog")
    axes[1].legend()
    axes[1].set_title("Fit histories")
    path = out / "comparison.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=_finite))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
