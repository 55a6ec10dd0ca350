"""``make chaos``'s long form for ``distributed-mutex run``: three wrappers around the fenced job
(harness/wrappers.py), and for ``--seconds`` per backend a random fault on whoever leads, then the
wait for the next command's first write:

    kill9    SIGKILL the leading wrapper (its guard stops the command); started again
    sigstop  SIGSTOP it past its lease (its guard kills the command at the deadline), then SIGCONT
    sigterm  SIGTERM it (a graceful handover); started again

At the end: no two commands ever wrote at overlapping times, no write under an old term was
accepted, no command outlived its wrapper. One table line per backend and fault: how many, the
failover's median and maximum (from the fault to the next command's first write).

    python -m harness.wrapper_chaos [--seconds 60] [--backends raft,zookeeper,postgres,redis (all)] [--seed 1]

PostgreSQL and Redis are the machine's servers (POSTGRES_URL, REDIS_URL, else the local defaults),
with a lease table / key prefix of the run's own, removed at the end; a 3 s lease each.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from harness.postgres import PostgresServer
from harness.redis_server import delete_prefix, new_prefix, shared_url
from harness.services import ZooKeeperServer, rebindable_port
from harness.wrappers import Wrappers, alive

FAULTS = ("kill9", "sigstop", "sigterm")
BACKENDS = ("raft", "zookeeper", "postgres", "redis")
# How long each backend's lease can outlive a frozen leader, and how long a failover may take.
LEASE = {"raft": 1.0, "zookeeper": 2.0, "postgres": 3.0, "redis": 3.0}
FAILOVER = {"raft": 6.0, "zookeeper": 8.0, "postgres": 6.0, "redis": 6.0}


def backend_env(backend: str, workdir: Path, zookeeper: ZooKeeperServer | None) -> dict[str, str]:
    if backend == "raft":
        return {"ELECTION_BACKEND": "raft", "RAFT_DATA_DIR": str(workdir / "raft"),
                "RAFT_PEERS": ",".join(f"{name}=127.0.0.1:{rebindable_port()}" for name in "abc")}
    if backend == "postgres":
        # The call timeout below the 0.8 s renew interval of a 3 s lease (the settings refuse more).
        return {"ELECTION_BACKEND": "postgres", "POSTGRES_URL": PostgresServer().url,
                "POSTGRES_TABLE": f"wrapper_chaos_{uuid.uuid4().hex[:10]}", "POSTGRES_ELECTION": "job",
                "POSTGRES_LEASE_DURATION": f"{LEASE[backend]:g}", "POSTGRES_CALL_TIMEOUT": "0.5"}
    if backend == "redis":
        return {"ELECTION_BACKEND": "redis", "REDIS_URL": shared_url(), "REDIS_KEY_PREFIX": new_prefix("wrapper-chaos"),
                "REDIS_LEASE_DURATION": f"{LEASE[backend]:g}"}
    assert zookeeper is not None
    return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": zookeeper.hosts,
            "ZOOKEEPER_PATH": f"/wrapper-chaos-{uuid.uuid4().hex[:8]}", "ZOOKEEPER_SESSION_TIMEOUT": "2"}


def remove_election(env: dict[str, str]) -> None:
    """The lease table or the keys of a run on the machine's PostgreSQL or Redis."""
    if env["ELECTION_BACKEND"] == "postgres":
        PostgresServer(env["POSTGRES_URL"]).drop_table(env["POSTGRES_TABLE"])
    elif env["ELECTION_BACKEND"] == "redis":
        delete_prefix(env["REDIS_URL"], env["REDIS_KEY_PREFIX"])


def run_backend(backend: str, seconds: float, rng: random.Random, workdir: Path,
                zookeeper: ZooKeeperServer | None, say: Callable[[str], None] = print) -> dict[str, object]:
    failovers: dict[str, list[float]] = {fault: [] for fault in FAULTS}
    problems: list[str] = []
    env = backend_env(backend, workdir, zookeeper)
    try:
        result = _run(backend, env, seconds, rng, workdir, say, failovers, problems)
    finally:
        remove_election(env)
    return result


def _run(backend: str, env: dict[str, str], seconds: float, rng: random.Random, workdir: Path,
         say: Callable[[str], None], failovers: dict[str, list[float]], problems: list[str]) -> dict[str, object]:
    with Wrappers(workdir, env) as group:
        group.start_all()
        current = group.wait_for_writer(timeout=30)
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            fault = rng.choice(FAULTS)
            at = time.time()
            if fault == "kill9":
                group.signal(current.leader, signal.SIGKILL)
            elif fault == "sigstop":
                group.signal(current.leader, signal.SIGSTOP)
            else:
                group.signal(current.leader, signal.SIGTERM)
            try:
                following = group.wait_for_writer(timeout=FAILOVER[backend] + LEASE[backend], since=at,
                                                  other_than=current.leader)
            except AssertionError as exc:
                problems.append(f"{fault}: {str(exc).splitlines()[0]}")
                following = None
            if following is not None:
                failovers[fault].append(following.first - at)
            if fault == "sigstop":
                time.sleep(max(0.0, at + LEASE[backend] + 1.0 - time.time()))
                group.signal(current.leader, signal.SIGCONT)
            else:
                group.processes[current.leader].wait(10)
                group.start(current.leader)
            if alive(current.pid):
                problems.append(f"{fault}: the command {current.pid} outlived its wrapper's fault")
            say(f"{backend}: {fault} on {current.leader} -> "
                f"{following.leader if following else 'nobody'} in "
                f"{(following.first - at) if following else float('nan'):.2f} s")
            time.sleep(1.0)
            current = following or group.wait_for_writer(timeout=30)
        commands = [run.pid for run in group.log.runs()]
        group.stop_all()
        time.sleep(1.0)
        problems += [f"the command {pid} outlived SIGTERM" for pid in commands if alive(pid)]
        overlaps = group.log.overlaps()
        stale = group.log.stale_accepted()
    problems += [f"overlap: {a.leader}/{a.term} and {b.leader}/{b.term}" for a, b in overlaps]
    problems += [f"stale write accepted: {line}" for line in stale]
    return {"backend": backend, "failovers": failovers, "overlaps": len(overlaps), "stale": len(stale),
            "problems": problems}


def render(results: list[dict[str, object]]) -> str:
    rows = ["backend    fault    count  median s  max s", "-" * 44]
    for result in results:
        failovers: dict[str, list[float]] = result["failovers"]  # type: ignore[assignment]
        for fault, times in failovers.items():
            if times:
                rows.append(f"{result['backend']:<10} {fault:<8} {len(times):>5}  {statistics.median(times):>8.2f}"
                            f"  {max(times):>5.2f}")
        rows.append(f"{result['backend']:<10} overlaps {result['overlaps']}, stale writes accepted {result['stale']}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.wrapper_chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="of faults per backend")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"some of {','.join(BACKENDS)}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        parser.error(f"--backends: {', '.join(unknown)} is not one of {', '.join(BACKENDS)}")
    rng = random.Random(args.seed)
    results = []
    zookeeper = ZooKeeperServer().start() if "zookeeper" in backends else None
    try:
        for backend in backends:
            with tempfile.TemporaryDirectory(prefix=f"wrapper-chaos-{backend}-") as workdir:
                results.append(run_backend(backend, args.seconds, rng, Path(workdir), zookeeper,
                                           say=lambda line: print(line, flush=True)))
    finally:
        if zookeeper is not None:
            zookeeper.stop()
    print(render(results))
    problems = [problem for result in results for problem in result["problems"]]  # type: ignore[attr-defined]
    for problem in problems:
        print(f"VIOLATION: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
