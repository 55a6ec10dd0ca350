"""The Azure SDK's errors turned into the library's, with messages that say what to fix.

A refusal names the argument that holds the credential (in the caller's terms: see
AzureBlobLeaseBackend's ``names``) and, for a container SAS, the permission that is missing.
No message quotes a URL's query: with a SAS it is the signature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError, ServiceResponseError

from DistributedMutex.errors import BackendError, LeaseLostError, StorageRejectedError, StorageUnavailableError

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
# What each storage call needs of a SAS (measured on Azurite 3.37).
READ, WRITE = "read (r)", "write (w)"
# How an argument is called when the caller gave no name of its own for it.
_PLAIN = {"credential": "the credential"}


@dataclass(frozen=True)
class Access:
    """How the backend authenticates, for messages that say what to fix."""

    argument: str  # the argument that holds the credential: connection_string, container_sas_url or account_url
    can_create_container: bool
    names: Mapping[str, str] = field(default_factory=dict)
    sas_expiry: datetime | None = None

    def name(self, argument: str) -> str:
        return self.names.get(argument, _PLAIN.get(argument, argument))

    def refused(self, status: int | None, code: str | None) -> str:
        held_in = self.name(self.argument)
        if self.argument == "container_sas_url":
            expiry = f" (it says it expires {self.sas_expiry:%Y-%m-%d %H:%M:%S} UTC)" if self.sas_expiry else ""
            return (f"storage refused the container SAS in {held_in} ({status} {code}): "
                    f"it has expired{expiry}, is not valid yet, or was not signed with this account's key")
        if self.argument == "account_url":
            return (f"storage refused the Azure AD token for {held_in} ({status} {code}): "
                    f"check the identity {self.name('credential')} signs in as and its role on the container")
        return (f"storage refused the request ({status} {code}): check the credentials in {held_in} "
                f"and their permissions on {self.name('container_name')}")

    def unsigned(self) -> str:
        """The SDK could not sign a request with the account key: the key is not base64 at all."""
        where = (f"the AccountKey in {self.name(self.argument)}" if self.argument == "connection_string"
                 else f"the account key in {self.name('credential')}")
        return (f"{where} is not an account key (not base64, so no request can be signed with it): "
                "copy it again from the storage account's access keys")

    def lacks(self, action: str, needs: str, status: int | None, code: str | None) -> str:
        held_in = self.name(self.argument)
        if self.argument == "container_sas_url":
            return (f"the container SAS in {held_in} lacks the {needs} permission "
                    f"to {action} ({status} {code}): the lease needs read (r) and write (w)")
        if self.argument == "account_url":
            return (f"the Azure AD identity may not {action} ({status} {code}): give it the role "
                    "Storage Blob Data Contributor on the container")
        return (f"the credentials in {held_in} may not {action} ({status} {code}): "
                f"they need {needs} permission on {self.name('container_name')}")

    def cannot_create(self, container: str) -> str:
        how = ("a container SAS cannot create it" if not self.can_create_container
               else f"the credentials in {self.name(self.argument)} may not create it")
        return (f"container {container!r} does not exist and {how}: create it first "
                f"(e.g. az storage container create --name {container})")


def translate(exc: AzureError, access: Access, api_version: str, action: str = "use the lease blob",
              needs: str = WRITE) -> BackendError:
    code = error_code(exc)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageUnavailableError(f"storage did not answer ({type(exc).__name__}): {first_line(exc)}", code=code)
    status = getattr(exc, "status_code", None)
    if _signing_failed(exc):
        # A malformed account key: no request ever leaves, and no retry can heal it. Refused, so
        # that an instance says so instead of retrying for ever; the SDK's text is not quoted.
        return StorageRejectedError(access.unsigned(), code=code)
    if isinstance(exc, ClientAuthenticationError) and status is None:
        # No HTTP answer from storage: the token credential could not get a token. At start the
        # command line checks the credential once; later this may heal (the identity endpoint
        # was down), so it counts as unavailable. Its text is long and multi-line: not quoted.
        return StorageUnavailableError(f"could not get an Azure AD token for storage ({type(exc).__name__})",
                                       code=code)
    if code in _LEASE_GONE_CODES or status == 404:
        return LeaseLostError(f"lease lost ({code or status})", code=code)
    if status == 403 and code in _PERMISSION_CODES:
        return StorageRejectedError(access.lacks(action, needs, status, code), code=code)
    if status in _REJECTED_STATUS:
        return StorageRejectedError(access.refused(status, code), code=code)
    if code == "InvalidHeaderValue" and "version" in str(exc).lower():
        return StorageRejectedError(
            f"the storage endpoint does not support API version {api_version} "
            f"(set {access.name('api_version')} to one it supports, or upgrade Azurite)",
            code=code,
        )
    if status is not None and 400 <= status < 500 and status not in (408, 409, 412, 429):
        return StorageRejectedError(f"storage rejected the request ({status} {code})", code=code)
    return StorageUnavailableError(f"storage error ({status} {code})", code=code)


def _signing_failed(exc: AzureError) -> bool:
    """The SDK's AzureSigningError (a ClientAuthenticationError with no HTTP answer, like a token
    credential's failure): known by its name, as the SDK defines it in a private module."""
    return any(cls.__name__ == "AzureSigningError" for cls in type(exc).__mro__)


def closed_while_idle(exc: AzureError) -> bool:
    """The server closed a connection while it sat idle in the pool (it failed before any answer)."""
    text = str(exc)
    return "RemoteDisconnected" in text or "ConnectionResetError" in text or "BrokenPipeError" in text


def error_code(exc: AzureError) -> str | None:
    code = getattr(exc, "error_code", None)
    return str(code.value if hasattr(code, "value") else code) if code else None


def first_line(exc: BaseException) -> str:
    """The first line of an error, without any URL query: requests quotes the URL it failed on,
    and with a SAS (a container SAS URL or a connection string's) the query is the signature.
    Messages leave here clean, whether or not a log filter is in the way."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _URL_QUERY.sub("?…", text)[:200]
