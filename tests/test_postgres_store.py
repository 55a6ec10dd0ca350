"""The PostgreSQL store's own parts (the shared ones run in test_store.py): the lease row checked
at the source, PgBouncer in transaction pooling mode, and POSTGRES_STORE choosing it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from distributed_mutex_demo.config import load_settings
from distributed_mutex_demo.stores import open_store
from distributed_mutex_demo.stores.postgres import PostgresStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.backend import Identity, Lease
from DistributedMutex.backends.postgres import PostgresLeaseBackend
from DistributedMutex.errors import StaleTermError
from harness.postgres import PgBouncer, PostgresServer, with_database

LEASES = "election_leases"


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield with_database(postgres_server.url, name)
    postgres_server.drop_database(name)


def reading(city: str) -> Reading:
    return Reading(city, 21.5, 60, "clear", datetime.now(timezone.utc).replace(microsecond=0))


def test_a_deposed_leaders_write_is_refused_by_the_lease_row_even_when_its_term_is_the_stores(
        pg_url: str, postgres_server: PostgresServer) -> None:
    a = PostgresLeaseBackend(pg_url, "weather", table=LEASES)
    b = PostgresLeaseBackend(pg_url, "weather", table=LEASES)
    store = PostgresStore(pg_url, lease=(LEASES, "weather"))
    try:
        first = a.acquire(Identity("node-a"), time.monotonic())
        assert isinstance(first, Lease)
        store.register_term(first.term, "node-a")
        assert store.write([reading("Hanoi")], first.term, "node-a") == 1
        a.release(first)
        second = b.acquire(Identity("node-b"), time.monotonic())
        assert isinstance(second, Lease)
        # node-b has not registered its term in the store yet: the term rule alone would accept
        # node-a's write; the lease row does not.
        with pytest.raises(StaleTermError, match=f"term {second.term}"):
            store.write([reading("Tokyo")], first.term, "node-a")
        rows = postgres_server.execute("SELECT city, term FROM weather", database=pg_url.rsplit("/", 1)[1])
        assert rows == [("Hanoi", first.term)]
    finally:
        for closable in (a, b, store):
            closable.close()


def test_the_store_works_through_pgbouncer_in_transaction_mode(pg_url: str, pgbouncer: PgBouncer) -> None:
    url = pgbouncer.url_for(pg_url.rsplit("/", 1)[1])
    stores = [PostgresStore(url) for _ in range(6)]  # more than the pool's four server connections
    try:
        stores[0].register_term(3, "a")
        for i, store in enumerate(stores):
            assert store.write([reading(f"City {i}")], 3, "a") == 1
            assert store.stored_term() == 3
        assert {r.city for r in stores[-1].latest()} == {f"City {i}" for i in range(6)}
    finally:
        for store in stores:
            store.close()


def test_postgres_store_is_chosen_and_fenced_by_the_election_in_the_same_database(tmp_path: Path) -> None:
    url = "postgresql://u:Pw-store-1@db.internal/weather"
    both = open_store(load_settings({"ELECTION_BACKEND": "postgres", "POSTGRES_URL": url, "POSTGRES_STORE": "true",
                                     "POSTGRES_TABLE": "leases"}, tmp_path))
    assert isinstance(both, PostgresStore)
    assert both.description == ("PostgreSQL at db.internal:5432/weather (writes fenced by the lease row of "
                                "'weather-leader' in leases)")
    alone = open_store(load_settings({"ELECTION_BACKEND": "raft", "RAFT_PEERS": "a=127.0.0.1:7001", "RAFT_ID": "a",
                                      "POSTGRES_URL": url, "POSTGRES_STORE": "1"}, tmp_path))
    assert isinstance(alone, PostgresStore) and alone.description == "PostgreSQL at db.internal:5432/weather"
    assert "Pw-store-1" not in both.description
