"""A throwaway CA and one certificate per Raft peer, for RaftBackend's tls_cert, tls_key and tls_ca.

    from DistributedMutex.backends.raft.certificates import make_certificates
    made = make_certificates("raft-tls", ["a", "b", "c"])   # {"a": PeerCertificate(cert, key, ca), ...}

or from a shell (prints the paths, never a key):

    python -m DistributedMutex.backends.raft.certificates --out raft-tls a b c

Files in the directory: ``ca.pem`` (give it to every peer), ``ca-key.pem`` (the CA's key: keep it
apart, or delete it once the peers have theirs), ``<id>.pem`` and ``<id>-key.pem`` (peer ``id``'s
certificate, naming it as subjectAltName=DNS:<id>, and its key). EC P-256 keys, written 0600 and
unencrypted (a peer that restarts by itself has nobody to type a passphrase). Existing files are
never overwritten.

The only module of the library that needs a third-party package (``cryptography``, the
``certificates`` extra): the peers themselves verify with the standard library's ``ssl``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from DistributedMutex.backends import is_missing
from DistributedMutex.backends.raft.arguments import PEER_ID, PEER_ID_RULE
from DistributedMutex.errors import ConfigurationError, MissingExtraError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.x509 import Certificate

__all__ = ["PeerCertificate", "make_certificates"]

CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid from a little before now: peers' clocks differ


@dataclass(frozen=True)
class PeerCertificate:
    """One peer's files: pass them as tls_cert, tls_key and tls_ca."""

    cert: Path
    key: Path
    ca: Path


def make_certificates(directory: str | PathLike[str], peer_ids: Iterable[str], *,
                      days: int = 365) -> dict[str, PeerCertificate]:
    """A new CA and a certificate for each of ``peer_ids`` in ``directory`` (made if missing),
    valid for ``days``; the files of each peer by id."""
    ids = list(dict.fromkeys(peer_ids))
    if not ids:
        raise ConfigurationError("peer_ids", "must name at least one peer")
    for peer in ids:
        if not isinstance(peer, str) or not PEER_ID.match(peer):
            raise ConfigurationError("peer_ids", f"{peer!r} is not a peer id ({PEER_ID_RULE})")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigurationError("days", f"must be a whole number of days, at least 1, got {days!r}")
    out = Path(directory).expanduser()
    files = [out / "ca.pem", out / "ca-key.pem",
             *(out / f"{peer}{suffix}" for peer in ids for suffix in (".pem", "-key.pem"))]
    existing = [str(f) for f in files if f.exists()]
    if existing:
        raise ConfigurationError("directory", f"already holds {', '.join(existing)}: certificates are never "
                                              f"overwritten (a peer may use them); choose an empty directory")
    _require_cryptography()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import oid

    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - CLOCK_SKEW, now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "DistributedMutex Raft CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_path = out / "ca.pem"
    _write(ca_path, ca.public_bytes(serialization.Encoding.PEM), secret=False)
    _write(out / "ca-key.pem", _key_pem(ca_key), secret=True)

    made: dict[str, PeerCertificate] = {}
    for peer in ids:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, peer)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(peer)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            # Each peer is a server (its listener) and a client (its links) of the others.
            .add_extension(x509.ExtendedKeyUsage([oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = out / f"{peer}.pem", out / f"{peer}-key.pem"
        _write(cert_path, _certificate_pem(certificate), secret=False)
        _write(key_path, _key_pem(key), secret=True)
        made[peer] = PeerCertificate(cert_path, key_path, ca_path)
    return made


def _require_cryptography() -> None:
    """Imported here, not at the top: the rest of the library must load without it."""
    try:
        import cryptography  # noqa: F401
    except ModuleNotFoundError as exc:
        if not is_missing(exc, "cryptography"):
            raise
        raise MissingExtraError("make_certificates", "cryptography", "certificates") from None


def _certificate_pem(certificate: Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    # O_EXCL: never over a file that appeared since the check; a key is 0600 from its first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m DistributedMutex.backends.raft.certificates",
                                     description="Make a throwaway CA and a certificate per Raft peer id.")
    parser.add_argument("--out", required=True, help="directory for the files (made if missing; never overwritten)")
    parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    parser.add_argument("peer_ids", nargs="+", metavar="ID", help="the peer ids, as in RaftBackend's peers")
    args = parser.parse_args(argv)
    try:
        made = make_certificates(args.out, args.peer_ids, days=args.days)
    except ConfigurationError as exc:
        option = {"directory": "--out", "peer_ids": "ID", "days": "--days"}.get(exc.setting, exc.setting)
        print(f"error: {option}: {exc.rule}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: --out: {exc}", file=sys.stderr)
        return 2
    for peer, files in made.items():
        print(f"{peer}: tls_cert={files.cert} tls_key={files.key} tls_ca={files.ca}")
    print(f"the CA's key is {Path(args.out) / 'ca-key.pem'}: keep it apart, or delete it once the peers have theirs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
