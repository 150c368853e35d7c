"""The bundled data sets are the shared ones, and the CSV reader fails clearly."""

import io
from pathlib import Path

import numpy as np
import pytest

import likelax as llx
from likelax._data import DATASETS, read_csv

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize("name", DATASETS)
def test_bundled_equals_shared(name):
    shared = SHARED / f"{name}.csv"
    if not shared.exists():
        pytest.fail(f"{shared} is missing: tests expect ../shared/data beside the repo")
    with shared.open() as f:
        want = read_csv(f)
    got = llx.load_dataset(name)
    assert list(got) == list(want)
    for col in want:
        np.testing.assert_array_equal(got[col], want[col])


def test_reader_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"line 3, column 'b': 'x' is not a number"):
        read_csv(io.StringIO("a,b\n1,2\n3,x\n"))
    with pytest.raises(ValueError, match="empty"):
        read_csv(io.StringIO(""))
    with pytest.raises(ValueError, match="line 2 has 1 fields"):
        read_csv(io.StringIO("a,b\n1\n"))
    with pytest.raises(ValueError, match="unknown data set 'iris'"):
        llx.load_dataset("iris")
    table = read_csv(io.StringIO("a,b\n1,\n"))
    assert np.isnan(table["b"][0])
