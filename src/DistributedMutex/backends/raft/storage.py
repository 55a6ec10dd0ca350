"""A peer's hard state (current term, vote) in ``<data_dir>/<node_id>.json``, written durably.

Raft's safety rests on a node never forgetting a term or a vote it has answered with, so every
write is: a temporary file, fsync, rename over the old file, fsync of the directory (the rename
itself must reach the disk too). A crash at any point leaves either the old or the new state.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from DistributedMutex.backends.raft.core import HardState
from DistributedMutex.backends.raft.messages import MAX_COUNTER, MAX_TERM


class StateFile:
    def __init__(self, data_dir: Path, node_id: str) -> None:
        self.path = data_dir / f"{node_id}.json"
        self._temp = data_dir / f".{node_id}.json.tmp"

    def load(self) -> HardState:
        """The state last saved (the initial state if there is none), with this start's epoch.

        The epoch, stamped on every message this start sends (guard.SenderGuard.fresh), is the wall
        clock in microseconds: it rises at every start with no write, unless the clock was set
        back by more than the time between two starts. Then the others take this peer's messages
        again only after two election timeouts (guard.SenderGuard.fresh): a slow restart, never a wrong one.
        ValueError, naming the file, if it is unreadable or out of range: a peer must say so at
        start, not wedge on it later."""
        loaded = self._read()
        return HardState(loaded.term, loaded.voted_for, min(time.time_ns() // 1000, MAX_COUNTER))

    def _read(self) -> HardState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return HardState()
        except UnicodeDecodeError:
            raise ValueError(f"{self.path} is not a Raft state file (not UTF-8 text)") from None
        try:
            record = json.loads(text)
            term, voted_for = record["term"], record["voted_for"]
        except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
            raise ValueError(f"{self.path} is not a Raft state file ({type(exc).__name__})") from None
        # bool is an int in Python: a term of true is no term.
        if not isinstance(term, int) or isinstance(term, bool) or not 0 <= term <= MAX_TERM:
            raise ValueError(f"{self.path} holds an impossible term (need an integer 0..{MAX_TERM}): "
                             f"{_short(term)}")
        if voted_for is not None and not isinstance(voted_for, str):
            raise ValueError(f"{self.path} holds an impossible vote (need a peer id or null): {_short(voted_for)}")
        return HardState(term, voted_for)

    def save(self, state: HardState) -> None:
        """Durably replace the saved state; OSError if the disk refuses (nothing may be sent then)."""
        data = json.dumps({"term": state.term, "voted_for": state.voted_for}).encode()
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._temp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _short(value: object) -> str:
    """A value for a one-line error: a corrupt file may hold a number of thousands of digits."""
    text = value if isinstance(value, str) and len(value) < 80 else None
    if text is None:
        try:
            text = json.dumps(value)
        except ValueError:  # an int too long to print in Python 3.11+
            text = "a number too long to print"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


class StateLock:
    """One process per peer's state: two sharing it would each vote once per term, so twice."""

    def __init__(self, data_dir: Path, node_id: str) -> None:
        self._path = data_dir / f"{node_id}.lock"
        self._data_dir = data_dir
        self._node_id = node_id
        self._fd = -1

    def take(self) -> None:
        """OSError if another process holds it."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OSError(f"another process runs Raft peer {self._node_id} with the state in "
                          f"{self._data_dir}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
