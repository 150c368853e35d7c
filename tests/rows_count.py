"""Table rows: count families (filled in by their implementation)."""

ROWS = []
