"""The `likelax` command, driven as a subprocess, on the embedded and on user data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(*args, cwd=None, timeout=600):
    env = {**os.environ, "LIKELAX_CACHE_DIR": str(Path(cwd or ".") / ".jaxcache")}
    return subprocess.run(
        [sys.executable, "-m", "likelax", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def _one_line_error(res, pattern):
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr  # one line, never a traceback
    assert lines[0].startswith("likelax: error: ")
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    (d / "ok.csv").write_text("x,y,c\n1,2,0\n2,4.5,1\n3,5.9,0\n4,8.2,2\n5,9.8,1\n")
    (d / "text.csv").write_text("x,y\n1,2\n2,abc\n")
    (d / "nan.csv").write_text("x,y\n1,2\n2,\n3,4\n")
    (d / "empty.csv").write_text("")
    (d / "counts.csv").write_text("x,y\n1,0\n2,2.5\n3,1\n")
    (d / "binary.bin").write_bytes(bytes(range(256)) * 4)
    return d


ERROR_CASES = (
    (["fit", "missing.csv", "--target", "y"], "missing.csv: no such file"),
    (["fit", "{d}/ok.csv", "--target", "z"], "no column 'z'"),
    (["fit", "{d}/ok.csv", "--target", "y", "--features", "x,q"], "no column 'q'"),
    (
        ["fit", "{d}/text.csv", "--target", "y"],
        "line 3, column 'y': 'abc' is not a number",
    ),
    (["fit", "{d}/nan.csv", "--target", "y"], "1 row(s) have missing"),
    (["fit", "{d}/empty.csv", "--target", "y"], "empty"),
    (["fit", "{d}/binary.bin", "--target", "y"], "binary.bin"),
    (
        ["fit", "{d}/ok.csv", "--target", "y", "--noise", "gaussin"],
        "unknown noise 'gaussin'",
    ),
    (["fit", "{d}/ok.csv", "--target", "y", "--noise", "student-t:nu=3"], "bad option"),
    (
        ["fit", "{d}/ok.csv", "--target", "y", "--noise", "student-t:df=-1"],
        "`df` must be > 0",
    ),
    (
        ["fit", "{d}/counts.csv", "--target", "y", "--noise", "poisson"],
        "outside the support of poisson",
    ),
    (["fit", "{d}/ok.csv"], "--target COL is required"),
    (
        ["compare", "{d}/ok.csv", "--target", "y", "--noise", "gaussian,gaussian"],
        "twice",
    ),
)

# Every error case in one interpreter (one JAX start-up instead of one per case),
# through the same entry point as `python -m likelax`; a case that escapes `main`
# as an exception is reported with its traceback, which the test then rejects.
_DRIVER = """
import contextlib, io, json, sys, traceback
from likelax.cli import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as e:
            rc = e.code
        except BaseException:
            traceback.print_exc()
            rc = 1
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def error_runs(csvs, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("errors")
    argv = [[a.format(d=csvs) for a in args] for args, _ in ERROR_CASES]
    env = {**os.environ, "LIKELAX_CACHE_DIR": str(cwd / ".jaxcache")}
    res = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "case", range(len(ERROR_CASES)), ids=lambda i: " ".join(ERROR_CASES[i][0])
)
def test_errors_are_one_line(error_runs, case):
    rc, stderr = error_runs[case]
    _one_line_error(subprocess.CompletedProcess([], rc, "", stderr), ERROR_CASES[case][1])


def test_default_command_compares_on_embedded_stackloss(tmp_path):
    """The README's main job: no arguments, the embedded data, a ranked table."""
    res = run("--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "embedded:stackloss (n = 21)" in res.stdout
    payload = json.loads((tmp_path / "out" / "comparison.json").read_text())
    ranking = payload["ranking"]
    assert {r["name"] for r in ranking} == {
        "gaussian",
        "laplace",
        "student-t",
        "cauchy",
        "huber",
    }
    # the heavy-tailed models beat the Gaussian on this outlier-laden data set
    held = {r["name"]: r["held_out_nll"] for r in ranking}
    assert held["gaussian"] > min(held["cauchy"], held["student-t"])
    # exact Gaussian MLE NLL = n/2 (1 + log(2π RSS/n)) from statsmodels' OLS
    d = np.loadtxt(SHARED / "stackloss.csv", delimiter=",", skiprows=1)
    ols = sm.OLS(d[:, 0], sm.add_constant(d[:, 1:])).fit()
    gauss = next(r for r in ranking if r["name"] == "gaussian")
    assert gauss["nll"] == pytest.approx(-ols.llf, rel=1e-6)
    coefs = gauss["coefficients"]
    np.testing.assert_allclose(
        [coefs["intercept"], coefs["AIRFLOW"], coefs["WATERTEMP"], coefs["ACIDCONC"]],
        ols.params,
        rtol=1e-5,
    )
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 10_000


def test_fit_quantile_on_a_csv(tmp_path):
    """`fit` on a user CSV: median regression on engel, against statsmodels QuantReg."""
    res = run(
        "fit",
        str(SHARED / "engel.csv"),
        "--target",
        "foodexp",
        "--noise",
        "quantile:quantile=0.5",
        "--learn-noise",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode in (0, 1), res.stderr  # 1: stalled at a kink (non-smooth)
    out = json.loads((tmp_path / "o" / "result.json").read_text())
    d = np.loadtxt(SHARED / "engel.csv", delimiter=",", skiprows=1)
    qr = sm.QuantReg(d[:, 1], sm.add_constant(d[:, 0])).fit(q=0.5)
    got = [out["coefficients"]["intercept"], out["coefficients"]["income"]]
    np.testing.assert_allclose(got, qr.params, rtol=2e-3)
    assert out["noise"] == "quantile" and out["noise_hyperparameters"]["quantile"] == 0.5
    plots = [Path(p) for p in out["plots"]]
    assert len(plots) == 2 and all(p.stat().st_size > 10_000 for p in plots)


def test_data_lists_the_embedded_sets(tmp_path):
    res = run("data", cwd=tmp_path)
    assert res.returncode == 0
    for name in ("stackloss", "engel", "randhie", "anes96", "strikes", "longley"):
        assert name in res.stdout
