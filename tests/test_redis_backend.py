"""RedisLeaseBackend against real servers, beyond the contract (test_contract_backends.py):

    terms       from the server's clock in milliseconds, one more per change within a millisecond
    reset       a server that forgets everything (restart without persistence, FLUSHALL): a new
                holder's term is still above the old one, and the fenced store refuses the old
                leader's late write; a contender that saw the old term waits out the old holder
    prompt      a release wakes a subscribed contender at once; a crashed holder's key expiry too
    outages     a dead server is StorageUnavailableError within the call timeout; CLIENT KILL of
                the holder's connection costs it nothing; the subscriber comes back after a restart
    refusals    a wrong password, our keys holding another type: StorageRejectedError, one line,
                no password
    terms       advance_term to the highest term there is, exactly

The machine's server (a key prefix per test) where that is enough; a redis-server of the test's
own for restarts, FLUSHALL and CLIENT KILL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from DistributedMutex.backend import MAX_TERM, Held, Identity, Lease
from DistributedMutex.backends.redis import RedisLeaseBackend
from DistributedMutex.backends.redis.failures import NEEDED
from DistributedMutex.errors import LeaseLostError, StaleTermError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.fencing import Fence
from harness.redis_server import RedisServer, new_prefix
from harness.services import free_port

A, B, C = Identity("a", "host-a", 1), Identity("b", "host-b", 2), Identity("c", "host-c", 3)


@pytest.fixture
def backends() -> Iterator[list[RedisLeaseBackend]]:
    made: list[RedisLeaseBackend] = []
    yield made
    for backend in made:
        backend.close()


def lease_of(result: Lease | Held) -> Lease:
    assert isinstance(result, Lease), f"expected the lease, got {result!r}"
    return result


def server_millis(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        seconds, micros = client.time()
    finally:
        client.close()
    return seconds * 1000 + micros // 1000


def test_terms_follow_the_servers_clock_in_milliseconds_and_grow_by_one_within_one(
        redis_url: str, redis_prefix: str, backends: list[RedisLeaseBackend]) -> None:
    backend = RedisLeaseBackend(redis_url, redis_prefix)
    backends.append(backend)
    before = server_millis(redis_url)
    lease = lease_of(backend.acquire(A, time.monotonic()))
    assert before <= lease.term <= server_millis(redis_url)
    terms = [lease.term]
    for _ in range(5):  # faster than one per millisecond, at times: the counter goes on by one then
        backend.release(lease)
        lease = lease_of(backend.acquire(A, time.monotonic()))
        terms.append(lease.term)
    assert terms == sorted(set(terms)), terms


def test_a_server_reset_mid_run_and_the_fenced_store_refuses_the_old_leaders_late_write(
        redis_server: RedisServer, backends: list[RedisLeaseBackend], tmp_path: Path) -> None:
    """The server forgets everything (restart without persistence). A contender that saw nothing
    cannot know: it takes the lease at once while the old holder may still be acting (one Redis
    primary cannot prevent that). Its term comes from the server's clock, above the old one, so the
    fenced store refuses the old leader's late write; a contender that saw the old term knows the
    server lost it and waits out the old holder's lease before acting."""
    prefix = new_prefix("reset")
    old, survivor, newcomer = (RedisLeaseBackend(redis_server.url, prefix) for _ in range(3))
    backends += [old, survivor, newcomer]
    store = sqlite3.connect(tmp_path / "store.db", isolation_level=None, check_same_thread=False)
    fence, late_fence = Fence(store, "readings"), Fence(store, "readings")
    fence.create_table()

    lease = lease_of(old.acquire(A, time.monotonic()))
    fence.register(lease.term)
    held = survivor.acquire(B, time.monotonic())
    assert isinstance(held, Held) and held.leader is not None and held.leader.term == lease.term

    redis_server.restart()  # no persistence: the lease, the counter and the record are gone

    fresh = lease_of(newcomer.acquire(C, time.monotonic()))
    assert fresh.term > lease.term, "the term repeated after the reset"
    assert fresh.predecessor_until == float("-inf"), "it saw nothing: it cannot know that the server forgot"
    fence.register(fresh.term)
    refused = pytest.raises(StaleTermError, match=f"has term {fresh.term}, newer than this leader's term {lease.term}")
    with refused, late_fence.transaction(lease.term) as cursor:  # the old leader, paused through all this
        cursor.execute("SELECT 1")
    with pytest.raises(LeaseLostError):
        old.renew(lease, time.monotonic())  # and it finds out at its next renewal

    newcomer.release(fresh)
    redis_server.restart()
    before = time.monotonic()
    continued = lease_of(survivor.acquire(B, before))
    assert continued.term > fresh.term
    assert continued.predecessor_until >= before + continued.duration, (
        "it had seen a higher term than the server's counter: it must wait out the old holder's lease")


def test_flushall_mid_run_ends_the_holders_renewal_and_terms_continue_above_the_seen_one(
        redis_server: RedisServer, backends: list[RedisLeaseBackend]) -> None:
    prefix = new_prefix("flush")
    leader, other = RedisLeaseBackend(redis_server.url, prefix), RedisLeaseBackend(redis_server.url, prefix)
    backends += [leader, other]
    lease = lease_of(leader.acquire(A, time.monotonic()))
    far = 4 * 10**15  # above any clock in milliseconds: the next term comes from the term seen, not the clock
    advanced = leader.advance_term(lease, A, far)
    assert advanced.term == far
    assert isinstance(other.acquire(B, time.monotonic()), Held)
    redis_server.client().flushall()
    with pytest.raises(LeaseLostError):
        leader.renew(advanced, time.monotonic())
    continued = lease_of(other.acquire(B, time.monotonic()))
    assert continued.term == far + 1 and continued.predecessor_until > time.monotonic()


def test_a_release_wakes_a_subscribed_contender_at_once(redis_url: str, redis_prefix: str,
                                                        backends: list[RedisLeaseBackend]) -> None:
    holder, contender = RedisLeaseBackend(redis_url, redis_prefix), RedisLeaseBackend(redis_url, redis_prefix)
    backends += [holder, contender]
    woken = threading.Event()
    contender.watch(woken.set)
    listener = contender.listener
    assert listener is not None and listener.subscribed.wait(5), "the subscriber never subscribed"
    lease = lease_of(holder.acquire(A, time.monotonic()))
    woken.wait(1)  # the takeover's own notice
    woken.clear()
    released_at = time.monotonic()
    holder.release(lease)
    assert woken.wait(1), "the release's notice never woke the contender"
    assert time.monotonic() - released_at < 0.2
    assert lease_of(contender.acquire(B, time.monotonic())).term > lease.term


def test_a_crashed_holders_key_expiry_wakes_the_contender_that_found_it_held(
        redis_url: str, redis_prefix: str, backends: list[RedisLeaseBackend]) -> None:
    holder = RedisLeaseBackend(redis_url, redis_prefix, lease_duration=2)
    contender = RedisLeaseBackend(redis_url, redis_prefix, lease_duration=2)
    backends += [holder, contender]
    woken = threading.Event()
    contender.watch(woken.set)
    taken_at = time.monotonic()
    lease_of(holder.acquire(A, taken_at))  # and never renewed nor released: a crash
    time.sleep(0.1)
    woken.clear()
    assert isinstance(contender.acquire(B, time.monotonic()), Held)
    assert woken.wait(3), "the expiry timer never woke the contender"
    waited = time.monotonic() - taken_at
    assert 1.9 <= waited < 2.4, f"woken {waited:.2f} s after the holder's lease began (lease 2 s)"
    assert isinstance(contender.acquire(B, time.monotonic()), Lease)


def test_a_dead_server_is_storage_unavailable_within_the_call_timeout(backends: list[RedisLeaseBackend]) -> None:
    port = free_port()  # nothing listens there
    backend = RedisLeaseBackend(f"redis://127.0.0.1:{port}/0", new_prefix(), call_timeout=0.3)
    backends.append(backend)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=rf"Redis at redis://127.0.0.1:{port}/0 did not answer"):
        backend.acquire(A, started)
    assert time.monotonic() - started < 0.6


def test_a_silent_server_is_storage_unavailable_within_the_call_timeout(
        redis_server: RedisServer, backends: list[RedisLeaseBackend]) -> None:
    backend = RedisLeaseBackend(redis_server.url, new_prefix(), call_timeout=0.3)
    backends.append(backend)
    assert isinstance(backend.acquire(A, time.monotonic()), Lease)
    assert redis_server.process is not None
    redis_server.process.send_signal(19)  # SIGSTOP: connected, but nothing answers
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError, match="TimeoutError"):
            backend.read_leader()
        assert time.monotonic() - started < 0.6
    finally:
        redis_server.process.send_signal(18)  # SIGCONT


def test_client_kill_of_the_holders_connections_costs_it_nothing_and_the_subscriber_comes_back(
        redis_server: RedisServer, backends: list[RedisLeaseBackend]) -> None:
    prefix = new_prefix("kill")
    holder = RedisLeaseBackend(redis_server.url, prefix)
    backends.append(holder)
    woken = threading.Event()
    holder.watch(woken.set)
    listener = holder.listener
    assert listener is not None and listener.subscribed.wait(5)
    lease = lease_of(holder.acquire(A, time.monotonic()))
    admin = redis_server.client()
    name = f"distributed-mutex:{holder.owner}"
    named = [c for c in admin.client_list() if c["name"] == name]
    assert len(named) == 2, f"expected the command and the subscriber connections named {name}: {named}"
    for client in named:
        admin.client_kill_filter(_id=client["id"])
    woken.clear()
    try:
        lease = holder.renew(lease, time.monotonic())
    except StorageUnavailableError:  # a connection dead in the pool: the next call reconnects
        lease = holder.renew(lease, time.monotonic())
    assert woken.wait(5), "the subscriber did not come back (it wakes the loop when it does)"
    assert listener.subscribed.wait(5)
    holder.release(lease)


def test_a_wrong_password_is_refused_in_one_line_without_the_password(tmp_path: Path) -> None:
    server = RedisServer(password="s3cret-Passw0rd")
    try:
        server.start()
        backend = RedisLeaseBackend(f"redis://:wrong-Passw0rd@127.0.0.1:{server.port}/0", new_prefix(),
                                    names={"url": "REDIS_URL"})
        try:
            with pytest.raises(StorageRejectedError) as refused:
                backend.acquire(A, time.monotonic())
        finally:
            backend.close()
        message = str(refused.value)
        assert "wrong-Passw0rd" not in message and "\n" not in message
        assert message.startswith(f"Redis at redis://:***@127.0.0.1:{server.port}/0 refused the credentials in "
                                  "REDIS_URL"), message
    finally:
        server.cleanup()


def test_our_keys_holding_another_type_is_refused_naming_the_key_prefix(
        redis_url: str, redis_prefix: str, backends: list[RedisLeaseBackend]) -> None:
    backend = RedisLeaseBackend(redis_url, redis_prefix, names={"key_prefix": "REDIS_KEY_PREFIX"})
    backends.append(backend)
    client = redis.Redis.from_url(redis_url)
    client.rpush(backend.keys[2], "somebody else's list")
    client.close()
    with pytest.raises(StorageRejectedError, match="another program uses these keys; choose another REDIS_KEY_PREFIX"):
        backend.acquire(A, time.monotonic())


def test_advance_term_reaches_the_highest_term_exactly_and_never_lowers_it(
        redis_url: str, redis_prefix: str, backends: list[RedisLeaseBackend]) -> None:
    backend = RedisLeaseBackend(redis_url, redis_prefix)
    backends.append(backend)
    lease = lease_of(backend.acquire(A, time.monotonic()))
    assert backend.advance_term(lease, A, 0).term == lease.term
    top = backend.advance_term(lease, A, MAX_TERM - 1)
    assert top.term == MAX_TERM - 1
    assert backend.renew(top, time.monotonic()).term == MAX_TERM - 1
    record = backend.read_leader()
    assert record is not None and record.term == MAX_TERM - 1 and record.is_held
    backend.release(top)
    other = RedisLeaseBackend(redis_url, redis_prefix)
    backends.append(other)
    assert lease_of(other.acquire(B, time.monotonic())).term == MAX_TERM
    with pytest.raises(LeaseLostError):
        backend.advance_term(top, A, 5)


def test_read_leader_says_available_after_a_release_and_none_before_any_election(
        redis_url: str, redis_prefix: str, backends: list[RedisLeaseBackend]) -> None:
    backend = RedisLeaseBackend(redis_url, redis_prefix)
    backends.append(backend)
    assert backend.read_leader() is None
    lease = lease_of(backend.acquire(A, time.monotonic()))
    backend.release(lease)
    record = backend.read_leader()
    assert record is not None and record.instance_id == "a" and record.term == lease.term and not record.is_held


def test_a_user_with_only_the_documented_permissions_elects_and_one_without_publish_is_refused(
        redis_server: RedisServer, backends: list[RedisLeaseBackend]) -> None:
    prefix = new_prefix("acl")
    admin = redis_server.client()
    admin.acl_setuser("elector", enabled=True, reset=True, passwords=["+Elect-Pass-1"], keys=["{" + prefix + "}:*"],
                      channels=["{" + prefix + "}:changes"], commands=NEEDED.split())
    url = f"redis://elector:Elect-Pass-1@127.0.0.1:{redis_server.port}/0"
    holder, contender = RedisLeaseBackend(url, prefix), RedisLeaseBackend(url, prefix, names={"url": "REDIS_URL"})
    backends += [holder, contender]
    woken = threading.Event()
    contender.watch(woken.set)
    listener = contender.listener
    assert listener is not None and listener.subscribed.wait(5), "the subscriber could not subscribe"
    lease = lease_of(holder.acquire(A, time.monotonic()))
    lease = holder.advance_term(holder.renew(lease, time.monotonic()), A, lease.term + 1)
    assert isinstance(contender.acquire(B, time.monotonic()), Held)
    assert contender.read_leader() is not None
    woken.clear()
    holder.release(lease)
    assert woken.wait(2)

    admin.acl_setuser("elector", commands=["-publish"])
    with pytest.raises(StorageRejectedError) as refused:
        contender.acquire(B, time.monotonic())
    assert str(refused.value).startswith("the Redis user of REDIS_URL may not acquire the lease"), refused.value
    assert "Elect-Pass-1" not in str(refused.value)
