"""A candidate's vote requests leave while its vote for itself is being saved (node._carry_out),
but it never holds a lease (so the election loop never acts) before that vote is on disk.

The test plays peer b with sockets of its own; c never runs. a's state file cannot be written (a
directory stands where it goes), as on a disk that refuses writes, until the test removes it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from DistributedMutex.backends.raft.core import HardState, Role
from DistributedMutex.backends.raft.messages import (
    Heartbeat,
    HeartbeatReply,
    Message,
    PreVote,
    PreVoteReply,
    Vote,
    VoteReply,
    decode,
    encode,
)
from DistributedMutex.backends.raft.node import RaftNode
from DistributedMutex.backends.raft.storage import StateFile
from harness.processes import wait_until
from support.raft_local import INFO, TIMEOUT, addresses

M = TypeVar("M", bound=Message)


class PlayingB:
    """Peer b: reads what a sends it, answers on a connection of its own (stamped as b's)."""

    def __init__(self, listening: socket.socket, a: tuple[str, int]) -> None:
        listening.settimeout(5)
        self._from_a, _ = listening.accept()
        self._buffer = b""
        self._to_a = socket.create_connection(a, timeout=5)
        self._seq = 0

    def _line(self, within: float) -> bytes | None:
        """a's next line, or None if none came within ``within`` seconds."""
        deadline = time.monotonic() + within
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._from_a.settimeout(remaining)
            try:
                chunk = self._from_a.recv(65536)
            except TimeoutError:
                return None
            assert chunk, "a closed its connection to b"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def next_of(self, kind: type[M], within: float = 5.0) -> M:
        deadline = time.monotonic() + within
        while (line := self._line(deadline - time.monotonic())) is not None:
            message = decode(line)
            if isinstance(message, kind):
                return message
        raise AssertionError(f"no {kind.__name__} from a within {within:g} s")

    def says(self, message: Message) -> None:
        self._seq += 1
        self._to_a.sendall(encode(replace(message, epoch=1, seq=self._seq)))

    def nothing_but(self, kinds: tuple[type[Message], ...], seconds: float) -> None:
        """Fails if a sends anything but ``kinds`` for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (line := self._line(deadline - time.monotonic())) is not None:
            message = decode(line)
            assert isinstance(message, kinds), f"a sent {message} while its vote was not on disk"

    def close(self) -> None:
        self._from_a.close()
        self._to_a.close()


def test_a_candidate_whose_vote_is_not_on_disk_asks_for_votes_but_never_holds_a_lease(tmp_path: Path) -> None:
    peers = addresses("a", "b", "c")
    with socket.create_server(peers["b"]) as b_listens:
        node = RaftNode("a", peers, tmp_path, TIMEOUT, info=INFO)
        node.start()
        try:
            # Loaded (nothing yet); a saves first when it campaigns, at least TIMEOUT[0] from now.
            (tmp_path / "a.json").mkdir()  # the state file cannot be written until this goes
            b = PlayingB(b_listens, peers["a"])
            try:
                pre_vote = b.next_of(PreVote)
                b.says(PreVoteReply("b", "a", pre_vote.term, True))
                vote = b.next_of(Vote)  # out although a's vote for itself could not be saved
                assert vote.term == pre_vote.term
                b.says(VoteReply("b", "a", vote.term, True))
                wait_until(lambda: node.status.role is Role.LEADER, 5, "a never counted b's vote")
                # Leading in memory, but silent and without a lease while its vote is not on disk.
                b.nothing_but((PreVote, Vote), TIMEOUT[0] / 2)
                assert not node.status.leads_with_lease(time.monotonic()), "a lease on a vote not on disk"
                assert node.status.role is Role.LEADER and node.status.term == vote.term
                (tmp_path / "a.json").rmdir()  # the disk takes writes again: the next output saves first
                heartbeat = b.next_of(Heartbeat)
                assert StateFile(tmp_path, "a").load() == HardState(vote.term, "a")
                b.says(HeartbeatReply("b", "a", heartbeat.term, heartbeat.sent_at, True))
                wait_until(lambda: node.status.leads_with_lease(time.monotonic()), 5, "no lease once it was saved")
            finally:
                b.close()
        finally:
            node.stop()
