"""docs/run.md's example, run as it is written: its job (the ```python block) and its shell script
(the ```sh block with three replicas), on free ports instead of 7401-7403, with
``distributed-mutex`` and ``python3`` on PATH standing for this checkout's (no install needed).

It must end by itself, print who leads as JSON, leave one row per second from the leader in
reports.sqlite3, and leave no process behind in its directory."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from harness.services import free_port

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "run.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), flags=re.M | re.S)


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (what the example started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_cron_job_example_runs_as_written(tmp_path: Path) -> None:
    job = blocks("python")
    script = next(block for block in blocks("sh") if "for id in a b c" in block)
    assert len(job) == 1, "docs/run.md should hold exactly one Python block: the job"
    (tmp_path / "job.py").write_text(job[0])
    for port in ("7401", "7402", "7403"):
        script = script.replace(port, str(free_port()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in {"distributed-mutex": f'"{sys.executable}" -m DistributedMutex.cli',
                         "python3": f'"{sys.executable}"'}.items():
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    log = (tmp_path / "replicas.log").read_text() if (tmp_path / "replicas.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log[-3000:]}"
    status = json.loads(done.stdout.strip().splitlines()[-1])
    assert status["backend"] == "raft" and status["leader_id"] in ("a", "b", "c"), status

    rows = sqlite3.connect(tmp_path / "reports.sqlite3").execute("SELECT at, leader, term FROM reports ORDER BY at")
    reports = rows.fetchall()
    assert len(reports) >= 3, f"one report per second expected, got {reports}"
    terms = [term for _, _, term in reports]
    assert terms == sorted(terms), f"a report under an older term after a newer one: {reports}"
    assert status["leader_id"] in {leader for _, leader, _ in reports}
    assert processes_in(tmp_path) == [], "the example left processes running"
