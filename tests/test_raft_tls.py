"""Raft over mutual TLS (issue 13): RaftBackend's tls_cert, tls_key and tls_ca, each bad one refused
in one line naming it; plain TCP refused beyond loopback and warned about on it; make_certificates
and its command line; and a 3-peer authenticated cluster that elects, hands over and answers the
status over TLS. The attacks on it are in test_raft_attacks_tls.py."""

from __future__ import annotations

import datetime
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from DistributedMutex.backend import Identity
from DistributedMutex.backends.raft import PeerCertificate, RaftBackend, make_certificates
from DistributedMutex.backends.raft.node import RaftNode
from DistributedMutex.backends.raft.tls import load_tls
from DistributedMutex.backends.raft.transport import query_status
from DistributedMutex.errors import ConfigurationError
from harness.counting import LineCounter
from harness.processes import wait_until
from harness.raft_tls import ClusterTls
from harness.services import free_port
from harness.tcpproxy import TcpProxy
from support.raft_local import INFO, TIMEOUT, addresses, lease_holder
from support.raft_tls import Authority

ROOT = Path(__file__).parent.parent
PEERS = {"a": ("127.0.0.1", 7001), "b": ("127.0.0.1", 7002), "c": ("127.0.0.1", 7003)}
NAMES = {"peers": "RAFT_PEERS", "node_id": "RAFT_ID", "tls_cert": "RAFT_TLS_CERT", "tls_key": "RAFT_TLS_KEY",
         "tls_ca": "RAFT_TLS_CA"}
PASSWORD = b"s3cret-passphrase"


def refusal(tmp_path: Path, **kwargs: object) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        RaftBackend(PEERS, "a", tmp_path / "data", **kwargs)  # type: ignore[arg-type]
    return caught.value


def secrets_in(directory: Path) -> list[str]:
    """Every line of every key file's body: none may show up in a message."""
    return [line for key in directory.rglob("*-key.pem") for line in key.read_text().splitlines()
            if line and not line.startswith("-----")]


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "ca")


def bad_files(ca: Authority, tmp_path: Path, case: str) -> tuple[dict[str, object], str, str]:
    """The arguments for ``case``, the argument the refusal must name, and a phrase of its cause."""
    now = datetime.datetime.now(datetime.timezone.utc)
    good = ca.issue("a", ["a"])
    other = Authority.create(tmp_path / "other", "another CA")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    three = {"tls_cert": good.cert, "tls_key": good.key, "tls_ca": good.ca}
    cases: dict[str, tuple[dict[str, object], str, str]] = {
        "only the certificate": ({"tls_cert": good.cert}, "tls_key, tls_ca", "all three or none"),
        "no CA": ({"tls_cert": good.cert, "tls_key": good.key}, "tls_ca", "all three or none"),
        "a missing file": ({**three, "tls_cert": tmp_path / "nope.pem"}, "tls_cert", "cannot read"),
        "a directory as key": ({**three, "tls_key": tmp_path}, "tls_key", "cannot read"),
        "the key as certificate": ({**three, "tls_cert": good.key}, "tls_cert", "does not hold a PEM certificate"),
        "the certificate as key": ({**three, "tls_key": good.cert}, "tls_key", "does not hold a PEM private key"),
        "garbage as CA": ({**three, "tls_ca": garbage}, "tls_ca", "does not hold a PEM certificate"),
        "an encrypted key": ({**three, "tls_key": ca.issue("enc", ["a"], password=PASSWORD).key}, "tls_key",
                             "encrypted private key"),
        "another certificate's key": ({**three, "tls_key": ca.issue("b", ["b"]).key}, "tls_key",
                                      "is not the private key of the certificate"),
        "a certificate naming another id": ({**three, **_pair(ca.issue("b2", ["b"]))}, "tls_cert",
                                            "names DNS:b in its subjectAltName, not this peer's id"),
        "a certificate naming no id": ({**three, **_pair(ca.issue("none", []))}, "tls_cert", "names no DNS name"),
        "an expired certificate": ({**three, **_pair(ca.issue("old", ["a"], not_before=now - 3 * _day(),
                                                               not_after=now - _day()))}, "tls_cert", "has expired"),
        "a certificate not valid yet": ({**three, **_pair(ca.issue("new", ["a"], not_before=now + _day(),
                                                                   not_after=now + 2 * _day()))}, "tls_cert",
                                        "is not valid yet"),
        "a certificate of another CA": ({**three, **_pair(other.issue("a", ["a"]))}, "tls_cert",
                                        "is not signed by the CA in tls_ca"),
    }
    return cases[case]


def _pair(files: PeerCertificate) -> dict[str, object]:
    return {"tls_cert": files.cert, "tls_key": files.key}


def _day() -> datetime.timedelta:
    return datetime.timedelta(days=1)


BAD = ["only the certificate", "no CA", "a missing file", "a directory as key", "the key as certificate",
       "the certificate as key", "garbage as CA", "an encrypted key", "another certificate's key",
       "a certificate naming another id", "a certificate naming no id", "an expired certificate",
       "a certificate not valid yet", "a certificate of another CA"]


@pytest.mark.parametrize("case", BAD)
def test_each_bad_tls_argument_is_refused_in_one_line_naming_it(ca: Authority, tmp_path: Path, case: str) -> None:
    arguments, argument, cause = bad_files(ca, tmp_path, case)
    message = str(refusal(tmp_path, **arguments))
    assert "\n" not in message, message
    assert message.startswith(f"{argument}: "), message
    assert cause in message, message
    assert not [line for line in secrets_in(tmp_path) if line in message], message
    assert PASSWORD.decode() not in message


def test_the_refusals_use_the_callers_names_for_its_settings(ca: Authority, tmp_path: Path) -> None:
    good = ca.issue("a", ["a"])
    message = str(refusal(tmp_path, tls_cert=good.cert, names=NAMES))
    assert message == ("RAFT_TLS_KEY, RAFT_TLS_CA: must be set too: mutual TLS needs RAFT_TLS_CERT, RAFT_TLS_KEY and "
                       "RAFT_TLS_CA, all three or none (got only RAFT_TLS_CERT)")
    other = ca.issue("b", ["b"])
    message = str(refusal(tmp_path, tls_cert=other.cert, tls_key=other.key, tls_ca=other.ca, names=NAMES))
    assert message.startswith("RAFT_TLS_CERT: names DNS:b") and message.endswith("(RAFT_ID=a)"), message


@pytest.mark.parametrize("host", ["10.0.0.7", "192.168.1.2", "raft-b.internal", "0.0.0.0"])
def test_a_cluster_beyond_loopback_refuses_plain_tcp_naming_what_to_set(tmp_path: Path, host: str) -> None:
    peers = {"a": ("127.0.0.1", 7001), "b": (host, 7002)}
    with pytest.raises(ConfigurationError) as caught:
        RaftBackend(peers, "a", tmp_path, names=NAMES)
    assert str(caught.value).startswith(f"RAFT_PEERS: lists addresses beyond this machine (b={host}:7002): such a "
                                        f"cluster needs mutual TLS, set RAFT_TLS_CERT, RAFT_TLS_KEY and RAFT_TLS_CA")
    # The same cluster with TLS is fine (nothing is dialled at construction).
    files = make_certificates(tmp_path / "tls", ["a", "b"])["a"]
    RaftBackend(peers, "a", tmp_path, tls_cert=files.cert, tls_key=files.key, tls_ca=files.ca)


def test_a_loopback_cluster_may_run_plain_with_a_warning_at_start(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    for hosts in (("127.0.0.1", "127.0.0.2"), ("localhost", "::1")):
        RaftBackend({"a": (hosts[0], 7001), "b": (hosts[1], 7002)}, "a", tmp_path)  # accepted
    peers = addresses("a", "b")
    backend = RaftBackend(peers, "a", tmp_path / "plain", TIMEOUT)
    assert backend.tls is None and not caplog.records, "a warning before the peer starts"
    with caplog.at_level(logging.WARNING):
        try:
            backend.acquire(Identity("instance-a"), time.monotonic())
        finally:
            backend.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("the peers are not authenticated" in w and "tls_cert" in w for w in warnings), warnings


def test_make_certificates_writes_a_ca_and_a_certificate_per_peer_that_the_backend_takes(tmp_path: Path) -> None:
    started = time.perf_counter()
    made = make_certificates(tmp_path / "tls", ["a", "b_1", "c.example"], days=2)
    print(f"make_certificates for 3 peers: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == sorted(
        ["ca.pem", "ca-key.pem", "a.pem", "a-key.pem", "b_1.pem", "b_1-key.pem", "c.example.pem", "c.example-key.pem"])
    for key in (tmp_path / "tls").glob("*-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    peers = {"a": ("127.0.0.1", 7001), "b_1": ("127.0.0.1", 7002), "c.example": ("127.0.0.1", 7003)}
    for peer, files in made.items():
        started = time.perf_counter()
        tls = load_tls(peer, files.cert, files.key, files.ca, str)  # the checks, the self-handshake included
        elapsed = time.perf_counter() - started
        assert tls is not None and tls.node_id == peer
        print(f"load_tls({peer}): {elapsed * 1000:.1f} ms")
        RaftBackend(peers, peer, tmp_path / "data", tls_cert=files.cert, tls_key=files.key, tls_ca=files.ca)
    with pytest.raises(ConfigurationError, match=r"^directory: already holds .*ca\.pem"):
        make_certificates(tmp_path / "tls", ["d"])


def test_the_certificates_command_prints_the_paths_and_no_key(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "DistributedMutex.backends.raft.certificates", "--out", str(tmp_path / "tls"),
               "a", "b"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert (done.returncode, done.stderr) == (0, ""), done
    lines = done.stdout.splitlines()
    assert lines[0] == (f"a: tls_cert={tmp_path}/tls/a.pem tls_key={tmp_path}/tls/a-key.pem "
                        f"tls_ca={tmp_path}/tls/ca.pem"), lines
    assert "PRIVATE KEY" not in done.stdout and not [s for s in secrets_in(tmp_path) if s in done.stdout]
    again = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert again.returncode == 2 and again.stderr.startswith("error: --out: already holds"), again
    assert len(again.stderr.splitlines()) == 1, again.stderr


def test_an_authenticated_cluster_elects_hands_over_and_answers_the_status_over_tls(tmp_path: Path) -> None:
    peers = addresses("a", "b", "c")
    files = make_certificates(tmp_path / "tls", peers)
    backends = {p: RaftBackend(peers, p, tmp_path / "data", TIMEOUT, tls_cert=files[p].cert, tls_key=files[p].key,
                               tls_ca=files[p].ca) for p in peers}
    try:
        started = time.monotonic()
        leader, lease = lease_holder(backends)
        elected = time.monotonic() - started
        # From outside the cluster, with a member's files: through the peers' status over TLS.
        outside = RaftBackend(peers, "a", tmp_path / "outside", TIMEOUT, tls_cert=files["a"].cert,
                              tls_key=files["a"].key, tls_ca=files["a"].ca)
        record = outside.read_leader()
        assert record is not None and (record.instance_id, record.term) == (f"instance-{leader}", lease.term), record
        assert outside.tls is not None
        started = time.monotonic()
        for _ in range(20):
            status = query_status(peers[leader], 2, tls=outside.tls, peer_id=leader)
        per_status = (time.monotonic() - started) / 20
        assert status["role"] == "leader" and status["term"] == lease.term, status
        assert status["refused"] == {"implausible_term": 0, "replayed": 0}, status
        assert not {k: v for k, v in status["transport"].items() if k != "idle_timeout"}, status
        # A plain client gets nothing: refused at the handshake.
        with pytest.raises((OSError, ValueError)):
            query_status(peers[leader], 1)

        backends[leader].release(lease)
        started = time.monotonic()
        successor, handed = lease_holder(backends)
        handed_over = time.monotonic() - started
        assert successor != leader and handed.term > lease.term
        print(f"TLS trio: elected in {elected:.2f} s, handed over in {handed_over * 1000:.0f} ms, status over TLS "
              f"(connect, handshake, ask) {per_status * 1000:.1f} ms")
    finally:
        for backend in backends.values():
            backend.close()



def test_the_harness_proxies_terminate_tls_and_still_read_every_message(tmp_path: Path) -> None:
    """harness.raft_cluster and the bench put a proxy on every link and count the messages there:
    with TLS the proxy terminates it on both sides (harness.raft_tls), the peers none the wiser."""
    members = ["a", "b", "c"]
    ports = {m: free_port() for m in members}
    tls = ClusterTls(tmp_path / "tls", members)
    counters = {(x, y): LineCounter() for x in members for y in members if x != y}
    proxies = {(x, y): TcpProxy(ports[y], watch=counters[x, y], tls=tls.relay(x, y)).start() for x, y in counters}
    nodes = {m: RaftNode(m, {p: ("127.0.0.1", ports[p] if p == m else proxies[m, p].port) for p in members},
                         tmp_path / m, TIMEOUT, info=INFO, tls=tls.config(m)) for m in members}
    try:
        for node in nodes.values():
            node.start()

        def leading() -> str | None:
            leaders = [m for m, node in nodes.items() if node.status.leads_with_lease(time.monotonic())]
            return leaders[0] if len(leaders) == 1 else None
        leader = wait_until(leading, 10, "no single leader with a lease")
        follower = next(m for m in members if m != leader)

        def heard() -> bool:
            return (any(line.kind == "heartbeat" and line.src == leader for line in counters[leader, follower].lines)
                    and any(line.kind == "heartbeat_reply" and line.dst == leader
                            for line in counters[follower, leader].lines))
        wait_until(heard, 5, "the proxies read no heartbeat and no reply")
        assert all(node.transport_counts().get("tls_refused", 0) == 0 for node in nodes.values())
    finally:
        for node in nodes.values():
            node.stop()
        for proxy in proxies.values():
            proxy.close()
