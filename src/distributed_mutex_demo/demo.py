"""``make demo``: three instances in one terminal, a live status panel, and failovers to watch.

It starts Azurite (the project's pinned npm package; Docker when there is no Node.js), then N
instances of ``src/DistributedMutex/test.py`` sharing one lease blob, each line of their logs under
a coloured prefix. With ELECTION_BACKEND=zookeeper it starts a ZooKeeper server instead (the Debian
package's jar); with ELECTION_BACKEND=raft it needs nothing: the instances are the Raft cluster.
Now and then it stops the leader, alternating a kill (SIGKILL: the lease must
run out) and a graceful stop (SIGTERM: the lease is released), and starts a fresh instance in its
place, so failover happens in front of you. Keys: k kills the leader, s stops it gracefully, a adds
an instance, q quits. Ctrl-C ends everything; nothing is left running.

Who leads and since when is read from the instances' leadership journal (LEADERSHIP_JOURNAL), the
lease's time left from the blob (every renewal stamps its Last-Modified), the last write from the
leader's log. ``DEMO_SECONDS=N`` ends the demo after N seconds with a summary and exit code 0.

Settings the demo reads (on top of the instances' own, which pass through): DEMO_SECONDS (0: until
you quit), DEMO_INSTANCES (3), DEMO_FAILOVER_EVERY (seconds between automatic failovers, 30; 0: none),
ELECTION_BACKEND (azure, zookeeper or raft).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "src" / "DistributedMutex" / "test.py"
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
AZURITE_IMAGE = "mcr.microsoft.com/azure-storage/azurite:3.37.0"
DEV_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, in Microsoft's docs): not a secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
COLOURS = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m")
RESET, BOLD, DIM = "\033[0m", "\033[1m", "\033[2m"
PANEL_LOG_LINES = 14
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian's package `zookeeper`
BACKENDS = ("azure", "zookeeper", "raft")
# What a kill and a graceful stop mean for each backend, as the demo says it.
KILL_MEANS = {"azure": "its lease must run out", "zookeeper": "its session must expire",
              "raft": "the others must miss its heartbeats"}
STOP_MEANS = {"azure": "it releases its lease", "zookeeper": "it deletes its znode",
              "raft": "it hands leadership over"}


class DemoError(Exception):
    """The demo cannot start (no Azurite, a bad DEMO_* value): one line, exit 2."""


@dataclass
class Disruption:
    kind: str  # "kill" or "graceful stop"
    victim: str
    victim_pid: int  # a Raft member comes back under its own name: the process tells them apart
    at: float  # time.monotonic()
    successor: str | None = None
    took: float | None = None


@dataclass
class Node:
    name: str
    colour: str
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    last_write: str = "-"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Demo:
    def __init__(self, *, seconds: float, instances: int, failover_every: float, out: TextIO,
                 backend: str = "azure") -> None:
        self.backend = backend
        self.seconds = seconds
        self.instances = instances
        self.failover_every = failover_every
        self.out = out
        self.live = out.isatty()
        self.workdir = Path(tempfile.mkdtemp(prefix="dm-demo-"))
        self.journal = self.workdir / "leadership.jsonl"
        self.container = f"demo-{uuid.uuid4().hex[:12]}"
        self.nodes: list[Node] = []
        self.disruptions: list[Disruption] = []
        self.log: deque[str] = deque(maxlen=PANEL_LOG_LINES)
        self.lock = threading.RLock()
        self.azurite: subprocess.Popen[bytes] | None = None
        self.azurite_port = 0
        self.zookeeper: subprocess.Popen[bytes] | None = None
        self.zookeeper_port = 0
        # Raft: the cluster is fixed (RAFT_PEERS); a stopped member comes back under its own name.
        self.raft_peers = {f"node-{i}": _free_port() for i in range(1, instances + 1)} if backend == "raft" else {}
        self.next_number = 1
        self.next_kind = "graceful stop"  # the first one is quick to watch; then they alternate
        self.stopping = threading.Event()
        self.replacements: queue.Queue[str] = queue.Queue()
        self.running_at_end = 0

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        where = self.start_services()
        for _ in range(self.instances):
            self.add_node()
        self.say(f"{BOLD}demo{RESET}: {self.instances} instances, {where};"
                 " keys: k kill the leader, s stop it gracefully, a add an instance, q quit")
        next_failover = started + self.failover_every if self.failover_every else float("inf")
        with _keys(self.live) as keys:
            while not self.stopping.is_set():
                now = time.monotonic()
                if self.seconds and now - started >= self.seconds:
                    break
                self.track()
                pending = any(d.took is None for d in self.disruptions)
                if pending and self.failover_every:
                    # The next automatic failover comes a while after this one has played out.
                    next_failover = now + self.failover_every
                elif now >= next_failover and self.leader() is not None:
                    self.disrupt(self.next_kind)
                    self.next_kind = "kill" if self.next_kind == "graceful stop" else "graceful stop"
                while not self.replacements.empty():
                    stopped = self.replacements.get_nowait()
                    self.add_node(stopped if self.raft_peers else None)
                key = keys.read(timeout=0.25)
                if key == "q":
                    break
                if key in ("k", "s"):
                    self.disrupt("kill" if key == "k" else "graceful stop")
                elif key == "a" and self.raft_peers:
                    self.say(f"{BOLD}demo{RESET}: a Raft cluster is the members RAFT_PEERS lists; "
                             "not adding an instance")
                elif key == "a":
                    self.add_node()
                self.draw(now - started)
        self.track()
        self.running_at_end = sum(node.alive for node in self.snapshot())
        self.stopping.set()
        return 0

    def snapshot(self) -> list[Node]:
        with self.lock:
            return list(self.nodes)

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Stop every instance (gracefully, then for sure) and Azurite; nothing is left behind."""
        self.stopping.set()  # add_node refuses from now on
        for node in self.snapshot():
            if node.alive:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for node in self.snapshot():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.1, deadline - time.monotonic()))
            if node.alive:
                node.process.kill()
                node.process.wait()
        for service in (self.azurite, self.zookeeper):
            if service is not None and service.poll() is None:
                service.terminate()
                try:
                    service.wait(10)
                except subprocess.TimeoutExpired:
                    service.kill()
                    service.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the election's service ---------------------------------------------------------------

    def start_services(self) -> str:
        """Start what the backend needs; returns where the election happens, for the first line."""
        if self.backend == "zookeeper":
            self.start_zookeeper()
            return f"ZooKeeper on 127.0.0.1:{self.zookeeper_port}, znodes under /election"
        if self.backend == "raft":
            return f"a Raft cluster of {', '.join(self.raft_peers)}"
        self.start_azurite()
        return f"lease blob {self.container}/weather-leader"

    def start_zookeeper(self) -> None:
        if not ZOOKEEPER_JAR.exists() or not shutil.which("java"):
            raise DemoError("ZooKeeper is not installed: apt-get install zookeeper (it brings Java)")
        self.zookeeper_port = _free_port()
        data = self.workdir / "zookeeper"
        data.mkdir()
        config = self.workdir / "zoo.cfg"
        config.write_text(f"tickTime=1000\ndataDir={data}\nclientPort={self.zookeeper_port}\n"
                          "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n")
        command = ["java", "-Xmx256m", "-cp", f"{ZOOKEEPER_JAR}:/usr/share/java/*",
                   "org.apache.zookeeper.server.ZooKeeperServerMain", str(config)]
        self.zookeeper = self._launch("ZooKeeper", command, self.workdir, self.zookeeper_port,
                                      lambda port: _four_letter_word(port, b"ruok") == b"imok", timeout=30)

    def _launch(self, name: str, command: list[str], cwd: Path, port: int, ready: Callable[[int], bool],
                timeout: float) -> subprocess.Popen[bytes]:
        """Start a service and wait until it answers on ``port``; stopped again if it never does."""
        log_path = self.workdir / f"{name.lower()}.log"
        with log_path.open("wb") as log_file:  # the child keeps its own copy
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd,
                                       preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DemoError(f"{name} exited at start (code {process.returncode}); see {log_path}")
            if ready(port):
                return process
            time.sleep(0.2)
        process.kill()
        process.wait()
        raise DemoError(f"{name} did not answer on port {port} within {timeout:g} s")

    def backend_env(self, name: str) -> dict[str, str]:
        if self.backend == "zookeeper":
            return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": f"127.0.0.1:{self.zookeeper_port}",
                    "ZOOKEEPER_PATH": "/election"}
        if self.backend == "raft":
            return {"ELECTION_BACKEND": "raft", "RAFT_ID": name, "RAFT_DATA_DIR": str(self.workdir / "raft"),
                    "RAFT_PEERS": ",".join(f"{peer}=127.0.0.1:{port}" for peer, port in self.raft_peers.items())}
        return {"ELECTION_BACKEND": "azure", "AZURE_STORAGE_CONNECTION_STRING": self.connection_string,
                "CONTAINER_NAME": self.container}

    # -- Azurite -----------------------------------------------------------------------------

    def start_azurite(self) -> None:
        self.azurite_port = _free_port()
        location = self.workdir / "azurite"
        location.mkdir()
        if AZURITE_BLOB.exists() and shutil.which("node"):
            command = [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(self.azurite_port),
                       "--location", str(location), "--disableTelemetry"]
        elif shutil.which("docker"):
            command = ["docker", "run", "--rm", "-p", f"127.0.0.1:{self.azurite_port}:10000", AZURITE_IMAGE,
                       "azurite-blob", "--blobHost", "0.0.0.0", "--inMemoryPersistence", "--disableTelemetry"]
        else:
            raise DemoError("Azurite is not installed (run `npm ci`; `make demo` does it) and there is no Docker")
        self.azurite = self._launch("Azurite", command, ROOT, self.azurite_port, _answers_http, timeout=60)

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.azurite_port}/{DEV_ACCOUNT};")

    # -- instances ---------------------------------------------------------------------------

    def add_node(self, name: str | None = None) -> Node | None:
        """A new instance; ``name``: a Raft member coming back under its own name (and colour)."""
        with self.lock:
            if self.stopping.is_set():
                return None
            number = int(name.rsplit("-", 1)[1]) if name else self.next_number
            if name is None:
                name = f"node-{self.next_number}"
                self.next_number += 1
            colour = COLOURS[(number - 1) % len(COLOURS)]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ZOOKEEPER_", "RAFT_"))},
               **self.backend_env(name),
               "INSTANCE_ID": name,
               "LEADERSHIP_JOURNAL": str(self.journal),
               "PYTHONUNBUFFERED": "1"}
        # FETCH_INTERVAL keeps its default (60 s): 5 cities more often than every 43 s would exceed
        # Open-Meteo's free use (10,000 calls a day) and OpenWeatherMap's free tier is no looser.
        env.setdefault("READ_INTERVAL", "5")
        if not env.get("MYSQL_HOST"):
            env.setdefault("SQLITE_PATH", str(self.workdir / "weather.sqlite3"))  # shared by the instances
        for name_ in ("AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL"):
            env.pop(name_, None)  # the demo's own Azurite, whatever the shell says
        process = subprocess.Popen([sys.executable, str(PROGRAM)], env=env, cwd=self.workdir, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
                                   preexec_fn=_die_with_parent)
        node = Node(name, colour, process)
        with self.lock:
            self.nodes.append(node)
            if self.stopping.is_set():  # close() began meanwhile: it may not have seen this one
                process.kill()
        threading.Thread(target=self._pump, args=(node,), daemon=True).start()
        return node

    def _pump(self, node: Node) -> None:
        assert node.process.stdout is not None
        for line in node.process.stdout:
            line = line.rstrip("\n")
            if not line.strip() or not _is_log_line(line):
                continue  # the workers' tables: the panel shows the newest write instead
            match = re.search(r"stored (\d+) readings", line)
            if match:
                node.last_write = f"{datetime.now().strftime('%H:%M:%S')} ({match[1]} readings)"
            self.say(f"{node.colour}[{node.name}]{RESET} {_strip_prefix(line)}")

    def disrupt(self, kind: str) -> None:
        leader = self.leader()
        if leader is None:
            self.say(f"{BOLD}demo{RESET}: no leader right now; nothing to {kind.split()[-1]}")
            return
        at = time.monotonic()
        leader.process.send_signal(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
        self.disruptions.append(Disruption(kind, leader.name, leader.process.pid, at))
        means = KILL_MEANS if kind == "kill" else STOP_MEANS
        self.say(f"{BOLD}demo{RESET}: {kind} of the leader {leader.name} ({means[self.backend]})")
        threading.Thread(target=self._replace, args=(leader,), daemon=True).start()

    def _replace(self, node: Node) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(10)
        # Started by the main loop, not here: PR_SET_PDEATHSIG fires when the *thread* that
        # started a child ends, so a child of this short-lived thread would be killed at once.
        self.replacements.put(node.name)

    # -- what is going on --------------------------------------------------------------------

    def intervals(self) -> list[dict]:
        records: list[dict] = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.journal.read_text(encoding="utf-8").splitlines(keepends=True):
                if line.endswith("\n"):
                    records.append(json.loads(line))
        return records

    def leader_record(self) -> dict | None:
        open_: dict[int, dict] = {}  # by pid: a Raft member that came back shares its name
        for record in self.intervals():
            if record["event"] == "start":
                open_[record["pid"]] = record
            else:
                open_.pop(record["pid"], None)
        alive = {n.process.pid for n in self.snapshot() if n.alive}
        current = [r for pid, r in open_.items() if pid in alive]
        return max(current, key=lambda r: r["mono"]) if current else None

    def leader(self) -> Node | None:
        record = self.leader_record()
        # By pid, not name: a Raft member that came back under its own name left its dead process
        # in the list, and signalling that one would leave the real leader running.
        return next((n for n in self.snapshot() if record and n.process.pid == record["pid"]), None)

    def track(self) -> None:
        """Match each disruption with the first leadership another instance started after it."""
        starts = [r for r in self.intervals() if r["event"] == "start"]
        for disruption in self.disruptions:
            if disruption.took is not None:
                continue
            after = [r for r in starts if r["mono"] >= disruption.at and r["pid"] != disruption.victim_pid]
            if after:
                first = min(after, key=lambda r: r["mono"])
                disruption.successor, disruption.took = first["instance"], first["mono"] - disruption.at
                self.say(f"{BOLD}demo{RESET}: failover after the {disruption.kind} of {disruption.victim}: "
                         f"{first['instance']} leads (term {first['term']}) after {disruption.took:.1f} s")

    def lease_left(self) -> float | None:
        """Seconds until the lease could run out: Last-Modified (stamped by every renewal) + lease.
        Only the blob lease has a time left to show."""
        if self.backend != "azure":
            return None
        try:
            from azure.storage.blob import BlobClient

            blob = BlobClient.from_connection_string(self.connection_string, self.container, "weather-leader",
                                                     api_version="2026-06-06", retry_total=0,
                                                     connection_timeout=1, read_timeout=1)
            properties = blob.get_blob_properties()
        except Exception:  # noqa: BLE001 - the panel just shows "-"
            return None
        if properties.lease.state != "leased" or properties.last_modified is None:
            return None
        lease = float(os.environ.get("LEASE_DURATION", "15"))
        return max(0.0, properties.last_modified.timestamp() + lease - time.time())

    # -- output ------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        with self.lock:
            self.log.append(line)
            if not self.live:
                self.out.write(_plain(line) + "\n")
                self.out.flush()

    def draw(self, elapsed: float) -> None:
        if not self.live:
            return
        record = self.leader_record()
        left = self.lease_left()
        rows = [f"{BOLD}leader election demo{RESET}  {elapsed:5.0f} s   "
                f"leader: {BOLD}{record['instance'] if record else 'none'}{RESET}"
                f"  term {record['term'] if record else '-'}"
                f"  lease left {'-' if left is None else f'{left:4.1f} s'}"]
        for node in self.snapshot():
            if not node.alive and time.monotonic() - node.started > 0 and node.process.returncode is not None:
                state = f"{DIM}exited ({node.process.returncode}){RESET}"
            elif record and record["instance"] == node.name:
                state = f"{BOLD}LEADER{RESET}"
            else:
                state = "worker"
            rows.append(f"  {node.colour}{node.name:<8}{RESET} {state:<20} last write {node.last_write}")
        done = [d for d in self.disruptions if d.took is not None]
        if done:
            last = done[-1]
            rows.append(f"  last failover: {last.kind} of {last.victim} -> {last.successor} in {last.took:.1f} s")
        rows.append(f"  {DIM}k kill leader   s stop leader   a add instance   q quit{RESET}")
        with self.lock:
            self.out.write("\033[H\033[2J" + "\n".join(rows) + "\n" + "-" * 72 + "\n" + "\n".join(self.log) + "\n")
            self.out.flush()

    def summary(self) -> str:
        lines = [f"{len(self.disruptions)} leader stops, {sum(d.took is not None for d in self.disruptions)} failovers,"
                 f" {self.running_at_end} instances running at the end"]
        for d in self.disruptions:
            if d.took is None:
                lines.append(f"no failover measured after the {d.kind} of {d.victim}: the demo ended first")
            else:
                lines.append(f"failover after the {d.kind} of {d.victim}: {d.successor} led after {d.took:.1f} s")
        for kind in ("kill", "graceful stop"):
            times = [d.took for d in self.disruptions if d.kind == kind and d.took is not None]
            if times:
                lines.append(f"failover time after a {kind}: median {statistics.median(times):.1f} s "
                             f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} measured)")
        return "\n".join(lines)


class _Keys:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def read(self, timeout: float) -> str | None:
        if not self.enabled:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        return sys.stdin.read(1).lower() if ready else None


@contextlib.contextmanager
def _keys(live: bool) -> Iterator[_Keys]:
    """Single keys without Enter while the demo runs (when stdin is a terminal); restored after."""
    if not (live and sys.stdin.isatty()):
        yield _Keys(False)
        return
    import termios
    import tty

    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        yield _Keys(True)
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def _die_with_parent() -> None:
    """Children get SIGTERM if the demo itself dies (even by SIGKILL): nothing is left behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ [A-Z]+ \[[^\]]+\] ")


def _is_log_line(line: str) -> bool:
    return bool(_LOG_LINE.match(line)) or line.startswith("configuration error")


def _strip_prefix(line: str) -> str:
    """'2026-11-26 12:00:00,123 INFO [node-1] text' -> '12:00:00 INFO text' (the prefix names it)."""
    match = re.match(r"^\d{4}-\d{2}-\d{2} ([\d:]+),\d+ ([A-Z]+) \[[^\]]+\] (.*)$", line)
    return f"{match[1]} {match[2]:<7} {match[3]}" if match else line


def _plain(text: str) -> str:
    return re.sub(r"\033\[[0-9;]*[A-Za-z]", "", text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_http(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}?comp=list", timeout=1)
    except urllib.error.HTTPError:
        return True  # it answered (403 without a signature): it is up
    except OSError:
        return False
    return True


def _four_letter_word(port: int, word: bytes) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(word)
            return connection.recv(64)
    except OSError:
        return b""


def _backend() -> str:
    backend = os.environ.get("ELECTION_BACKEND", "").strip().lower() or "azure"
    if backend not in BACKENDS:
        raise DemoError(f"ELECTION_BACKEND: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _setting(name: str, default: str, low: float, high: float) -> float:
    text = os.environ.get(name, "").strip() or default
    try:
        value = float(text)
    except ValueError:
        raise DemoError(f"{name}: must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise DemoError(f"{name}: must be from {low:g} to {high:g}, got {value:g}")
    return value


def main() -> int:
    try:
        demo = Demo(seconds=_setting("DEMO_SECONDS", "0", 0, 86400),
                    instances=int(_setting("DEMO_INSTANCES", "3", 2, 20)),
                    failover_every=_setting("DEMO_FAILOVER_EVERY", "30", 0, 3600),
                    out=sys.stdout, backend=_backend())
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: demo.stop())
    try:
        code = demo.run()
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        code = 2
    finally:
        demo.close()
    print(demo.summary(), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
