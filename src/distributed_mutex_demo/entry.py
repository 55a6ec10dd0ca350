"""The demo's entry point (``distributed-mutex-demo``, ``python -m distributed_mutex_demo``,
``src/DistributedMutex/test.py``): the program, or one line when the demo's extra is missing.

Installed without ``[demo]`` (the library alone), the program's imports fail: say what to install
instead of showing a traceback. Kept apart from cli.py so that it imports nothing third-party.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

EXIT_CONFIG = 2  # as cli.EXIT_CONFIG: the program cannot run as installed
# The top-level packages the demo imports that only its extra brings.
DEMO_PACKAGES = ("azure", "dotenv", "kazoo", "mysql", "prometheus_client", "requests")


def run(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        from distributed_mutex_demo.cli import run as run_program
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in DEMO_PACKAGES:
            raise
        print(f"the demo needs the module {exc.name!r}, which is not installed: "
              "pip install 'distributed-mutex[demo]'", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    run_program(argv)
