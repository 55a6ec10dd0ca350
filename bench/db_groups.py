"""Groups on the database backends (issue 16): PostgreSQL and Redis, each on a server of the group's
own, so that the server's counters are the group's alone:

    postgres   a private PostgreSQL cluster (harness.pg_cluster); the cost at rest is the
               transactions its database committed or rolled back (pg_stat_database xact_commit +
               xact_rollback): one per election call, each call being one transaction of one
               simple query (SET LOCAL bounds; the statement)
    redis      a redis-server of its own (harness.redis_server); the cost at rest is the commands
               it ran (INFO commandstats, less the INFO readings themselves), those the scripts
               run included; the script calls (EVALSHA: one round trip each) are given apart

Both keep the readings in MySQL as the other groups do, so the counters are the election's only.
bench/many.py runs ``n`` of them (100 by default, ``--backend-contenders``), as it does every backend.
"""

from __future__ import annotations

from typing import Any

from bench.group import Group, Slot

DATABASE = "bench"


class PostgresGroup(Group):
    """ELECTION_BACKEND=postgres with its defaults, direct (LISTEN on the same URL)."""

    backend = "postgres"
    anchored_kills = False  # no wire log: a random delay is a random phase of the renewal cycle
    poll_interval = 0.1  # ready() asks the server
    readiness = "not every instance has its election connection at the server (pg_stat_activity)"
    renewal_evidence = "renewal"

    def setup(self) -> None:
        from harness.pg_cluster import PrivatePostgres

        # Two connections per instance (the election's, the LISTEN one), and room for the readings.
        self.server = PrivatePostgres(max_connections=max(100, 2 * len(self.slots) + 50)).start()
        try:
            self.server.server.execute(f"CREATE DATABASE {DATABASE}")
        except BaseException:
            self.server.cleanup()
            raise

    def backend_env(self, slot: Slot) -> dict[str, str]:
        return {"ELECTION_BACKEND": "postgres", "POSTGRES_URL": self.server.url_for(DATABASE)}

    def ready(self) -> bool:
        if not all(slot.alive for slot in self.slots):
            return False
        names = {row[0] for row in self.server.server.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = %s", (DATABASE,))}
        return all(f"distributed-mutex {slot.life.pid}" in names for slot in self.slots)

    def renewal_marks(self, slot: Slot) -> list[float]:
        return []

    def cost_snapshot(self) -> dict[str, int]:
        (row,) = self.server.server.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", (DATABASE,))
        return {"xact_commit": int(row[0]), "xact_rollback": int(row[1])}

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        window = w1 - w0
        commits = after["xact_commit"] - before["xact_commit"]
        rollbacks = after["xact_rollback"] - before["xact_rollback"]
        return {"counted": "transactions at the server", "per_s": round((commits + rollbacks) / window, 2),
                "how": "pg_stat_database xact_commit + xact_rollback of the election's database over the window "
                       "(read from another database; a backend reports its counts when idle, at most once a "
                       "second, so the window's edges are uncertain by about a second's worth)",
                "commits_per_s": round(commits / window, 2), "rollbacks_per_s": round(rollbacks / window, 2)}

    def close(self) -> None:
        super().close()
        self.server.cleanup()


class RedisGroup(Group):
    """ELECTION_BACKEND=redis with its defaults, on a redis-server of the group's own."""

    backend = "redis"
    anchored_kills = False
    poll_interval = 0.1
    readiness = "not every instance has a named connection at the server (CLIENT LIST)"
    renewal_evidence = "renewal"

    def setup(self) -> None:
        from harness.redis_server import RedisServer

        self.server = RedisServer().start()

    def backend_env(self, slot: Slot) -> dict[str, str]:
        return {"ELECTION_BACKEND": "redis", "REDIS_URL": self.server.url, "REDIS_KEY_PREFIX": self.name}

    def ready(self) -> bool:
        """Every instance is up and connected: one distinct client name per running instance (the
        backend names its connections after itself; a killed one's vanish with its process)."""
        if not all(slot.alive for slot in self.slots):
            return False
        client = self.server.client()
        try:
            names = {c.get("name") for c in client.client_list() if c.get("name", "").startswith("distributed-mutex:")}
        finally:
            client.close()
        return len(names) == len(self.slots)

    def renewal_marks(self, slot: Slot) -> list[float]:
        return []

    def cost_snapshot(self) -> dict[str, int]:
        client = self.server.client()
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        window = w1 - w0
        delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
        # The two INFO readings are ours, not the election's (the first is counted in ``after`` only).
        delta.pop("info", None)
        delta = {name: n for name, n in delta.items() if n > 0}
        scripts = sum(n for name, n in delta.items() if name.startswith(("evalsha", "eval", "fcall")))
        return {"counted": "commands at the server", "per_s": round(sum(delta.values()) / window, 2),
                "how": "INFO commandstats calls over the window, less the INFO readings themselves; the commands "
                       "the scripts run count too (GET, PTTL, HGETALL, PEXPIRE inside an EVALSHA): the "
                       "election's calls, one round trip each, are the script calls",
                "script_calls_per_s": round(scripts / window, 2),
                "by_command_per_s": {name: round(n / window, 2) for name, n in sorted(delta.items())}}

    def server_pids(self) -> dict[str, int]:
        process = self.server.process
        return {"redis-server": process.pid} if process is not None else {}

    def close(self) -> None:
        super().close()
        self.server.cleanup()


DB_GROUPS: dict[str, type[Group]] = {"postgres": PostgresGroup, "redis": RedisGroup}
