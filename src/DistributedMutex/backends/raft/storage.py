"""A peer's hard state (current term, vote) in ``<data_dir>/<node_id>.json``, written durably.

Raft's safety rests on a node never forgetting a term or a vote it has answered with, so nothing
leaves a peer before the state it rests on is on the disk. That write is on the path of every
election, a graceful hand-over's included, so it is made cheap without giving durability up:

The file holds two slots, one 4 KiB page each (``SLOT``), each a line of JSON, the term, the vote
and a write counter ``n``, and a CRC-32 of that JSON. A save overwrites, in place, the slot that
does *not* hold the newest record, then fdatasync()s the file: one small data write to blocks
already allocated, no metadata (about 0.3 ms on this project's machine, where replacing the file
and fsyncing it and its directory took 5.5 ms). A crash mid-write can tear only the slot being
written, which its CRC then refuses: the other slot, untouched, still holds the state saved before.
Loading takes the intact slot with the highest ``n``. A failed save is retried into the same slot,
so the last durable record is never the one overwritten.

The file is created (or converted from the single JSON object earlier versions wrote, which is
still read) once, the old way: a temporary file, fsync, rename over the old file, fsync of the
directory. A crash at any point leaves either the old or the new file.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import zlib
from pathlib import Path

from DistributedMutex.backends.raft.core import HardState
from DistributedMutex.backends.raft.messages import MAX_COUNTER, MAX_TERM

SLOT = 4096  # one page each: a torn write of one cannot reach the other
_SLOTS = 2
MAX_VOTE = 256  # characters: far above a peer id (arguments.PEER_ID), and a record fits its slot
# fdatasync: the data and what is needed to read it back, not the modification time (macOS has
# only fsync).
_datasync = getattr(os, "fdatasync", os.fsync)


class StateFile:
    def __init__(self, data_dir: Path, node_id: str) -> None:
        self.path = data_dir / f"{node_id}.json"
        self._temp = data_dir / f".{node_id}.json.tmp"
        # The newest record's counter, once the file is known to be in the two-slot form; None
        # until then (not loaded yet, missing, or the older single-object form): the next save
        # then writes the whole file.
        self._n: int | None = None

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
        self._n = None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return HardState()
        slots = _slots(data)
        if slots is None:  # the single JSON object of earlier versions (or garbage: said below)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{self.path} is not a Raft state file (not UTF-8 text)") from None
            return self._checked(_parse(text, self.path))
        intact = [record for record in slots if record is not None]
        if not intact:
            raise ValueError(f"{self.path} is not a Raft state file (no intact record in either slot)")
        n, newest = max(intact, key=lambda numbered: numbered[0])
        state = self._checked(newest)
        self._n = n
        return state

    def _checked(self, record: dict[str, object]) -> HardState:
        term, voted_for = record["term"], record["voted_for"]
        # bool is an int in Python: a term of true is no term.
        if not isinstance(term, int) or isinstance(term, bool) or not 0 <= term <= MAX_TERM:
            raise ValueError(f"{self.path} holds an impossible term (need an integer 0..{MAX_TERM}): "
                             f"{_short(term)}")
        if voted_for is not None and (not isinstance(voted_for, str) or len(voted_for) > MAX_VOTE):
            raise ValueError(f"{self.path} holds an impossible vote (need a peer id or null): {_short(voted_for)}")
        return HardState(term, voted_for)

    def save(self, state: HardState) -> None:
        """Durably record ``state``; OSError if the disk refuses (nothing may be sent then)."""
        if self._n is None:
            self._replace(state)
            return
        n = self._n + 1
        record = _record(state, n)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            written = os.pwrite(fd, record, (n % _SLOTS) * SLOT)
            if written != len(record):
                raise OSError(f"wrote {written} of {len(record)} bytes")
            _datasync(fd)
        finally:
            os.close(fd)
        # Only now: a failed save leaves the counter, so the retry rewrites the same slot and the
        # newest durable record (in the other) stays as it is.
        self._n = n

    def _replace(self, state: HardState) -> None:
        """Write the whole file in the two-slot form: the record in slot 0, slot 1 empty."""
        data = _record(state, 0) + _record(None, 0)
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
        self._n = 0


def _record(state: HardState | None, n: int) -> bytes:
    """One slot: the record's JSON line and its CRC-32, padded with spaces to SLOT bytes (None:
    an empty slot, all spaces)."""
    if state is None:
        return b" " * (SLOT - 1) + b"\n"
    payload = json.dumps({"term": state.term, "voted_for": state.voted_for, "n": n}, separators=(",", ":")).encode()
    line = payload + b" %08x" % zlib.crc32(payload)
    return line + b" " * (SLOT - 1 - len(line)) + b"\n"


def _slots(data: bytes) -> list[tuple[int, dict[str, object]] | None] | None:
    """The two slots' records with their counters (None for a slot that is empty or torn); None
    if ``data`` is not in the two-slot form at all."""
    if len(data) != _SLOTS * SLOT or any(data[(i + 1) * SLOT - 1:(i + 1) * SLOT] != b"\n" for i in range(_SLOTS)):
        return None
    return [_slot(data[i * SLOT:(i + 1) * SLOT]) for i in range(_SLOTS)]


def _slot(data: bytes) -> tuple[int, dict[str, object]] | None:
    payload, _, crc = data.strip().rpartition(b" ")
    try:
        if not payload or len(crc) != 8 or int(crc, 16) != zlib.crc32(payload):
            return None
        record = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    n = record.get("n") if isinstance(record, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or not {"term", "voted_for"} <= record.keys():
        return None
    return n, record


def _parse(text: str, path: Path) -> dict[str, object]:
    try:
        record = json.loads(text)
        return {"term": record["term"], "voted_for": record["voted_for"]}
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise ValueError(f"{path} is not a Raft state file ({type(exc).__name__})") from None


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
