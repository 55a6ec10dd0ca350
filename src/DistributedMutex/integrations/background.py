"""An election run in a daemon thread of its own, for code whose main thread belongs to someone
else (a scheduler's loop, Celery beat): who leads here now, and a clean stop.

The leader task is the caller's (a plain function, run by the election loop in a thread of its own);
this module only starts and stops the loop, and refuses a stop before the loop has begun (a
``DistributedMutex.stop()`` that early would be lost).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from DistributedMutex.errors import ConfigurationError, StorageRejectedError
from DistributedMutex.mutex import DistributedMutex

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # from start() to the loop running: a thread start and one event loop turn


class ElectionThread:
    """``mutex.run_async()`` in a daemon thread; ``stop()`` asks it to end and waits (bounded)."""

    def __init__(self, mutex: DistributedMutex, name: str) -> None:
        self.mutex = mutex
        self._running = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._running.wait(START_TIMEOUT):
            raise RuntimeError(f"the election thread did not start within {START_TIMEOUT:g} s")

    def stop(self, timeout: float) -> bool:
        """Stop the election (the leader task is told, the lease released); True once the thread has ended."""
        if not self._thread.is_alive():
            return True
        self.mutex.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the election thread did not end within %g s", timeout)
            return False
        return True

    @property
    def failure(self) -> BaseException | None:
        """What ended the election for good (a rejected configuration), if anything."""
        return self._failure

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # kept for the owner to report: the thread must end quietly
            self._failure = exc
            # A refusal the message explains (a bad setting, a port taken, credentials) is one line;
            # anything else is a bug worth its traceback.
            expected = isinstance(exc, (ConfigurationError, StorageRejectedError))
            log.error("the election ended: %s", exc, exc_info=None if expected else exc)
        finally:
            self._running.set()  # a start() still waiting must not wait for nothing

    async def _run(self) -> None:
        election = asyncio.ensure_future(self.mutex.run_async())
        await asyncio.sleep(0)  # run_async has made its stop event: stop() from now on is not lost
        self._running.set()
        await election
