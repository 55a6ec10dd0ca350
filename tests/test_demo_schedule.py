"""make demo's schedule and names, run from the launcher (no make): one disruption every
DEMO_FAILOVER_EVERY seconds whatever kind the last one was (a graceful stop resolves at once and
must not bring the next kill forward), a name never used before for every instance started (a
Raft replacement runs in its member's slot under a name of its own), and DEMO_WEB refused in one
line when it is not 0 or 1."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

from harness.fake_open_meteo import FakeOpenMeteo
from harness.processes import ROOT

EVERY = 3.0


def run_demo(env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "AZURE_", "DEMO_", "RAFT_"))}
    return subprocess.run([sys.executable, "-m", "distributed_mutex_demo.demo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**base, "PYTHONPATH": str(ROOT / "src"), **env})


def test_one_disruption_every_interval_whatever_its_kind_and_every_instance_named_anew(
        open_meteo: FakeOpenMeteo) -> None:
    result = run_demo({**open_meteo.env(), "ELECTION_BACKEND": "raft", "DEMO_SECONDS": "22", "DEMO_WEB": "0",
                       "DEMO_FAILOVER_EVERY": f"{EVERY:g}", "FETCH_INTERVAL": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    line = re.search(r"^disruptions at (.*)$", output, re.MULTILINE)
    assert line, output[-3000:]
    found = re.findall(r"(\d+\.\d) s \((kill|graceful stop), schedule\)", line[1])
    times, kinds = [float(t) for t, _ in found], [k for _, k in found]
    assert len(times) >= 4, line[0]
    assert kinds[:4] == ["graceful stop", "kill", "graceful stop", "kill"], line[0]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    # Never the old back-to-back second: every gap is at least the interval. A disruption due while
    # nobody leads waits for the next leader, so a gap may exceed the interval by a Raft failover
    # (a kill: at most two election timeouts, 2 x 2 s, on a busy machine) plus the loop's tick.
    assert all(EVERY <= gap <= EVERY + 2 * 2.0 + 1.0 for gap in gaps), (gaps, line[0])
    assert sum(gap <= EVERY + 1.0 for gap in gaps) >= len(gaps) // 2, (gaps, line[0])  # mostly on time

    started = re.findall(r"^\[(node-\d+[a-z]?)\] .*instance \1 starting: Raft peer (node-\d) of 3", output, re.MULTILINE)
    names = [name for name, _ in started]
    assert len(names) == len(set(names)) >= 5, started
    # A replacement keeps its member's slot (RAFT_ID) under a name of its own: node-2 -> node-2b.
    assert all(name.startswith(slot) for name, slot in started), started
    assert any(name != slot for name, slot in started), started
    assert "Traceback" not in output


def test_demo_web_other_than_0_or_1_is_one_line_naming_it() -> None:
    result = run_demo({"DEMO_WEB": "yes"}, timeout=30)
    assert result.returncode == 2
    assert result.stderr == "demo: DEMO_WEB: must be 1 (serve the web page) or 0 (do not), got 'yes'\n"
