"""The demo as a user runs it: several processes of `python src/DistributedMutex/test.py`."""

from __future__ import annotations

import re
import signal
import time

from harness.processes import Instance, wait_until
from harness.services import MySQLServer

LEADER = r"became leader \(term (\d+)\)"


def leader_term(instance: Instance) -> int:
    line = instance.find(LEADER)
    assert line is not None
    return int(re.search(LEADER, line.text).group(1))


def rows_by_term(mysql_server: MySQLServer, database: str) -> dict[int, int]:
    rows = mysql_server.query(database, "SELECT term, COUNT(*) FROM weather GROUP BY term")
    return {int(term): int(count) for term, count in rows}


def test_one_instance_leads_and_writes_rows_with_its_term(spawn, demo_env, mysql_server, database):
    a = spawn("solo", demo_env)
    a.wait_for(LEADER, timeout=15)
    term = leader_term(a)
    assert term >= 1
    a.wait_for(r"stored \d+ readings", timeout=10)
    rows = mysql_server.query(database, "SELECT city, leader_id, term FROM weather")
    assert {city for city, _, _ in rows} == {"Hanoi", "Tokyo", "London"}
    assert {(leader, t) for _, leader, t in rows} == {("solo", term)}
    stored = mysql_server.query(database, "SELECT term, leader_id FROM leader_term")
    assert stored == [(term, "solo")]


def test_three_processes_give_exactly_one_leader(spawn, demo_env, mysql_server, database):
    instances = [spawn(f"node-{i}", demo_env) for i in range(3)]
    leader = wait_until(lambda: next((i for i in instances if i.find(LEADER)), None), 20,
                        "no instance became leader")
    term = leader_term(leader)
    workers = [i for i in instances if i is not leader]
    for worker in workers:
        worker.wait_for(rf"leader is {leader.name} \(term {term}\)", timeout=10)
    leader.wait_for(r"stored \d+ readings", timeout=10)
    # Let every worker contend for several acquire intervals: none may take over.
    for worker in workers:
        worker.wait_for(r"^city\s+temp", timeout=10)
    assert sum(i.count(r"became leader") for i in instances) == 1, "\n".join(i.output for i in instances)
    assert set(rows_by_term(mysql_server, database)) == {term}


def test_worker_prints_what_the_leader_wrote(spawn, demo_env, weather):
    leader = spawn("writer", demo_env)
    leader.wait_for(LEADER, timeout=15)
    term = leader_term(leader)
    leader.wait_for(r"stored \d+ readings", timeout=10)
    reader = spawn("reader", demo_env)
    started = time.monotonic()
    for city in ("Hanoi", "Tokyo", "London"):
        line = reader.wait_for(rf"^{city}\s+-?\d+\.\d°C\s+\d+%\s+scattered clouds\s", timeout=10, after=started)
        assert re.search(rf"\swriter\s+{term}$", line.text), line.text
    assert reader.count(r"became leader") == 0


def test_sigkill_of_the_leader_fails_over_within_the_lease(spawn, demo_env, mysql_server, database):
    first = spawn("first", demo_env)
    first.wait_for(LEADER, timeout=15)
    old_term = leader_term(first)
    first.wait_for(r"stored \d+ readings", timeout=10)
    second = spawn("second", demo_env)
    second.wait_for(r"leader is first", timeout=10)

    killed = first.signal(signal.SIGKILL)
    first.wait(5)
    bound = 15 + 0.5 + 3  # LEASE_DURATION + ACQUIRE_INTERVAL + 3 s
    line = second.wait_for(LEADER, timeout=bound)
    assert line.at - killed <= bound
    new_term = leader_term(second)
    assert new_term > old_term
    second.wait_for(r"stored \d+ readings", timeout=10)
    assert max(rows_by_term(mysql_server, database)) == new_term


def test_sigterm_of_the_leader_hands_over_within_one_acquire_interval(spawn, demo_env):
    env = dict(demo_env, ACQUIRE_INTERVAL="2")
    first = spawn("first", env)
    first.wait_for(LEADER, timeout=15)
    old_term = leader_term(first)
    second = spawn("second", env)
    second.wait_for(r"leader is first", timeout=10)

    stopped = first.signal(signal.SIGTERM)
    assert first.wait(3) == 0, first.tail()
    line = second.wait_for(LEADER, timeout=2 + 3)
    assert line.at - stopped <= 2 + 3
    assert leader_term(second) > old_term
    assert first.find(r"lost leadership: shutting down")
    assert "Traceback" not in first.output


def test_worker_with_mysql_down_says_so_and_still_takes_over(spawn, demo_env):
    from harness.services import free_port
    leader = spawn("leader", demo_env)
    leader.wait_for(LEADER, timeout=15)
    cut_off = spawn("no-db", dict(demo_env, MYSQL_PORT=str(free_port())))
    cut_off.wait_for(r"cannot read readings: MySQL at 127\.0\.0\.1:\d+ is unreachable", timeout=15)
    cut_off.wait_for(r"leader is leader \(term \d+\)", timeout=10)
    leader.signal(signal.SIGTERM)
    assert leader.wait(3) == 0
    cut_off.wait_for(LEADER, timeout=5)
    cut_off.wait_for(r"cannot store readings \(\d+ kept for the next round\)", timeout=10)
    assert "Traceback" not in cut_off.output


def test_wrong_account_key_stops_with_one_line_and_exit_2(spawn, demo_env, azurite):
    from harness.services import connection_string
    wrong = "d3Jvbmcta2V5LWZvci10ZXN0cy0xMjM0NTY3OA=="
    instance = spawn("wrong-key", dict(demo_env, AZURE_STORAGE_CONNECTION_STRING=connection_string(azurite.port, wrong)))
    assert instance.wait(15) == 2
    line = instance.wait_for(r"cannot go on: storage refused the request \(403", timeout=1)
    assert "AZURE_STORAGE_CONNECTION_STRING" in line.text
    assert wrong not in instance.output and "Traceback" not in instance.output


def test_a_reset_lease_record_with_a_kept_database_advances_the_term(spawn, demo_env, mysql_server, database,
                                                                      azurite, container_name):
    from azure.storage.blob import BlobServiceClient

    from distributed_mutex_demo.config import MySQLSettings
    from distributed_mutex_demo.stores.mysql import WeatherStore
    from DistributedMutex.backends.azure.lease import DEFAULT_API_VERSION
    old = WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                                     mysql_server.password, database))
    old.register_term(5, "from-an-old-blob")  # the database outlived its lease blob
    old.close()
    a = spawn("fresh", demo_env)
    a.wait_for(r"became leader \(term 1\)", timeout=15)
    a.wait_for(r"term advanced from 1 to 6", timeout=10)
    a.wait_for(r"stored \d+ readings \(\d+ new\) as leader of term 6", timeout=10)
    assert set(rows_by_term(mysql_server, database)) == {6}
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=DEFAULT_API_VERSION)
    assert service.get_blob_client(container_name, "weather-leader").get_blob_properties().metadata["term"] == "6"
