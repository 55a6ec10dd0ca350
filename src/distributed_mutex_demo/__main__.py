"""``python -m distributed_mutex_demo``: one instance of the weather demo."""

import sys

from distributed_mutex_demo.cli import run

sys.exit(run())
