"""`python -m impresslearn.cli ...` (what torchrun starts): the same as `impresslearn ...`."""

import sys

from . import main

sys.exit(main())
