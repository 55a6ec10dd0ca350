"""The election's znodes: their names (``<owner>-n_<sequence>``) and the identity in their data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from DistributedMutex.backend import Identity, LeaderRecord, utc_now

# Our znodes: "<owner>-n_" plus the 10 digits ZooKeeper appends. The owner part lets a backend find
# a znode whose create it sent but whose answer it never got (the connection dropped in between).
_MEMBER = re.compile(r"^(?P<owner>[0-9a-f]{32})-n_(?P<seq>\d{10})$")


@dataclass(frozen=True)
class Contender:
    name: str
    owner: str
    seq: int


def parse(name: str) -> Contender:
    match = _MEMBER.match(name)
    if match is None:
        raise ValueError(name)
    return Contender(name, match["owner"], int(match["seq"]))


def line_of(names: list[str]) -> list[Contender]:
    """Our kind of znodes, lowest sequence number first (other children are not contenders)."""
    return sorted((parse(n) for n in names if _MEMBER.match(n)), key=lambda c: c.seq)


def record(leader: Contender, data: bytes, base: int) -> LeaderRecord:
    """The leader as read from its znode's data; the term is the base plus its sequence + 1."""
    try:
        fields = json.loads(data.decode("utf-8"))
        if not isinstance(fields, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError):
        fields = {}
    acquired_at = None
    if isinstance(fields.get("acquired_at"), str):
        try:
            acquired_at = datetime.fromisoformat(fields["acquired_at"])
        except ValueError:
            pass
    pid = fields.get("pid")
    return LeaderRecord(
        instance_id=str(fields.get("instance_id") or leader.name), term=base + leader.seq + 1,
        host=fields.get("host") if isinstance(fields.get("host"), str) else None,
        pid=pid if isinstance(pid, int) else None, acquired_at=acquired_at, lease_state="leased",
    )


def encode(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def leader_data(identity: Identity) -> bytes:
    """A leader's znode data: who, and since when (for read_leader)."""
    return encode({"instance_id": identity.instance_id, "host": identity.host, "pid": identity.pid,
                   "acquired_at": utc_now().isoformat()})
