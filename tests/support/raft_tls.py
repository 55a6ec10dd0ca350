"""Certificates for the Raft TLS tests, good and bad on purpose (expired, not yet valid, another
CA, a wrong name, an encrypted key), made with ``cryptography``; and TLS nodes and clients.

make_certificates (the library's) makes the good ones; ``Authority`` here makes the rest."""

from __future__ import annotations

import datetime
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from DistributedMutex.backends.raft.certificates import PeerCertificate, make_certificates
from DistributedMutex.backends.raft.limits import ListenerLimits
from DistributedMutex.backends.raft.node import RaftNode
from DistributedMutex.backends.raft.tls import TlsConfig, load_tls
from support.raft_local import INFO, addresses

DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass
class Authority:
    """A CA of our own (``ca.pem`` in ``directory``) that issues whatever a test needs."""

    directory: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str = "test CA", *, not_after: datetime.datetime | None = None) -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(_now() - DAY).not_valid_after(not_after or _now() + DAY)
                       .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                       .sign(key, hashes.SHA256()))
        (directory / "ca.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(directory, key, certificate)

    @classmethod
    def of(cls, files: PeerCertificate, directory: Path) -> Authority:
        """The CA make_certificates made (it keeps ca-key.pem beside ca.pem), issuing into ``directory``."""
        key = serialization.load_pem_private_key((files.ca.parent / "ca-key.pem").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.pem").write_bytes(files.ca.read_bytes())
        return cls(directory, key, x509.load_pem_x509_certificate(files.ca.read_bytes()))

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def issue(self, stem: str, names: list[str], *, not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None, password: bytes | None = None) -> PeerCertificate:
        """``<stem>.pem`` naming ``names`` as subjectAltName DNS entries, and ``<stem>-key.pem``."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
                   .issuer_name(self.certificate.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before or _now() - datetime.timedelta(minutes=5))
                   .not_valid_after(not_after or _now() + DAY)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
        cert, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem"
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               encryption))
        return PeerCertificate(cert, key_path, self.ca)


def tls_of(files: PeerCertificate, node_id: str) -> TlsConfig:
    tls = load_tls(node_id, files.cert, files.key, files.ca, str)
    assert tls is not None
    return tls


def start_tls_trio(tmp_path: Path, timeout: tuple[float, float],
                   limits: ListenerLimits | None = None) -> tuple[dict[str, RaftNode], dict[str, PeerCertificate]]:
    """Three RaftNodes on loopback over mutual TLS, from make_certificates; and their files."""
    peers = addresses("a", "b", "c")
    files = make_certificates(tmp_path / "tls", peers)
    nodes = {name: RaftNode(name, peers, tmp_path / name, timeout, info=INFO, listener_limits=limits,
                            tls=tls_of(files[name], name)) for name in peers}
    for node in nodes.values():
        node.start()
    return nodes, files


def client_context(files: PeerCertificate) -> ssl.SSLContext:
    """A client presenting ``files`` and trusting their CA, checking no name (an attacker's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


def tls_connection(address: tuple[str, int], context: ssl.SSLContext, timeout: float = 5) -> ssl.SSLSocket:
    sock = socket.create_connection(address, timeout=timeout)
    try:
        return context.wrap_socket(sock)
    except BaseException:
        sock.close()
        raise
