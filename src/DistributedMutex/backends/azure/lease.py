"""The Azure Storage blob lease as an election backend.

The lease on one blob is the mutex. Right after each acquisition the new holder writes its term
(the fencing token) and identity into the blob's metadata, under its lease (metadata.py).

The holder writes the same metadata again after every renewal. That stamps the blob's
Last-Modified with the server's clock, at most a request after the lease was last renewed: a
contender that is granted the lease can tell whether its last holder renewed too recently for the
lease to have run out (the storage lost it: Azurite forgets leases when it restarts) and then waits
until that holder has stopped acting. One extra write per renewal buys that.

Lease calls use their own clients (clients.py): no SDK retries, short socket timeouts, and the
SDK's HTTP logging at DEBUG. The election loop retries by itself.

Three ways in: a connection string (account key or SAS), a container SAS URL (least privilege: read
and write on one container that must exist), or an account URL with an Azure AD token credential.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient

from DistributedMutex.backend import Held, Identity, LeaderRecord, Lease, utc_now
from DistributedMutex.backends.azure.arguments import (
    DEFAULT_API_VERSION,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_LEASE_DURATION,
    blob_timing,
    check_blob_name,
    check_container_name,
)
from DistributedMutex.backends.azure.clients import checked_options, sdk_refusal
from DistributedMutex.backends.azure.failures import (
    READ,
    WRITE,
    Access,
    closed_while_idle,
    error_code,
    first_line,
    translate,
)
from DistributedMutex.backends.azure.metadata import (
    ACQUIRED_AT,
    LEADER_HOST,
    LEADER_ID,
    LEADER_PID,
    TERM,
    leader_record,
    term_of,
)
from DistributedMutex.backends.azure.sas import sas_url_expiry
from DistributedMutex.errors import (
    BackendError,
    LeaseLostError,
    StorageRejectedError,
    StorageUnavailableError,
)
from DistributedMutex.threads import SideWorker
from DistributedMutex.timing import ElectionTiming

__all__ = ["DEFAULT_API_VERSION", "AzureBlobLeaseBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# No blob ever has it: a write conditioned on it is refused without changing anything.
_NO_SUCH_ETAG = '"0x0-never-an-etag"'


class AzureBlobLeaseBackend:
    """Leader election on the lease of one blob (created, with its container, if missing)."""

    name = "azure"

    def __init__(
        self,
        connection_string: str,
        container_name: str,
        blob_name: str,
        *,
        lease_duration: int = DEFAULT_LEASE_DURATION,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        api_version: str = DEFAULT_API_VERSION,
        names: Mapping[str, str] | None = None,
    ) -> None:
        """A connection string (account key or SAS). ``lease_duration``: whole seconds, 15 to 60
        (the loop's timing follows from it); ``call_timeout``: each storage call's socket timeouts;
        ``names``: what the caller calls these arguments in its own settings, for messages."""
        access = Access("connection_string", can_create_container=True, names=dict(names or {}))
        options = checked_options(access, lease_duration, call_timeout, api_version)
        check_container_name(access.name("container_name"), container_name)
        with sdk_refusal(access):
            service = BlobServiceClient.from_connection_string(connection_string, **options)
        self._setup(service.get_container_client(container_name), blob_name, lease_duration, api_version, access)

    @classmethod
    def from_container_sas_url(
        cls, container_sas_url: str, blob_name: str, *, lease_duration: int = DEFAULT_LEASE_DURATION,
        call_timeout: float = DEFAULT_CALL_TIMEOUT, api_version: str = DEFAULT_API_VERSION,
        names: Mapping[str, str] | None = None,
    ) -> AzureBlobLeaseBackend:
        """Least privilege: a SAS for one existing container, with read (r) and write (w)."""
        access = Access("container_sas_url", can_create_container=False, names=dict(names or {}),
                        sas_expiry=sas_url_expiry(container_sas_url))
        options = checked_options(access, lease_duration, call_timeout, api_version)
        with sdk_refusal(access):
            container = ContainerClient.from_container_url(container_sas_url, **options)
        backend = cls.__new__(cls)
        backend._setup(container, blob_name, lease_duration, api_version, access)
        return backend

    @classmethod
    def from_account_url(
        cls, account_url: str, credential: Any, container_name: str, blob_name: str, *,
        lease_duration: int = DEFAULT_LEASE_DURATION, call_timeout: float = DEFAULT_CALL_TIMEOUT,
        api_version: str = DEFAULT_API_VERSION, names: Mapping[str, str] | None = None,
    ) -> AzureBlobLeaseBackend:
        """Azure AD: ``credential`` is a TokenCredential, e.g. azure.identity.DefaultAzureCredential()."""
        access = Access("account_url", can_create_container=True, names=dict(names or {}))
        options = checked_options(access, lease_duration, call_timeout, api_version)
        check_container_name(access.name("container_name"), container_name)
        with sdk_refusal(access):
            service = BlobServiceClient(account_url, credential=credential, **options)
        backend = cls.__new__(cls)
        backend._setup(service.get_container_client(container_name), blob_name, lease_duration, api_version,
                       access)
        return backend

    @property
    def lease_basis(self) -> str:
        """Where the lease's length comes from, for the message refusing a longer timing."""
        return f"lease_duration {self._lease_duration} s"

    def default_timing(self) -> ElectionTiming:
        """See arguments.blob_timing: 15/5/2 with the default 15 s lease."""
        return blob_timing(self._lease_duration)

    def _setup(self, container: ContainerClient, blob_name: str, lease_duration: int, api_version: str,
               access: Access) -> None:
        check_blob_name(access.name("blob_name"), blob_name)
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
        self._stamps = SideWorker("lease-stamp")  # each renewal's stamp, beside it (see renew)

    # -- the ElectionBackend interface -------------------------------------------------------

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        started = time.monotonic()
        properties = self._call(self._properties_or_create, "read or create the lease blob", READ)
        previous = leader_record(properties.metadata, properties.lease.state)
        # Released, never held, or held by this very process (which stopped acting before it
        # contended again): nobody else can still be acting on the lease.
        predecessor_may_act = (properties.lease.state != "available" and previous.instance_id is not None
                               and (previous.instance_id, previous.pid) != (identity.instance_id, identity.pid))
        if properties.lease.state == "leased":
            record = leader_record(properties.metadata, properties.lease.state)
            ours = (record.instance_id, record.pid) == (identity.instance_id, identity.pid)
            if not ours and not self._acquire_outcome_unknown:
                return Held(record)
            # Maybe ours: from an acquire whose answer we never got, or from a leadership we
            # stepped down from. Re-acquiring with our lease id succeeds if so, as a new term.
        try:
            self._call(lambda: self._lease.acquire(lease_duration=self._lease_duration),
                       "acquire the lease", WRITE)
        except ResourceExistsError as exc:  # 409 LeaseAlreadyPresent: someone was faster
            self._acquire_outcome_unknown = False
            if error_code(exc) == "LeaseAlreadyPresent":
                return Held(leader_record(properties.metadata, "leased"))
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
        stamp = self._stamps.start(lambda: self._call(
            lambda: self._blob.set_blob_metadata(self._metadata, lease=self._lease.id),
            "stamp the lease blob's metadata", WRITE))
        try:
            self._call(self._lease.renew, "renew the lease", WRITE)
        except BaseException:
            # Not before the stamp is done, whatever it did: a stamp still in flight (an SDK retry)
            # could land after our next acquire (the loop waits for this call first: calls.drain)
            # and write our old record, term included, over a newer holder's.
            with contextlib.suppress(Exception):
                stamp.result()
            raise
        stamp.result()
        return Lease(term=lease.term, token=lease.token, sent_at=now, duration=lease.duration)

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        term, _, _ = self._record_new_term(identity, at_least=at_least)
        return Lease(term=term, token=lease.token, sent_at=lease.sent_at, duration=lease.duration)

    def release(self, lease: Lease) -> None:
        try:
            self._call(self._lease.release, "release the lease", WRITE)
        except LeaseLostError:
            pass  # already not ours: nothing to give back
        finally:
            # The SDK forgets the id on release; the next acquire must reuse ours.
            self._lease.id = lease.token

    def read_leader(self) -> LeaderRecord | None:
        try:
            properties = self._call(self._blob.get_blob_properties, "read the lease blob", READ)
        except LeaseLostError:  # blob or container missing: nobody ever led
            return None
        record = leader_record(properties.metadata, properties.lease.state)
        if record.instance_id is None and not record.is_held:
            return None
        return record

    def watch(self, wake: Callable[[], None]) -> None:
        """The blob lease can only be polled: nothing ever wakes the loop early."""

    def close(self) -> None:
        self._stamps.close()
        self._container.close()

    def check_access(self) -> None:
        """Read (creating what is missing) and try a write that changes nothing, once at start.

        A credential that may read but not write would otherwise only show when the lease is free:
        a worker that can never take over. The write is a metadata update that the storage refuses
        for its impossible ETag (412) after checking the permission (403 without it)."""
        self._call(self._properties_or_create, "read or create the lease blob", READ)
        try:
            self._blob.set_blob_metadata({}, if_match=_NO_SUCH_ETAG)
        except HttpResponseError as exc:
            if exc.status_code == 412:  # ConditionNotMet, or LeaseIdMissing while someone leads
                return
            raise self._translate(exc, "write the lease blob", WRITE) from None
        except AzureError as exc:
            raise self._translate(exc, "write the lease blob", WRITE) from None
        raise AssertionError("a metadata update with an impossible ETag succeeded")

    # -- helpers -----------------------------------------------------------------------------

    def _record_new_term(self, identity: Identity, at_least: int = 0,
                         seen_etag: str | None = None) -> tuple[int, float, bool]:
        """Increment the term in the blob's metadata, under our lease (read-modify-write).

        Also returns how long from now, at most, the previous holder's lease could have lasted
        had the storage kept it: its last stamp of Last-Modified plus a lease, against the
        server's clock (both in whole seconds, hence the extra second); and whether the blob was
        written since ``seen_etag`` (our read before acquiring)."""
        properties = self._call(self._blob.get_blob_properties, "read the lease blob", READ)
        last_record = dict(properties.metadata or {})
        # Written by someone else, that is: not by our own last write (a renewal's stamp that took
        # its time while our lease was still ours), which leaves the blob's metadata exactly as we
        # last wrote it, term and time of acquiring included; any other holder writes its own.
        # Our own leadership stopped acting before we contended again.
        written_since = seen_etag is not None and properties.etag != seen_etag and last_record != self._metadata
        term = max(term_of(last_record.get(TERM)) + 1, at_least)
        metadata = {**last_record, TERM: str(term), LEADER_ID: identity.instance_id, LEADER_HOST: identity.host,
                    LEADER_PID: str(identity.pid), ACQUIRED_AT: utc_now().isoformat(timespec="milliseconds")}
        answer = self._call(lambda: self._blob.set_blob_metadata(
            metadata, lease=self._lease.id, if_match=properties.etag,
        ), "write the term into the blob's metadata", WRITE)
        self._metadata = metadata
        last_stamp, server_now = properties.last_modified, answer.get("date") or answer.get("last_modified")
        if not isinstance(last_stamp, datetime) or not isinstance(server_now, datetime):
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
            if error_code(exc) != "ContainerNotFound":
                raise
            raise StorageRejectedError(self._access.cannot_create(name), code="ContainerNotFound") from None
        except HttpResponseError as exc:
            if error_code(exc) != "LeaseIdMissing":  # LeaseIdMissing: it exists and is already leased
                # Translated here, not in _call: creating needs write, not the read of "read or create".
                raise self._translate(exc, "create the lease blob", WRITE) from None

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
                if not closed_while_idle(exc):
                    raise
                log.debug("storage closed an idle connection; retrying once: %s", first_line(exc))
                return operation()
        except AzureError as exc:
            if isinstance(exc, ResourceExistsError) and error_code(exc) == "LeaseAlreadyPresent":
                raise  # the caller decides: it is an answer, not a failure
            raise self._translate(exc, action, needs) from None

    def _translate(self, exc: AzureError, action: str = "use the lease blob", needs: str = WRITE) -> BackendError:
        return translate(exc, self._access, self._api_version, action, needs)
