"""A Celery beat whose election can never run (here: its Raft peer's port is taken by another
program) must not go on looking healthy while it never leads: `celery beat -S LeaderScheduler` exits
with status 1, and says why in one line (no traceback), so that a supervisor restarts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from harness.processes import ROOT
from harness.services import free_port

CELERY = Path(__file__).parent / "support" / "celery_main.py"
EXIT_TIMEOUT = 30.0  # an interpreter importing Celery, the election's start, one beat tick


def test_a_beat_whose_election_ends_for_good_exits_1_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ,
               "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}:{ROOT / 'tests' / 'support'}",
               "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15", "CELERY_QUEUE": f"refusal-{uuid.uuid4().hex[:8]}",
               "FENCED_DATABASE": str(tmp_path / "unused.sqlite"), "RUNS_FILE": str(tmp_path / "runs.txt"),
               "ELECTION_BACKEND": "raft", "INSTANCE_ID": "node-1", "RAFT_DATA_DIR": str(tmp_path / "raft"),
               "RAFT_PEERS": f"node-1=127.0.0.1:{port},node-2=127.0.0.1:{free_port()},node-3=127.0.0.1:{free_port()}"}
        try:
            done = subprocess.run(
                [sys.executable, str(CELERY), "-A", "celery_app", "beat", "-S",
                 "DistributedMutex.integrations.celery:LeaderScheduler", "--loglevel", "INFO", "--pidfile=",
                 "-s", str(tmp_path / "schedule")],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"beat still runs {EXIT_TIMEOUT:g} s after its election ended: {exc.stderr!r}") from None
    output = done.stdout + done.stderr
    assert done.returncode == 1, f"exit status {done.returncode}, expected 1:\n{output}"
    assert "beat stops: its election ended" in output and f"cannot listen on 127.0.0.1:{port}" in output, output
    assert "Traceback" not in output, output
