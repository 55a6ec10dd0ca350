"""The election backends the chaos rounds run on, and the store each keeps its readings in.

    azure      Azurite on disk (restarted by ``azurite-restart``), the MySQL store; each instance's
               storage proxy feeds an HTTP wire log of its lease calls (harness.httpwatch)
    postgres   a PostgreSQL cluster of the harness's own (harness.pg_cluster: restarting the
               machine's server is not ours to do), the readings in that database too
               (POSTGRES_STORE=true: the store's fencing check locks the lease row itself)
    redis      a redis-server of the harness's own (harness.redis_server), without persistence: a
               restart loses the key and the term counter; the MySQL store

Each instance reaches the election's server through its own TcpProxy (cut, slowed), so the server
sees the instance's connections as that proxy's upstream ports: that is how ``conn-kill`` finds the
leader's connections (pg_stat_activity.client_port, CLIENT LIST's addr).

What says that a leader renewed after a fault healed (the round is settled): Azure's wire log shows
a granted acquire/renew; PostgreSQL's lease row has ``renewed_at`` after that moment, by the
server's clock; Redis's lease key was set again since then (its PTTL is more than the lease less
the time since). The check "every act within the lease of a granted call" reads the HTTP wire log
and is Azure's only: the harness parses no PostgreSQL or Redis protocol. There the same safety is
held by the journal checks (each act inside its own leadership and inside nobody else's) and the
store's term rule, which the database itself enforces.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from DistributedMutex.backends.postgres.arguments import postgres_timing
from DistributedMutex.backends.redis.arguments import default_call_timeout, redis_timing
from DistributedMutex.timing import ElectionTiming
from harness.services import Azurite, MySQLServer, connection_string
from harness.tcpproxy import TcpProxy

if TYPE_CHECKING:
    from harness.chaos.cluster import Slot

BACKENDS = ("azure", "postgres", "redis")
# Which faults each backend's rounds draw from (model.FAULTS is every fault there is).
BACKEND_FAULTS = {
    "azure": ("kill", "freeze", "cut", "slow", "azurite-restart", "mysql-down", "clock-jump"),
    "postgres": ("kill", "freeze", "cut", "slow", "conn-kill", "server-restart", "clock-jump"),
    "redis": ("kill", "freeze", "cut", "slow", "conn-kill", "server-restart", "mysql-down", "clock-jump"),
}
LEASE_TABLE = "distributed_mutex_leases"  # the demo's POSTGRES_TABLE default
ELECTION = "weather-leader"


def backend_timing(backend: str) -> tuple[ElectionTiming, float]:
    """The timing the instances run with (each backend's defaults; Azure's the harness's own: 15 s
    is Azure's shortest lease) and the latency of the ``slow`` fault: 2.5 s on Azure (its calls are
    bounded longer); on PostgreSQL and Redis about 40 % of a call's bound, so a slowed call still
    answers in time and the leader is expected to keep its lease."""
    if backend == "postgres":
        return postgres_timing(5.0), 0.4  # POSTGRES_CALL_TIMEOUT defaults to 1 s
    if backend == "redis":
        return redis_timing(5.0), round(0.4 * default_call_timeout(5.0), 2)
    return ElectionTiming(lease_duration=15, renew_interval=5.0, acquire_interval=2.0), 2.5


def naive_utc(value: Any) -> Any:
    """PostgreSQL returns aware datetimes, MySQL naive UTC ones: the checks take naive UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


@dataclass
class StoreView:
    """Where the readings are; read directly, never through a proxy the faults touch."""

    kind: str  # mysql | postgres
    mysql: MySQLServer | None = None
    database: str = ""
    url: str = ""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.mysql is not None:
            return [tuple(row) for row in self.mysql.query(self.database, sql)]
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as connection:
            cursor = connection.execute(sql)
            return [tuple(naive_utc(v) for v in row) for row in cursor.fetchall()] if cursor.description else []

    def rows(self) -> list[tuple[Any, ...]]:
        try:
            return self.query("SELECT id, city, observed_at, leader_id, term, stored_at FROM weather ORDER BY id")
        except Exception:  # noqa: BLE001 - before the first write the table may not exist yet (or the server restarts)
            return []

    def duplicates(self) -> list[tuple[Any, ...]]:
        try:
            return self.query("SELECT city, observed_at, COUNT(*) FROM weather GROUP BY city, observed_at"
                              " HAVING COUNT(*) > 1")
        except Exception:  # noqa: BLE001 - as rows()
            return []


class ChaosBackend:
    """Azure (the base): Azurite on disk, an HTTP wire log per instance, the MySQL store."""

    name = "azure"
    wire_log = True  # the slots' proxies feed an HttpWatch of the lease calls

    def __init__(self, workdir: Path, mysql: MySQLServer) -> None:
        self.workdir = workdir
        self.mysql = mysql
        self.database = f"chaos_{uuid.uuid4().hex[:12]}"
        self.mysql_proxy: TcpProxy | None = TcpProxy(mysql.port, mysql.host)
        self.store = StoreView("mysql", mysql=mysql, database=self.database)
        self.container = f"chaos-{uuid.uuid4().hex[:16]}"
        self.azurite: Azurite | None = None

    def start(self) -> None:
        (self.workdir / "azurite").mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite(location=self.workdir / "azurite")
        self.azurite.start()
        if self.mysql_proxy is not None:
            self.mysql_proxy.start()

    def upstream_port(self) -> int:
        assert self.azurite is not None
        return self.azurite.port

    def stop(self) -> None:
        if self.mysql_proxy is not None:
            self.mysql_proxy.close()
        if self.azurite is not None:
            self.azurite.stop()
        try:
            self.mysql.drop_database(self.database)
        except Exception:  # noqa: BLE001 - clean-up only
            pass

    def election_env(self, slot: Slot, timing: ElectionTiming) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": connection_string(slot.proxy.port),
                "CONTAINER_NAME": self.container, "BLOB_NAME": ELECTION,
                "LEASE_DURATION": f"{timing.lease_duration:g}", "RENEW_INTERVAL": f"{timing.renew_interval:g}",
                "ACQUIRE_INTERVAL": f"{timing.acquire_interval:g}"}

    def store_env(self, slot: Slot) -> dict[str, str]:
        assert self.mysql_proxy is not None
        return {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(self.mysql_proxy.port), "MYSQL_USER": self.mysql.user,
                "MYSQL_PASSWORD": self.mysql.password, "MYSQL_DATABASE": self.database}

    def env(self, slot: Slot, timing: ElectionTiming) -> dict[str, str]:
        return {**self.election_env(slot, timing), **self.store_env(slot)}

    def renewed_since(self, slot: Slot, instance: str, after: float) -> bool:
        """Whether the storage granted ``instance`` an acquire or renewal after ``after``."""
        assert slot.watch is not None
        return any(t >= after for t in slot.watch.lease_grants())

    def restart_server(self) -> None:
        assert self.azurite is not None
        self.azurite.stop()
        time.sleep(2)  # the outage itself
        self.azurite.start()

    def kill_connections(self, slot: Slot) -> int:
        raise NotImplementedError("conn-kill is not a fault of the Azure rounds")


class PostgresChaos(ChaosBackend):
    name = "postgres"
    wire_log = False

    def __init__(self, workdir: Path, mysql: MySQLServer) -> None:
        super().__init__(workdir, mysql)
        from harness.pg_cluster import PrivatePostgres

        self.mysql_proxy = None
        self.server = PrivatePostgres()
        self.store = StoreView("postgres", url=self.server.url_for(self.database))

    def start(self) -> None:
        self.server.start()
        self.server.server.execute(f"CREATE DATABASE {self.database}")

    def upstream_port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        self.server.cleanup()

    def election_env(self, slot: Slot, timing: ElectionTiming) -> dict[str, str]:
        # Through the slot's proxy: the lease, the LISTEN connection and the store alike.
        return {"ELECTION_BACKEND": "postgres", "POSTGRES_URL": self.server.url_for(self.database, slot.proxy.port),
                "POSTGRES_TABLE": LEASE_TABLE, "POSTGRES_ELECTION": ELECTION,
                "POSTGRES_LEASE_DURATION": f"{timing.lease_duration:g}"}

    def store_env(self, slot: Slot) -> dict[str, str]:
        return {"POSTGRES_STORE": "true"}

    def renewed_since(self, slot: Slot, instance: str, after: float) -> bool:
        try:
            rows = StoreView("postgres", url=self.server.url_for(self.database)).query(
                f"SELECT holder, extract(epoch FROM clock_timestamp() - renewed_at) FROM {LEASE_TABLE}"
                f" WHERE name = '{ELECTION}' AND token IS NOT NULL AND expires_at > clock_timestamp()")
        except Exception:  # noqa: BLE001 - the server may be restarting: not settled yet
            return False
        return bool(rows) and rows[0][0] == instance and float(rows[0][1]) <= time.monotonic() - after

    def restart_server(self) -> None:
        self.server.stop("immediate")  # as a crash: no checkpoint, every connection cut
        time.sleep(2)  # the outage itself
        self.server.start()

    def kill_connections(self, slot: Slot) -> int:
        """pg_terminate_backend of every server process whose client is the leader's proxy."""
        ports = slot.proxy.upstream_ports()
        if not ports:
            return 0
        killed = self.server.server.execute(
            "SELECT pid, application_name, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE client_addr = '127.0.0.1' AND client_port = ANY(%s)", (ports,))
        return sum(1 for _, _, done in killed if done)


class RedisChaos(ChaosBackend):
    name = "redis"
    wire_log = False

    def __init__(self, workdir: Path, mysql: MySQLServer) -> None:
        super().__init__(workdir, mysql)
        from harness.redis_server import RedisServer

        self.server = RedisServer()
        self.prefix = f"dm-chaos-{uuid.uuid4().hex[:12]}"

    def start(self) -> None:
        self.server.start()
        if self.mysql_proxy is not None:
            self.mysql_proxy.start()

    def upstream_port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        if self.mysql_proxy is not None:
            self.mysql_proxy.close()
        self.server.cleanup()
        try:
            self.mysql.drop_database(self.database)
        except Exception:  # noqa: BLE001 - clean-up only
            pass

    def election_env(self, slot: Slot, timing: ElectionTiming) -> dict[str, str]:
        return {"ELECTION_BACKEND": "redis", "REDIS_URL": f"redis://127.0.0.1:{slot.proxy.port}/0",
                "REDIS_KEY_PREFIX": self.prefix, "REDIS_LEASE_DURATION": f"{timing.lease_duration:g}"}

    def renewed_since(self, slot: Slot, instance: str, after: float) -> bool:
        keys = "{" + self.prefix + "}"
        try:
            client = self.server.client()
            try:
                holder = client.get(f"{keys}:lease")
                pttl = client.pttl(f"{keys}:lease")
                leader = client.hgetall(f"{keys}:leader")
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - the server may be restarting: not settled yet
            return False
        if not holder or leader.get("holder") != holder or leader.get("instance_id") != instance or pttl <= 0:
            return False
        set_ago = backend_timing("redis")[0].lease_duration - pttl / 1000  # when the key was last (re)set
        return set_ago <= time.monotonic() - after

    def restart_server(self) -> None:
        self.server.stop()
        time.sleep(2)  # the outage itself
        self.server.start()  # without persistence: the key and the term counter are gone

    def kill_connections(self, slot: Slot) -> int:
        """CLIENT KILL of every connection whose address is one of the leader proxy's upstream ports."""
        ports = {f"127.0.0.1:{port}" for port in slot.proxy.upstream_ports()}
        client = self.server.client()
        try:
            killed = 0
            for entry in client.client_list():
                if entry.get("addr") in ports:
                    killed += int(client.client_kill_filter(_id=entry["id"]))
            return killed
        finally:
            client.close()


def chaos_backend(name: str, workdir: Path, mysql: MySQLServer) -> ChaosBackend:
    classes: dict[str, type[ChaosBackend]] = {"azure": ChaosBackend, "postgres": PostgresChaos, "redis": RedisChaos}
    return classes[name](workdir, mysql)
