"""Raft leader election among the instances themselves: no service, no third-party dependency.

    core.py      the pure state machine (no I/O, no clock): tick(now), step(message, now)
    messages.py  the messages and their wire form
    storage.py   the term and vote, durably in <data_dir>/<node_id>.json
    transport.py TCP between peers (the outgoing links), and the status request
    listener.py  the incoming side: one selector thread, every connection held to limits
    limits.py    those limits, rate-limited warnings, the open-files limit they need
    node.py      a running peer: one thread drives the core
    backend.py   RaftBackend, the ElectionBackend the loop talks to
"""

from DistributedMutex.backends.raft.backend import RaftBackend

__all__ = ["RaftBackend"]
