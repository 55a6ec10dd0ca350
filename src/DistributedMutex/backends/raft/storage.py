"""A peer's hard state (current term, vote) in ``<data_dir>/<node_id>.json``, written durably.

Raft's safety rests on a node never forgetting a term or a vote it has answered with, so every
write is: a temporary file, fsync, rename over the old file, fsync of the directory (the rename
itself must reach the disk too). A crash at any point leaves either the old or the new state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from DistributedMutex.backends.raft.core import HardState


class StateFile:
    def __init__(self, data_dir: Path, node_id: str) -> None:
        self.path = data_dir / f"{node_id}.json"
        self._temp = data_dir / f".{node_id}.json.tmp"

    def load(self) -> HardState:
        """The state last saved; the initial state if there is none. ValueError if unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return HardState()
        try:
            record = json.loads(text)
            term, voted_for = record["term"], record["voted_for"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path} is not a Raft state file ({exc})") from None
        if not (isinstance(term, int) and term >= 0 and (voted_for is None or isinstance(voted_for, str))):
            raise ValueError(f"{self.path} holds an impossible state: {record!r}")
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
