"""The messages Raft peers exchange, and their wire form (one JSON object per line).

Every message is one-way: a reply is a message of its own, sent back over the replier's own
connection. Nothing here touches a socket; the runtime (node.py) and the simulation move them.

    PreVote(term=T+1)      "would you vote for me in T+1?" (changes nobody's state)
    Vote(term=T+1)         the real request; ``transfer`` when the leader handed over (TimeoutNow)
    Heartbeat(sent_at)     the leader's AppendEntries with no entries; carries who the leader is
    HeartbeatReply         echoes ``sent_at``: the leader's lease runs from the echoed send time
    TimeoutNow             the leader steps aside: campaign at once (leadership transfer)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """Who a leader is, for anyone to read: carried by every heartbeat."""

    instance_id: str
    host: str
    pid: int


@dataclass(frozen=True, slots=True)
class PreVote:
    src: str
    dst: str
    term: int  # the term the sender would campaign in: its own term + 1


@dataclass(frozen=True, slots=True)
class PreVoteReply:
    src: str
    dst: str
    term: int  # the proposed term if granted, else the replier's own term
    granted: bool


@dataclass(frozen=True, slots=True)
class Vote:
    src: str
    dst: str
    term: int
    transfer: bool = False  # campaigning because the leader sent TimeoutNow: not bound by stickiness


@dataclass(frozen=True, slots=True)
class VoteReply:
    src: str
    dst: str
    term: int
    granted: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    src: str
    dst: str
    term: int
    sent_at: float  # on the leader's monotonic clock; only the leader ever compares it
    info: LeaderInfo | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    src: str
    dst: str
    term: int
    sent_at: float  # the heartbeat's, echoed
    ok: bool


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    src: str
    dst: str
    term: int


Message = PreVote | PreVoteReply | Vote | VoteReply | Heartbeat | HeartbeatReply | TimeoutNow

_KINDS: dict[str, type] = {
    "pre_vote": PreVote, "pre_vote_reply": PreVoteReply, "vote": Vote, "vote_reply": VoteReply,
    "heartbeat": Heartbeat, "heartbeat_reply": HeartbeatReply, "timeout_now": TimeoutNow,
}
_NAMES: dict[type, str] = {cls: name for name, cls in _KINDS.items()}
# Field name -> the type its JSON value must have; checked on decode, since peers are remote.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "src": (str,), "dst": (str,), "term": (int,), "granted": (bool,), "transfer": (bool,),
    "sent_at": (int, float), "ok": (bool,),
}


def encode(message: Message) -> bytes:
    """One line of JSON, newline included."""
    record: dict[str, Any] = {"type": _NAMES[type(message)]}
    for field in fields(message):
        name = field.name
        value = getattr(message, name)
        if isinstance(value, LeaderInfo):
            value = {"instance_id": value.instance_id, "host": value.host, "pid": value.pid}
        record[name] = value
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | str) -> Message:
    """The message in one line; ValueError if it is not one (a peer must not crash us)."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = record.pop("type", None)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError("unknown message type")
    given: dict[str, Any] = {}
    for field in fields(cls):
        name = field.name
        if name not in record:
            if name in ("transfer", "info"):
                continue  # optional, with defaults
            raise ValueError(f"missing field {name!r}")
        given[name] = _checked(name, record[name])
    return cls(**given)  # type: ignore[no-any-return]


def _checked(name: str, value: object) -> object:
    if name == "info":
        return None if value is None else _leader_info(value)
    expected = _FIELD_TYPES[name]
    # bool is an int in Python: a term of true is no term.
    if not isinstance(value, expected) or (bool not in expected and isinstance(value, bool)):
        raise ValueError(f"field {name!r} has the wrong type")
    if name == "term" and isinstance(value, int) and value < 0:
        raise ValueError("negative term")
    if name == "sent_at" and isinstance(value, (int, float)) and not math.isfinite(value):
        raise ValueError("sent_at is not a finite number")
    return value


def _leader_info(value: Any) -> LeaderInfo:
    if (not isinstance(value, dict) or not isinstance(value.get("instance_id"), str)
            or not isinstance(value.get("host"), str) or not isinstance(value.get("pid"), int)):
        raise ValueError("malformed leader info")
    return LeaderInfo(value["instance_id"], value["host"], value["pid"])
