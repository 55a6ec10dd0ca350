"""The command that tests/test_run_command.py runs under ``distributed-mutex run``.

    python tests/support/fenced_job.py LOG DATABASE

Every 100 ms: one write to the SQLite file DATABASE under the fence (the library's Fence, with the
term from LEADER_TERM), then one line appended to LOG: ``pid term wall-time accepted|refused
leader-id``. The lines are appended with O_APPEND in single writes, so that lines of several
processes never mix. A refused write (a newer term is recorded) is logged and the job goes on:
the test counts what was refused, and a command that outlives its lease shows as such.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

from DistributedMutex.errors import StaleTermError
from DistributedMutex.fencing import Fence


def main(log_path: str, database: str) -> None:
    term = int(os.environ["LEADER_TERM"])
    leader = os.environ["LEADER_ID"]
    connection = sqlite3.connect(database, timeout=10, isolation_level=None)
    fence = Fence(connection, "cron-job")
    fence.create_table()
    connection.execute("CREATE TABLE IF NOT EXISTS runs (pid INTEGER, term INTEGER, at REAL)")
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        try:
            with fence.transaction(term) as cursor:
                cursor.execute("INSERT INTO runs VALUES (?, ?, ?)", (os.getpid(), term, time.time()))
            outcome = "accepted"
        except StaleTermError:
            outcome = "refused"
        os.write(log, f"{os.getpid()} {term} {time.time():.3f} {outcome} {leader}\n".encode())
        time.sleep(0.1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
