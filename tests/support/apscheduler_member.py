"""One replica of a program that uses APScheduler 3 through LeaderScheduler, given no backend: the
election comes from the environment (ELECTION_BACKEND and its settings, tests/support/scheduler_backend.py).
A job every second writes one row under the fence (SQLite) and appends what became of it to a file
the test counts.

    apscheduler_member.py NODE_ID DATABASE RUNS_FILE

A runs-file line: ``<slot> <term> <node_id> accepted|refused|no-term`` where the slot is the whole
second the run was due at: the job is added as a user would (``"interval", seconds=1``, no
start_date), and LeaderScheduler runs interval jobs on the multiples of their interval since the
epoch (align_intervals), so a run that starts at t, a moment after it was due, was due at round(t).
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from datetime import timezone

from apscheduler.schedulers.background import BackgroundScheduler

from DistributedMutex import Fence, LeaseLostError, StaleTermError
from DistributedMutex.integrations.apscheduler import LeaderScheduler, current_term

node_id, database, runs_file = sys.argv[1:]


def record(slot: int, term: int | None, outcome: str) -> None:
    with open(runs_file, "a", encoding="utf-8") as runs:  # one short append: whole lines, whoever writes
        runs.write(f"{slot} {term} {node_id} {outcome}\n")


def tick() -> None:
    slot = round(time.time())
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
scheduler.add_job(tick, "interval", seconds=1, id="tick")
LeaderScheduler(scheduler).run()
