"""``python -m DistributedMutex.cli``: the ``distributed-mutex`` command without its console script."""

from DistributedMutex.cli import run

run()
