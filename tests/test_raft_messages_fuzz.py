"""Malformed frames (issue 13): whatever a peer or a stranger writes on one line, decoding it
raises ValueError (the transport drops such frames) and nothing else: no RecursionError, no
OverflowError, no TypeError that would kill the reader thread. And whatever decodes can be
encoded again and shown in a status reply.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from DistributedMutex.backends.raft.core import Role
from DistributedMutex.backends.raft.messages import MAX_TERM, Heartbeat, LeaderInfo, Message, decode, encode
from DistributedMutex.backends.raft.node import NodeStatus

KINDS = ["pre_vote", "pre_vote_reply", "vote", "vote_reply", "heartbeat", "heartbeat_reply", "timeout_now"]
FIELDS = ["src", "dst", "term", "granted", "transfer", "sent_at", "ok", "info", "epoch", "seq"]

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
           | st.integers(min_value=2**1000, max_value=2**1100).map(lambda n: n * (-1) ** (n % 2))
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
# Shaped like a message, so that the field checks (not only the "not a message" ones) are reached.
info_values = json_values | st.fixed_dictionaries({"instance_id": json_values, "host": json_values,
                                                   "pid": json_values})
VALID = {"src": "a", "dst": "b", "term": 3, "granted": True, "transfer": False, "sent_at": 1.5, "ok": True,
         "info": {"instance_id": "x", "host": "h", "pid": 1}, "epoch": 1, "seq": 1}
# A complete, valid record with one or two fields replaced by anything: the field checks are reached.
message_like = st.builds(
    lambda kind, changed: {"type": kind, **VALID, **changed},
    st.sampled_from(KINDS),
    st.dictionaries(st.sampled_from(FIELDS), json_values | info_values, min_size=1, max_size=2),
)
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(line: bytes | str) -> Message | None:
    try:
        message = decode(line)
    except ValueError:
        return None
    # Whatever decodes is a message we can send on and show.
    assert decode(encode(message)) == message
    assert 0 <= message.term <= MAX_TERM
    return message


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(line: bytes) -> None:
    decodes_or_refuses(line)


@FUZZ
@given(json_values)
def test_any_json_value(value: Any) -> None:
    decodes_or_refuses(json.dumps(value))


@FUZZ
@given(message_like)
def test_any_field_of_any_type(record: dict[str, Any]) -> None:
    message = decodes_or_refuses(json.dumps(record))
    if isinstance(message, Heartbeat):
        status = NodeStatus("b", Role.FOLLOWER, message.term, message.src, message.info, -math.inf, -math.inf)
        json.dumps(status.to_json(0.0)).encode()  # the status reply a client reads


HEARTBEAT = '{{"type":"heartbeat","src":"a","dst":"b","term":{term},"sent_at":{sent_at},"epoch":1,"seq":2}}'


@pytest.mark.parametrize("line", [
    "[" * 100_000, '{"a":' * 50_000, "[" * 1000 + "]" * 1000,  # nested beyond the parser's stack
    HEARTBEAT.format(term=1, sent_at="1" + "0" * 308),  # an integer a float cannot hold
    HEARTBEAT.format(term=1, sent_at="1" + "0" * 5000),  # beyond Python's int parsing limit
    HEARTBEAT.format(term=1, sent_at="Infinity"), HEARTBEAT.format(term=1, sent_at="NaN"),
    HEARTBEAT.format(term=1, sent_at="1e400"),
    HEARTBEAT.format(term=MAX_TERM + 1, sent_at=1), HEARTBEAT.format(term=-1, sent_at=1),
    HEARTBEAT.format(term="true", sent_at=1), HEARTBEAT.format(term=1.0, sent_at=1),
    HEARTBEAT.format(term=1, sent_at=1)[:-1] + ',"info":{"instance_id":"x","host":"h","pid":1e999}}',
    HEARTBEAT.format(term=1, sent_at=1)[:-1] + ',"info":{"instance_id":"x","host":"h","pid":' + "9" * 30 + "}}",
    HEARTBEAT.format(term=1, sent_at=1)[:-1] + ',"info":[1,2]}',
    HEARTBEAT.format(term=1, sent_at=1).replace('"seq":2', '"seq":-1'),
    HEARTBEAT.format(term=1, sent_at=1).replace('"epoch":1', '"epoch":1e3'),
    HEARTBEAT.format(term=1, sent_at=1).replace('"epoch":1', '"epoch":' + str(2**53)),
    HEARTBEAT.format(term=1, sent_at=1).replace(',"seq":2', ''),
], ids=["deep-list", "deep-object", "1000-deep", "sent_at-1e308-int", "sent_at-5000-digits", "inf", "nan",
        "1e400", "term-above-ceiling", "term-negative", "term-bool", "term-float", "pid-inf", "pid-huge",
        "info-list", "seq-negative", "epoch-float", "epoch-above-2^53", "seq-missing"])
def test_hostile_frames_are_refused_with_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        decode(line)


def test_the_highest_term_still_decodes_and_shows() -> None:
    message = decode(HEARTBEAT.format(term=MAX_TERM, sent_at=2**53))
    assert isinstance(message, Heartbeat) and message.term == MAX_TERM and message.sent_at == float(2**53)
    status = NodeStatus("b", Role.FOLLOWER, MAX_TERM, "a", LeaderInfo("x" * 1000, "\ud800", 2**63 - 1),
                        -math.inf, -math.inf)
    assert json.loads(json.dumps(status.to_json(0.0)))["term"] == MAX_TERM
