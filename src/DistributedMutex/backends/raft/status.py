"""A peer's status: what it knows as of the last thing its driver did, swapped in whole."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from DistributedMutex.backends.raft.core import Role
from DistributedMutex.backends.raft.messages import LeaderInfo

log = logging.getLogger("DistributedMutex.backends.raft.node")  # the lines users know, by their old name


@dataclass(frozen=True)
class NodeStatus:
    """What a peer knows, as of the last thing its driver did."""

    node_id: str
    role: Role
    term: int
    leader: str | None  # the leader's Raft id
    leader_info: LeaderInfo | None
    lease_sent_at: float  # leaders: the newest heartbeat round a majority acked (else -inf)
    lease_until: float  # leaders: until when nobody else can be elected (this clock; else -inf)

    def leads_with_lease(self, now: float) -> bool:
        return self.role is Role.LEADER and now < self.lease_until

    def lease_state(self, now: float) -> str:
        """"leased" while a leader is known to hold the lease, "available" otherwise."""
        if self.role is Role.LEADER:
            return "leased" if self.leads_with_lease(now) else "available"
        return "leased" if self.leader is not None else "available"

    def to_json(self, now: float) -> dict[str, Any]:
        info = self.leader_info
        return {"node": self.node_id, "role": self.role.value, "term": self.term, "leader": self.leader,
                "leader_info": None if info is None else {"instance_id": info.instance_id, "host": info.host,
                                                          "pid": info.pid},
                "lease_state": self.lease_state(now)}

    def changed_from(self, other: NodeStatus, now: float) -> bool:
        """Who leads, in which term, or our lease's validity changed."""
        return ((self.role, self.term, self.leader) != (other.role, other.term, other.leader)
                or self.leads_with_lease(now) != other.leads_with_lease(now))

    def worth_waking_for(self, other: NodeStatus, now: float) -> bool:
        """A change the election loop can act on (``other`` the status before it). Not an election
        in flight (its outcome wakes the loop), nor being elected before a majority acked a round
        (the loop could only be told "not yet"; the lease, a round trip later, wakes it): in a
        hand-over the loop's call would only compete for the CPU with the election itself."""
        if not self.changed_from(other, now):
            return False
        if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and other.role is not Role.LEADER:
            return False
        return not (self.role is Role.LEADER and other.role is not Role.LEADER and not self.leads_with_lease(now))


def log_change(node_id: str, old: NodeStatus, new: NodeStatus) -> None:
    """One log line for a change of role or leader."""
    if new.role is Role.LEADER and old.role is not Role.LEADER:
        log.info("raft: elected leader of term %d", new.term)
    elif old.role is Role.LEADER and new.role is not Role.LEADER:
        log.info("raft: no longer leader (now %s in term %d)", new.role.value, new.term)
    elif new.leader is not None and (new.leader, new.term) != (old.leader, old.term) and new.leader != node_id:
        log.info("raft: following %s in term %d", new.leader, new.term)
    elif new.role is not old.role:
        log.debug("raft: %s in term %d", new.role.value, new.term)
