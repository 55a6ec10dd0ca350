"""The Azure Storage blob lease as an election backend.

The lease on one blob is the mutex. Azure leases carry neither an epoch nor the holder's identity,
so right after each acquisition the new holder writes both into the blob's metadata, under its
lease (nobody else can write it then):

    term         integer, incremented by every new leadership: the fencing token
    leader_id    the instance id; leader_host, leader_pid: where it runs
    acquired_at  ISO-8601 UTC

The holder writes the same metadata again after every renewal. That stamps the blob's
Last-Modified with the server's clock, at most a request after the lease was last renewed: a
contender that is granted the lease can tell whether its last holder renewed too recently for the
lease to have run out (the storage lost it: Azurite forgets leases when it restarts) and then waits
until that holder has stopped acting. One extra write per renewal buys that.

Lease calls use their own client: no SDK retries (its default policy can hold one call for about a
minute, four times a 15 s lease) and short socket timeouts. The election loop retries by itself.

Three ways in: a connection string (account key or SAS), a container SAS URL (least privilege: read
and write on one container that must exist), or an account URL with an Azure AD token credential.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient

from DistributedMutex.backend import Held, Identity, LeaderRecord, Lease, utc_now
from DistributedMutex.backends.azure.sas import sas_url_expiry
from DistributedMutex.errors import (
    BackendError,
    ConfigurationError,
    LeaseLostError,
    StorageRejectedError,
    StorageUnavailableError,
)
from DistributedMutex.timing import AZURE_MAX_LEASE, AZURE_MIN_LEASE, ElectionTiming

log = logging.getLogger(__name__)
T = TypeVar("T")

# azure-storage-blob 12.31 speaks 2026-10-06 by default; Azurite 3.37 accepts at most 2026-06-06.
# Pinning a version both understand lets a new SDK work against an older emulator (and Azure).
DEFAULT_API_VERSION = "2026-06-06"

# Metadata keys (fixed: other tools read them).
TERM, LEADER_ID, LEADER_HOST, LEADER_PID, ACQUIRED_AT = (
    "term", "leader_id", "leader_host", "leader_pid", "acquired_at",
)

# Azure's error codes that mean "the lease is not ours any more".
_LEASE_GONE_CODES = {
    "LeaseIdMismatchWithLeaseOperation",
    "LeaseIsBrokenAndCannotBeRenewed",
    "LeaseNotPresentWithLeaseOperation",
    "LeaseIdMismatchWithBlobOperation",
    "LeaseNotPresentWithBlobOperation",
    "LeaseLost",
    "LeaseIdMissing",
    "BlobNotFound",
    "ContainerNotFound",
}
_REJECTED_STATUS = {401, 403}
_URL_QUERY = re.compile(r"\?[^\s'\")]*")
# 403 codes: the credential is fine but may not do this; versus it is not accepted at all.
_PERMISSION_CODES = {"AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch"}


@dataclass(frozen=True)
class _Access:
    """How this backend authenticates, for messages that say what to fix."""

    setting: str  # the setting that holds the credential
    can_create_container: bool
    sas_expiry: datetime | None = None

    def refused(self, status: int | None, code: str | None) -> str:
        if self.setting == "AZURE_STORAGE_CONTAINER_SAS_URL":
            expiry = f" (it says it expires {self.sas_expiry:%Y-%m-%d %H:%M:%S} UTC)" if self.sas_expiry else ""
            return (f"storage refused the container SAS in AZURE_STORAGE_CONTAINER_SAS_URL ({status} {code}): "
                    f"it has expired{expiry}, is not valid yet, or was not signed with this account's key")
        if self.setting == "AZURE_STORAGE_ACCOUNT_URL":
            return (f"storage refused the Azure AD token for AZURE_STORAGE_ACCOUNT_URL ({status} {code}): "
                    "check the identity DefaultAzureCredential signs in as and its role on the container")
        return (f"storage refused the request ({status} {code}): check the credentials in "
                "AZURE_STORAGE_CONNECTION_STRING and their permissions on CONTAINER_NAME")

    def lacks(self, action: str, needs: str, status: int | None, code: str | None) -> str:
        if self.setting == "AZURE_STORAGE_CONTAINER_SAS_URL":
            return (f"the container SAS in AZURE_STORAGE_CONTAINER_SAS_URL lacks the {needs} permission "
                    f"to {action} ({status} {code}): the lease needs read (r) and write (w)")
        if self.setting == "AZURE_STORAGE_ACCOUNT_URL":
            return (f"the Azure AD identity may not {action} ({status} {code}): give it the role "
                    "Storage Blob Data Contributor on the container")
        return (f"the credentials in AZURE_STORAGE_CONNECTION_STRING may not {action} ({status} {code}): "
                f"they need {needs} permission on CONTAINER_NAME")


# No blob ever has it: a write conditioned on it is refused without changing anything.
_NO_SUCH_ETAG = '"0x0-never-an-etag"'
_CONNECTION_STRING = _Access("AZURE_STORAGE_CONNECTION_STRING", can_create_container=True)
# What each storage call needs of a SAS (measured on Azurite 3.37; see config.SAS_PERMISSIONS_NEEDED).
_READ, _WRITE = "read (r)", "write (w)"


class AzureBlobLeaseBackend:
    """Leader election on the lease of one blob (created, with its container, if missing)."""

    name = "azure"

    def __init__(
        self,
        connection_string: str,
        container_name: str,
        blob_name: str,
        *,
        lease_duration: int = 15,
        call_timeout: float = 3.0,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        _check_lease_duration(lease_duration)
        service = BlobServiceClient.from_connection_string(
            connection_string, **_client_options(api_version, call_timeout))
        self._setup(service.get_container_client(container_name), blob_name, lease_duration, api_version,
                    _CONNECTION_STRING)

    @classmethod
    def from_container_sas_url(
        cls, container_sas_url: str, blob_name: str, *, lease_duration: int = 15, call_timeout: float = 3.0,
        api_version: str = DEFAULT_API_VERSION,
    ) -> AzureBlobLeaseBackend:
        """Least privilege: a SAS for one existing container, with read (r) and write (w)."""
        _check_lease_duration(lease_duration)
        container = ContainerClient.from_container_url(
            container_sas_url, **_client_options(api_version, call_timeout))
        backend = cls.__new__(cls)
        backend._setup(container, blob_name, lease_duration, api_version, _Access(
            "AZURE_STORAGE_CONTAINER_SAS_URL", can_create_container=False,
            sas_expiry=sas_url_expiry(container_sas_url)))
        return backend

    @classmethod
    def from_account_url(
        cls, account_url: str, credential: Any, container_name: str, blob_name: str, *,
        lease_duration: int = 15, call_timeout: float = 3.0, api_version: str = DEFAULT_API_VERSION,
    ) -> AzureBlobLeaseBackend:
        """Azure AD: ``credential`` is a TokenCredential, e.g. azure.identity.DefaultAzureCredential()."""
        _check_lease_duration(lease_duration)
        service = BlobServiceClient(account_url, credential=credential, **_client_options(api_version, call_timeout))
        backend = cls.__new__(cls)
        backend._setup(service.get_container_client(container_name), blob_name, lease_duration, api_version,
                       _Access("AZURE_STORAGE_ACCOUNT_URL", can_create_container=True))
        return backend

    def default_timing(self) -> ElectionTiming:
        """Renew three times per lease (15 s: every 5 s), look for a free lease every 2 s, stop
        acting 2 s before the lease can end."""
        return ElectionTiming(lease_duration=self._lease_duration, renew_interval=self._lease_duration / 3,
                              acquire_interval=2, safety_margin=2)

    def _setup(self, container: ContainerClient, blob_name: str, lease_duration: int, api_version: str,
               access: _Access) -> None:
        self._access = access
        self._container = container
        self._blob: BlobClient = self._container.get_blob_client(blob_name)
        # One lease id for the life of the process: if an acquire succeeds on the server but its
        # answer is lost, the next attempt with the same id succeeds instead of waiting it out.
        self._lease = BlobLeaseClient(self._blob, lease_id=str(uuid.uuid4()))
        self._lease_duration = int(lease_duration)
        self._api_version = api_version
        # Set when an acquire got no answer: it may have succeeded, so a lease that looks held
        # may be ours, and re-acquiring with our id (idempotent) finds out.
        self._acquire_outcome_unknown = False
        self._metadata: dict[str, str] = {}

    # -- the ElectionBackend interface -------------------------------------------------------

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        started = time.monotonic()
        properties = self._call(self._properties_or_create, "read or create the lease blob", _READ)
        previous = _record(properties.metadata, properties.lease.state)
        # Released, never held, or held by this very process (which stopped acting before it
        # contended again): nobody else can still be acting on the lease.
        predecessor_may_act = (properties.lease.state != "available" and previous.instance_id is not None
                               and (previous.instance_id, previous.pid) != (identity.instance_id, identity.pid))
        if properties.lease.state == "leased":
            record = _record(properties.metadata, properties.lease.state)
            ours = (record.instance_id, record.pid) == (identity.instance_id, identity.pid)
            if not ours and not self._acquire_outcome_unknown:
                return Held(record)
            # Maybe ours: from an acquire whose answer we never got, or from a leadership we
            # stepped down from. Re-acquiring with our lease id succeeds if so, as a new term.
        try:
            self._call(lambda: self._lease.acquire(lease_duration=self._lease_duration),
                       "acquire the lease", _WRITE)
        except ResourceExistsError as exc:  # 409 LeaseAlreadyPresent: someone was faster
            self._acquire_outcome_unknown = False
            if _code(exc) == "LeaseAlreadyPresent":
                return Held(_record(properties.metadata, "leased"))
            raise self._translate(exc) from None
        except StorageUnavailableError:
            self._acquire_outcome_unknown = True
            raise
        self._acquire_outcome_unknown = False
        lease = Lease(term=0, token=self._lease.id, sent_at=now, duration=self._lease_duration)
        try:
            term, predecessor_until, written_since = self._record_new_term(identity, seen_etag=properties.etag)
        except BackendError:
            self._release_quietly(lease)
            raise
        # Somebody wrote the blob between our first read and our acquire: another holder came and
        # went in that gap (every holder writes its term), and may still be acting if the storage
        # lost its lease. Its stamp is the Last-Modified we just read under our lease.
        predecessor_may_act = predecessor_may_act or written_since
        return Lease(term=term, token=lease.token, sent_at=now, duration=self._lease_duration,
                     predecessor_until=now + (time.monotonic() - started) + predecessor_until
                     if predecessor_may_act else -math.inf)

    def renew(self, lease: Lease, now: float) -> Lease:
        # Renew and stamp Last-Modified (see the module's docstring) side by side: a renewal then
        # costs one round trip, not two, and counts only once both have succeeded. The stamp is
        # sent no earlier than the renewal, which is all a successor's reckoning needs.
        stamp = _Concurrent(lambda: self._call(
            lambda: self._blob.set_blob_metadata(self._metadata, lease=self._lease.id),
            "stamp the lease blob's metadata", _WRITE))
        self._call(self._lease.renew, "renew the lease", _WRITE)
        stamp.result()
        return Lease(term=lease.term, token=lease.token, sent_at=now, duration=lease.duration)

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        term, _, _ = self._record_new_term(identity, at_least=at_least)
        return Lease(term=term, token=lease.token, sent_at=lease.sent_at, duration=lease.duration)

    def release(self, lease: Lease) -> None:
        try:
            self._call(self._lease.release, "release the lease", _WRITE)
        except LeaseLostError:
            pass  # already not ours: nothing to give back
        finally:
            # The SDK forgets the id on release; the next acquire must reuse ours.
            self._lease.id = lease.token

    def read_leader(self) -> LeaderRecord | None:
        try:
            properties = self._call(self._blob.get_blob_properties, "read the lease blob", _READ)
        except LeaseLostError:  # blob or container missing: nobody ever led
            return None
        record = _record(properties.metadata, properties.lease.state)
        if record.instance_id is None and not record.is_held:
            return None
        return record

    def watch(self, wake: Callable[[], None]) -> None:
        """The blob lease can only be polled: nothing ever wakes the loop early."""

    def close(self) -> None:
        self._container.close()

    def check_access(self) -> None:
        """Read (creating what is missing) and try a write that changes nothing, once at start.

        A credential that may read but not write would otherwise only show when the lease is free:
        a worker that can never take over. The write is a metadata update that the storage refuses
        for its impossible ETag (412) after checking the permission (403 without it)."""
        self._call(self._properties_or_create, "read or create the lease blob", _READ)
        try:
            self._blob.set_blob_metadata({}, if_match=_NO_SUCH_ETAG)
        except HttpResponseError as exc:
            if exc.status_code == 412:  # ConditionNotMet, or LeaseIdMissing while someone leads
                return
            raise self._translate(exc, "write the lease blob", _WRITE) from None
        except AzureError as exc:
            raise self._translate(exc, "write the lease blob", _WRITE) from None
        raise AssertionError("a metadata update with an impossible ETag succeeded")

    # -- helpers -----------------------------------------------------------------------------

    def _record_new_term(self, identity: Identity, at_least: int = 0,
                         seen_etag: str | None = None) -> tuple[int, float, bool]:
        """Increment the term in the blob's metadata, under our lease (read-modify-write).

        Also returns how long from now, at most, the previous holder's lease could have lasted
        had the storage kept it: its last stamp of Last-Modified plus a lease, against the
        server's clock (both in whole seconds, hence the extra second); and whether the blob was
        written since ``seen_etag`` (our read before acquiring)."""
        properties = self._call(self._blob.get_blob_properties, "read the lease blob", _READ)
        metadata = dict(properties.metadata or {})
        term = max(_int(metadata.get(TERM)) + 1, at_least)
        metadata.update({
            TERM: str(term),
            LEADER_ID: identity.instance_id,
            LEADER_HOST: identity.host,
            LEADER_PID: str(identity.pid),
            ACQUIRED_AT: utc_now().isoformat(timespec="milliseconds"),
        })
        answer = self._call(lambda: self._blob.set_blob_metadata(
            metadata, lease=self._lease.id, if_match=properties.etag,
        ), "write the term into the blob's metadata", _WRITE)
        self._metadata = metadata
        written_since = seen_etag is not None and properties.etag != seen_etag
        last_stamp, server_now = properties.last_modified, answer.get("date") or answer.get("last_modified")
        if last_stamp is None or server_now is None:
            return term, float(self._lease_duration + 1), written_since  # cannot tell: assume the worst
        return term, (last_stamp - server_now).total_seconds() + self._lease_duration + 1, written_since

    def _properties_or_create(self) -> Any:
        try:
            return self._blob.get_blob_properties()
        except ResourceNotFoundError:
            self._create_container_and_blob()
            return self._blob.get_blob_properties()

    def _create_container_and_blob(self) -> None:
        """Create what is missing; several instances may race here, and all of them win."""
        name = self._container.container_name
        if self._access.can_create_container:
            try:
                self._container.create_container()
                log.info("created container %s", name)
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
                # The blob call below says whether the container is there after all.
        try:
            self._blob.upload_blob(b"", if_none_match="*")
            log.info("created lease blob %s", self._blob.blob_name)
        except (ResourceExistsError, ResourceModifiedError):
            pass  # someone else created it first (BlobAlreadyExists / ConditionNotMet)
        except ResourceNotFoundError as exc:
            if _code(exc) != "ContainerNotFound":
                raise
            how = ("a container SAS cannot create it" if not self._access.can_create_container
                   else f"the credentials in {self._access.setting} may not create it")
            raise StorageRejectedError(
                f"container {name!r} does not exist and {how}: create it first "
                f"(e.g. az storage container create --name {name})", code="ContainerNotFound") from None
        except HttpResponseError as exc:
            if _code(exc) != "LeaseIdMissing":  # LeaseIdMissing: it exists and is already leased
                # Translated here, not in _call: creating needs write, not the read of "read or create".
                raise self._translate(exc, "create the lease blob", _WRITE) from None

    def _release_quietly(self, lease: Lease) -> None:
        try:
            self.release(lease)
        except BackendError as exc:
            log.warning("could not release the lease after a failed term update: %s", exc)

    def _call(self, operation: Callable[[], T], action: str, needs: str) -> T:
        """Run one storage call, turning the SDK's errors into ours.

        ``action`` and ``needs`` say what the call does and which SAS permission that takes, so
        that a refusal names what is missing. A connection the server closed while it sat idle in
        the pool fails at once, before any answer; that one case is retried at once (Azurite
        closes idle connections after 5 s, the renew interval's default). Every call here may be
        repeated: lease calls carry our lease id.
        """
        try:
            try:
                return operation()
            except ServiceResponseError as exc:
                if not _closed_while_idle(exc):
                    raise
                log.debug("storage closed an idle connection; retrying once: %s", _first_line(exc))
                return operation()
        except AzureError as exc:
            if isinstance(exc, ResourceExistsError) and _code(exc) == "LeaseAlreadyPresent":
                raise  # the caller decides: it is an answer, not a failure
            raise self._translate(exc, action, needs) from None

    def _translate(self, exc: AzureError, action: str = "use the lease blob", needs: str = _WRITE) -> BackendError:
        code = _code(exc)
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return StorageUnavailableError(
                f"storage did not answer ({type(exc).__name__}): {_first_line(exc)}", code=code
            )
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ClientAuthenticationError) and status is None:
            # No HTTP answer from storage: the token credential could not get a token. At start the
            # command line checks the credential once; later this may heal (the identity endpoint
            # was down), so it counts as unavailable. Its text is long and multi-line: not quoted.
            return StorageUnavailableError(
                f"could not get an Azure AD token for storage ({type(exc).__name__})", code=code)
        if code in _LEASE_GONE_CODES or status == 404:
            return LeaseLostError(f"lease lost ({code or status})", code=code)
        if status == 403 and code in _PERMISSION_CODES:
            return StorageRejectedError(self._access.lacks(action, needs, status, code), code=code)
        if status in _REJECTED_STATUS:
            return StorageRejectedError(self._access.refused(status, code), code=code)
        if code == "InvalidHeaderValue" and "version" in str(exc).lower():
            return StorageRejectedError(
                f"the storage endpoint does not support API version {self._api_version} "
                "(set AZURE_STORAGE_API_VERSION to one it supports, or upgrade Azurite)",
                code=code,
            )
        if status is not None and 400 <= status < 500 and status not in (408, 409, 412, 429):
            return StorageRejectedError(f"storage rejected the request ({status} {code})", code=code)
        return StorageUnavailableError(f"storage error ({status} {code})", code=code)


def _client_options(api_version: str, call_timeout: float) -> dict[str, Any]:
    return {"api_version": api_version, "retry_total": 0, "connection_timeout": call_timeout,
            "read_timeout": call_timeout}


def _check_lease_duration(lease_duration: int) -> None:
    if not AZURE_MIN_LEASE <= lease_duration <= AZURE_MAX_LEASE:
        # Azure also grants infinite leases (-1): never here, a crashed leader would hold it forever.
        raise ConfigurationError("LEASE_DURATION", f"must be from {AZURE_MIN_LEASE} to "
                                 f"{AZURE_MAX_LEASE} seconds, got {lease_duration}")


class _Concurrent:
    """Run a call in a daemon thread; ``result()`` waits for it and raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True, name="lease-stamp")
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _closed_while_idle(exc: AzureError) -> bool:
    text = str(exc)
    return "RemoteDisconnected" in text or "ConnectionResetError" in text or "BrokenPipeError" in text


def _code(exc: AzureError) -> str | None:
    code = getattr(exc, "error_code", None)
    return str(code.value if hasattr(code, "value") else code) if code else None


def _first_line(exc: BaseException) -> str:
    """The first line of an error, without any URL query: requests quotes the URL it failed on,
    and with a SAS (in AZURE_STORAGE_CONTAINER_SAS_URL or a connection string) the query is the
    signature. Messages leave here clean, whether or not a log filter is in the way."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _URL_QUERY.sub("?…", text)[:200]


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _record(metadata: Mapping[str, str] | None, lease_state: str | None) -> LeaderRecord:
    metadata = metadata or {}
    acquired_at = None
    if metadata.get(ACQUIRED_AT):
        try:
            acquired_at = datetime.fromisoformat(metadata[ACQUIRED_AT])
        except ValueError:
            acquired_at = None
    pid = metadata.get(LEADER_PID)
    return LeaderRecord(
        instance_id=metadata.get(LEADER_ID),
        term=_int(metadata.get(TERM)),
        host=metadata.get(LEADER_HOST),
        pid=int(pid) if pid and pid.isdigit() else None,
        acquired_at=acquired_at,
        lease_state=lease_state,
    )
