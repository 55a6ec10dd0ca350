"""A peer link (transport.PeerLink) whose peer closed the connection (it restarted): a message that
matters (a vote, a hand-over's TimeoutNow) is checked for that before it is written and goes out on a
fresh connection; a routine one (a heartbeat, its reply: said again every round) is written without
the check, so one may be lost in the dead connection, but the next ones get through."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from DistributedMutex.backends.raft.transport import PeerLink


@pytest.fixture
def peer() -> Iterator[tuple[socket.socket, PeerLink, socket.socket]]:
    """A listening socket, a link to it, and the connection the link opened at start."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    link = PeerLink("b", server.getsockname(), connect_timeout=1.0, retry_interval=0.05)
    first, _ = server.accept()
    try:
        yield server, link, first
    finally:
        link.close()
        first.close()
        server.close()


def lines_on_next_connection(server: socket.socket, timeout: float) -> bytes:
    """What the link writes on the next connection it opens, until ``timeout`` or a line comes."""
    server.settimeout(timeout)
    conn, _ = server.accept()
    with conn:
        conn.settimeout(timeout)
        return conn.recv(4096)


def test_a_vote_after_the_peer_closed_goes_out_on_a_fresh_connection(
        peer: tuple[socket.socket, PeerLink, socket.socket]) -> None:
    server, link, first = peer
    first.close()  # the peer restarted: its end of the link is gone
    link.send(b'{"vote":1}\n')
    assert lines_on_next_connection(server, 5) == b'{"vote":1}\n', "the vote was lost in the dead connection"


def test_heartbeats_after_the_peer_closed_get_through_again_at_once(
        peer: tuple[socket.socket, PeerLink, socket.socket]) -> None:
    server, link, first = peer
    first.close()
    sent: list[bytes] = []
    got = b""
    deadline = time.monotonic() + 0.5  # well within the link's own check (KEEP_CONNECTED, 1 s)
    while not got and time.monotonic() < deadline:
        line = b'{"heartbeat":%d}\n' % len(sent)
        link.send(line, routine=True)
        sent.append(line)
        try:
            got = lines_on_next_connection(server, 0.05)
        except TimeoutError:
            continue
    assert got, f"none of {len(sent)} heartbeats reached the restarted peer within 0.5 s"
    lost = sent.index(got.splitlines(keepends=True)[0])
    assert lost <= 1, f"{lost} heartbeats were lost, not at most one"
