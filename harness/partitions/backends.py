"""The three backends as clusters in network namespaces: their services, their instances' settings,
and the bound on leaderless time each one's timing promises (stated here, from its timing).

    raft       n instances, each a Raft peer on its namespace's address (RAFT_PEERS), mutual TLS
               with the cluster's own throwaway CA (RAFT_TLS_*); no service
    zookeeper  a 3-server ensemble, each server in its own namespace, listening on its address
    azure      Azurite (blob service) in its own namespace; the instances hold a lease on one blob
"""

from __future__ import annotations

from pathlib import Path

from DistributedMutex.backends.raft.arguments import raft_timing
from DistributedMutex.backends.raft.certificates import PeerCertificate, make_certificates
from DistributedMutex.backends.zookeeper.arguments import zookeeper_timing
from DistributedMutex.timing import ElectionTiming
from harness.partitions.cluster import Cluster
from harness.processes import wait_until
from harness.services import Azurite, connection_string
from harness.zk_ensemble import QuorumMember

# A Python interpreter's (or a JVM's) scheduling on a busy 2-core machine: added to every bound.
SCHEDULING_SLACK = 1.0
RAFT_PORT = 7000  # each peer in its own namespace: the same port everywhere


def raft_env(name: str, peers: dict[str, str], data_dir: Path, election_timeout: tuple[float, float],
             certificates: dict[str, PeerCertificate], port: int = RAFT_PORT) -> dict[str, str]:
    """The settings of the Raft instance ``name`` among ``peers`` (id -> address), in one place.
    The namespaces' addresses are not loopback ones: the peers must talk mutual TLS, each with its
    certificate from the cluster's CA (``certificates``: make_certificates' files by peer id)."""
    low, high = election_timeout
    files = certificates[name]
    return {"RAFT_PEERS": ",".join(f"{peer}={address}:{port}" for peer, address in peers.items()),
            "RAFT_ID": name, "RAFT_DATA_DIR": str(data_dir),
            "RAFT_ELECTION_TIMEOUT": f"{low * 1000:g}-{high * 1000:g}",
            "RAFT_TLS_CERT": str(files.cert), "RAFT_TLS_KEY": str(files.key), "RAFT_TLS_CA": str(files.ca)}


class RaftCluster(Cluster):
    backend = "raft"
    instance_prefix = "node"

    def __init__(self, workdir: Path, instances: int = 3, election_timeout: tuple[float, float] = (0.5, 1.0)) -> None:
        super().__init__(workdir, instances)
        self.election_timeout = election_timeout
        self.timing = raft_timing(election_timeout)
        self.certificates: dict[str, PeerCertificate] = {}

    @property
    def bound(self) -> float:
        """The old leader stops acting on its own before its lease (the minimum election timeout
        from its last acknowledged heartbeat) ends; a follower campaigns at most the maximum
        election timeout after the last heartbeat it heard, and a split vote costs at most one more;
        the winner's loop acquires within acquire_interval:

            2 x max election timeout + acquire_interval + slack
        """
        return 2 * self.election_timeout[1] + self.timing.acquire_interval + SCHEDULING_SLACK

    def peers(self, name: str) -> list[str]:
        return self.others(name)

    def start_services(self) -> None:
        """No service: the cluster's throwaway CA and a certificate per peer id."""
        self.certificates = make_certificates(self.workdir / "tls", self.names)

    def env(self, name: str) -> dict[str, str]:
        addresses = {n: self.network.members[n].address for n in self.names}
        return {**raft_env(name, addresses, self.workdir / "raft", self.election_timeout, self.certificates),
                "OPENWEATHER_URL": self.weather_url(name)}

    def minority(self, leader: str) -> list[str]:
        """With 5 peers the leader keeps one follower on its side (2 of 5); with 3, it is alone."""
        return [leader, *self.others(leader)[:(len(self.names) - 1) // 2 - 1]]


class NamespacedQuorumMember(QuorumMember):
    """A server of the ensemble in its own namespace, on its address, the same ports everywhere."""

    def __init__(self, myid: int, address: str, prefix: tuple[str, ...], addresses: dict[int, str],
                 tick: float, sync_limit: int) -> None:
        super().__init__(myid, tick, sync_limit)
        self.host, self.prefix, self.addresses = address, prefix, addresses
        self.port, self.quorum_port, self.election_port = 2181, 2888, 3888

    def config_lines(self) -> list[str]:
        (self.directory / "data" / "myid").write_text(f"{self.myid}\n")
        base = [line for line in super().config_lines() if not line.startswith("server.")]
        return [*base, *(f"server.{peer}={address}:{self.quorum_port}:{self.election_port}"
                         for peer, address in sorted(self.addresses.items()))]


class ZooKeeperCluster(Cluster):
    backend = "zookeeper"
    TICK = 0.5  # s: sessions of 1 to 10 s
    SYNC_LIMIT = 4  # ticks: a follower cut from its leader notices within 2 s
    ELECTION = 2.0  # s: the remaining servers elect and sync a new leader (measured: well under 1 s)

    def __init__(self, workdir: Path, instances: int = 3, session_timeout: float = 2.0) -> None:
        super().__init__(workdir, instances)
        self.session_timeout = session_timeout
        self.timing = zookeeper_timing(session_timeout)
        self.servers: dict[str, NamespacedQuorumMember] = {}

    def service_names(self) -> list[str]:
        return ["zk-1", "zk-2", "zk-3"]

    @property
    def bound(self) -> float:
        """When the ensemble's own leader is cut off, the others notice within syncLimit x tick and
        elect; the new leader gives every session its timeout afresh, so the old leader's session
        expires (within a tick of its timeout) and its znode goes; the next contender's watch fires
        and it acquires (acquire_interval at the latest):

            syncLimit x tick + election + session timeout + tick + acquire_interval + slack
        """
        return (self.SYNC_LIMIT * self.TICK + self.ELECTION + self.session_timeout + self.TICK
                + self.timing.acquire_interval + SCHEDULING_SLACK)

    def start_services(self) -> None:
        members = self.network.members
        addresses = {n: members[f"zk-{n}"].address for n in (1, 2, 3)}
        for n in (1, 2, 3):
            member = members[f"zk-{n}"]
            self.servers[member.name] = NamespacedQuorumMember(n, member.address, member.prefix, addresses,
                                                               self.TICK, self.SYNC_LIMIT)
        for server in self.servers.values():
            server.launch()
        for server in self.servers.values():
            server.wait_ready(60)

    def stop_services(self) -> None:
        for server in self.servers.values():
            server.stop()

    def ensemble_leader(self) -> str:
        return wait_until(lambda: next((n for n, s in self.servers.items() if s.mode() == "leader"), None),
                          self.bound + 10, "the ZooKeeper ensemble has no leader")

    def env(self, name: str) -> dict[str, str]:
        return {"ZOOKEEPER_HOSTS": ",".join(s.hosts for s in self.servers.values()),
                "ZOOKEEPER_PATH": "/partitions", "ZOOKEEPER_SESSION_TIMEOUT": f"{self.session_timeout:g}",
                "OPENWEATHER_URL": self.weather_url(name)}

    def minority(self, leader: str) -> list[str]:
        """The leader instance, the ensemble's leader server and one more instance: 1 of 3
        servers, 2 of 3 instances on the minority side (the servers decide: the instances' own
        majority on that side cannot lead)."""
        return [leader, self.ensemble_leader(), *self.others(leader)[:1]]


class AzureCluster(Cluster):
    backend = "azure"
    LEASE, RENEW, ACQUIRE = 15, 2.0, 1.0  # 15 s: Azure's shortest lease

    def __init__(self, workdir: Path, instances: int = 3) -> None:
        super().__init__(workdir, instances)
        self.timing = ElectionTiming(self.LEASE, self.RENEW, self.ACQUIRE)
        self.azurite: Azurite | None = None

    def service_names(self) -> list[str]:
        return ["azurite"]

    @property
    def bound(self) -> float:
        """The old leader stops acting safety_margin before its lease can end (its last renewal's
        send time + lease); the blob's lease ends lease after the service received that renewal;
        the next contender acquires within acquire_interval:

            safety_margin + acquire_interval + slack
        """
        return self.timing.safety_margin + self.timing.acquire_interval + SCHEDULING_SLACK

    def start_services(self) -> None:
        member = self.network.members["azurite"]
        self.azurite = Azurite(host=member.address, prefix=member.prefix).start(60)

    def stop_services(self) -> None:
        if self.azurite is not None:
            self.azurite.stop()

    def env(self, name: str) -> dict[str, str]:
        assert self.azurite is not None
        return {"AZURE_STORAGE_CONNECTION_STRING": connection_string(self.azurite.port, host=self.azurite.host),
                "AZURE_STORAGE_ALLOW_HTTP": "true",  # the emulator on another (namespace's) address
                "CONTAINER_NAME": "partitions", "BLOB_NAME": "leader", "LEASE_DURATION": str(self.LEASE),
                "RENEW_INTERVAL": f"{self.RENEW:g}", "ACQUIRE_INTERVAL": f"{self.ACQUIRE:g}",
                "OPENWEATHER_URL": self.weather_url(name)}


BACKENDS: dict[str, type[Cluster]] = {"raft": RaftCluster, "zookeeper": ZooKeeperCluster, "azure": AzureCluster}
