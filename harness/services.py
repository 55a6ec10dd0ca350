"""Real services for the tests: Azurite started from the project's pinned npm package, the
MySQL-compatible server given by MYSQL_* (default: the local one at 127.0.0.1:3306, root), and a
ZooKeeper server from the Debian package."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mysql.connector

ROOT = Path(__file__).resolve().parents[1]
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_IMAGE = "mcr.microsoft.com/azure-storage/azurite:3.37.0"  # the version package.json pins
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
USER_HOSTS = ("127.0.0.1", "localhost")


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; nothing if it is not running."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_handed_out: set[int] = set()
_handing_out = threading.Lock()  # the bench sets its groups up in threads of their own


def rebindable_port(lowest: int = 20000) -> int:
    """A free port below the kernel's ephemeral range, for a listener that is killed and started
    again on the same port (a Raft peer in RAFT_PEERS): a port of free_port() is an ephemeral one,
    which any outgoing connection (the other peers dialling the dead one, a Redis client) may take
    as its own meanwhile, and the restart then fails with "Address already in use"."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            highest = int(ports.read().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        highest = 32767
    for port in random.sample(range(lowest, highest + 1), min(200, highest + 1 - lowest)):
        with _handing_out:
            if port in _handed_out:  # still free, but given to a peer of this process already
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                _handed_out.add(port)
                return port
    return free_port()


def connection_string(port: int, key: str = AZURITE_KEY, host: str = "127.0.0.1") -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT};")


class Azurite:
    """The blob service of Azurite on a free port, in memory (or on disk, to survive restarts)."""

    def __init__(self, location: Path | None = None, *, extra_args: tuple[str, ...] = (),
                 certificate: Path | None = None, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> None:
        """``certificate``: serve https with it (pass its key in ``extra_args``: --key PATH).
        ``host`` and ``prefix``: the address to serve on and words run before the command (the
        partition harness: a network namespace's address and ``ip netns exec NS``)."""
        # From the project's npm package; without Node.js, Azurite's Docker image (same version).
        self.docker = not (AZURITE_BLOB.exists() and shutil.which("node")) and shutil.which("docker") is not None
        if not self.docker and not AZURITE_BLOB.exists():
            raise RuntimeError(f"Azurite is not installed ({AZURITE_BLOB} missing) and there is no Docker: "
                               "run `npm ci` in the project root (`make test` does it)")
        self.container = f"dm-test-azurite-{os.getpid()}-{free_port()}"
        self.port = free_port()
        self.location = location
        self.extra_args = extra_args
        self.certificate = certificate
        self.host = host
        self.prefix = prefix
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="azurite-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def connection_string(self) -> str:
        return connection_string(self.port, host=self.host)

    def start(self, timeout: float = 30.0) -> Azurite:
        storage = ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        # --silent: no access-log line per request (thousands per test run, into a file nobody reads);
        # what it says at start and its errors still go to the log file.
        args = ["--blobPort", str(self.port), "--disableTelemetry", "--silent", *storage,
                *(["--cert", str(self.certificate)] if self.certificate else []), *self.extra_args]
        if self.docker:
            # Same port inside and out, and every path mounted where it is: the arguments stay as they are.
            paths = {Path(a) if Path(a).is_dir() else Path(a).parent for a in args if a.startswith("/")}
            mounts = [f"--volume={p}:{p}" for p in sorted(paths)]
            command = ["docker", "run", "--rm", f"--name={self.container}",
                       f"--publish=127.0.0.1:{self.port}:{self.port}", *mounts,
                       AZURITE_IMAGE, "azurite-blob", "--blobHost", "0.0.0.0", *args]
            timeout = max(timeout, 300.0)  # the first run pulls the image
        else:
            command = [*self.prefix, str(AZURITE_BLOB), "--blobHost", self.host, *args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited at start (code {self.process.returncode}); "
                                   f"see {self._log.name}")
            try:
                urllib.request.urlopen(f"{self.scheme}://{self.host}:{self.port}/{AZURITE_ACCOUNT}?comp=list",
                                       timeout=1, context=self._tls_context())
            except urllib.error.HTTPError:
                return self  # it answered (403 without a signature): it is up
            except OSError:
                time.sleep(0.1)
                continue
            return self
        self.stop()
        raise RuntimeError(f"Azurite did not answer on port {self.port} within {timeout:g} s")

    @property
    def scheme(self) -> str:
        return "https" if self.certificate else "http"

    def _tls_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.certificate)) if self.certificate else None

    def stop(self) -> None:
        stop_process(self.process)
        if self.docker:
            subprocess.run(["docker", "rm", "--force", self.container], capture_output=True, check=False)


ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# The four-letter words the tests use: readiness (ruok), the mode and last zxid (srvr), who watches
# what (wchc, wchp).
ZOOKEEPER_WORDS = ("ruok", "srvr", "mntr", "cons", "wchc", "wchp")


class ZooKeeperServer:
    """A standalone ZooKeeper on a free port with its data in a temporary directory.

    ``tick`` (seconds) sets what the server grants: session timeouts from 2 to 20 ticks, and how
    late it may expire a session (up to a tick after its timeout). Half a second keeps crash tests
    short and lets sessions of 1 to 10 s through unchanged.
    """

    def __init__(self, tick: float = 0.5) -> None:
        java = shutil.which("java")
        if java is None or not ZOOKEEPER_JAR.exists():
            raise RuntimeError(f"ZooKeeper is not installed ({'java' if java is None else ZOOKEEPER_JAR} missing): "
                               "apt-get install zookeeper (`.ci/run` does it)")
        self.java = java
        self.tick = tick
        # Where it serves its clients, and words run before java (the partition harness: a
        # network namespace's address and ``ip netns exec NS``).
        self.host = "127.0.0.1"
        self.prefix: tuple[str, ...] = ()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="zookeeper-"))
        self.log = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    main_class = "org.apache.zookeeper.server.ZooKeeperServerMain"

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ZooKeeperServer:
        self.launch()
        return self.wait_ready(timeout)

    def config_lines(self) -> list[str]:
        """zoo.cfg; a member of an ensemble (harness/zk_ensemble.py) adds its quorum's lines."""
        return [f"tickTime={round(self.tick * 1000)}", f"dataDir={self.directory / 'data'}",
                f"clientPort={self.port}", f"clientPortAddress={self.host}", "admin.enableServer=false",
                # No limit on connections from one address (60 by default): the bench runs 100 clients
                # on 127.0.0.1.
                "maxClientCnxns=0",
                f"4lw.commands.whitelist={','.join(ZOOKEEPER_WORDS)}"]

    def launch(self) -> None:
        """Start the process without waiting: an ensemble's members must all be starting before
        any of them can serve."""
        (self.directory / "data").mkdir(exist_ok=True)
        config = self.directory / "zoo.cfg"
        config.write_text("\n".join([*self.config_lines(), ""]))
        with self.log.open("ab") as log:
            # The jar's manifest lists its own classpath (Debian's package); no log4j config: quiet.
            self.process = subprocess.Popen(
                [*self.prefix, self.java, "-Xmx256m", "-cp", str(ZOOKEEPER_JAR), self.main_class, str(config)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def serving(self) -> bool:
        try:
            return self.command("ruok", timeout=1) == "imok"
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> ZooKeeperServer:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited at start (code {self.process.returncode}); see {self.log}")
            if self.serving():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not serve on port {self.port} within {timeout:g} s; see {self.log}")

    def mode(self) -> str | None:
        """``srvr``'s Mode: standalone, leader or follower; None while it does not serve."""
        try:
            answer = self.command("srvr", timeout=1)
        except OSError:
            return None
        match = re.search(r"^Mode: (\w+)$", answer, re.MULTILINE)
        return match[1] if match else None

    def zxid(self) -> int:
        """``srvr``'s Zxid: the id of the last transaction (write) the server applied; reads and
        pings leave it as it is."""
        match = re.search(r"^Zxid: (0x[0-9a-f]+)$", self.command("srvr"), re.MULTILINE)
        assert match is not None, "srvr without a Zxid line"
        return int(match[1], 16)

    def command(self, word: str, timeout: float = 5.0) -> str:
        """A four-letter word's answer (ZOOKEEPER_WORDS are enabled)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as connection:
            connection.sendall(word.encode("ascii"))
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    def requests_from(self, session_id: int | None) -> int:
        """``cons``: how many requests (pings too) the server has received on that session's
        connection; 0 if it has none."""
        for line in self.command("cons").splitlines():
            fields = dict(part.split("=", 1) for part in line[line.find("(") + 1:line.rfind(")")].split(",")
                          if "=" in part)
            if session_id is not None and fields.get("sid") == f"0x{session_id:x}":
                return int(fields.get("recved", "0"))
        return 0

    def watches_by_session(self) -> dict[int, set[str]]:
        """``wchc``: every session's watched paths."""
        watches: dict[int, set[str]] = {}
        session: int | None = None
        for line in self.command("wchc").splitlines():
            if line.startswith("0x"):
                session = int(line.strip(), 16)
                watches[session] = set()
            elif line.strip() and session is not None:
                watches[session].add(line.strip())
        return watches

    def watchers_by_path(self) -> dict[str, set[int]]:
        """``wchp``: every watched path's sessions."""
        watchers: dict[str, set[int]] = {}
        path: str | None = None
        for line in self.command("wchp").splitlines():
            if line.startswith("/"):
                path = line.strip()
                watchers[path] = set()
            elif line.strip().startswith("0x") and path is not None:
                watchers[path].add(int(line.strip(), 16))
        return watchers

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_environment(cls) -> MySQLServer:
        return cls(host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
                   port=int(os.environ.get("MYSQL_PORT", "3306")),
                   user=os.environ.get("MYSQL_USER", "root"),
                   password=os.environ.get("MYSQL_PASSWORD", ""))

    def connect(self, database: str | None = None) -> mysql.connector.MySQLConnection:
        return mysql.connector.connect(host=self.host, port=self.port, user=self.user,
                                       password=self.password, database=database,
                                       connection_timeout=5, autocommit=True)

    def check(self) -> None:
        try:
            self.connect().close()
        except mysql.connector.Error as exc:
            raise RuntimeError(f"no MySQL-compatible server answers at {self.host}:{self.port} as "
                               f"{self.user!r} ({exc.errno}); start one or set MYSQL_HOST/PORT/USER/"
                               "PASSWORD (`make test` and .ci/run start MariaDB)") from None

    def drop_database(self, name: str) -> None:
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def create_user(self, user: str, password: str, grants: dict[str, str]) -> None:
        """A user with exactly ``grants`` ({"`db`.*": "SELECT, INSERT"}), from 127.0.0.1 and localhost
        (MariaDB sees a TCP client on 127.0.0.1 as either, depending on its name resolution)."""
        with self.connect() as connection, connection.cursor() as cursor:
            for host in USER_HOSTS:
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
                cursor.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                for on, privileges in grants.items():
                    cursor.execute(f"GRANT {privileges} ON {on} TO '{user}'@'{host}'")

    def drop_user(self, user: str) -> None:
        with self.connect() as connection, connection.cursor() as cursor:
            for host in USER_HOSTS:
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


def node_available() -> bool:
    return shutil.which("node") is not None
