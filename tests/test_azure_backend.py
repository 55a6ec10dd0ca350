"""The blob-lease backend against real Azurite: terms, identity, errors, races."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient

from DistributedMutex.backend import Held, Identity, Lease
from DistributedMutex.backends.azure.lease import DEFAULT_API_VERSION, AzureBlobLeaseBackend
from DistributedMutex.errors import LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.mutex import DistributedMutex, RoleContext
from harness.services import connection_string, free_port

WRONG_KEY = "d3Jvbmcta2V5LWZvci10ZXN0cy0xMjM0NTY3OA=="


def backend(conn: str, container: str, **kwargs) -> AzureBlobLeaseBackend:
    return AzureBlobLeaseBackend(conn, container, "weather-leader", **kwargs)


def metadata(conn: str, container: str) -> dict[str, str]:
    service = BlobServiceClient.from_connection_string(conn, api_version=DEFAULT_API_VERSION)
    return dict(service.get_blob_client(container, "weather-leader").get_blob_properties().metadata)


def test_acquire_records_term_and_identity_under_the_lease(azurite, container_name) -> None:
    a = backend(azurite.connection_string, container_name)
    lease = a.acquire(Identity("alpha", host="host-a", pid=11), now=100.0)
    assert isinstance(lease, Lease) and lease.term == 1 and lease.sent_at == 100.0
    meta = metadata(azurite.connection_string, container_name)
    assert {k: meta[k] for k in ("term", "leader_id", "leader_host", "leader_pid")} == {
        "term": "1", "leader_id": "alpha", "leader_host": "host-a", "leader_pid": "11"}
    assert meta["acquired_at"].endswith("+00:00")
    record = a.read_leader()
    assert (record.instance_id, record.term, record.pid, record.is_held) == ("alpha", 1, 11, True)


def test_a_second_contender_sees_the_holder_then_takes_over_with_a_higher_term(azurite, container_name) -> None:
    a, b = backend(azurite.connection_string, container_name), backend(azurite.connection_string, container_name)
    lease_a = a.acquire(Identity("alpha"), now=0.0)
    held = b.acquire(Identity("beta"), now=0.0)
    assert isinstance(held, Held) and held.leader.instance_id == "alpha" and held.leader.term == 1
    a.renew(lease_a, now=1.0)
    a.release(lease_a)
    lease_b = b.acquire(Identity("beta"), now=2.0)
    assert isinstance(lease_b, Lease) and lease_b.term == 2
    with pytest.raises(LeaseLostError, match="LeaseIdMismatchWithLeaseOperation"):
        a.renew(lease_a, now=3.0)
    # the first one comes back later: a new leadership, a new term
    b.release(lease_b)
    again = a.acquire(Identity("alpha"), now=4.0)
    assert isinstance(again, Lease) and again.term == 3


def test_a_broken_lease_cannot_be_renewed(azurite, container_name) -> None:
    a = backend(azurite.connection_string, container_name)
    lease = a.acquire(Identity("alpha"), now=0.0)
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=DEFAULT_API_VERSION)
    from azure.storage.blob import BlobLeaseClient
    BlobLeaseClient(service.get_blob_client(container_name, "weather-leader")).break_lease(lease_break_period=0)
    with pytest.raises(LeaseLostError, match="LeaseIsBrokenAndCannotBeRenewed"):
        a.renew(lease, now=1.0)


def test_many_contenders_on_a_new_container_one_wins_none_fails(azurite, container_name) -> None:
    start = threading.Barrier(8)

    def contend(i: int) -> Lease | Held:
        b = backend(azurite.connection_string, container_name)
        start.wait()
        return b.acquire(Identity(f"n{i}"), now=0.0)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(contend, range(8)))
    assert sum(isinstance(r, Lease) for r in results) == 1
    assert sum(isinstance(r, Held) for r in results) == 7


def test_unreachable_storage_is_unavailable_not_lost(container_name) -> None:
    b = backend(connection_string(free_port()), container_name)
    with pytest.raises(StorageUnavailableError, match="storage did not answer"):
        b.acquire(Identity("x"), now=0.0)


def test_a_wrong_account_key_is_rejected_without_showing_it(azurite, container_name) -> None:
    b = backend(connection_string(azurite.port, key=WRONG_KEY), container_name)
    with pytest.raises(StorageRejectedError) as caught:
        b.acquire(Identity("x"), now=0.0)
    assert str(caught.value) == ("storage refused the request (403 AuthorizationFailure): check the credentials in "
                                 "connection_string and their permissions on container_name")
    assert WRONG_KEY not in str(caught.value)
    # A program passes what it calls them (the demo: its settings).
    named = backend(connection_string(azurite.port, key=WRONG_KEY), container_name,
                    names={"connection_string": "AZURE_STORAGE_CONNECTION_STRING", "container_name": "CONTAINER_NAME"})
    with pytest.raises(StorageRejectedError) as named_caught:
        named.acquire(Identity("x"), now=0.0)
    assert str(named_caught.value).endswith(
        "check the credentials in AZURE_STORAGE_CONNECTION_STRING and their permissions on CONTAINER_NAME")


NOT_BASE64 = "not*base64!secret-account-key"


@pytest.mark.parametrize(("key", "message"), [
    (NOT_BASE64, "the AccountKey in AZURE_STORAGE_CONNECTION_STRING is not an account key (not base64, so no request "
                 "can be signed with it): copy it again from the storage account's access keys"),
    (WRONG_KEY, "storage refused the request (403 AuthorizationFailure): check the credentials in "
                "AZURE_STORAGE_CONNECTION_STRING and their permissions on container_name"),
])
def test_an_account_key_that_is_not_the_account_s_stops_the_election_without_showing_it(
        azurite, container_name, caplog: pytest.LogCaptureFixture, key: str, message: str) -> None:
    """Refused for good (a library user's instance does not retry for ever, as it did when the SDK
    could not sign with a key that is not base64), named by the argument, the key nowhere."""
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's HTTP lines included
    b = backend(connection_string(azurite.port, key=key), container_name,
                names={"connection_string": "AZURE_STORAGE_CONNECTION_STRING"})
    with pytest.raises(StorageRejectedError) as caught:
        b.acquire(Identity("x"), now=0.0)
    assert str(caught.value) == message

    async def lead(ctx: RoleContext) -> None:
        raise AssertionError("led with a key the storage cannot accept")

    mutex = DistributedMutex(lead, backend=b, identity=Identity("x"))
    with pytest.raises(StorageRejectedError) as stopped:
        asyncio.run(asyncio.wait_for(mutex.run_async(), timeout=5))
    assert str(stopped.value) == message
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    for text in (str(caught.value), caplog.text, *(r.getMessage() for r in caplog.records)):
        assert key not in text


def test_an_api_version_the_emulator_does_not_speak_is_named(azurite, container_name) -> None:
    b = backend(azurite.connection_string, container_name, api_version="2026-10-06")
    with pytest.raises(StorageRejectedError) as raised:
        b.acquire(Identity("x"), now=0.0)
    assert str(raised.value) == ("the storage endpoint does not support API version 2026-10-06 (set api_version to "
                                 "one it supports, or upgrade Azurite)")


def test_only_the_holder_can_advance_the_term(azurite, container_name) -> None:
    a, b = backend(azurite.connection_string, container_name), backend(azurite.connection_string, container_name)
    lease_a = a.acquire(Identity("alpha"), now=0.0)
    assert a.advance_term(lease_a, Identity("alpha"), at_least=9).term == 9
    a.release(lease_a)
    lease_b = b.acquire(Identity("beta"), now=1.0)
    assert lease_b.term == 10
    with pytest.raises(LeaseLostError):
        a.advance_term(lease_a, Identity("alpha"), at_least=50)  # a stale leader cannot jump ahead
    assert b.read_leader().term == 10


def test_a_lease_the_storage_lost_tells_the_next_holder_to_wait(tmp_path, container_name) -> None:
    """Azurite forgets leases when it restarts: the blob shows "expired" although its holder renewed
    it seconds ago. The next holder learns from Last-Modified (stamped by every renewal) how long
    the previous holder may still act, and waits; after a lease that ran out it does not wait."""
    from harness.services import Azurite

    server = Azurite(location=tmp_path).start()
    try:
        a = backend(server.connection_string, container_name)
        b = backend(server.connection_string, container_name)
        lease = a.acquire(Identity("alpha", pid=1), now=time.monotonic())
        renewed_at = time.monotonic()
        a.renew(lease, renewed_at)
        server.stop()
        server.start()
        taken = b.acquire(Identity("beta", pid=2), now=time.monotonic())
        assert isinstance(taken, Lease), "Azurite kept the lease over a restart: this test needs another way to lose it"
        # The previous lease could have lasted until renewed_at + 15 s (plus a second of rounding).
        assert renewed_at + 15 - 0.5 <= taken.predecessor_until <= renewed_at + 15 + 2.5, (
            taken.predecessor_until - renewed_at)

        b.release(taken)
        again = a.acquire(Identity("alpha", pid=1), now=time.monotonic())
        assert isinstance(again, Lease) and again.predecessor_until == -math.inf  # released: nothing to wait for
    finally:
        server.stop()


def _after_the_first_read(contender: AzureBlobLeaseBackend, then) -> None:
    """Make ``then()`` happen between ``contender``'s first read of the blob in acquire and its
    acquire of the lease: a real write, at the one moment a test cannot otherwise choose."""
    read = contender._properties_or_create

    def read_then() -> object:
        properties = read()
        then()
        contender._properties_or_create = read  # once
        return properties

    contender._properties_or_create = read_then


@pytest.mark.parametrize("other", [Identity("beta", pid=2), Identity("alpha", pid=1)],
                         ids=["another-instance", "same-id-and-pid-in-another-container"])
def test_a_holder_that_came_and_went_since_the_first_read_is_waited_for(azurite, container_name, other) -> None:
    """Between a contender's read and its acquire, another holder took the lease, wrote its term
    and let it go: had the storage lost that lease, its holder could still be acting. Also when it
    names itself as we do (a configured instance id, pid 1 in two containers): it is not our write."""
    a, b = backend(azurite.connection_string, container_name), backend(azurite.connection_string, container_name)
    a.release(a.acquire(Identity("alpha", pid=1), now=time.monotonic()))
    _after_the_first_read(a, lambda: b.release(b.acquire(other, now=time.monotonic())))
    taken = a.acquire(Identity("alpha", pid=1), now=time.monotonic())
    assert isinstance(taken, Lease) and taken.term == 3
    assert taken.predecessor_until > time.monotonic() + 10, "beta wrote the blob in the gap: it may still act"


def test_our_own_write_since_the_first_read_is_no_predecessor(azurite, container_name) -> None:
    """A write of our own in that gap (a renewal's stamp, sent beside a renewal that failed, landing
    late) is no other holder: our leadership stopped acting before we contended again, so there is
    nothing to wait for (it once cost a 14 s wait after a lease was broken)."""
    a = backend(azurite.connection_string, container_name)
    a.acquire(Identity("alpha", pid=1), now=time.monotonic())  # held; then stepped down, still ours
    _after_the_first_read(a, lambda: a._blob.set_blob_metadata(a._metadata, lease=a._lease.id))
    again = a.acquire(Identity("alpha", pid=1), now=time.monotonic())
    assert isinstance(again, Lease) and again.term == 2
    assert again.predecessor_until == -math.inf


def test_a_lead_and_renew_cycle_logs_nothing_at_info_from_the_sdk(
        azurite, container_name, caplog: pytest.LogCaptureFixture) -> None:
    """The SDK logs every request and response at INFO, headers and all: our clients log those
    lines at DEBUG, on the SDK's own logger, so that a user's INFO logs stay readable and DEBUG
    on that logger shows them. No logger's level is changed by the library."""
    import logging

    from DistributedMutex.backends.azure.clients import HTTP_LOGGER

    root, http = logging.getLogger(), logging.getLogger(HTTP_LOGGER)
    levels = (root.level, http.level, logging.getLogger("azure").level)
    caplog.set_level(logging.INFO)  # the root logger at INFO, as a user's service would have it

    def sdk_info() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("azure") and r.levelno >= logging.INFO]

    # The same SDK, built without our options, floods: the check below can fail.
    plain = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=DEFAULT_API_VERSION)
    plain.get_container_client(container_name).exists()
    assert sdk_info(), "the SDK logged nothing at INFO of its own: this test no longer shows anything"
    caplog.clear()

    a = backend(azurite.connection_string, container_name)
    lease = a.acquire(Identity("alpha"), now=time.monotonic())
    assert isinstance(lease, Lease)
    for _ in range(3):
        lease = a.renew(lease, now=time.monotonic())
    a.read_leader()
    a.release(lease)
    assert sdk_info() == [], [r.getMessage()[:120] for r in sdk_info()]
    assert (root.level, http.level, logging.getLogger("azure").level) == (logging.INFO, *levels[1:])

    # Asked for (DEBUG on the SDK's HTTP logger): the lines are there, at DEBUG.
    caplog.set_level(logging.DEBUG, logger=HTTP_LOGGER)
    a.read_leader()
    lines = [r for r in caplog.records if r.name == HTTP_LOGGER]
    assert lines and all(r.levelno == logging.DEBUG for r in lines)
    assert any("Request URL" in r.getMessage() for r in lines)
    a.close()
