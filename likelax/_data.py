"""The real data sets bundled with likelax (public domain; see `likelax/data/README.md`)."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

DATASETS = ("anes96", "engel", "longley", "randhie", "stackloss", "strikes")


def read_csv(path_or_file) -> dict[str, np.ndarray]:
    """Read a numeric CSV with a header row into ``{column: float64 array}``.

    Raises ``ValueError`` naming the line and column of the first non-numeric cell,
    and for an empty file or ragged rows.
    """
    reader = csv.reader(path_or_file)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError("the file is empty (no header row)") from None
    if len(set(header)) != len(header) or any(not h for h in header):
        raise ValueError(f"the header has empty or repeated column names: {header}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"line {lineno} has {len(row)} fields, the header has {len(header)}"
            )
        values = []
        for name, cell in zip(header, row, strict=True):
            try:
                values.append(float(cell) if cell.strip() else float("nan"))
            except ValueError:
                raise ValueError(
                    f"line {lineno}, column {name!r}: {cell!r} is not a number"
                ) from None
        rows.append(values)
    if not rows:
        raise ValueError("the file has a header but no data rows")
    table = np.asarray(rows, dtype=np.float64)
    return {name: table[:, j] for j, name in enumerate(header)}


def load_dataset(name: str) -> dict[str, np.ndarray]:
    """One of the bundled data sets as ``{column: float64 array}``.

    Names: ``anes96``, ``engel``, ``longley``, ``randhie``, ``stackloss``, ``strikes``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")
    with resources.files("likelax").joinpath(f"data/{name}.csv").open() as f:
        return read_csv(f)
