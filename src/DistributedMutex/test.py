"""Run one instance of the leader-election weather demo: ``python src/DistributedMutex/test.py``.

(The name is the original demo's; this is the program, not a test suite.)
"""

import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Run as a script, Python puts this folder first on sys.path, where our module names (config,
# store, ...) would shadow other packages'. Import the package from src/ instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from DistributedMutex.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A storage or HTTP call abandoned in a daemon thread must not print at interpreter teardown.
    os._exit(code)
