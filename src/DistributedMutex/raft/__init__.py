"""Raft leader election among the instances themselves (ELECTION_BACKEND=raft).

    core.py      the pure state machine (no I/O, no clock): tick(now), step(message, now)
    messages.py  the messages and their wire form
    storage.py   the term and vote, durably in <RAFT_DATA_DIR>/<RAFT_ID>.json
    transport.py TCP between peers, and the status request
    node.py      a running peer: one thread drives the core
    backend.py   RaftBackend, the ElectionBackend the loop talks to
"""

from .backend import RaftBackend

__all__ = ["RaftBackend"]
