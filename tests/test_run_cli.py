"""``distributed-mutex run`` one instance at a time: what the command is given, the --on-exit
policies, signals, the deadline's SIGKILL, exit codes and one-line refusals, and ``status``.

A Raft cluster of one peer on loopback leads at once and needs no server; the three-instance
runs with faults are tests/test_run_command.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import wait_until
from harness.services import rebindable_port
from harness.wrappers import alive
from support.bad_input import ROWS, ROWS_TESTED_ELSEWHERE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raft_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ELECTION_BACKEND": "raft",
            "RAFT_PEERS": f"a=127.0.0.1:{rebindable_port()}", "RAFT_DATA_DIR": str(tmp_path / "raft"),
            "RAFT_ELECTION_TIMEOUT": "500-1000", "INSTANCE_ID": "a"}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "DistributedMutex.cli", *args]


@pytest.fixture
def started(tmp_path: Path, raft_env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def start(processes: list[subprocess.Popen[str]], env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(command("run", *args), env=env, cwd=cwd, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    processes.append(process)
    return process


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_command_gets_its_term_and_identity_and_on_exit_stop_exits_with_its_status(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]]) -> None:
    wrapper = start(started, raft_env, tmp_path, "--on-exit", "stop", "--",
                    "sh", "-c", 'echo "$LEADER_TERM $LEADER_ID" > seen; exit 7')
    assert wrapper.wait(20) == 7, wrapper.stderr.read() if wrapper.stderr else ""
    term, leader = lines(tmp_path / "seen")[0].split()
    assert int(term) >= 1 and leader == "a"


def test_a_command_that_ends_at_once_is_logged_as_started_then_exited(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]]) -> None:
    wrapper = start(started, raft_env, tmp_path, "--on-exit", "stop", "--", "true")
    assert wrapper.wait(20) == 0
    log = wrapper.stderr.read() if wrapper.stderr else ""
    assert "started the command (pid" in log and "the command exited with status 0" in log, log
    assert log.index("started the command") < log.index("the command exited"), log


def test_on_exit_restart_starts_it_again_with_a_doubling_backoff_under_the_same_lease(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]]) -> None:
    wrapper = start(started, raft_env, tmp_path, "--",
                    "sh", "-c", 'echo "$LEADER_TERM $(date +%s.%N)" >> runs')
    wait_until(lambda: len(lines(tmp_path / "runs")) >= 3, 20, "the command did not run three times")
    runs = [line.split() for line in lines(tmp_path / "runs")[:3]]
    assert len({term for term, _ in runs}) == 1, f"the lease was not kept between runs: {runs}"
    gaps = [float(b[1]) - float(a[1]) for a, b in itertools.pairwise(runs)]
    assert 0.9 <= gaps[0] < 1.8 and 1.9 <= gaps[1] < 3.0, f"backoff 1 s then 2 s expected, got {gaps}"
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(10) == 0


def test_on_exit_release_gives_the_lease_up_and_leads_again_in_a_new_term(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]]) -> None:
    wrapper = start(started, raft_env, tmp_path, "--on-exit", "release", "--",
                    "sh", "-c", 'echo "$LEADER_TERM" >> runs; exit 3')
    wait_until(lambda: len(lines(tmp_path / "runs")) >= 2, 30, "the command did not run twice")
    terms = [int(term) for term in lines(tmp_path / "runs")[:2]]
    assert terms[1] > terms[0], f"leading again needs a new lease, and term: {terms}"
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(10) == 0
    assert "Traceback" not in (wrapper.stderr.read() if wrapper.stderr else "")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_signal_is_forwarded_and_the_wrapper_exits_0_once_the_command_has(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]], signum: int) -> None:
    name = signal.Signals(signum).name[3:]
    wrapper = start(started, raft_env, tmp_path, "--",
                    "sh", "-c", f'trap "echo {name} > got; exit 0" {name}; echo $$ > pid; '
                                'while :; do sleep 0.05; done')
    wait_until(lambda: lines(tmp_path / "pid"), 20, "the command did not start")
    wrapper.send_signal(signum)
    assert wrapper.wait(10) == 0
    assert lines(tmp_path / "got") == [name]
    assert not alive(int(lines(tmp_path / "pid")[0]))


def test_a_command_that_ignores_sigterm_is_killed_with_its_whole_group_after_the_grace(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]]) -> None:
    wrapper = start(started, raft_env, tmp_path, "--grace", "0.5", "--",
                    "sh", "-c", 'trap "" TERM; sleep 300 & echo $! > child; echo $$ > pid; '
                                'while :; do sleep 0.05; done')
    wait_until(lambda: lines(tmp_path / "child") and lines(tmp_path / "pid"), 20, "the command did not start")
    shell, child = int(lines(tmp_path / "pid")[0]), int(lines(tmp_path / "child")[0])
    sent = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(10) == 0
    took = time.monotonic() - sent
    # SIGKILL at the grace's end or at the local deadline, whichever comes first: with a 0.5 s lease,
    # the deadline (at most 0.375 s after the last renewal).
    assert took < 1.0, f"SIGKILL expected within the 0.5 s grace, the wrapper took {took:.2f} s"
    assert not alive(shell) and not alive(child), "the group outlived the SIGKILL"


# docs/bad-input.md's rows for the wrapper: row id -> the arguments after `run` (None: none at all,
# the action included), and the environment besides ELECTION_BACKEND=zookeeper.
RUN_ROWS: dict[str, tuple[list[str] | None, dict[str, str], dict[str, str]]] = {
    "run-no-action": (None, {}, {}),
    "run-unknown-action": (["start"], {}, {}),
    "run-no-command": (["run"], {}, {}),
    "run-unknown-flag": (["run", "--on-exitt", "stop", "--", "true"], {}, {}),
    "run-on-exit-unknown": (["run", "--on-exit", "explode", "--", "true"], {}, {}),
    "run-grace-not-a-number": (["run", "--grace", "soon", "--", "true"], {}, {}),
    "run-grace-out-of-range": (["run", "--grace", "5000", "--", "true"], {}, {}),
    "run-kill-margin-negative": (["run", "--kill-margin", "-1", "--", "true"], {}, {}),
    "run-setting-flag-bad": (["run", "--zookeeper-session-timeout", "soon", "--", "true"], {}, {}),
    "run-setting-env-bad": (["run", "--", "true"], {"ZOOKEEPER_SESSION_TIMEOUT": "soon"}, {}),
    "run-backend-flag-unknown": (["run", "--election-backend", "etcd", "--", "true"], {}, {}),
    "run-instance-id-flag-invalid": (["run", "--instance-id", "has space", "--", "true"], {}, {}),
    "run-log-level-flag-unknown": (["run", "--log-level", "loud", "--", "true"], {}, {}),
    # the third part: the row's {command}
    "run-command-not-found": (["run", "--", "no-such-command-here"], {}, {"command": "no-such-command-here"}),
    "run-command-no-such-file": (["run", "--", "./missing"], {}, {"command": "./missing"}),
    "run-command-not-executable": (["run", "--", "./not-executable"], {}, {"command": "./not-executable"}),
    "run-command-is-a-directory": (["run", "--", "./a-directory"], {}, {"command": "./a-directory"}),
}


def test_every_row_of_the_wrapper_in_bad_input_md_is_run_here() -> None:
    documented = {row for row in ROWS if row.startswith("run-")}
    listed = {row for row, where in ROWS_TESTED_ELSEWHERE.items() if where == "tests/test_run_cli.py"}
    assert documented == listed == set(RUN_ROWS)


@pytest.mark.parametrize("row_id", sorted(RUN_ROWS))
def test_a_refusal_is_one_line_and_the_exit_code_of_its_row_in_bad_input_md(tmp_path: Path, row_id: str) -> None:
    """Refused before contending: ZooKeeper's defaults name a server nobody runs, and none is asked."""
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    (tmp_path / "a-directory").mkdir()
    args, env, values = RUN_ROWS[row_id]
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ELECTION_BACKEND": "zookeeper", **env}
    done = subprocess.run([sys.executable, "-m", "DistributedMutex.cli", *(args or [])], env=environment,
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)
    row = ROWS[row_id]
    assert (done.returncode, done.stdout) == (int(row.exit), ""), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert row.pattern(**values).fullmatch(done.stderr.strip()), f"{done.stderr!r} is not {row.message!r}"


def test_status_says_who_leads_as_json_and_1_when_no_peer_answers(
        tmp_path: Path, raft_env: dict[str, str], started: list[subprocess.Popen[str]]) -> None:
    done = subprocess.run(command("status"), env=raft_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stderr.startswith("error: cannot read who leads: no Raft peer answered")
    assert len(done.stderr.splitlines()) == 1, done.stderr

    start(started, raft_env, tmp_path, "--", "sh", "-c", "echo up > up; sleep 300")
    wait_until(lambda: lines(tmp_path / "up"), 20, "the command did not start")
    for args in (["status"], ["run", "--status"]):
        done = subprocess.run(command(*args), env=raft_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["backend"] == "raft" and status["leader_id"] == "a" and status["term"] >= 1, status
        assert set(status) == {"backend", "leader_id", "leader_host", "leader_pid", "term", "acquired_at"}
