"""Azure AD end to end without Azure: the demo signs in with DefaultAzureCredential, which gets its
token from a managed identity (App Service's IDENTITY_ENDPOINT / IDENTITY_HEADER, served by a local
stand-in), and leads on Azurite running with `--oauth basic` over https (a self-signed certificate
made here). Azurite then checks each bearer token's lifetime, issuer and audience."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.services import AZURITE_ACCOUNT, Azurite
from support.bad_input import assert_stops_with
from support.identity import ManagedIdentityEndpoint, self_signed_certificate

IDENTITY_HEADER = "IDH-SECRET-8086-recognisable"


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    certificate, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    server = Azurite(certificate=certificate, extra_args=("--key", str(key), "--oauth", "basic")).start()
    yield server
    server.stop()


@pytest.fixture
def identity_endpoint() -> Iterator[ManagedIdentityEndpoint]:
    endpoint = ManagedIdentityEndpoint(IDENTITY_HEADER).start()
    yield endpoint
    endpoint.stop()


def azure_ad_env(demo_env: dict[str, str], azurite: Azurite, endpoint: ManagedIdentityEndpoint, home: Path,
                 header: str = IDENTITY_HEADER) -> dict[str, str]:
    env = {k: v for k, v in demo_env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    env.update(
        AZURE_STORAGE_ACCOUNT_URL=f"https://127.0.0.1:{azurite.port}/{AZURITE_ACCOUNT}",
        IDENTITY_ENDPOINT=endpoint.url, IDENTITY_HEADER=header,
        REQUESTS_CA_BUNDLE=str(azurite.certificate),  # trust the test's certificate (requests reads it)
        HOME=str(home),  # no Azure CLI or token cache of whoever runs the tests
        LOG_LEVEL="DEBUG",
    )
    return env


def test_an_instance_leads_with_a_managed_identity_token(spawn, demo_env, oauth_azurite, identity_endpoint,
                                                          tmp_path, mysql_server, database) -> None:
    leader = spawn("ad-leader", azure_ad_env(demo_env, oauth_azurite, identity_endpoint, tmp_path))
    leader.wait_for(r"became leader \(term 1\)", timeout=20)
    leader.wait_for(r"stored \d+ readings", timeout=10)
    assert mysql_server.query(database, "SELECT term, leader_id FROM leader_term") == [(1, "ad-leader")]
    assert identity_endpoint.requests, "no token was asked for"
    assert {r["resource"] for r in identity_endpoint.requests} == {"https://storage.azure.com"}
    assert all(r["allowed"] == "True" for r in identity_endpoint.requests)
    assert IDENTITY_HEADER not in leader.output and "Traceback" not in leader.output
    assert "eyJ" not in leader.output, "a token (base64 JSON) was printed"


def test_a_token_for_another_audience_is_refused_by_the_storage(spawn, demo_env, oauth_azurite, tmp_path) -> None:
    endpoint = ManagedIdentityEndpoint(IDENTITY_HEADER, audience="https://vault.azure.net").start()
    try:
        instance = spawn("wrong-audience", azure_ad_env(demo_env, oauth_azurite, endpoint, tmp_path))
        instance.wait(20)
    finally:
        endpoint.stop()
    assert_stops_with(instance, "account-url-storage-refuses-token")
    assert IDENTITY_HEADER not in instance.output


def test_a_managed_identity_that_refuses_us_stops_the_program_at_start(spawn, demo_env, oauth_azurite,
                                                                        identity_endpoint, tmp_path) -> None:
    env = azure_ad_env(demo_env, oauth_azurite, identity_endpoint, tmp_path, header="IDH-WRONG-4711")
    instance = spawn("no-token", dict(env, LOG_LEVEL="INFO"))
    assert_stops_with(instance, "account-url-token-refused", timeout=20)
    assert identity_endpoint.requests and identity_endpoint.requests[0]["allowed"] == "False"
    assert "IDH-WRONG-4711" not in instance.output
