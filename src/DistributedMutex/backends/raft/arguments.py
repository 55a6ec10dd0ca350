"""RaftBackend's arguments, checked, and the election timing its election timeout implies.

Every check takes ``name``, the name of the argument in the caller's terms: the library passes
its own (``peers``, ``node_id``...), a program that reads them from settings passes its settings'
names (the demo: RAFT_PEERS, RAFT_ID...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from DistributedMutex.addresses import host_port
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

# Seconds, (min, max): the documented default, as in the Raft paper's own measurements.
DEFAULT_ELECTION_TIMEOUT = (1.0, 2.0)
# The range RaftBackend accepts. Below 0.2 s a Python thread's scheduling delay is no longer small
# against the lease (the minimum); above 10 minutes a crashed leader is not replaced in any useful time.
ELECTION_TIMEOUT_RANGE = (0.2, 600.0)
PEER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PEER_ID_RULE = "1-64 letters, digits or . _ -, starting with a letter or digit"


def raft_timing(election_timeout: tuple[float, float], heartbeat_interval: float | None = None) -> ElectionTiming:
    """The leader's lease is the minimum election timeout from its newest heartbeat round a
    majority answered; renewing reads it from the local node (no I/O).

    Renewed as seldom as that lease allows, all the same: each renewal wakes the election loop,
    and at rest those wake-ups were a sixth of a leader's CPU. A renewal finds the lease of a round
    sent up to one heartbeat interval ``h`` and a round trip (lease / 20 allowed) before it; that
    renewal and one more must come before the loop's deadline (ElectionTiming's own rule):

        h + lease / 20 + 2 * renew_interval <= lease - safety_margin

    so 0.3 s with the default 1 s lease and 0.1 s heartbeats; never more often than every lease / 5
    (0.2 s), whatever the heartbeat (see max_heartbeat_interval)."""
    lease = election_timeout[0]
    # At least 0.1 s of margin: below that, a Python thread's scheduling delay is not negligible.
    margin = max(lease / 4, 0.1)
    heartbeat = lease / 10 if heartbeat_interval is None else heartbeat_interval  # core.default_heartbeat_interval
    renew = max(lease / 5, (lease - margin - heartbeat - lease / 20) / 2)
    return ElectionTiming(lease_duration=lease, renew_interval=renew, acquire_interval=lease / 2, safety_margin=margin)


def max_heartbeat_interval(election_timeout: tuple[float, float]) -> float:
    """The longest heartbeat interval that keeps the leader's lease fresh under raft_timing.

    A renewal reads the lease of the newest heartbeat round a majority acked: sent up to one
    heartbeat interval ``h`` (plus a round trip) before the renewal. The loop acts until that
    round's send time + lease - margin, and renews again renew_interval later (lease / 5 later
    with the longest ``h``: raft_timing's floor); for that renewal, and one retry after it, to come before the
    deadline (ElectionTiming's own rule: two renew intervals within the acting window), the
    round's age must fit too:

        h + 2 * lease / 5 <= lease - safety_margin

    0.35 s with the default 1 s lease (0.35 x the minimum election timeout from 0.4 s on; 0.1 x at
    0.2 s, where the margin is 0.1 s: the default, a tenth, always fits). Longer, and a renewal
    finds the lease already older than the loop can act on: 0.9 s led to a step-down at the
    deadline about every second."""
    lease = election_timeout[0]
    return lease - max(lease / 4, 0.1) - 2 * lease / 5


def check_heartbeat_interval(name: str, value: object, election_timeout: tuple[float, float]) -> float | None:
    """Seconds between a leader's heartbeat rounds; None: a tenth of the minimum election timeout."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(name, f"must be a number of seconds, got {value!r}")
    limit = max_heartbeat_interval(election_timeout)
    # Float arithmetic on the limit (0.2 - 0.1 - 0.08) must not refuse the default exactly at it.
    if not 0 < value <= limit + 1e-9:  # also refuses nan
        raise ConfigurationError(name, f"must be above 0 and at most {limit:g} s with a {election_timeout[0]:g} s "
                                       f"minimum election timeout (longer, and the leader's lease goes stale "
                                       f"between heartbeats), got {value:g}")
    return float(value)


def check_peers(name: str, peers: object) -> dict[str, tuple[str, int]]:
    """``{id: (host, port)}`` (or ``{id: "host:port"}``) for the whole cluster, this peer included."""
    if not isinstance(peers, Mapping) or not peers:
        raise ConfigurationError(name, "must list the whole cluster as {id: (host, port), ...}, got "
                                       + (repr(peers) if isinstance(peers, Mapping) else type(peers).__name__))
    checked: dict[str, tuple[str, int]] = {}
    for peer_id, address in peers.items():
        if not isinstance(peer_id, str) or not PEER_ID.match(peer_id):
            raise ConfigurationError(name, f"{peer_id!r} is not a peer id ({PEER_ID_RULE})")
        if isinstance(address, str):
            entry = address
        elif (isinstance(address, (tuple, list)) and len(address) == 2 and isinstance(address[0], str)
              and isinstance(address[1], int) and not isinstance(address[1], bool)):
            host = address[0]
            entry = f"[{host}]:{address[1]}" if ":" in host and not host.startswith("[") else f"{host}:{address[1]}"
        else:
            raise ConfigurationError(name, f"the address of {peer_id!r} must be (host, port), got {address!r}")
        host, port = host_port(f"{name}[{peer_id!r}]", entry, default_port=None)
        if (host, port) in checked.values():
            raise ConfigurationError(name, f"gives {host}:{port} to two peers")
        checked[peer_id] = (host, port)
    return checked


def check_node_id(name: str, node_id: object, peers: Mapping[str, object], peers_name: str) -> str:
    if not isinstance(node_id, str) or node_id not in peers:
        raise ConfigurationError(name, f"{node_id!r} is not one of the ids in {peers_name} ({', '.join(peers)})")
    return node_id


def check_election_timeout(name: str, value: object) -> tuple[float, float]:
    """``(min, max)`` seconds: each peer waits a random time in between before it campaigns."""
    low, high = ELECTION_TIMEOUT_RANGE
    rule = f"must be (min, max) seconds with {low:g} <= min < max <= {high:g}"
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ConfigurationError(name, f"{rule}, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not low <= lo < hi <= high:  # also refuses nan
        # A range, not one number: peers that time out at different moments rarely split the vote.
        raise ConfigurationError(name, f"{rule} (a range, so that candidates rarely split the vote), "
                                       f"got ({lo:g}, {hi:g})")
    return lo, hi


def check_data_dir(name: str, value: object) -> Path:
    if not isinstance(value, (str, PathLike)) or not str(value).strip():
        raise ConfigurationError(name, f"must be a directory path (str or Path) for this peer's term and vote, "
                                       f"got {value!r}")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigurationError(name, f"{str(path)!r} exists and is not a directory")
    return path
