"""What the lease holder writes into the blob's metadata, and the LeaderRecord read back from it.

Azure leases carry neither an epoch nor the holder's identity, so right after each acquisition the
new holder writes both, under its lease (nobody else can write it then):

    term         integer, incremented by every new leadership: the fencing token
    leader_id    the instance id; leader_host, leader_pid: where it runs
    acquired_at  ISO-8601 UTC
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from DistributedMutex.backend import LeaderRecord

# Metadata keys (fixed: other tools read them).
TERM, LEADER_ID, LEADER_HOST, LEADER_PID, ACQUIRED_AT = (
    "term", "leader_id", "leader_host", "leader_pid", "acquired_at",
)


def term_of(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def leader_record(metadata: Mapping[str, str] | None, lease_state: str | None) -> LeaderRecord:
    metadata = metadata or {}
    acquired_at = None
    if metadata.get(ACQUIRED_AT):
        try:
            acquired_at = datetime.fromisoformat(metadata[ACQUIRED_AT])
        except ValueError:
            acquired_at = None
    pid = metadata.get(LEADER_PID)
    return LeaderRecord(
        instance_id=metadata.get(LEADER_ID),
        term=term_of(metadata.get(TERM)),
        host=metadata.get(LEADER_HOST),
        pid=int(pid) if pid and pid.isdigit() else None,
        acquired_at=acquired_at,
        lease_state=lease_state,
    )
