"""The settings of the blob lease's storage: the three ways of authenticating (a connection string,
a container SAS URL, an account URL for Azure AD), checked without ever echoing a secret, and
the forms in which their secrets could show up (for the log filter that masks them)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

from DistributedMutex.backends.azure.arguments import CONTAINER_NAME
from DistributedMutex.backends.azure.sas import sas_query, sas_time, url_parts
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.getter import Getter

# The ways of authenticating to storage, in the order the error messages name them.
STORAGE_AUTH_SETTINGS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL",
                         "AZURE_STORAGE_ACCOUNT_URL")
# What the lease needs from a container SAS, measured on Azurite 3.37: read (r) for the blob's
# properties, write (w) to create the blob, for every lease call and for the metadata under the
# lease. Create (c) adds nothing that write does not give; a container SAS never creates a container.
SAS_PERMISSIONS_NEEDED = (("r", "read"), ("w", "write"))

_CONNECTION_STRING_KEYS = {
    "usedevelopmentstorage", "developmentstorageproxyuri", "defaultendpointsprotocol",
    "accountname", "accountkey", "sharedaccesssignature", "endpointsuffix",
    "blobendpoint", "queueendpoint", "tableendpoint", "fileendpoint", "dfsendpoint",
    "blobsecondaryendpoint", "queuesecondaryendpoint", "tablesecondaryendpoint",
    "filesecondaryendpoint",
}


def plain_http_host(connection_string: str) -> str | None:
    """The host of a non-local storage endpoint reached over plain http, if any."""
    pairs = _connection_string_pairs(connection_string)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return None
    if "blobendpoint" in pairs:
        endpoint = urlsplit(pairs["blobendpoint"])
        scheme, host = endpoint.scheme, endpoint.hostname or ""
    else:
        scheme = pairs.get("defaultendpointsprotocol", "https").lower()
        host = f"{pairs.get('accountname', '')}.blob.{pairs.get('endpointsuffix', 'core.windows.net')}"
    if scheme != "http" or _is_local(host):
        return None
    return host


def connection_string(name: str, value: str) -> str:
    """Check the shape of a storage connection string without ever echoing it."""
    def bad(reason: str) -> ConfigurationError:
        return ConfigurationError(name, f"is not a valid Azure Storage connection string: {reason}")

    text = value.strip()
    if not text:
        raise bad("it is empty")
    for index, segment in enumerate(s for s in text.split(";") if s.strip()):
        key, sep, _ = segment.partition("=")
        if not sep or not key.strip():
            raise bad(f"part {index + 1} is not key=value")
        if key.strip().lower() not in _CONNECTION_STRING_KEYS:
            raise bad(f"unknown key {key.strip()!r}")
    pairs = _connection_string_pairs(text)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return text
    if "accountkey" not in pairs and "sharedaccesssignature" not in pairs:
        raise bad("it needs AccountKey (with AccountName) or SharedAccessSignature")
    if "accountkey" in pairs:
        if not pairs.get("accountname"):
            raise bad("AccountKey needs AccountName")
        try:
            base64.b64decode(pairs["accountkey"], validate=True)
        except (binascii.Error, ValueError):
            raise bad("AccountKey is not valid base64") from None
    if "blobendpoint" in pairs:
        endpoint = urlsplit(pairs["blobendpoint"])
        if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
            raise bad("BlobEndpoint is not an http(s) URL")
    elif not pairs.get("accountname"):
        raise bad("it needs AccountName or BlobEndpoint")
    protocol = pairs.get("defaultendpointsprotocol", "https").lower()
    if protocol not in ("http", "https"):
        raise bad("DefaultEndpointsProtocol must be http or https")
    return text


def _connection_string_pairs(value: str) -> dict[str, str]:
    """Key (lowercased) to value; the only place a connection string is split up."""
    pairs = {}
    for segment in value.split(";"):
        key, sep, val = segment.partition("=")
        if sep and key.strip():
            pairs[key.strip().lower()] = val.strip()
    return pairs


def connection_string_secrets(value: str) -> list[str]:
    pairs = _connection_string_pairs(value)
    return [pairs[k] for k in ("accountkey", "sharedaccesssignature") if pairs.get(k)]


def one_storage_auth(get: Getter) -> None:
    given = [name for name in STORAGE_AUTH_SETTINGS if get.is_set(name)]
    if len(given) > 1:
        raise ConfigurationError(
            given[-1], f"cannot be used together with {given[0]}: set exactly one way of authenticating "
            "to storage (AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_CONTAINER_SAS_URL or "
            "AZURE_STORAGE_ACCOUNT_URL)")


def sas_url_container(url: str) -> str:
    """The container a (validated) container SAS URL names: its last path segment."""
    parts = url_parts(url)
    segments = [s for s in parts[2].split("/") if s] if parts else []
    return unquote(segments[-1]) if segments else ""


def sas_url_secrets(url: str) -> list[str]:
    """Every form in which a SAS URL's signature could show up: the URL, its query, the signature."""
    parts = url_parts(url)
    signature = sas_query(url).get("sig", "")
    forms = [url, parts[3] if parts else "", signature, quote(signature, safe=""), quote(signature)]
    return [form for form in forms if form]


def container_sas_url(name: str, value: str) -> str:
    """Check a container SAS URL without ever echoing its query (the signature is a secret)."""
    def bad(reason: str) -> ConfigurationError:
        return ConfigurationError(name, f"is not a container SAS URL: {reason}")

    text = value.strip()
    if not text:
        raise bad("it is empty")
    parts = url_parts(text)
    if parts is None:
        raise bad("it must be an https:// URL like https://<account>.blob.core.windows.net/<container>?<SAS>")
    container = sas_url_container(text)
    if not container:
        raise bad("its path names no container")
    if not CONTAINER_NAME.fullmatch(container):
        raise bad(f"its last path segment {container!r} is not a container name")
    query = sas_query(text)
    if not query.get("sig"):
        raise bad("its query has no SAS signature (sig=)")
    if query.get("sr", "") != "c":
        kind = "an account SAS" if query.get("srt") else f"a SAS for sr={query.get('sr', '')!r}"
        raise bad(f"it carries {kind}, not a container SAS (sr=c)")
    if "sp" in query:
        granted = query["sp"]
        missing = [f"{word} ({letter})" for letter, word in SAS_PERMISSIONS_NEEDED if letter not in granted]
        if missing:
            raise ConfigurationError(
                name, f"the SAS lacks the {' and '.join(missing)} permission{'s' if len(missing) > 1 else ''}: "
                f"the lease needs read (r) and write (w) on the container, the SAS grants sp={granted}")
    elif not query.get("si"):
        raise bad("it has neither permissions (sp=) nor a stored access policy (si=)")
    if "se" in query:
        expiry = sas_time(query["se"])
        if expiry is None:
            raise bad(f"its expiry se={query['se']!r} is not a time like 2026-11-26T13:31:24Z")
        if expiry <= datetime.now(timezone.utc):
            raise ConfigurationError(name, f"the SAS expired at {expiry:%Y-%m-%d %H:%M:%S} UTC: "
                                           "generate a new one")
    return text


def account_url(name: str, value: str) -> str:
    """The account's blob endpoint, for Azure AD (DefaultAzureCredential)."""
    text = value.strip().rstrip("/")
    parts = url_parts(text)
    if parts is None or parts[0] != "https":
        # Bearer tokens are never sent over plain http (azure-core refuses it too).
        raise ConfigurationError(name, "must be an https:// URL like https://<account>.blob.core.windows.net")
    _, host, path, query = parts
    if query or "#" in text:
        raise ConfigurationError(name, "must not carry a query: a SAS belongs in AZURE_STORAGE_CONTAINER_SAS_URL")
    segments = [s for s in path.split("/") if s]
    # An emulator or a custom domain may put the account in the path (https://127.0.0.1:10000/acct).
    if len(segments) > 1 or (segments and host.lower().endswith(".blob.core.windows.net")):
        raise ConfigurationError(name, "must be the account's blob endpoint without a container "
                                       "(the container is CONTAINER_NAME), got " + repr(text))
    return text


def plain_http_url_host(url: str) -> str | None:
    parts = url_parts(url)
    if parts is None or parts[0] != "http" or _is_local(parts[1]):
        return None
    return parts[1]


def _is_local(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
