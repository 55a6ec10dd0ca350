"""Raft leader election among the instances themselves: no service, no third-party dependency.

    core.py      the pure state machine (no I/O, no clock): tick(now), step(message, now)
    messages.py  the messages and their wire form
    storage.py   the term and vote, durably in <data_dir>/<node_id>.json
    transport.py TCP between peers, and the status request
    node.py      a running peer: one thread drives the core
    backend.py   RaftBackend, the ElectionBackend the loop talks to
"""

from DistributedMutex.backends.raft.backend import RaftBackend

__all__ = ["RaftBackend"]
