"""Switching ELECTION_BACKEND in one directory: the SQLite file keeps the first backend's terms, the
second backend counts from 1 again. The leader moves its term past the store's and says why in
words that name the likely cause (another backend's terms), not only a reset lease record."""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

from harness.processes import Instance
from harness.services import Azurite, free_port

LEADER = r"became leader \(term (\d+)\)"


def term_of(instance: Instance) -> int:
    line = instance.find(LEADER)
    assert line is not None, instance.tail()
    return int(re.search(LEADER, line.text).group(1))


def test_after_two_azure_leaderships_a_raft_leader_in_the_same_directory_names_the_cause(
        spawn, azurite: Azurite, container_name: str, tmp_path: Path) -> None:
    common = {"WEATHER_CITIES": "Hanoi", "FETCH_INTERVAL": "1", "READ_INTERVAL": "0.5",
              "WEATHER_SIMULATION": "always"}  # no weather service needed: the store's terms are the point
    azure = {**common, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
             "CONTAINER_NAME": container_name, "ACQUIRE_INTERVAL": "0.5"}
    terms = []
    for name in ("azure-1", "azure-2"):  # each graceful stop releases the lease; the next one's term is higher
        instance = spawn(name, azure)
        instance.wait_for(LEADER, timeout=15)
        instance.wait_for(r"stored 1 readings", timeout=10)
        terms.append(term_of(instance))
        instance.signal(signal.SIGTERM)
        assert instance.wait(10) == 0, instance.tail()
    assert terms[1] > terms[0] >= 1
    stored = terms[1]

    raft = spawn("solo", {**common, "ELECTION_BACKEND": "raft", "RAFT_PEERS": f"solo=127.0.0.1:{free_port()}",
                          "RAFT_DATA_DIR": str(tmp_path / "raft")})
    raft.wait_for(LEADER, timeout=20)
    own = term_of(raft)
    assert own < stored, "the Raft cluster's first term should be below the store's"
    warning = raft.wait_for(r"the store has term \d+, newer than", timeout=10).text
    assert re.search(
        rf"the store has term {stored}, newer than this leadership's {own}: most likely it holds another "
        r"ELECTION_BACKEND's terms \(each backend counts its own; give each its own SQLITE_PATH or MYSQL_DATABASE\), "
        rf"otherwise the lease record was reset while the database was kept; moving this leadership "
        rf"\(ELECTION_BACKEND=raft\) to term {stored + 1}$", warning), warning
    raft.wait_for(rf"stored 1 readings \(1 new, 1 simulated\) as leader of term {stored + 1}$", timeout=10)
    with sqlite3.connect(tmp_path / "weather.sqlite3") as connection:
        assert connection.execute("SELECT term, leader_id FROM leader_term").fetchall() == [(stored + 1, "solo")]
    assert "Traceback" not in raft.output
