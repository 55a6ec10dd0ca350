"""The election backends, one sub-package each, imported only when used:

    azure/      AzureBlobLeaseBackend: a lease on one blob        (extra ``azure``)
    zookeeper/  ZooKeeperBackend: the sequential-ephemeral recipe (extra ``zookeeper``)
    raft/       RaftBackend: an election among the instances       (no dependency)

A backend whose extra is not installed can still be imported; constructing it raises
``MissingExtraError``, whose one line says what to install.
"""

from __future__ import annotations

from typing import Any, NoReturn

from DistributedMutex.errors import MissingExtraError


def missing_extra(backend: str, module: str, extra: str) -> Any:
    """A stand-in for a backend class whose third-party module is missing: constructing it, or
    asking it for anything (``from_account_url``...), raises MissingExtraError."""

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise MissingExtraError(backend, module, extra)

    class _Refuses(type):
        def __getattr__(cls, _name: str) -> Any:
            return refuse

    return _Refuses(backend, (), {"__init__": refuse, "__doc__": f"{backend}: pip install "
                                                                 f"'distributed-mutex[{extra}]'"})


def is_missing(exc: ModuleNotFoundError, *top_level: str) -> bool:
    """True when ``exc`` is about one of these third-party packages (not a bug of ours)."""
    return (exc.name or "").split(".")[0] in top_level
