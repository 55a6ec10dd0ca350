"""The election backends, one sub-package each, imported only when used:

    azure/      AzureBlobLeaseBackend: a lease on one blob        (extra ``azure``)
    zookeeper/  ZooKeeperBackend: the sequential-ephemeral recipe (extra ``zookeeper``)
    redis/      RedisLeaseBackend: a lease on one key, by scripts   (extra ``redis``)
    raft/       RaftBackend: an election among the instances       (no dependency)
    postgres/   PostgresLeaseBackend: a lease on a table's row     (extra ``postgres``)

A backend whose extra is not installed can still be imported; constructing it raises
``MissingExtraError``, whose one line says what to install.
"""

from __future__ import annotations

from typing import Any, NoReturn

from DistributedMutex.errors import MissingExtraError


def missing_extra(backend: str, module: str, extra: str) -> Any:
    """A stand-in for a backend class whose third-party module is missing: constructing it, or
    calling any of its public class attributes (``from_account_url``...), raises MissingExtraError.
    Private and special names are looked up as on any class, so that introspection (``help``,
    ``inspect.signature``, pickling checks) does not mistake the refusal for an attribute."""

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise MissingExtraError(backend, module, extra)

    class _Refuses(type):
        def __getattr__(cls, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return refuse

    namespace = {"__init__": refuse, "__module__": __name__,
                 "__doc__": f"{backend} is not available: pip install 'distributed-mutex[{extra}]'"}
    return _Refuses(backend, (), namespace)


def is_missing(exc: ModuleNotFoundError, *top_level: str) -> bool:
    """True when ``exc`` is about one of these third-party packages (not a bug of ours)."""
    return (exc.name or "").split(".")[0] in top_level
