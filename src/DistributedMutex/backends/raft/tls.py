"""Mutual TLS between Raft peers, standard library only: the arguments checked, the contexts built.

Each peer holds a certificate from the cluster's CA that names its peer id as
``subjectAltName=DNS:<id>``. Both sides present one and both check the other's (CERT_REQUIRED
either way, TLS 1.2 or later), and each side checks the *name* itself (``peer_ids``) rather than
through OpenSSL's host name matching: a peer id may hold ``_``, which is no host name.

Everything is checked at construction (``load_tls``), each failure one line naming the argument:
a file that cannot be read, one that holds no PEM certificate or key, an encrypted key (no
passphrase support: a process that restarts by itself has nobody to type it), a key that is not the
certificate's, a certificate that is expired, not yet valid, not signed by the CA, or not naming
this peer's id. The last three come from a real handshake of this peer with itself, in memory
(``ssl.MemoryBIO``): the same verification its peers will run. No message quotes a file's content.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from DistributedMutex.errors import ConfigurationError

TLS_ARGUMENTS = ("tls_cert", "tls_key", "tls_ca")
LOOPBACK_NAMES = frozenset({"localhost"})
_HANDSHAKE_ROUNDS = 20  # an in-memory handshake takes 2-4; a bound so that a bug cannot spin
# OpenSSL's verification codes (X509_V_ERR_*) that have a plainer meaning here.
_EXPIRED, _NOT_YET_VALID = 10, 9
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}  # no issuer in the CA file, self-signed, incomplete chain
_BAD_SIGNATURE = 7


@dataclass(frozen=True)
class TlsConfig:
    """This peer's certificate, key and the cluster's CA (paths), and the contexts made from them."""

    cert: Path
    key: Path
    ca: Path
    node_id: str
    server: ssl.SSLContext  # the listener's side: asks every client for a certificate from the CA
    client: ssl.SSLContext  # the links' and the status query's side: presents ours, checks theirs


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost": traffic that never leaves this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_tls_needed(peers: Mapping[str, tuple[str, int]], name: Callable[[str], str]) -> None:
    """Plain TCP only for a cluster on this machine: anywhere else anyone who can reach a peer
    could vote, lead or move the term (the fencing token) in its place."""
    remote = [f"{peer}={host}:{port}" for peer, (host, port) in peers.items() if not is_loopback(host)]
    if remote:
        raise ConfigurationError(name("peers"), f"lists addresses beyond this machine ({', '.join(remote)}): such a "
                                                f"cluster needs mutual TLS, set {name('tls_cert')}, {name('tls_key')} "
                                                f"and {name('tls_ca')} (plain TCP is for loopback addresses only)")


def load_tls(node_id: str, cert: object, key: object, ca: object, name: Callable[[str], str]) -> TlsConfig | None:
    """The three paths checked (all or none: None), the contexts built and tried on each other."""
    given = {"tls_cert": cert, "tls_key": key, "tls_ca": ca}
    missing = [argument for argument, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        present = [name(argument) for argument in TLS_ARGUMENTS if argument not in missing]
        raise ConfigurationError(", ".join(name(argument) for argument in missing),
                                 f"must be set too: mutual TLS needs {name('tls_cert')}, {name('tls_key')} and "
                                 f"{name('tls_ca')}, all three or none (got only {' and '.join(present)})")
    cert_path, key_path, ca_path = (_readable(name(argument), given[argument]) for argument in TLS_ARGUMENTS)
    _check_pem(name("tls_cert"), cert_path, "a PEM certificate (-----BEGIN CERTIFICATE-----)", b"CERTIFICATE-----")
    _check_pem(name("tls_key"), key_path, "a PEM private key (-----BEGIN PRIVATE KEY-----)", b"PRIVATE KEY-----")
    _check_pem(name("tls_ca"), ca_path, "a PEM certificate (-----BEGIN CERTIFICATE-----)", b"CERTIFICATE-----")
    server = _context(ssl.PROTOCOL_TLS_SERVER, cert_path, key_path, ca_path, name)
    client = _context(ssl.PROTOCOL_TLS_CLIENT, cert_path, key_path, ca_path, name)
    names = _handshake_with_itself(server, client, name)
    if node_id not in names:
        shown = ", ".join(f"DNS:{n}" for n in names) or "no DNS name"
        raise ConfigurationError(name("tls_cert"), f"names {shown} in its subjectAltName, not this peer's id: a "
                                                   f"peer's certificate must name it as subjectAltName=DNS:{node_id} "
                                                   f"({name('node_id')}={node_id})")
    return TlsConfig(cert_path, key_path, ca_path, node_id, server, client)


def peer_ids(certificate: Mapping[str, Any] | None, peers: Collection[str]) -> frozenset[str]:
    """The peer ids a verified certificate (``getpeercert()``) names as subjectAltName DNS entries.

    Exact, not OpenSSL's host name matching: no wildcards, and ids with ``_`` work."""
    return frozenset(set(dns_names(certificate)) & set(peers))


def dns_names(certificate: Mapping[str, Any] | None) -> list[str]:
    """The subjectAltName DNS entries of a certificate as ``getpeercert()`` gives it."""
    entries: Any = (certificate or {}).get("subjectAltName", ())
    return [str(value) for kind, value in entries if kind == "DNS"]


def _readable(setting: str, value: object) -> Path:
    if not isinstance(value, (str, PathLike)) or not str(value).strip():
        raise ConfigurationError(setting, f"must be the path of a PEM file (str or Path), got {type(value).__name__}")
    path = Path(value).expanduser()
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigurationError(setting, f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return path


def _check_pem(setting: str, path: Path, what: str, marker: bytes) -> None:
    """A first look, so that a swapped or wrong file is named as such (OpenSSL only says "PEM lib")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(setting, f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise ConfigurationError(setting, f"{str(path)!r} does not hold {what}")
    if marker == b"PRIVATE KEY-----" and (b"BEGIN ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data):
        raise ConfigurationError(setting, f"{str(path)!r} holds an encrypted private key: Raft peers need it "
                                          f"unencrypted (readable by this user only: chmod 600)")


def _context(protocol: int, cert: Path, key: Path, ca: Path, name: Callable[[str], str]) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED  # both ways: the server asks the client for one too
    if protocol == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = False  # peer_ids checks the name (an id is no host name)
    else:
        # TLS 1.3 session tickets: the links never resume, and a ticket would make a link's socket
        # readable although its peer never writes (transport.PeerLink reads that as "closed").
        context.num_tickets = 0
    try:
        context.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise ConfigurationError(name("tls_ca"),
                                 f"{str(ca)!r} holds no usable CA certificate ({_reason(exc)})") from None

    def encrypted() -> bytes:
        raise _EncryptedKeyError

    try:
        context.load_cert_chain(str(cert), str(key), password=encrypted)
    except _EncryptedKeyError:
        raise ConfigurationError(name("tls_key"), f"{str(key)!r} holds an encrypted private key: Raft peers need it "
                                                  f"unencrypted (readable by this user only: chmod 600)") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigurationError(name("tls_key"), f"{str(key)!r} is not the private key of the certificate in "
                                                      f"{name('tls_cert')} ({str(cert)!r})") from None
        raise ConfigurationError(name("tls_key"), f"{str(key)!r} holds no usable private key for the certificate "
                                                  f"in {name('tls_cert')} ({_reason(exc)})") from None
    return context


class _EncryptedKeyError(Exception):
    """Raised from the password callback: OpenSSL asks for a password only for an encrypted key."""


def _handshake_with_itself(server: ssl.SSLContext, client: ssl.SSLContext, name: Callable[[str], str]) -> list[str]:
    """Run a TLS handshake between the two contexts in memory; the DNS names of the certificate
    the server saw (ours), or a ConfigurationError saying why a peer would refuse it."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    client_side = client.wrap_bio(client_in, client_out, server_side=False)
    sides = [(client_side, client_out, server_in), (server_side, server_out, client_in)]
    done = [False, False]
    for _ in range(_HANDSHAKE_ROUNDS):
        for index, (side, outgoing, other_incoming) in enumerate(sides):
            if not done[index]:
                try:
                    side.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLCertVerificationError as exc:
                    raise ConfigurationError(name("tls_cert"), _verification_failure(exc, name)) from None
                except ssl.SSLError as exc:
                    raise ConfigurationError(name("tls_cert"), f"a TLS handshake with this certificate fails "
                                                               f"({_reason(exc)})") from None
            data = outgoing.read()
            if data:
                other_incoming.write(data)
        if all(done):
            return dns_names(server_side.getpeercert())
    raise ConfigurationError(name("tls_cert"), "a TLS handshake with this certificate does not complete")


def _verification_failure(exc: ssl.SSLCertVerificationError, name: Callable[[str], str]) -> str:
    code = exc.verify_code
    if code == _EXPIRED:
        return f"has expired (or a certificate of its chain, the CA's in {name('tls_ca')} included, has)"
    if code == _NOT_YET_VALID:
        return "is not valid yet (its notBefore is in the future: is this machine's clock right?)"
    if code in _UNKNOWN_ISSUER or code == _BAD_SIGNATURE:
        return f"is not signed by the CA in {name('tls_ca')} ({exc.verify_message})"
    return f"is refused by TLS verification against {name('tls_ca')} ({exc.verify_message})"


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, without the source file and line it appends."""
    return str(exc.reason or exc).split(" (_ssl.c")[0].lower().replace("_", " ")
