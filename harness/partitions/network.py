"""The partition harness's network: one network namespace per member, each joined by a veth pair to
one bridge in the root namespace, on a private /24 of its own; and cuts made with nftables rules
inside the namespaces (drop by peer address, one direction or both), healed by removing them.

Hygiene (issue 13): only what a Network makes is touched. Every name carries the prefix ``dmp``
and a random token (namespaces ``dmp-<token>-<pid>-<member>``; the bridge ``dmpb<token>``, its alias
naming the owner's pid; host-side veths ``dmp<token>v<n>``), the subnet is one 10.213.X.0/24 that no
address or route of this machine uses (an flock per X keeps two harnesses off the same one), and
the namespaces get no default route: their traffic can only reach each other and the bridge's
address. ``close()`` removes everything, also after a failure half-way; ``cleanup_leftovers()``
removes what a harness that died (its pid gone) left behind.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PREFIX = "dmp"
SUPERNET = "10.213"  # 10.213.X.0/24, X free on this machine
LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
TABLE = "dmpart"
COMMAND_TIMEOUT = 15.0  # s: any single ip/nft call
HOST = "host"  # the root namespace's end: the bridge's address (the weather stand-in serves there)


class NetworkError(RuntimeError):
    pass


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why partitions cannot be made here (for a skip), or None."""
    if os.geteuid() != 0:
        return "network namespaces and nftables need root (run as root, e.g. in CI's container)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {package}; .ci/run does it)"
    probe = f"{PREFIX}-probe-{os.getpid()}-{secrets.token_hex(2)}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        table = run("ip", "netns", "exec", probe, "nft", "add", "table", "inet", TABLE, check=False)
        if table.returncode != 0:
            return f"nftables does not work in a network namespace here: {table.stderr.strip()}"
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Member:
    name: str
    namespace: str
    address: str
    veth: str  # the host-side end, on the bridge

    @property
    def prefix(self) -> tuple[str, ...]:
        """Words that run a command in this member's namespace."""
        return ("ip", "netns", "exec", self.namespace)


@dataclass
class Network:
    """Namespaces for ``names``, on one bridge. Use as a context manager (or call close())."""

    names: Iterable[str]
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    members: dict[str, Member] = field(default_factory=dict, init=False)
    bridge: str = field(default="", init=False)
    subnet: str = field(default="", init=False)
    host_address: str = field(default="", init=False)
    blocked: set[tuple[str, str]] = field(default_factory=set, init=False)  # (from, to): dropped
    lock_path: Path | None = field(default=None, init=False)  # held while the network exists
    _lock: IO[str] | None = field(default=None, init=False)
    _made_bridge: bool = field(default=False, init=False)

    def __enter__(self) -> Network:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- making it -----------------------------------------------------------------------------

    def open(self) -> None:
        names = list(self.names)
        if len(names) > 200:
            raise NetworkError(f"{len(names)} members: one /24 holds at most 200 here")
        third = self._claim_subnet()
        self.subnet = f"{SUPERNET}.{third}.0/24"
        self.host_address = f"{SUPERNET}.{third}.1"
        self.bridge = f"{PREFIX}b{self.token}"
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        # The alias says who made it: cleanup_leftovers() removes it once that process is gone.
        run("ip", "link", "set", "dev", self.bridge, "alias", f"{PREFIX} pid {os.getpid()}")
        run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for n, name in enumerate(names, 2):
            self.add(name, f"{SUPERNET}.{third}.{n}")

    def add(self, name: str, address: str) -> Member:
        member = Member(name, f"{PREFIX}-{self.token}-{os.getpid()}-{name}", address,
                        f"{PREFIX}{self.token}v{len(self.members)}")
        run("ip", "netns", "add", member.namespace)
        self.members[name] = member  # from here on close() removes it
        run("ip", "link", "add", member.veth, "type", "veth", "peer", "name", "eth0", "netns", member.namespace)
        run("ip", "link", "set", member.veth, "master", self.bridge, "up")
        inside = member.prefix
        run(*inside, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        run(*inside, "ip", "link", "set", "eth0", "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        self._apply(member)  # the (empty) table: a cut later only changes its rules
        return member

    def _claim_subnet(self) -> int:
        """A 10.213.X that no address or route here uses, locked against a harness running beside."""
        used = run("ip", "-4", "-o", "addr").stdout + run("ip", "-4", "route").stdout
        start = (os.getpid() + int(self.token, 16)) % 256
        for step in range(256):
            third = (start + step) % 256
            net = ipaddress.ip_network(f"{SUPERNET}.{third}.0/24")
            if any(_overlaps(word, net) for word in used.split()):
                continue
            path = LOCK_DIR / f"{PREFIX}-{SUPERNET}.{third}.lock"
            lock = path.open("w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # close() unlinks the file it holds: a lock on a file already unlinked is no lock.
                if os.stat(path).st_ino != os.fstat(lock.fileno()).st_ino:
                    raise BlockingIOError
            except (BlockingIOError, FileNotFoundError):
                lock.close()
                continue
            self._lock, self.lock_path = lock, path
            return third
        raise NetworkError(f"no free /24 in {SUPERNET}.0.0/16")

    # -- cutting and healing -------------------------------------------------------------------

    def address(self, name: str) -> str:
        return self.host_address if name == HOST else self.members[name].address

    def block(self, sources: Iterable[str], targets: Iterable[str]) -> None:
        """Drop every packet from each source to each target (one direction)."""
        pairs = {(s, t) for s in sources for t in targets if s != t}
        self.blocked |= pairs
        self._apply_all({n for pair in pairs for n in pair})

    def cut(self, group: Iterable[str], others: Iterable[str]) -> None:
        """Both directions between every member of ``group`` and every one of ``others``."""
        group, others = list(group), list(others)
        self.block(group, others)
        self.block(others, group)

    def heal(self) -> None:
        touched = {n for pair in self.blocked for n in pair}
        self.blocked.clear()
        self._apply_all(touched)

    def _apply_all(self, names: set[str]) -> None:
        for name in sorted(names - {HOST}):
            self._apply(self.members[name])

    def _apply(self, member: Member) -> None:
        """Rewrite the member's table from ``blocked`` in one nft transaction. A packet from A to B
        is dropped on A's way out (output) when A is a namespace, else on B's way in (input)."""
        rules = []
        for source, target in sorted(self.blocked):
            if source == member.name:
                rules.append(f"add rule inet {TABLE} output ip daddr {self.address(target)} drop")
            elif target == member.name and source == HOST:
                rules.append(f"add rule inet {TABLE} input ip saddr {self.address(source)} drop")
        script = "\n".join([
            f"table inet {TABLE} {{",
            "  chain input { type filter hook input priority 0; policy accept; }",
            "  chain output { type filter hook output priority 0; policy accept; }",
            "}",
            f"flush chain inet {TABLE} input",
            f"flush chain inet {TABLE} output",
            *rules, ""])
        done = subprocess.run([*member.prefix, "nft", "-f", "-"], input=script, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
        if done.returncode != 0:
            raise NetworkError(f"nft in {member.namespace} failed: {done.stderr.strip()}")

    def rules(self, name: str) -> str:
        """The member's nft table as nft lists it (for tests and failure messages)."""
        return run(*self.members[name].prefix, "nft", "list", "table", "inet", TABLE).stdout

    # -- removing it ---------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every namespace (its veth goes with it; processes still in it are killed first),
        the bridge and the subnet's lock. Carries on past errors, then reports the first."""
        errors: list[str] = []
        for member in list(self.members.values()):
            # Deleting the host end deletes the pair now (a namespace's devices go only later,
            # asynchronously, when the kernel cleans the namespace up).
            done = run("ip", "link", "del", member.veth, check=False)
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                errors.append(f"ip link del {member.veth}: {done.stderr.strip()}")
            errors += remove_namespace(member.namespace)
        self.members.clear()
        if self._made_bridge:
            done = run("ip", "link", "del", self.bridge, check=False)
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                errors.append(f"ip link del {self.bridge}: {done.stderr.strip()}")
            self._made_bridge = False
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)  # still holding it: see _claim_subnet
            self._lock.close()
            self._lock = None
        if errors:
            raise NetworkError("; ".join(errors))


def remove_namespace(namespace: str) -> list[str]:
    """Kill what still runs in it (bounded), then delete it; the errors, if any."""
    pids = run("ip", "netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = run("ip", "netns", "pids", namespace, check=False).stdout.split()
        if pids:
            time.sleep(0.05)
    done = run("ip", "netns", "del", namespace, check=False)
    if done.returncode != 0 and "No such file" not in done.stderr:
        return [f"ip netns del {namespace}: {done.stderr.strip()}"]
    return []


def cleanup_leftovers() -> list[str]:
    """Remove the namespaces and bridges of harnesses whose process is gone; what was removed."""
    removed = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if parts[0] == PREFIX and len(parts) >= 3 and parts[2].isdigit() and not _alive(int(parts[2])):
            remove_namespace(name)
            removed.append(name)
    links = json.loads(run("ip", "-j", "link", "show", "type", "bridge", check=False).stdout or "[]")
    for link in links:
        alias = link.get("ifalias", "")
        if link.get("ifname", "").startswith(PREFIX) and alias.startswith(f"{PREFIX} pid "):
            pid = alias.split()[-1]
            if pid.isdigit() and not _alive(int(pid)):
                run("ip", "link", "del", link["ifname"], check=False)
                removed.append(link["ifname"])
    return removed


def ours() -> tuple[list[str], list[str]]:
    """The namespaces and links with our prefix that exist now (for the clean-up test)."""
    namespaces = [line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines()
                  if line.startswith(PREFIX + "-")]
    links = [link["ifname"] for link in json.loads(run("ip", "-j", "link", "show").stdout or "[]")
             if link["ifname"].startswith(PREFIX)]
    return namespaces, links


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _overlaps(word: str, net: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_network(word, strict=False).overlaps(net)
    except ValueError:
        return False
