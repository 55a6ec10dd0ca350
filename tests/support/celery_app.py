"""The Celery application of tests/test_celery_beat_processes.py: a beat schedule of one task every
second (aligned on the wall clock), sent by LeaderScheduler (Raft on loopback or ZooKeeper), run by
TermCheckedTask workers that write under the fence (SQLite) and append what became of each run to a
file the test counts (lines as tests/support/slots.py reads them).

Settings from the environment (each test its own queue and Redis database):

    CELERY_BROKER_URL   redis://127.0.0.1:6379/<db>
    CELERY_QUEUE        the queue the task goes to and the workers consume
    ELECTION_BACKEND    and its settings, INSTANCE_ID: the beat's election (tests/support/scheduler_backend.py)
    FENCED_DATABASE     the SQLite file with the fence and the runs table
    RUNS_FILE           where each run appends its line
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from typing import Any

from celery import Celery

from DistributedMutex import Fence, StaleTermError
from DistributedMutex.integrations.celery import SENT_AT_HEADER, TermCheckedTask, every, leader_term

app = Celery("celery_app", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    task_default_queue=os.environ["CELERY_QUEUE"],
    beat_schedule={"tick": {"task": "celery_app.tick", "schedule": every(1.0)}},
    beat_max_loop_interval=1.0,
    # One message at a time per worker: while one works on a tick (longer than the interval, below),
    # the other takes the next one, rather than the first prefetching them all.
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=True,
    broker_connection_retry_on_startup=True,
)


def record(slot: int, term: int | None, node: str, outcome: str) -> None:
    with open(os.environ["RUNS_FILE"], "a", encoding="utf-8") as runs:  # one short append: whole lines
        runs.write(f"{slot} {term} {node} {outcome}\n")


@app.task(bind=True, base=TermCheckedTask, name="celery_app.tick")
def tick(self: Any) -> None:
    term = leader_term(self.request)
    assert term is not None  # TermCheckedTask refuses a message without one
    # Sent at the start of its second (beat sends an every(1.0) entry on whole seconds, at most once
    # per second per leader): the second it was sent in is the interval it is for.
    slot = math.floor(float(getattr(self.request, SENT_AT_HEADER)))
    node = str(getattr(self.request, "leader_id", "?"))
    time.sleep(1.2)  # longer than the interval: the two workers take turns
    connection = sqlite3.connect(os.environ["FENCED_DATABASE"], timeout=10)
    try:
        with Fence(connection, "tick").transaction(term) as cursor:
            cursor.execute("INSERT INTO runs (slot, term, node) VALUES (?, ?, ?)", (slot, term, node))
    except StaleTermError:
        record(slot, term, node, "refused")
    else:
        record(slot, term, node, "accepted")
    finally:
        connection.close()
