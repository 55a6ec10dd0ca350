"""``python -m harness.partitions [--backend B] [--scenario S] [--flap-seconds N] [--json F] [--keep DIR]``."""

import sys

from harness.partitions.report import main

sys.exit(main())
