"""Run one instance of the leader-election weather demo: ``python src/DistributedMutex/test.py``.

(The name is the original demo's; this is the program, not a test suite. The program itself is the
package ``distributed_mutex_demo``, also installed as the command ``distributed-mutex-demo``.
Imported, this module does nothing.)
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    _HERE = Path(__file__).resolve().parent
    # Run as a script, Python puts this folder first on sys.path, where the library's module names
    # (errors, backend, ...) would shadow other packages'. Import both packages from src/ instead.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

    from distributed_mutex_demo.entry import run

    run()
