"""Azure AD without Azure, for tests: a self-signed TLS certificate for Azurite (which accepts bearer
tokens only over https), and a local stand-in for App Service's managed-identity endpoint.

azure-identity's ManagedIdentityCredential (inside DefaultAzureCredential) finds the endpoint in
IDENTITY_ENDPOINT and sends IDENTITY_HEADER as X-IDENTITY-HEADER; the answer is
{"access_token", "expires_on", "resource", "token_type"}. The token is a JWT with what Azurite's
`--oauth basic` checks (node_modules/azurite/dist/src/blob/authentication/BlobTokenAuthenticator.js):
iat/nbf/exp around now, an issuer starting https://sts.windows.net/, and the storage audience. Basic
mode does not check the signature, so it is a made-up one.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TENANT = "72f988bf-0000-4000-8000-00000000dm01"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def storage_token(audience: str = "https://storage.azure.com", lifetime: int = 3600) -> tuple[str, int]:
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "iat": now - 60, "nbf": now - 60,
              "exp": now + lifetime, "oid": str(uuid.uuid4()), "tid": TENANT, "sub": "dm-test-identity"}
    body = ".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
    return f"{body}.{_b64url(b'not-a-signature')}", now + lifetime


class ManagedIdentityEndpoint:
    """App Service's token endpoint on a free port; answers only requests with the right header."""

    def __init__(self, header_secret: str, audience: str | None = None) -> None:
        self.header_secret = header_secret
        self.audience = audience  # instead of the resource asked for (to see a wrong one refused)
        self.requests: list[dict[str, str]] = []  # the query of each request, and whether it was allowed
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    def start(self) -> ManagedIdentityEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                allowed = self.headers.get("X-IDENTITY-HEADER") == endpoint.header_secret
                endpoint.requests.append(dict(query, allowed=str(allowed)))
                if not allowed:
                    return self._send(400, {"statusCode": 400, "message": "Unauthorized request"})
                resource = query.get("resource", "")
                token, expires_on = storage_token(endpoint.audience or resource.rstrip("/"))
                self._send(200, {"access_token": token, "expires_on": str(expires_on), "resource": resource,
                                 "token_type": "Bearer", "client_id": str(uuid.uuid4())})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
