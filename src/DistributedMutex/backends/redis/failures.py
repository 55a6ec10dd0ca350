"""redis-py's errors turned into the library's, with messages that say what to fix.

A lost or refused connection, a timeout, a server loading its data or a replica that is not (yet)
the primary may heal by itself: StorageUnavailableError, and the election loop retries until its
local deadline. Refused credentials or permissions, a database index the server lacks, or our keys
holding another type are for a person to fix: StorageRejectedError, naming the setting. No message
carries the password: redis-py's texts do not quote the URL, and ``clean`` removes it anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from DistributedMutex.errors import BackendError, StorageRejectedError, StorageUnavailableError

# What the backend's user must be allowed (an ACL's command list), for the message refusing it.
NEEDED = ("+evalsha +eval +script|load +get +set +pttl +pexpire +del +hset +hgetall +time +multi +exec +publish "
          "+subscribe +ping +client|setname +select")
# Error replies (their first word) that a server gives while it cannot serve writes for now: a
# replica (READONLY), data loading, a script running too long, memory full, persistence failing,
# a cluster re-forming, a primary without enough replicas.
_TRANSIENT = {"READONLY", "LOADING", "BUSY", "OOM", "MISCONF", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN",
              "NOREPLICAS", "UNBLOCKED"}


def translate(exc: RedisError | OSError, action: str, names: Mapping[str, str], masked_url: str,
              secrets: tuple[str, ...]) -> BackendError:
    """``action``: what the call did ("renew the lease"); ``names``: the arguments in the
    caller's terms (url, key_prefix)."""
    text = clean(exc, secrets)
    url, prefix = names.get("url", "url"), names.get("key_prefix", "key_prefix")
    if isinstance(exc, AuthenticationError):
        return StorageRejectedError(f"Redis at {masked_url} refused the credentials in {url} ({text})",
                                    code="AUTH")
    if isinstance(exc, (AuthorizationError, NoPermissionError)) or _denied(text):
        # A command a script runs is refused with a plain error reply, not NOPERM: recognised by its text.
        return StorageRejectedError(f"the Redis user of {url} may not {action} ({text[:120]}): it needs {NEEDED} "
                                    f"on the keys {{{prefix}}}:* and the channel {{{prefix}}}:changes", code="NOPERM")
    if isinstance(exc, BusyLoadingError):
        return StorageUnavailableError(f"Redis at {masked_url} is loading its data: {text}", code="LOADING")
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return StorageUnavailableError(f"Redis at {masked_url} did not answer to {action} "
                                       f"({type(exc).__name__}): {text}", code=type(exc).__name__)
    if isinstance(exc, ResponseError):
        code = text.split(" ", 1)[0].upper()
        if code in _TRANSIENT:
            return StorageUnavailableError(f"Redis at {masked_url} cannot {action} now: {text}", code=code)
        if code == "WRONGTYPE":
            return StorageRejectedError(f"a key under {prefix} holds a value of another kind (WRONGTYPE): another "
                                        f"program uses these keys; choose another {prefix}", code=code)
        if "DB index is out of range" in text:
            return StorageRejectedError(f"{url}: the server has no such database ({text})", code="DB")
        if code in ("MOVED", "ASK", "CROSSSLOT"):
            return StorageRejectedError(f"{url} points at a Redis Cluster node ({code}): the backend needs one "
                                        "primary (a standalone server, or Sentinel's current primary)", code=code)
        return StorageRejectedError(f"Redis refused to {action}: {text}", code=code or None)
    return StorageUnavailableError(f"Redis failed to {action} ({type(exc).__name__}): {text}",
                                   code=type(exc).__name__)


def _denied(text: str) -> bool:
    return text.startswith("NOPERM") or "can't run this command" in text or "no permissions to" in text


def clean(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """The error's first line, at most 200 characters, without any secret in it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return text[:200]
