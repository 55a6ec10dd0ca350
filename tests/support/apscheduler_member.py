"""One replica of a program that uses APScheduler 3 through LeaderScheduler (its election backend
from the environment: tests/support/scheduler_backend.py): a job every second writes one row under
the fence (SQLite) and appends what became of it to a file the test counts.

    apscheduler_member.py NODE_ID DATABASE RUNS_FILE

A runs-file line: ``<slot> <term> <node_id> accepted|refused|no-term`` where the slot is the whole
second the run was due in: the job's run times are half past each second, and its
misfire_grace_time of 1 s (APScheduler's least) skips a run more than a second late, so a run that
starts at t was due at floor(t - 0.5) + 0.5.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import sys
import time
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from DistributedMutex import Fence, LeaseLostError, StaleTermError
from DistributedMutex.integrations.apscheduler import LeaderScheduler, current_term
from support.scheduler_backend import backend_from_environment

node_id, database, runs_file = sys.argv[1:]


def record(slot: int, term: int | None, outcome: str) -> None:
    with open(runs_file, "a", encoding="utf-8") as runs:  # one short append: whole lines, whoever writes
        runs.write(f"{slot} {term} {node_id} {outcome}\n")


def tick() -> None:
    slot = math.floor(time.time() - 0.5)
    try:
        term = current_term()
    except LeaseLostError:
        record(slot, None, "no-term")
        return
    connection = sqlite3.connect(database, timeout=10)
    try:
        with Fence(connection, "tick").transaction(term) as cursor:
            cursor.execute("INSERT INTO runs (slot, term, node) VALUES (?, ?, ?)", (slot, term, node_id))
    except StaleTermError:
        record(slot, term, "refused")
    else:
        record(slot, term, "accepted")
    finally:
        connection.close()


logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s")
logging.getLogger("apscheduler").setLevel(logging.WARNING)
scheduler = BackgroundScheduler(timezone=timezone.utc)
# Run times at half past every second of the wall clock, the same on every replica: the slot says
# which interval.
scheduler.add_job(tick, "interval", seconds=1, start_date=datetime(2020, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc),
                  misfire_grace_time=1, id="tick")
LeaderScheduler(scheduler, backend=backend_from_environment()).run()
