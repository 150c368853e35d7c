"""Table rows: positive families (filled in by their implementation)."""

ROWS = []
