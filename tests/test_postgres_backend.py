"""PostgresLeaseBackend beyond the contract, on the real server (and PgBouncer):

    prompt handover     a release is heard (NOTIFY) by a contender's LISTEN in well under a poll
    pooled              through PgBouncer without a direct URL: one line saying it polls; every
                        statement works with more contenders than server connections
    the server's clock  a row is taken only once its lease has ended by the server's clock
    outages             a connection killed by the server (pg_terminate_backend), a server that
                        stops answering (a proxy's blackhole), nothing listening: each a bounded
                        StorageUnavailableError, and the next call works again once it heals
    refusals            a database that does not exist: StorageRejectedError, no password shown
    fencing             leased_transaction refuses a deposed holder's write, and one whose lease
                        ended or changed hands while it was open; the holder's renew is not
                        blocked by an open write; inside an outer transaction a new grant waits
                        for it to end
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from DistributedMutex.backend import Held, Identity, Lease
from DistributedMutex.backends.postgres import PostgresLeaseBackend
from DistributedMutex.backends.postgres.connection import translate
from DistributedMutex.backends.postgres.fencing import leased_transaction
from DistributedMutex.errors import StaleTermError, StorageRejectedError, StorageUnavailableError
from harness.postgres import PgBouncer, PostgresServer
from harness.services import free_port
from harness.tcpproxy import TcpProxy

A, B = Identity("node-a", "host-a", 101), Identity("node-b", "host-b", 102)


@pytest.fixture
def backends(postgres_server: PostgresServer, lease_table: str) -> Iterator[list[PostgresLeaseBackend]]:
    made = [PostgresLeaseBackend(postgres_server.url, "e", table=lease_table) for _ in range(2)]
    yield made
    for backend in made:
        backend.close()


def lease_of(result: Lease | Held) -> Lease:
    assert isinstance(result, Lease), f"expected the lease, got {result!r}"
    return result


def test_a_release_wakes_a_listening_contender_at_once(backends: list[PostgresLeaseBackend]) -> None:
    first, second = backends
    woken = threading.Event()
    second.watch(woken.set)
    assert second.listening(5), "the LISTEN connection did not come up within 5 s"
    lease = lease_of(first.acquire(A, time.monotonic()))
    woken.clear()
    released = time.monotonic()
    first.release(lease)
    assert woken.wait(2), "no wake() within 2 s of the release"
    assert time.monotonic() - released < 0.5
    assert lease_of(second.acquire(B, time.monotonic())).term == lease.term + 1


def test_through_pgbouncer_without_a_direct_url_it_says_once_that_it_polls(
        pgbouncer: PgBouncer, lease_table: str, caplog: pytest.LogCaptureFixture) -> None:
    # Eight contenders through a pool of four server connections.
    contenders = [PostgresLeaseBackend(pgbouncer.url, "e", table=lease_table, pooled=True) for _ in range(8)]
    try:
        with caplog.at_level(logging.INFO, logger="DistributedMutex.backends.postgres"):
            for backend in contenders:
                backend.watch(lambda: None)
        polls = [r.getMessage() for r in caplog.records if "poll" in r.getMessage()]
        assert len(polls) == 8 and "transaction pooler" in polls[0], polls
        assert not any(backend.listening(0) for backend in contenders)
        identities = [Identity(f"n{i}", "h", 200 + i) for i in range(8)]
        results = [backend.acquire(identity, time.monotonic()) for backend, identity in zip(contenders, identities, strict=True)]
        leases = [r for r in results if isinstance(r, Lease)]
        assert len(leases) == 1, results
        holder = results.index(leases[0])
        renewed = contenders[holder].renew(leases[0], time.monotonic())
        contenders[holder].release(renewed)
        successor = lease_of(contenders[(holder + 1) % 8].acquire(identities[(holder + 1) % 8], time.monotonic()))
        assert successor.term == renewed.term + 1
    finally:
        for backend in contenders:
            backend.close()


def test_a_row_is_taken_only_when_its_lease_ended_by_the_servers_clock(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer, lease_table: str) -> None:
    first, second = backends
    lease = lease_of(first.acquire(A, time.monotonic()))
    # Still 3 s to go by the server's clock: held, whatever the contender's clock says.
    postgres_server.execute(f"UPDATE {lease_table} SET expires_at = clock_timestamp() + interval '3 s'")
    held = second.acquire(B, time.monotonic())
    assert isinstance(held, Held) and held.leader is not None and held.leader.instance_id == "node-a", held
    postgres_server.execute(f"UPDATE {lease_table} SET expires_at = clock_timestamp() - interval '1 ms'")
    successor = lease_of(second.acquire(B, time.monotonic()))
    assert successor.term == lease.term + 1
    with pytest.raises(Exception, match="no longer ours"):
        first.renew(lease, time.monotonic())


def test_a_connection_killed_by_the_server_is_an_outage_and_the_next_call_reconnects(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer) -> None:
    first, _ = backends
    lease = lease_of(first.acquire(A, time.monotonic()))
    killed = postgres_server.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"distributed-mutex {os.getpid()}",))
    assert killed and all(row[0] for row in killed), killed
    try:
        lease = first.renew(lease, time.monotonic())  # may already see the closed socket
    except StorageUnavailableError as exc:
        assert "terminat" in str(exc) or "closed" in str(exc) or "connection" in str(exc), exc
    renewed = first.renew(lease, time.monotonic())
    assert renewed.term == lease.term


def test_a_server_that_stops_answering_is_an_outage_within_the_call_timeout(
        postgres_server: PostgresServer, lease_table: str) -> None:
    proxy = TcpProxy(postgres_server.port).start()
    url = postgres_server.url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    backend = PostgresLeaseBackend(url, "e", table=lease_table, call_timeout=0.5)
    try:
        lease = lease_of(backend.acquire(A, time.monotonic()))
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError, match=r"did not answer within 0\.5 s"):
            backend.renew(lease, time.monotonic())
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            backend.renew(lease, time.monotonic())  # a new connection: not accepted in time either
        assert time.monotonic() - started < 1.5
        proxy.heal()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert backend.renew(lease, time.monotonic()).term == lease.term
                break
            except StorageUnavailableError:
                assert time.monotonic() < deadline, "the backend did not recover within 5 s of the heal"
                time.sleep(0.1)
    finally:
        backend.close()
        proxy.close()


def test_nothing_listening_is_an_outage(lease_table: str) -> None:
    backend = PostgresLeaseBackend(f"postgresql://u:SeCrEt-pw@127.0.0.1:{free_port()}/db", "e", table=lease_table)
    try:
        with pytest.raises(StorageUnavailableError) as caught:
            backend.acquire(A, time.monotonic())
        assert "SeCrEt-pw" not in str(caught.value) and "u:***@" in str(caught.value), caught.value
    finally:
        backend.close()


@pytest.mark.parametrize("fatal", ["the database system is not yet accepting connections",
                                   "the database system is starting up", "the database system is in recovery mode"])
def test_a_server_restarting_is_an_outage_not_a_refusal(fatal: str) -> None:
    """What a server recovering from a crash answers at connect time (the chaos rounds' server
    restart found the first one ending an instance as if it were a wrong database name)."""
    error = psycopg.OperationalError(f'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
                                     f"FATAL:  {fatal}")
    translated = translate(error, "postgresql://u:Pw-1@127.0.0.1:5432/db", "acquire the lease")
    assert isinstance(translated, StorageUnavailableError) and not isinstance(translated, StorageRejectedError), (
        translated)


def test_a_missing_database_is_refused_for_good_without_showing_the_password(
        postgres_server: PostgresServer, lease_table: str) -> None:
    # Trust auth ignores the password; it must not show up all the same.
    url = f"postgresql://{postgres_server.user}:Pw-9x7z@{postgres_server.host}:{postgres_server.port}/no_such_database_dm"
    backend = PostgresLeaseBackend(url, "e", table=lease_table)
    try:
        with pytest.raises(StorageRejectedError, match="no_such_database_dm") as caught:
            backend.acquire(A, time.monotonic())
        assert "Pw-9x7z" not in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        backend.close()


def test_leased_transaction_refuses_a_deposed_holders_write(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer, lease_table: str) -> None:
    first, second = backends
    data = f"{lease_table}_data"
    postgres_server.execute(f"CREATE TABLE {data} (v TEXT)")
    try:
        lease = lease_of(first.acquire(A, time.monotonic()))
        with postgres_server.connect() as connection:
            with leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
                cursor.execute(f"INSERT INTO {data} VALUES ('by a')")
            first.release(lease)
            successor = lease_of(second.acquire(B, time.monotonic()))
            with pytest.raises(StaleTermError, match=f"term {successor.term}"), \
                    leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
                cursor.execute(f"INSERT INTO {data} VALUES ('by a, deposed')")
        assert postgres_server.execute(f"SELECT v FROM {data}") == [("by a",)]
    finally:
        postgres_server.drop_table(data)


def test_a_grant_while_a_write_under_the_lease_is_open_refuses_its_commit(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer, lease_table: str) -> None:
    first, second = backends
    data = f"{lease_table}_data"
    postgres_server.execute(f"CREATE TABLE {data} (v TEXT)")
    try:
        lease = lease_of(first.acquire(A, time.monotonic()))
        # The lease ends by the server's clock while a write under it is open. The row is not
        # locked before the check, so the takeover goes through at once; the check then sees the
        # new term and the write is rolled back: never committed beside the new holder.
        postgres_server.execute(f"UPDATE {lease_table} SET expires_at = clock_timestamp() + interval '300 ms'")
        with postgres_server.connect() as connection:
            with pytest.raises(StaleTermError, match=f"in term {lease.term + 1} .held by 'node-b'."), \
                    leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
                cursor.execute(f"INSERT INTO {data} VALUES ('by a, late')")
                deadline = time.monotonic() + 5
                while not postgres_server.execute(f"SELECT expires_at <= clock_timestamp() FROM {lease_table}")[0][0]:
                    assert time.monotonic() < deadline, "the lease did not end by the server's clock"
                    time.sleep(0.05)
                assert lease_of(second.acquire(B, time.monotonic())).term == lease.term + 1
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert postgres_server.execute(f"SELECT v FROM {data}") == []
    finally:
        postgres_server.drop_table(data)


def test_a_lease_ended_at_the_commit_refuses_it_even_if_renewed_since(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer, lease_table: str) -> None:
    first = backends[0]
    lease = lease_of(first.acquire(A, time.monotonic()))
    postgres_server.execute(f"UPDATE {lease_table} SET expires_at = clock_timestamp()")
    with postgres_server.connect() as connection:
        connection.autocommit = False  # psycopg begins the transaction itself
        with pytest.raises(StaleTermError, match="had ended by the server's clock"), \
                leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
            cursor.execute("SELECT 1")
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    lease_of(first.renew(lease, time.monotonic()))  # ours again, and the next write goes through
    with postgres_server.connect() as connection:
        connection.autocommit = False
        with leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
            cursor.execute("SELECT 1")
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_the_leaders_renew_is_not_blocked_by_a_long_write_under_its_lease(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer, lease_table: str) -> None:
    """The chaos harness's slow network made a store write last 2.4 s while the lease row was
    locked for share from its start: the leader's own renew waited past its 1 s lock timeout and
    it lost the lease. The check now comes last, so a renew in the middle of the write goes through."""
    first = backends[0]
    data = f"{lease_table}_data"
    postgres_server.execute(f"CREATE TABLE {data} (v TEXT)")
    try:
        lease = lease_of(first.acquire(A, time.monotonic()))
        with postgres_server.connect() as connection, \
                leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
            cursor.execute(f"INSERT INTO {data} VALUES ('by a')")
            started = time.monotonic()
            renewed = first.renew(lease, time.monotonic())  # another connection, same thread
            took = time.monotonic() - started
            assert renewed.term == lease.term
            assert took < 0.5, f"the renew waited {took:.2f} s for the open write"
        assert postgres_server.execute(f"SELECT v FROM {data}") == [("by a",)]
    finally:
        postgres_server.drop_table(data)


def test_inside_an_open_transaction_the_check_locks_the_row_until_that_transaction_ends(
        backends: list[PostgresLeaseBackend], postgres_server: PostgresServer, lease_table: str) -> None:
    first, second = backends
    lease = lease_of(first.acquire(A, time.monotonic()))
    postgres_server.execute(f"UPDATE {lease_table} SET expires_at = clock_timestamp() + interval '300 ms'")
    with postgres_server.connect() as connection, connection.transaction():
        with leased_transaction(connection, "e", "node-a", lease.term, table=lease_table) as cursor:
            cursor.execute("SELECT 1")
        # The check passed and holds the row's share lock until the outer COMMIT: a takeover
        # once the lease ended waits for it (and is cut by its own bounds).
        deadline = time.monotonic() + 5
        while not postgres_server.execute(f"SELECT expires_at <= clock_timestamp() FROM {lease_table}")[0][0]:
            assert time.monotonic() < deadline, "the lease did not end by the server's clock"
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError, match=r"(statement|lock) timeout"):
            second.acquire(B, time.monotonic())
        assert time.monotonic() - started >= 0.9  # its bound (the 1 s call timeout)
    assert lease_of(second.acquire(B, time.monotonic())).term == lease.term + 1
