"""The one table of families: every generic test is parametrised over it."""

import rows_count
import rows_discrete
import rows_location
import rows_positive

CASES = rows_location.ROWS + rows_discrete.ROWS + rows_count.ROWS + rows_positive.ROWS
IDS = [c.id for c in CASES]
