"""`python -m fcnlib ...` is `fcn ...` (for environments without the console script on PATH)."""

import sys

from fcnlib.cli import main

sys.exit(main())
