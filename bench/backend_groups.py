"""Groups on the other election backends: ZooKeeper (a standalone server of the group's own, whose
mntr counters are then the group's alone) and Raft (3 fixed members, every link through a proxy
whose LineCounter reads each message); PostgreSQL and Redis are in bench/db_groups.py. GROUPS maps
a backend to its group class."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench.db_groups import DB_GROUPS
from bench.group import Group, Link, Slot
from harness.counting import LineCounter, mntr
from harness.raft_tls import ClusterTls
from harness.services import ZooKeeperServer, rebindable_port
from harness.tcpproxy import TcpProxy


class ZooKeeperGroup(Group):
    """ELECTION_BACKEND=zookeeper: 3 instances and a standalone ZooKeeper server of their own (its
    counters are then theirs alone)."""

    backend = "zookeeper"
    anchored_kills = False
    poll_interval = 0.1  # ready() asks the server (mntr)
    readiness = "the server does not hold one ephemeral znode per running instance (zk_ephemerals_count)"
    renewal_evidence = "renewal"

    def setup(self) -> None:
        self.server = ZooKeeperServer(tick=self.bench.args.zk_tick).start()
        try:
            # ruok answers before the server serves ("not currently serving requests"): wait for mntr.
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = mntr(self.server)
                    break
                except (OSError, RuntimeError) as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"ZooKeeper on port {self.server.port} did not serve mntr within 30 s: "
                                           f"{exc}") from None
                    time.sleep(0.1)
            # What mntr costs itself: two readings with no client connected; the difference is what
            # one reading adds to a window's counters (the request it reads, the answer of the one before).
            second = mntr(self.server)
            self.mntr_cost = {key: int(second[key]) - int(first[key])
                              for key in ("zk_packets_received", "zk_packets_sent")}
        except BaseException:
            self.server.stop()
            raise

    def backend_env(self, slot: Slot) -> dict[str, str]:
        return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": self.server.hosts}

    def ready(self) -> bool:
        """Every instance is up and in line: the server holds exactly one ephemeral znode per running
        instance (a killed leader's znode is gone once its successor leads)."""
        if not all(slot.alive for slot in self.slots):
            return False
        return int(mntr(self.server)["zk_ephemerals_count"]) == len(self.slots)

    def renewal_marks(self, slot: Slot) -> list[float]:
        return []

    def cost_snapshot(self) -> dict[str, str]:
        return mntr(self.server)

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        window = w1 - w0
        rates = {key: (int(after[key]) - int(before[key]) - self.mntr_cost[key]) / window
                 for key in ("zk_packets_received", "zk_packets_sent")}
        return {"counted": "packets at the server", "per_s": round(sum(rates.values()), 2),
                "how": "the server's mntr counters zk_packets_received + zk_packets_sent over the window, less "
                       f"what the two mntr readings add themselves ({self.mntr_cost})",
                "received_per_s": round(rates["zk_packets_received"], 2),
                "sent_per_s": round(rates["zk_packets_sent"], 2),
                "server_tick_s": self.server.tick,
                "alive_connections": int(after.get("zk_num_alive_connections", 0)),
                "ephemerals": int(after.get("zk_ephemerals_count", 0))}

    def server_pids(self) -> dict[str, int]:
        process = getattr(self.server, "process", None)
        return {"zookeeper server": process.pid} if process is not None else {}

    def close(self) -> None:
        super().close()
        self.server.stop()


class RaftGroup(Group):
    """ELECTION_BACKEND=raft: 3 fixed members. Member A reaches member B only through the proxy
    A->B (A's RAFT_PEERS gives B the proxy's address; A's own entry is where A listens), so every
    message crosses exactly one proxy, where a LineCounter sees it. A killed member is restarted with
    the same RAFT_ID, RAFT_DATA_DIR and port. The members run mutual TLS (a throwaway CA per group,
    RAFT_TLS_*); each proxy terminates it on both sides, so it still reads the messages
    (harness.raft_tls)."""

    poll_interval = 0.1  # ready() copies the links' message log: not 50 times a second

    backend = "raft"
    anchored_kills = False
    readiness = "not every follower has acknowledged a heartbeat of the leader since it (re)started"
    renewal_evidence = "heartbeat"

    def setup(self) -> None:
        self.data_dir = self.bench.out / "raft" / self.name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for slot in self.slots:
            slot.port = rebindable_port()  # a member restarts on it: not an ephemeral port
        self.tls = ClusterTls(self.bench.out / "raft" / f"{self.name}-tls", [slot.name for slot in self.slots])
        for slot in self.slots:
            for peer in self.slots:
                if peer is not slot:
                    assert peer.port is not None
                    counter = LineCounter()
                    proxy = TcpProxy(peer.port, watch=counter, tls=self.tls.relay(slot.name, peer.name))
                    slot.links[peer.name] = Link(proxy.start(), counter)

    def backend_env(self, slot: Slot) -> dict[str, str]:
        peers = ",".join(f"{s.name}=127.0.0.1:{s.port if s is slot else slot.links[s.name].proxy.port}"
                         for s in self.slots)
        return {"ELECTION_BACKEND": "raft", "RAFT_PEERS": peers, "RAFT_ID": slot.name,
                "RAFT_DATA_DIR": str(self.data_dir), **self.tls.env(slot.name)}

    def _between(self, a: Slot, b: Slot, since: float) -> list[Any]:
        """Every message on the link between a and b (both directions' proxies) since ``since``."""
        return a.links[b.name].counter.since(since) + b.links[a.name].counter.since(since)

    def ready(self) -> bool:
        found = self.current_leader()
        if found is None or not all(slot.alive for slot in self.slots):
            return False
        leader = found[0]
        for slot in self.slots:
            if slot is leader:
                continue
            since = max(slot.life.started, leader.life.started)
            lines = self._between(leader, slot, since)
            heard = any(m.kind == "heartbeat" and m.src == leader.name and m.dst == slot.name for m in lines)
            acked = any(m.kind == "heartbeat_reply" and m.src == slot.name and m.dst == leader.name and m.ok
                        for m in lines)
            if not (heard and acked):
                return False
        return True

    def renewal_marks(self, slot: Slot) -> list[float]:
        return [m.at for peer in self.slots if peer is not slot
                for m in self._between(slot, peer, slot.life.started)
                if m.kind == "heartbeat" and m.src == slot.name]

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        window = w1 - w0
        per_link, kinds, backwards = {}, Counter(), 0
        for slot in self.slots:
            for peer, link in slot.links.items():
                lines = link.counter.between(w0, w1)
                per_link[f"{slot.name}->{peer}"] = round(len(lines) / window, 2)
                kinds.update(m.kind or "not JSON" for m in lines)
                backwards += sum(1 for m in lines if not m.to_server)
        return {"counted": "peer messages", "per_s": round(sum(kinds.values()) / window, 2),
                "how": "newline-delimited JSON messages crossing the per-link TCP proxies (LineCounter), "
                       "both directions of every connection",
                "by_type_per_s": {k: round(v / window, 2) for k, v in sorted(kinds.items())},
                "per_link_per_s": per_link, "answered_on_the_callers_connection": backwards}


GROUPS: dict[str, type[Group]] = {"azure": Group, "zookeeper": ZooKeeperGroup, "raft": RaftGroup, **DB_GROUPS}
