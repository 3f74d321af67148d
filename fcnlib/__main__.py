"""`python -m fcnlib ...` is `fcn ...` (for environments without the console script on PATH)."""

import sys

from .cli import main

sys.exit(main())
