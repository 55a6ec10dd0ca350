"""``make chaos``: ``python -m harness.chaos [--rounds N] [--instances 3..5] [--seed N]``."""

import sys

from harness.chaos.report import main

sys.exit(main())
