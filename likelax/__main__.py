"""`python -m likelax`: the same as the `likelax` command."""

import sys

from .cli import main

sys.exit(main())
