"""The blob lease's storage settings: read by the library (DistributedMutex.settings.azure_storage),
which ``distributed-mutex run`` reads them with too; the names here are the demo's way in."""

from __future__ import annotations

from DistributedMutex.settings.azure_storage import (
    SAS_PERMISSIONS_NEEDED,
    STORAGE_AUTH_SETTINGS,
    account_url,
    connection_string,
    connection_string_secrets,
    container_sas_url,
    one_storage_auth,
    plain_http_host,
    plain_http_url_host,
    sas_url_container,
    sas_url_secrets,
)

__all__ = [
    "SAS_PERMISSIONS_NEEDED", "STORAGE_AUTH_SETTINGS", "account_url", "connection_string",
    "connection_string_secrets", "container_sas_url", "one_storage_auth", "plain_http_host",
    "plain_http_url_host", "sas_url_container", "sas_url_secrets",
]
