"""The routine messages' fast path (messages.py): heartbeats and their replies are encoded and
decoded without the general JSON path, and must give exactly what it gives, for every message and
for every line, hostile ones included (a line the fast path does not take goes the JSON path)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from DistributedMutex.backends.raft import messages
from DistributedMutex.backends.raft.messages import (
    MAX_COUNTER,
    Heartbeat,
    HeartbeatReply,
    LeaderInfo,
    Message,
    decode,
    encode,
)

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
names = st.text(max_size=12) | st.sampled_from(["node-1", "node-2", "a", "", 'quo"te', "back\\slash", "é"])
counters = st.integers(min_value=0, max_value=MAX_COUNTER) | st.sampled_from([0, 1, MAX_COUNTER])
times = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1e16, 5e-324, 12345.6789])
infos = st.none() | st.builds(LeaderInfo, names, names, st.integers(min_value=0, max_value=2**63 - 1))
heartbeats = st.builds(Heartbeat, names, names, counters, times, infos, epoch=counters, seq=counters)
replies = st.builds(HeartbeatReply, names, names, counters, times, st.booleans(), epoch=counters, seq=counters)


def json_path(line: bytes) -> str:
    """What the JSON path gives, as a string that tells everything apart (== on a message skips
    epoch and seq, and takes -0.0 for 0.0)."""
    try:
        return repr(messages._decode_json(line))
    except ValueError:
        return "refused"


def fast_path(line: bytes) -> str:
    try:
        return repr(decode(line))
    except ValueError:
        return "refused"


@FUZZ
@given(heartbeats | replies)
def test_a_routine_message_is_written_as_the_json_path_writes_it_and_read_back_whole(message: Message) -> None:
    line = encode(message)
    assert line == messages._encode_json(message)
    assert repr(decode(line)) == repr(messages._decode_json(line)) == repr(message)


@FUZZ
@given(heartbeats | replies, st.data())
def test_a_changed_line_is_read_as_the_json_path_reads_it(message: Message, data: st.DataObject) -> None:
    line = encode(message)
    # Cut, doubled, spaced, escaped, numbers pushed out of range: whatever the JSON path says goes.
    at = data.draw(st.integers(min_value=0, max_value=len(line)))
    insert = data.draw(st.sampled_from([b"", b" ", b"9", b"99999999999999999999", b"e999", b"-", b".5", b"\\u0041",
                                        b'"', b",", b"}", b'"ok":true,', b'"info":null,', b"\n", b"\xc3\xa9"]))
    cut = data.draw(st.integers(min_value=0, max_value=3))
    changed = line[:at] + insert + line[at + cut:]
    assert fast_path(changed) == json_path(changed)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_are_read_as_the_json_path_reads_them(line: bytes) -> None:
    assert fast_path(line) == json_path(line)


def test_numbers_at_their_limits() -> None:
    base = b'{"type":"heartbeat_reply","src":"a","dst":"b","term":%s,"sent_at":%s,"ok":true,"epoch":1,"seq":%s}\n'
    for term, sent_at, seq in [(b"9007199254740991", b"1.5", b"1"), (b"9007199254740992", b"1.5", b"1"),
                               (b"1", b"1e400", b"1"), (b"1", b"-1e400", b"1"), (b"1", b"12345", b"1"),
                               (b"1", b"1.5", b"9007199254740992"), (b"01", b"1.5", b"1"), (b"1", b"1.5e-400", b"1")]:
        line = base % (term, sent_at, seq)
        assert fast_path(line) == json_path(line), line
    reply = decode(base % (b"3", b"1e16", b"4"))
    assert repr(reply) == json_path(base % (b"3", b"1e16", b"4"))
    assert isinstance(reply, HeartbeatReply) and reply.sent_at == 1e16 and math.isfinite(reply.sent_at)


def test_the_fast_path_takes_what_our_peers_send() -> None:
    """The point of it: our own heartbeats and replies never go the JSON path."""
    heartbeat = Heartbeat("node-1", "node-2", 7, 1234.5, LeaderInfo("web-1", "host-a", 42), epoch=3, seq=9)
    reply = HeartbeatReply("node-2", "node-1", 7, 1234.5, True, epoch=5, seq=11)
    for message in (heartbeat, reply):
        assert repr(messages._decode_routine(encode(message))) == repr(message)


def test_fields_of_another_type_go_the_json_path() -> None:
    """The parts are cached by value, and True == 1 == 1.0: a field of another type than the core
    makes must not pick up (or leave behind) another message's parts."""
    odd = [HeartbeatReply("a", "b", 3, 1.5, 1, epoch=1, seq=1),  # type: ignore[arg-type]
           HeartbeatReply("a", "b", 3.0, 1.5, True, epoch=1, seq=1),  # type: ignore[arg-type]
           HeartbeatReply("a", "b", 3, 1.5, True, epoch=True, seq=1),  # type: ignore[arg-type]
           Heartbeat("a", "b", 3, 2, None, epoch=1, seq=1),  # type: ignore[arg-type]
           Heartbeat("a", "b", 3, 10**400, None, epoch=1, seq=1)]  # type: ignore[arg-type]
    for message in odd:
        assert encode(message) == messages._encode_json(message)
    assert b'"ok":true' in encode(HeartbeatReply("a", "b", 3, 1.5, True, epoch=1, seq=1))
