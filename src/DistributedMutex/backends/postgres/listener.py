"""Prompt handover: a LISTEN on a connection of its own, calling the loop's wake() on NOTIFY.

The lease's statements NOTIFY the election's channel when a lease is granted or released (sql.py);
a contender that hears it tries at once instead of at its next acquire interval. LISTEN needs a
session of its own, so this connection goes to the server directly: through a transaction-pooling
PgBouncer it would be handed to other clients between transactions and hear nothing (the backend
then polls; see backend.py). A lost connection is reconnected; the loop is woken once it is back,
since a notification may have been missed meanwhile. Notifications are only a hint: the election
is decided by the statements, so a missed one costs an acquire interval, never safety.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from DistributedMutex.backends.postgres.arguments import mask_url
from DistributedMutex.backends.postgres.connection import bounded_connect, translate
from DistributedMutex.errors import BackendError

log = logging.getLogger("DistributedMutex.backends.postgres")

_RECONNECT_AFTER = (0.2, 0.5, 1.0, 2.0)  # seconds, then every 2 s


class Listener:
    """A daemon thread that LISTENs on ``channel`` and calls ``wake()`` for our election's name."""

    def __init__(self, url: str, channel: str, election: str, wake: Callable[[], None], call_timeout: float,
                 application_name: str) -> None:
        self._url = url
        self._channel = channel
        self._election = election
        self._wake = wake
        self._call_timeout = call_timeout
        self._application_name = application_name
        self._stopped = threading.Event()
        self._listening = threading.Event()
        self._connection: psycopg.Connection[object] | None = None
        self._thread = threading.Thread(target=self._run, name="postgres-listen", daemon=True)
        self._thread.start()

    def listening(self, timeout: float) -> bool:
        """Whether LISTEN is in place (waits up to ``timeout``): for tests and start-up checks."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopped.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.close()  # ends notifies() in the thread
            except Exception:  # noqa: BLE001 - closing a connection that may be broken already
                pass

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                self._listen()
                failures = 0
            except (psycopg.Error, BackendError, OSError) as exc:
                self._listening.clear()
                if self._stopped.is_set():
                    return
                error = exc if isinstance(exc, BackendError) else translate(exc, self._url, "listen")
                log.debug("LISTEN on %s: %s; reconnecting", mask_url(self._url), error)
                pause = _RECONNECT_AFTER[min(failures, len(_RECONNECT_AFTER) - 1)]
                failures += 1
                self._stopped.wait(pause)

    def _listen(self) -> None:
        connection = bounded_connect(self._url, self._call_timeout, self._application_name, "listen")
        self._connection = connection
        try:
            if self._stopped.is_set():
                return
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._listening.set()
            self._wake()  # whatever was said while we were not listening: look now
            while not self._stopped.is_set():
                # The timeout lets a stop (or a dead connection, noticed by keepalives) end the loop.
                for notification in connection.notifies(timeout=1.0):
                    if notification.payload == self._election:
                        self._wake()
                if connection.closed or connection.broken:
                    raise psycopg.OperationalError("the LISTEN connection was closed")
        finally:
            self._listening.clear()
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - we only let go of it
                pass
