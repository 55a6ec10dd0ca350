"""ELECTION_BACKEND=azure: the blob lease's settings, read by ``distributed-mutex run``, and the
backend they build (the demo builds its blob lease here too, from its own fields).

    AZURE_STORAGE_CONNECTION_STRING | AZURE_STORAGE_CONTAINER_SAS_URL | AZURE_STORAGE_ACCOUNT_URL
    AZURE_STORAGE_API_VERSION, AZURE_STORAGE_ALLOW_HTTP, CONTAINER_NAME, BLOB_NAME,
    LEASE_DURATION, RENEW_INTERVAL, ACQUIRE_INTERVAL
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from DistributedMutex.backends.azure.arguments import (
    AZURE_MAX_LEASE,
    AZURE_MIN_LEASE,
    CONTAINER_NAME,
    CONTAINER_NAME_RULE,
    MAX_BLOB_NAME,
    blob_timing,
)
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.azure_storage import (
    account_url,
    connection_string,
    container_sas_url,
    one_storage_auth,
    plain_http_host,
    plain_http_url_host,
    sas_url_container,
)
from DistributedMutex.settings.backends import AZURE_NAMES, TIMING_NAMES
from DistributedMutex.settings.getter import Getter
from DistributedMutex.settings.postgres import boolean
from DistributedMutex.timing import ElectionTiming, check_timing_values

if TYPE_CHECKING:
    from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend

log = logging.getLogger(__name__)
STORAGE_SCOPE = "https://storage.azure.com/.default"  # the token scope of Azure Storage
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class AzureSettings:
    connection_string: str
    container_name: str
    blob_name: str
    lease_duration: int
    renew_interval: float
    acquire_interval: float
    api_version: str
    container_sas_url: str | None = None
    account_url: str | None = None

    def timing(self) -> ElectionTiming:
        """LEASE_DURATION, RENEW_INTERVAL and ACQUIRE_INTERVAL with the blob lease's own safety margin;
        a broken invariant is said in the settings' names."""
        margin = blob_timing(self.lease_duration).safety_margin
        values = (self.lease_duration, self.renew_interval, self.acquire_interval, margin)
        check_timing_values(*values, names=TIMING_NAMES)
        return ElectionTiming(*values)


def read_azure(get: Getter) -> AzureSettings:
    one_storage_auth(get)
    allow_http = get("AZURE_STORAGE_ALLOW_HTTP", boolean, default="false")
    conn = get("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    sas = get("AZURE_STORAGE_CONTAINER_SAS_URL", container_sas_url, default=None)
    account = get("AZURE_STORAGE_ACCOUNT_URL", account_url, default=None)
    insecure = plain_http_host(conn) if not (sas or account) else None
    if insecure and not allow_http:
        raise ConfigurationError("AZURE_STORAGE_CONNECTION_STRING", f"sends the account's credentials over plain "
                                 f"http to {insecure}, which is not this machine: use https, or set "
                                 "AZURE_STORAGE_ALLOW_HTTP=true (an emulator on another host)")
    insecure = plain_http_url_host(sas) if sas else None
    if insecure and not allow_http:
        raise ConfigurationError("AZURE_STORAGE_CONTAINER_SAS_URL", f"sends the SAS over plain http to {insecure}, "
                                 "which is not this machine: use https, or set AZURE_STORAGE_ALLOW_HTTP=true")
    container = get("CONTAINER_NAME", _matching(CONTAINER_NAME, CONTAINER_NAME_RULE))
    if sas:
        if get.is_set("CONTAINER_NAME") and container != sas_url_container(sas):
            raise ConfigurationError("CONTAINER_NAME", f"{container!r} differs from the container "
                                     f"{sas_url_container(sas)!r} of AZURE_STORAGE_CONTAINER_SAS_URL: leave "
                                     "CONTAINER_NAME unset or make them agree")
        container = sas_url_container(sas)
    settings = AzureSettings(
        connection_string=conn, container_name=container,
        blob_name=get("BLOB_NAME", _blob_name),
        lease_duration=get("LEASE_DURATION", _lease_duration),
        renew_interval=get("RENEW_INTERVAL", _seconds),
        acquire_interval=get("ACQUIRE_INTERVAL", _seconds),
        api_version=get("AZURE_STORAGE_API_VERSION", _matching(_API_VERSION, "a date like 2026-06-06")),
        container_sas_url=sas, account_url=account)
    settings.timing()  # the invariants between the timings, in the settings' names
    return settings


def build_azure(settings: AzureSettings, secrets: list[str] | None = None) -> AzureBlobLeaseBackend:
    """The backend these settings describe; ``secrets``: values to keep out of an Azure AD error."""
    from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend

    options: dict[str, Any] = {"lease_duration": settings.lease_duration, "api_version": settings.api_version,
                               "names": AZURE_NAMES}
    if settings.container_sas_url:
        return AzureBlobLeaseBackend.from_container_sas_url(settings.container_sas_url, settings.blob_name, **options)
    if settings.account_url:
        return AzureBlobLeaseBackend.from_account_url(
            settings.account_url, azure_ad_credential(secrets or []), settings.container_name, settings.blob_name,
            **options)
    return AzureBlobLeaseBackend(settings.connection_string, settings.container_name, settings.blob_name, **options)


def azure_ad_credential(secrets: list[str]) -> Any:
    """DefaultAzureCredential, with a token got once now: no credential at all is a configuration
    error, found at start rather than as a storage outage that never heals."""
    from azure.core.exceptions import AzureError
    from azure.identity import DefaultAzureCredential  # only Azure AD users pay for importing it

    credential = DefaultAzureCredential()
    try:
        credential.get_token(STORAGE_SCOPE)
    except (AzureError, ValueError) as exc:
        details = str(exc)
        for secret in sorted(set(secrets), key=len, reverse=True):
            details = details.replace(secret, "***")
        log.debug("DefaultAzureCredential: %s", details)
        attempts = re.findall(r"^\s+(\w+Credential): (.*)$", details, flags=re.MULTILINE)
        if attempts:
            reason = f"no credential worked (tried {', '.join(name for name, _ in attempts)})"
            # One that is set up but failed says why (most just say they are not set up here).
            failed = [(name, text) for name, text in attempts if re.search(r"error|failed|refused", text, re.I)]
            reason += "".join(f"; {name}: {text[:200]}" for name, text in failed[:1])
        else:
            reason = f"{type(exc).__name__}: {details.splitlines()[0][:200] if details else 'no details'}"
        raise ConfigurationError(
            "AZURE_STORAGE_ACCOUNT_URL",
            f"DefaultAzureCredential got no token for Azure Storage: {reason}; set AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, run with a managed identity, or sign in with az login "
            "(details with LOG_LEVEL=DEBUG)") from None
    return credential


def _matching(pattern: re.Pattern[str], rule: str) -> Any:
    def parse(name: str, value: str) -> str:
        text = value.strip()
        if not pattern.fullmatch(text):
            raise ConfigurationError(name, f"must be {rule}, got {text!r}")
        return text
    return parse


def _blob_name(name: str, value: str) -> str:
    text = value.strip()
    if not 1 <= len(text) <= MAX_BLOB_NAME:
        raise ConfigurationError(name, f"must be 1 to {MAX_BLOB_NAME} characters long, got {len(text)}")
    return text


def _lease_duration(name: str, value: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?\d+", text) or not AZURE_MIN_LEASE <= int(text) <= AZURE_MAX_LEASE:
        raise ConfigurationError(name, f"must be a whole number from {AZURE_MIN_LEASE} to {AZURE_MAX_LEASE} seconds "
                                       f"(Azure's lease range), got {text!r}")
    return int(text)


def _seconds(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigurationError(name, f"must be a number of seconds, got {value.strip()!r}") from None
    if not math.isfinite(number) or not 0.1 <= number <= 3600:
        raise ConfigurationError(name, f"must be from 0.1 to 3600 seconds, got {value.strip()}")
    return number
