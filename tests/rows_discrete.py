"""Table rows: discrete families (filled in by their implementation)."""

ROWS = []
