"""Three ``distributed-mutex run`` processes on the blob lease (Azurite), through a kill -9 of the
leading wrapper: its command is gone at once, the next one starts once the 15 s lease has run out
(Azure's shortest), and no two commands ever wrote at overlapping times. (The SIGSTOP and SIGTERM
cases are proven on Raft and ZooKeeper in test_run_command.py, where a lease is seconds, not 15.)"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from harness.services import Azurite
from harness.wrappers import Wrappers, alive

LEASE = 15


@pytest.mark.slow
def test_three_wrappers_on_the_blob_lease(tmp_path: Path, azurite: Azurite) -> None:
    env = {"ELECTION_BACKEND": "azure", "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
           "CONTAINER_NAME": f"run-{uuid.uuid4().hex[:12]}", "BLOB_NAME": "cron-job",
           "LEASE_DURATION": str(LEASE), "RENEW_INTERVAL": "5", "ACQUIRE_INTERVAL": "1"}
    with Wrappers(tmp_path, env) as group:
        group.start_all()
        first = group.wait_for_writer(timeout=30)
        killed_at = time.time()
        group.signal(first.leader, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while alive(first.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(first.pid), "the SIGKILLed wrapper's command still runs"
        second = group.wait_for_writer(timeout=LEASE + 10, since=killed_at, other_than=first.leader)
        failover = second.first - killed_at
        print(f"\nazure: kill -9 failover {failover:.2f} s (lease {LEASE} s)")
        assert failover < LEASE + 5
        assert group.log.overlaps() == [] and group.log.stale_accepted() == []
        assert second.term > first.term
        codes = group.stop_all()
        assert codes.pop(first.leader) == -signal.SIGKILL and set(codes.values()) == {0}, codes
