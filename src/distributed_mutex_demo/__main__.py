"""``python -m distributed_mutex_demo``: one instance of the weather demo (installed as the command
``distributed-mutex-demo``, with ``pip install 'distributed-mutex[demo]'``)."""

from __future__ import annotations

from distributed_mutex_demo.entry import run

# Guarded: tools that import every module of a package (pydoc, doctest runners) must not start it.
if __name__ == "__main__":
    run()
