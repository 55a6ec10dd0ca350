"""The election's term base (``<path>-term``, an integer; absent: 0), read and raised; and the
leader as others read it (the lowest znode, its term over the base).

A leadership's term is ``base + sequence + 1`` (backend.py says why it only grows). The base is
written only in a transaction that also checks (or writes) the writer's znode, so only a live
contender can move it, and compare-and-set over the version read.
"""

from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError
from kazoo.interfaces import IAsyncResult

from DistributedMutex.backend import LeaderRecord
from DistributedMutex.backends.zookeeper.session import ZooKeeperSession
from DistributedMutex.backends.zookeeper.znodes import Contender, line_of, record
from DistributedMutex.errors import StorageRejectedError, StorageUnavailableError

# How often one call re-reads the base when it changes under it before giving up (retried).
_ROUNDS = 5


def raise_term(client: KazooClient, session: ZooKeeperSession, term_path: str, znode: str, seq: int,
               at_least: int, *, data: bytes | None = None, base: tuple[int, int | None] | None = None,
               sent: tuple[IAsyncResult, int] | None = None) -> int | None:
    """Make the term of ``znode`` (sequence ``seq``) at least ``at_least`` (and write ``data`` into
    it, if given) in one transaction that only succeeds while the znode exists. Returns the term;
    None if the znode is gone. ``sent``: the first round's transaction, already sent by
    ``send_term`` with this ``base`` (and the term it writes)."""
    for _ in range(_ROUNDS):
        if sent is not None:
            (pending, raised), sent = sent, None
        else:
            value, version = base if base is not None else base_from(session, client.get_async(term_path), term_path)
            if value + seq + 1 >= at_least and data is None:
                return value + seq + 1
            pending, raised = send_term(client, term_path, znode, seq, at_least, data, (value, version))
        base = None  # read afresh if this round loses a race
        results = session.wait(pending, "write the term")
        failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
        if not failures:
            return raised + seq + 1
        if isinstance(results[0], NoNodeError):
            return None
        if not isinstance(failures[0], (BadVersionError, NodeExistsError)):
            raise session.translate(failures[0], "write the term")
        # The base moved between our read and our write: read it again.
    raise StorageUnavailableError(f"{term_path} kept changing; could not write the term")


def send_term(client: KazooClient, term_path: str, znode: str, seq: int, at_least: int, data: bytes | None,
              base: tuple[int, int | None]) -> tuple[IAsyncResult, int]:
    """Send (without waiting) raise_term's transaction over the base read: the pending answer and
    the base it writes. Never blocks: kazoo's callbacks may call it."""
    value, version = base
    raised = max(value, at_least - seq - 1)
    transaction = client.transaction()
    if data is None:
        transaction.check(znode, -1)
    else:
        transaction.set_data(znode, data)
    if version is None:
        # Also when not raising it: creating it fails if somebody else did meanwhile.
        transaction.create(term_path, str(raised).encode())
    elif raised != value:
        transaction.set_data(term_path, str(raised).encode(), version)
    else:
        # The term is the base read plus our sequence number: only if the base is still the
        # one read (a leader may have raised it since, were the read an old one).
        transaction.check(term_path, version)
    return transaction.commit_async(), raised


def base_from(session: ZooKeeperSession, read: IAsyncResult, term_path: str) -> tuple[int, int | None]:
    """The term base and its version (None: the node does not exist, the base is 0)."""
    try:
        data, stat = session.wait(read, "read the term base")
    except NoNodeError:
        return 0, None
    try:
        return int(data.decode("ascii").strip()), stat.version
    except (UnicodeDecodeError, ValueError):
        raise StorageRejectedError(f"{term_path} holds {data[:40]!r}, not an integer: it is this "
                                   "election's term base; delete it or write a number") from None


def read_line(session: ZooKeeperSession, client: KazooClient, path: str,
              term_path: str) -> tuple[list[Contender], tuple[int, int | None]]:
    """The contenders under ``path``, lowest first, and the term base with its version; two reads
    in one round trip."""
    listing = client.get_children_async(path)
    base_read = client.get_async(term_path)
    try:
        names = session.wait(listing, "list the contenders")
    except NoNodeError:
        names = []
    return line_of(names), base_from(session, base_read, term_path)


def read_leader(session: ZooKeeperSession, client: KazooClient, path: str, term_path: str) -> LeaderRecord | None:
    """ZooKeeperBackend.read_leader: the lowest znode under ``path`` and its data, with the base."""
    for _ in range(_ROUNDS):
        listing = client.get_children_async(path, include_data=True)
        base_read = client.get_async(term_path)
        try:
            names, parent = session.wait(listing, "list the contenders")
        except NoNodeError:
            names, parent = [], None
        base, version = base_from(session, base_read, term_path)
        line = line_of(names)
        if not line:
            # Nobody contends. Somebody did if the path has had children or a base exists;
            # the last leader's own term went with its znode, so only the base is known.
            if version is None and (parent is None or parent.cversion == 0):
                return None
            return LeaderRecord(None, base, lease_state="available")
        try:
            data, _ = session.wait(client.get_async(f"{path}/{line[0].name}"), "read the leader's znode")
        except NoNodeError:
            continue  # it just left: look again
        return record(line[0], data, base)
    raise StorageUnavailableError(f"the contenders under {path} kept changing; try again")
