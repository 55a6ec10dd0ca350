"""The messages Raft peers exchange, and their wire form (one JSON object per line).

Every message is one-way: a reply is a message of its own, sent back over the replier's own
connection. Nothing here touches a socket; the runtime (node.py) and the simulation move them.

    PreVote(term=T+1)      "would you vote for me in T+1?" (changes nobody's state)
    Vote(term=T+1)         the real request; ``transfer`` when the leader handed over (TimeoutNow)
    Heartbeat(sent_at)     the leader's AppendEntries with no entries; carries who the leader is
    HeartbeatReply         echoes ``sent_at``: the leader's lease runs from the echoed send time
    TimeoutNow             the leader steps aside: campaign at once (leadership transfer)

Every message also carries ``epoch`` (its sender's start, strictly higher at each start) and
``seq`` (a counter over everything that start sent): a receiver takes from each sender only
messages newer than the newest it took, so a captured message sent again, or one overtaken by a
newer one, has no effect (guard.SenderGuard.fresh). Peers of this version only: both are required.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from DistributedMutex.backend import MAX_TERM as MAX_TERM  # re-exported: the Raft modules take it from here

# MAX_TERM (fencing.py: 2^53 - 1) is the highest term a message or a state file may carry. No
# honest cluster gets near it (an election a millisecond for 285 years), every store can hold it,
# and it is exact as a JSON number in every parser: whoever reads our status sees the true term.
MAX_COUNTER = 2**53 - 1  # a message's epoch and seq (guard.SenderGuard.fresh): exact in JSON too


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
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class PreVoteReply:
    src: str
    dst: str
    term: int  # the proposed term if granted, else the replier's own term
    granted: bool
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Vote:
    src: str
    dst: str
    term: int
    transfer: bool = False  # campaigning because the leader sent TimeoutNow: not bound by stickiness
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class VoteReply:
    src: str
    dst: str
    term: int
    granted: bool
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    src: str
    dst: str
    term: int
    sent_at: float  # on the leader's monotonic clock; only the leader ever compares it
    info: LeaderInfo | None = None
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    src: str
    dst: str
    term: int
    sent_at: float  # the heartbeat's, echoed
    ok: bool
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    src: str
    dst: str
    term: int
    epoch: int = field(default=0, compare=False)  # stamped by the sender's core: see guard.SenderGuard.fresh
    seq: int = field(default=0, compare=False)


Message = PreVote | PreVoteReply | Vote | VoteReply | Heartbeat | HeartbeatReply | TimeoutNow

_KINDS: dict[str, type[Message]] = {
    "pre_vote": PreVote, "pre_vote_reply": PreVoteReply, "vote": Vote, "vote_reply": VoteReply,
    "heartbeat": Heartbeat, "heartbeat_reply": HeartbeatReply, "timeout_now": TimeoutNow,
}
_NAMES: dict[type[Message], str] = {cls: name for name, cls in _KINDS.items()}
# json.dumps with separators builds a new encoder at every call: made once (two per heartbeat round).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(message: Message) -> bytes:
    """One line of JSON, newline included."""
    if isinstance(message, (Heartbeat, HeartbeatReply)) and _plain(message):
        return _encode_routine(message)
    return _encode_json(message)


def _encode_json(message: Message) -> bytes:
    record: dict[str, Any] = {"type": _NAMES[type(message)]}
    for name in message.__slots__:
        value = getattr(message, name)
        if isinstance(value, LeaderInfo):
            value = {"instance_id": value.instance_id, "host": value.host, "pid": value.pid}
        record[name] = value
    return _ENCODER.encode(record).encode() + b"\n"


def decode(line: bytes | str) -> Message:
    """The message in one line; ValueError if it is not one, and never another exception: the
    transport drops ValueError frames, and anything else would kill its reader thread."""
    if isinstance(line, bytes):
        routine = _decode_routine(line)
        if routine is not None:
            return routine
    return _decode_json(line)


def _decode_json(line: bytes | str) -> Message:
    try:
        return _decode(line)
    except ValueError:
        raise
    except (RecursionError, OverflowError, TypeError, KeyError, AttributeError) as exc:
        # RecursionError: JSON nested deeper than the parser's stack (short lines can do it);
        # the rest only if a check below missed a shape: still a malformed frame, not a crash.
        raise ValueError(f"malformed message ({type(exc).__name__})") from None


def _decode(line: bytes | str) -> Message:
    # Bytes decoded here, not by json.loads (which first guesses among UTF-8, -16 and -32, at every
    # message): a peer writes ASCII, and anything that is not UTF-8 is malformed (UnicodeDecodeError
    # is a ValueError).
    record = json.loads(line.decode() if isinstance(line, bytes) else line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = record.pop("type", None)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError("unknown message type")
    fields: dict[str, Any] = {}
    for name in cls.__slots__:
        if name not in record:
            if name in ("transfer", "info"):
                continue  # optional, with defaults
            raise ValueError(f"missing field {name!r}")
        fields[name] = _CHECKS[name](name, record[name])
    return cls(**fields)


# Each field's check, by name: the value as the message holds it, or ValueError. (bool is an int
# in Python: a term of true is no term.)

_Check = Callable[[str, object], object]


def _of_type(kind: type) -> _Check:
    def check(name: str, value: object) -> object:
        if not isinstance(value, kind):
            raise ValueError(f"field {name!r} has the wrong type")
        return value
    return check


def _whole(ceiling: int) -> _Check:
    """A whole number from 0 to ``ceiling`` (a term, an epoch, a sequence number)."""
    def check(name: str, value: object) -> object:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"field {name!r} has the wrong type")
        if not 0 <= value <= ceiling:
            raise ValueError(f"{name} out of range 0..{ceiling}")
        return value
    return check


def _time(name: str, value: object) -> object:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"field {name!r} has the wrong type")
    # An integer too big for a float (1e308 written out) would raise OverflowError later.
    if isinstance(value, int) and abs(value) > 2**53:
        raise ValueError("sent_at is out of range")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("sent_at is not a finite number")
    return value


def _info(name: str, value: object) -> object:
    return None if value is None else _leader_info(value)


_CHECKS: dict[str, _Check] = {
    "src": _of_type(str), "dst": _of_type(str), "term": _whole(MAX_TERM), "granted": _of_type(bool),
    "transfer": _of_type(bool), "sent_at": _time, "ok": _of_type(bool), "epoch": _whole(MAX_COUNTER),
    "seq": _whole(MAX_COUNTER), "info": _info,
}


def _leader_info(value: object) -> LeaderInfo:
    if (not isinstance(value, dict) or not isinstance(value.get("instance_id"), str)
            or not isinstance(value.get("host"), str) or not isinstance(value.get("pid"), int)
            or isinstance(value.get("pid"), bool) or not 0 <= value["pid"] < 2**63):
        raise ValueError("malformed leader info")
    return LeaderInfo(value["instance_id"], value["host"], value["pid"])


# -- the routine messages' fast path ------------------------------------------------------------
#
# Heartbeats and their replies are nearly every message a cluster at rest exchanges (ten rounds a
# second), and most of a leader's CPU at rest is spent handling them one at a time. So they have a
# shorter path both ways, giving exactly what the JSON path gives (tests/test_raft_messages_fast.py
# checks it): encode fills in a line whose constant parts are made once per link and term;
# decode matches our own encoder's exact form with one regular expression and checks the same
# ranges. Anything else (another message, other spacing, escapes, non-ASCII, an out-of-range
# number) goes the JSON path, which says what is wrong with it.

_PARTS: dict[tuple[Any, ...], tuple[bytes, bytes] | None] = {}  # (kind, src, dst, term, info or ok) -> parts
_MAX_PARTS = 4096  # a few per link and term; cleared whole past it


def _plain(message: Heartbeat | HeartbeatReply) -> bool:
    """Fields of exactly the types the core makes (the cache's keys cannot tell True from 1, nor
    1 from 1.0; %r of a float subclass is its own), and a finite send time: else the JSON path."""
    return (type(message.sent_at) is float and math.isfinite(message.sent_at) and type(message.term) is int
            and type(message.epoch) is int and type(message.seq) is int
            and (type(message.ok) is bool if isinstance(message, HeartbeatReply) else True))


def _encode_routine(message: Heartbeat | HeartbeatReply) -> bytes:
    if isinstance(message, Heartbeat):
        key: tuple[Any, ...] = (Heartbeat, message.src, message.dst, message.term, message.info)
    else:
        key = (HeartbeatReply, message.src, message.dst, message.term, message.ok)
    try:
        parts = _PARTS[key]
    except KeyError:
        parts = _PARTS[key] = _routine_parts(key)
    if parts is None:
        return _encode_json(message)
    return b"%s%r%s%d,\"seq\":%d}\n" % (parts[0], message.sent_at, parts[1], message.epoch, message.seq)


def _routine_parts(key: tuple[Any, ...]) -> tuple[bytes, bytes] | None:
    """The JSON path's own line cut where the changing numbers go; None if it cannot be."""
    if len(_PARTS) >= _MAX_PARTS:
        _PARTS.clear()
    kind, src, dst, term, last = key
    line = _encode_json(kind(src, dst, term, 0.5, last, epoch=1, seq=2))
    head, found, rest = line.partition(b',"sent_at":0.5,')
    middle, tail = rest[:-len(b'"epoch":1,"seq":2}\n')], rest[-len(b'"epoch":1,"seq":2}\n'):]
    if not found or tail != b'"epoch":1,"seq":2}\n' or line.count(b'"sent_at":') != 1:
        return None
    return head + b',"sent_at":', b"," + middle + b'"epoch":'


_STR = rb'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"'  # printable ASCII but for " and \: nothing to unescape
_INT = rb"(0|[1-9][0-9]{0,18})"
_FLOAT = rb"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))"  # as repr() writes one
_ROUTINE_LINE = re.compile(
    rb'\{"type":"heartbeat(_reply)?","src":' + _STR + rb',"dst":' + _STR + rb',"term":' + _INT
    + rb',"sent_at":' + _FLOAT + rb'(?:,"ok":(true|false)|,"info":(?:null|\{"instance_id":' + _STR
    + rb',"host":' + _STR + rb',"pid":' + _INT + rb"\}))" + rb',"epoch":' + _INT + rb',"seq":' + _INT + rb"\}\n?")


def _decode_routine(line: bytes) -> Message | None:
    """A heartbeat or reply in our encoder's exact form, within range; None: take the JSON path."""
    match = _ROUTINE_LINE.fullmatch(line)
    if match is None:
        return None
    reply, src, dst, term, sent_at, ok, instance_id, host, pid, epoch, seq = match.groups()
    numbers = int(term), int(epoch), int(seq)
    value = float(sent_at)
    if numbers[0] > MAX_TERM or max(numbers[1:]) > MAX_COUNTER or not math.isfinite(value):
        return None
    if reply is not None:
        if ok is None:
            return None  # a reply with "info" instead of "ok": the JSON path says what is wrong
        return HeartbeatReply(src.decode(), dst.decode(), numbers[0], value, ok == b"true",
                              epoch=numbers[1], seq=numbers[2])
    if ok is not None:
        return None  # a heartbeat with "ok" instead of "info": left to the JSON path
    info = None
    if instance_id is not None:
        if int(pid) >= 2**63:
            return None
        info = LeaderInfo(instance_id.decode(), host.decode(), int(pid))
    return Heartbeat(src.decode(), dst.decode(), numbers[0], value, info, epoch=numbers[1], seq=numbers[2])

