"""The election's service for ``make demo``: Azurite (the project's pinned npm package; its Docker
image when there is no Node.js), a ZooKeeper server (the Debian package's jar), or Redis (REDIS_URL,
or the local one at 127.0.0.1:6379, or a redis-server of the demo's own: redis_service.py);
PostgreSQL is not started but found (POSTGRES_URL, or this machine's on 127.0.0.1:5432), the demo's
lease table a fresh one, dropped at the end. A Raft cluster
needs none: the instances are the cluster, each on a port chosen here, authenticated by mutual TLS
with a throwaway CA and a certificate per member made in the work directory (make_certificates),
as a real cluster would be. Every child dies with the demo, even when the demo is killed
(PR_SET_PDEATHSIG)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from distributed_mutex_demo.errors import LaunchError
from distributed_mutex_demo.launcher.faults import Cuts
from distributed_mutex_demo.launcher.postgres import PostgresService
from distributed_mutex_demo.launcher.redis_service import RedisService
from DistributedMutex.backends.raft.certificates import PeerCertificate, make_certificates
from DistributedMutex.errors import MissingExtraError

if TYPE_CHECKING:
    from harness.tcpproxy import TcpProxy

ROOT = Path(__file__).resolve().parents[3]
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
AZURITE_IMAGE = "mcr.microsoft.com/azure-storage/azurite:3.37.0"
DEV_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, in Microsoft's docs): not a secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian's package `zookeeper`
LEASE_BLOB = "weather-leader"


class Services:
    """What ``backend`` needs to elect, started in ``workdir`` and stopped by ``stop()``."""

    def __init__(self, backend: str, workdir: Path, container: str, instances: int) -> None:
        self.backend = backend
        self.workdir = workdir
        self.container = container
        self.azurite: subprocess.Popen[bytes] | None = None
        self.azurite_port = 0
        self.zookeeper: subprocess.Popen[bytes] | None = None
        self.zookeeper_port = 0
        # Raft: the cluster is fixed (RAFT_PEERS): a replacement runs in the slot (RAFT_ID, its
        # certificate and its saved state) of the member it replaces, under a name of its own.
        self.raft_peers = {f"node-{i}": free_port() for i in range(1, instances + 1)} if backend == "raft" else {}
        self.raft_tls: dict[str, PeerCertificate] = {}  # member -> its certificate, key and the CA
        # Every instance (Raft: every member slot) reaches its storage or its peers through a TCP
        # proxy of the chaos harness, so that the demo can cut it off (faults.py).
        self.cuts = Cuts()
        self.raft_links: dict[tuple[str, str], int] = {}  # (from, to) -> the proxy's port
        self.postgres: PostgresService | None = None
        self.redis: RedisService | None = None

    def start(self) -> str:
        """Start what the backend needs; returns where the election happens, for the first line."""
        if self.backend == "zookeeper":
            self.start_zookeeper()
            return f"ZooKeeper on 127.0.0.1:{self.zookeeper_port}, znodes under /election"
        if self.backend == "postgres":
            self.postgres = PostgresService.find()
            return self.postgres.description
        if self.backend == "redis":
            self.redis = RedisService(self.workdir)
            return self.redis.start()
        if self.backend == "raft":
            self.make_raft_certificates()
            return (f"a Raft cluster of {', '.join(self.raft_peers)}, peers authenticated by mutual TLS "
                    f"(a throwaway CA in {self.workdir / 'tls'})")
        self.start_azurite()
        return f"lease blob {self.container}/{LEASE_BLOB}"

    @property
    def note(self) -> str:
        """For the panel's header: how the Raft peers talk (the other backends' services say nothing)."""
        return "peers: mutual TLS" if self.raft_tls else ""

    def stop(self) -> None:
        self.cuts.close()
        if self.postgres is not None:
            self.postgres.drop_table()
        if self.redis is not None:
            self.redis.stop()
        for service in (self.azurite, self.zookeeper):
            if service is not None and service.poll() is None:
                service.terminate()
                try:
                    service.wait(10)
                except subprocess.TimeoutExpired:
                    service.kill()
                    service.wait()

    def backend_env(self, slot: str) -> dict[str, str]:
        """The settings that point a new instance (Raft: running as member ``slot``) at the election,
        through a proxy of its own (Raft: the member's links, made once)."""
        if self.backend == "zookeeper":
            proxy = self.cuts.add(slot, tcp_proxy(self.zookeeper_port))
            return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": f"127.0.0.1:{proxy.port}",
                    "ZOOKEEPER_PATH": "/election"}
        if self.backend == "postgres" and self.postgres is not None:
            proxy = self.cuts.add(slot, tcp_proxy(self.postgres.port, self.postgres.host))
            return {"ELECTION_BACKEND": "postgres", "POSTGRES_URL": self.postgres.url_via(proxy.port),
                    "POSTGRES_TABLE": self.postgres.table}
        if self.backend == "redis" and self.redis is not None:
            upstream = self.redis.upstream
            if upstream is None:  # a unix socket or TLS: no proxy, so this instance cannot be cut off
                return self.redis.env(None)
            return self.redis.env(self.cuts.add(slot, tcp_proxy(upstream[1], upstream[0])).port)
        if self.backend == "raft":
            files = self.raft_tls[slot]
            peers = {peer: port if peer == slot else self.raft_links[(slot, peer)]
                     for peer, port in self.raft_peers.items()}
            return {"ELECTION_BACKEND": "raft", "RAFT_ID": slot, "RAFT_DATA_DIR": str(self.workdir / "raft"),
                    "RAFT_PEERS": ",".join(f"{peer}=127.0.0.1:{port}" for peer, port in peers.items()),
                    "RAFT_TLS_CERT": str(files.cert), "RAFT_TLS_KEY": str(files.key), "RAFT_TLS_CA": str(files.ca)}
        proxy = self.cuts.add(slot, tcp_proxy(self.azurite_port))
        return {"ELECTION_BACKEND": "azure", "AZURE_STORAGE_CONNECTION_STRING": self.connection_string(proxy.port),
                "CONTAINER_NAME": self.container}

    def lease_duration(self) -> float:
        """How long a leader's lease lasts, as the instances are configured (for the countdown)."""
        if self.backend == "raft":  # the lease is the shortest election timeout (backends/raft)
            text = os.environ.get("RAFT_ELECTION_TIMEOUT", "").strip() or "1000-2000"
            return float(text.split("-")[0]) / 1000
        name, default = {"zookeeper": ("ZOOKEEPER_SESSION_TIMEOUT", "5"), "postgres": ("POSTGRES_LEASE_DURATION", "5"),
                         "redis": ("REDIS_LEASE_DURATION", "5")}.get(self.backend, ("LEASE_DURATION", "15"))
        try:
            return float(os.environ.get(name, "").strip() or default)
        except ValueError:  # the instances refuse it themselves, naming it
            return float(default)

    # -- Raft ---------------------------------------------------------------------------------

    def make_raft_certificates(self) -> None:
        """A CA and a certificate per member, as a user makes them for a real cluster (docs/demo.md).
        Loopback would allow plain TCP, but the demo shows the cluster as it should run anywhere."""
        try:
            self.raft_tls = make_certificates(self.workdir / "tls", self.raft_peers)
        except MissingExtraError:
            raise LaunchError("the Raft demo makes its peers' certificates with the module 'cryptography', which "
                              "is not installed: pip install 'distributed-mutex[demo]'") from None
        # A proxy on every directed link (as harness/raft_cluster.py): cutting a member off blackholes
        # both ways. The proxies pass TLS through untouched: the members still authenticate each other.
        for a in self.raft_peers:
            for b, port in self.raft_peers.items():
                if a != b:
                    proxy = tcp_proxy(port)
                    self.cuts.add(a, proxy)
                    self.cuts.add(b, proxy)
                    self.raft_links[(a, b)] = proxy.port

    # -- ZooKeeper ---------------------------------------------------------------------------

    def start_zookeeper(self) -> None:
        if not ZOOKEEPER_JAR.exists() or not shutil.which("java"):
            raise LaunchError("ZooKeeper is not installed: apt-get install zookeeper (it brings Java)")
        self.zookeeper_port = free_port()
        data = self.workdir / "zookeeper"
        data.mkdir()
        config = self.workdir / "zoo.cfg"
        config.write_text(f"tickTime=1000\ndataDir={data}\nclientPort={self.zookeeper_port}\n"
                          "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n")
        command = ["java", "-Xmx256m", "-cp", f"{ZOOKEEPER_JAR}:/usr/share/java/*",
                   "org.apache.zookeeper.server.ZooKeeperServerMain", str(config)]
        self.zookeeper = self._launch("ZooKeeper", command, self.workdir, self.zookeeper_port,
                                      lambda port: four_letter_word(port, b"ruok") == b"imok", timeout=30)

    # -- Azurite -----------------------------------------------------------------------------

    def start_azurite(self) -> None:
        self.azurite_port = free_port()
        # --silent: no access-log line per request into azurite.log (a renewal every few seconds).
        location = self.workdir / "azurite"
        location.mkdir()
        if AZURITE_BLOB.exists() and shutil.which("node"):
            command = [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(self.azurite_port),
                       "--location", str(location), "--disableTelemetry", "--silent"]
        elif shutil.which("docker"):
            command = ["docker", "run", "--rm", "-p", f"127.0.0.1:{self.azurite_port}:10000", AZURITE_IMAGE,
                       "azurite-blob", "--blobHost", "0.0.0.0", "--inMemoryPersistence", "--disableTelemetry",
                       "--silent"]
        else:
            raise LaunchError("Azurite is not installed (run `npm ci`; `make demo` does it) and there is no Docker")
        self.azurite = self._launch("Azurite", command, ROOT, self.azurite_port, answers_http, timeout=60)

    def connection_string(self, port: int) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")

    def _launch(self, name: str, command: list[str], cwd: Path, port: int, ready: Callable[[int], bool],
                timeout: float) -> subprocess.Popen[bytes]:
        """Start a service and wait until it answers on ``port``; stopped again if it never does."""
        log_path = self.workdir / f"{name.lower()}.log"
        with log_path.open("wb") as log_file:  # the child keeps its own copy
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd,
                                       preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LaunchError(f"{name} exited at start (code {process.returncode}); see {log_path}")
            if ready(port):
                return process
            time.sleep(0.2)
        process.kill()
        process.wait()
        raise LaunchError(f"{name} did not answer on port {port} within {timeout:g} s")


def die_with_parent() -> None:
    """Children get SIGTERM if the demo itself dies (even by SIGKILL): nothing is left behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def tcp_proxy(upstream_port: int, upstream_host: str = "127.0.0.1") -> TcpProxy:
    """A started proxy of the chaos harness's (the demo runs from a checkout: harness/ is beside src/)."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from harness.tcpproxy import TcpProxy

    return TcpProxy(upstream_port, upstream_host).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers_http(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}?comp=list", timeout=1)
    except urllib.error.HTTPError:
        return True  # it answered (403 without a signature): it is up
    except OSError:
        return False
    return True


def four_letter_word(port: int, word: bytes) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(word)
            return connection.recv(64)
    except OSError:
        return b""
