"""The demo's Raft mutual TLS (RAFT_TLS_CERT, RAFT_TLS_KEY, RAFT_TLS_CA), as real processes:
every bad setting is docs/bad-input.md's one line and exit 2, with no traceback and no key material;
a plain cluster beyond loopback refuses to start; `--status` finds the leader of an authenticated
cluster with the same settings and gets no answer with a certificate of another CA.

(The library's own checks of the same files: tests/test_raft_tls.py; `make demo` running
authenticated: tests/test_make_demo.py.)"""

from __future__ import annotations

import datetime
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from DistributedMutex.backends.raft.certificates import PeerCertificate, make_certificates
from harness.processes import SCRIPT, Instance, wait_until
from harness.services import rebindable_port
from support.bad_input import ROWS, ROWS_TESTED_ELSEWHERE, assert_clean
from support.raft_tls import Authority

PASSPHRASE = b"Passphrase-4711"
IDS = ("a", "b", "c")
PEERS = ",".join(f"{peer}=127.0.0.1:{7001 + n}" for n, peer in enumerate(IDS))  # never bound: refused before
# The demo's settings for an instance that fetches nothing real (SQLite here, a dead weather URL).
QUIET = {"WEATHER_PROVIDER": "open-meteo", "OPEN_METEO_GEOCODING_URL": "http://127.0.0.1:9/",
         "OPEN_METEO_FORECAST_URL": "http://127.0.0.1:9/", "LOG_LEVEL": "INFO"}


def tls_env(files: PeerCertificate, **override: str) -> dict[str, str]:
    return {"RAFT_TLS_CERT": str(files.cert), "RAFT_TLS_KEY": str(files.key), "RAFT_TLS_CA": str(files.ca),
            **override}


def non_loopback_address() -> str:
    """One of this host's own non-loopback addresses (a peer could bind it), else a 10.x one: the
    demo must refuse before it binds anything either way."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.254", 9))  # no packet is sent: this only picks the route's source
            address: str = probe.getsockname()[0]
        except OSError:
            return "10.0.0.2"
    return "10.0.0.2" if address.startswith("127.") else address


# -- every bad setting, by its row in docs/bad-input.md ----------------------------------------------

# row id -> (the settings that make it (from the good files of a, b, c and a CA of one's own), values
# the row's {placeholders} must show exactly, and whether it is --status's)
Build = Callable[[dict[str, PeerCertificate], Authority], dict[str, str]]
TLS_ROWS: dict[str, tuple[Build, Callable[[dict[str, str]], dict[str, str]], bool]] = {
    "raft-tls-only-some": (lambda good, own: {"RAFT_ID": "a", "RAFT_TLS_CERT": str(good["a"].cert)},
                           lambda env: {}, False),
    "raft-tls-empty": (lambda good, own: {"RAFT_ID": "a", **tls_env(good["a"], RAFT_TLS_KEY=" ")},
                       lambda env: {}, False),
    "raft-tls-file-missing": (lambda good, own: {"RAFT_ID": "a", **tls_env(good["a"], RAFT_TLS_CA="/no/such/ca.pem")},
                              lambda env: {"path": "/no/such/ca.pem"}, False),
    "raft-tls-not-a-certificate": (lambda good, own: {"RAFT_ID": "a",
                                                      **tls_env(good["a"], RAFT_TLS_CERT=str(good["a"].key))},
                                   lambda env: {"path": env["RAFT_TLS_CERT"]}, False),
    "raft-tls-key-encrypted": (lambda good, own: {"RAFT_ID": "a", **tls_env(own.issue("locked", ["a"],
                                                                                       password=PASSPHRASE))},
                               lambda env: {"path": env["RAFT_TLS_KEY"]}, False),
    "raft-tls-key-not-the-certificates": (lambda good, own: {"RAFT_ID": "a",
                                                             **tls_env(good["a"], RAFT_TLS_KEY=str(good["b"].key))},
                                          lambda env: {"key": env["RAFT_TLS_KEY"], "cert": env["RAFT_TLS_CERT"]},
                                          False),
    "raft-tls-cert-names-another-id": (lambda good, own: {"RAFT_ID": "b", **tls_env(good["a"])},
                                       lambda env: {"names": "a", "id": "b"}, False),
    "raft-tls-cert-expired": (lambda good, own: {"RAFT_ID": "a", **tls_env(own.issue(
        "old", ["a"], not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)))}, lambda env: {}, False),
    "raft-tls-cert-not-yet-valid": (lambda good, own: {"RAFT_ID": "a", **tls_env(own.issue(
        "early", ["a"], not_before=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1),
        not_after=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)))}, lambda env: {}, False),
    # A certificate and key of another CA, with the cluster's CA: the peers would refuse it.
    "raft-tls-cert-other-ca": (lambda good, own: {"RAFT_ID": "a", **tls_env(own.issue("stranger", ["a"]),
                                                                            RAFT_TLS_CA=str(good["a"].ca))},
                               lambda env: {}, False),
    "raft-peers-beyond-loopback-without-tls": (
        lambda good, own: {"RAFT_ID": "a", "RAFT_PEERS": f"a={non_loopback_address()}:7001,b=127.0.0.1:7002,"
                                                         f"c=127.0.0.1:7003"},
        lambda env: {"peers": env["RAFT_PEERS"].split(",")[0]}, False),
    "raft-status-tls-without-raft-id": (lambda good, own: tls_env(good["a"]),
                                        lambda env: {"ids": "a, b, c"}, True),
}


def test_every_tls_row_of_the_document_is_tested_here() -> None:
    here = {row for row, file in ROWS_TESTED_ELSEWHERE.items() if file == "tests/test_demo_raft_tls.py"}
    assert here == set(TLS_ROWS)
    assert all(ROWS[row].exit == "2" for row in TLS_ROWS)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PeerCertificate]:
    return make_certificates(tmp_path_factory.mktemp("tls") / "cluster", IDS)


def key_material(*directories: Path) -> list[str]:
    """Every line of base64 in every private key under the directories: none may be printed."""
    lines: list[str] = []
    for directory in directories:
        for key in directory.rglob("*-key.pem"):
            lines += [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
    return lines


@pytest.mark.parametrize("row_id", sorted(TLS_ROWS))
def test_a_bad_tls_setting_stops_the_demo_with_its_documented_line(good: dict[str, PeerCertificate],
                                                                   tmp_path: Path, row_id: str) -> None:
    build, values, status = TLS_ROWS[row_id]
    own = Authority.create(tmp_path / "own", "another CA")
    env = {"ELECTION_BACKEND": "raft", "RAFT_PEERS": PEERS, "RAFT_DATA_DIR": str(tmp_path / "raft"),
           "SQLITE_PATH": str(tmp_path / "weather.sqlite3"), **QUIET, **build(good, own)}
    done = subprocess.run([sys.executable, str(SCRIPT), *(["--status"] if status else [])], cwd=tmp_path,
                          env={**Instance.clean_environment(), **env}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    pattern = ROWS[row_id].pattern(**values(env))
    assert pattern.fullmatch(lines[0]), f"{lines[0]!r} is not the documented {ROWS[row_id].message!r}"
    assert_clean(done.stderr)
    assert "PRIVATE KEY" not in done.stderr and PASSPHRASE.decode() not in done.stderr
    for line in key_material(good["a"].ca.parent, tmp_path):
        assert line not in done.stderr, "key material was printed"
    assert not (tmp_path / "raft").exists(), "it started the peer before refusing"


# -- --status against an authenticated cluster -------------------------------------------------------

def status(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--status"], cwd=cwd, capture_output=True, text=True,
                          env={**Instance.clean_environment(), **env}, timeout=30)


def test_status_finds_the_leader_of_an_authenticated_cluster_and_a_stranger_gets_no_answer(
        good: dict[str, PeerCertificate], tmp_path: Path) -> None:
    peers = ",".join(f"{peer}=127.0.0.1:{rebindable_port()}" for peer in IDS)
    base = {"ELECTION_BACKEND": "raft", "RAFT_PEERS": peers, "RAFT_DATA_DIR": str(tmp_path / "raft"),
            "RAFT_ELECTION_TIMEOUT": "500-1000", "SQLITE_PATH": str(tmp_path / "weather.sqlite3"), **QUIET}
    members = {peer: Instance(peer, {**base, "RAFT_ID": peer, **tls_env(good[peer])}, tmp_path) for peer in IDS}
    try:
        for peer, member in members.items():
            member.wait_for(rf"starting: Raft peer {peer} of 3 .*, peers authenticated by mutual TLS \(CA ", timeout=15)
        leader = wait_until(lambda: next((m for m in members.values() if m.find(r"became leader")), None), 15,
                            "no member became leader")

        # The same settings as member b, RAFT_ID included (its certificate names b): who leads, and its term.
        done = status({**base, "RAFT_ID": "b", **tls_env(good["b"])}, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        first = json.loads(done.stdout)
        assert (first["backend"], first["leader_id"], first["leader_pid"]) == ("raft", leader.name,
                                                                                leader.process.pid), first

        # A consistent set from another CA: it passes its own checks, but no peer accepts it (nor it them).
        stranger = make_certificates(tmp_path / "stranger", IDS)
        done = status({**base, "RAFT_ID": "b", **tls_env(stranger["b"])}, tmp_path)
        assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: cannot read who leads: no Raft peer answered ("), done.stderr
        assert "TLS refused (" in done.stderr and "_ssl.c" not in done.stderr, done.stderr  # a reason, not OpenSSL's
        assert_clean(done.stderr)
        for line in key_material(tmp_path / "stranger", good["a"].ca.parent):
            assert line not in done.stderr

        # Plain TCP on loopback is allowed by the settings, but an authenticated peer answers no plain client.
        done = status(base, tmp_path)
        assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
        assert done.stderr.startswith("error: cannot read who leads: no Raft peer answered ("), done.stderr

        # Refused by the peers themselves, not only by the client's own check of their certificates.
        leader.wait_for(r"raft: refused a connection from 127\.0\.0\.1 at the TLS handshake", timeout=5)

        # Nothing moved: the same leader in the same term (asked as c, named by INSTANCE_ID this time).
        done = status({**base, "INSTANCE_ID": "c", **tls_env(good["c"])}, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        again = json.loads(done.stdout)
        assert (again["leader_id"], again["term"]) == (first["leader_id"], first["term"]), (first, again)
        for member in members.values():
            assert member.process.poll() is None, member.tail()
            assert "Traceback" not in member.output
            assert not re.search(r"not authenticated", member.output), member.tail()
    finally:
        for member in members.values():
            member.stop()
