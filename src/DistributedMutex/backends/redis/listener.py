"""Wake the election loop when the holder may have changed: prompt handover without polling.

Two sources, both calling the loop's ``wake()`` (cheap, from any thread):

* a subscriber on the election's channel, on a connection of its own (a subscribed connection can
  send nothing else): the scripts publish on every takeover, release and term change, so a
  graceful stop hands over within a round trip or two instead of at the next acquire interval;
* a timer set to the moment the current holder's key expires (its PTTL, read by every acquire that
  finds the lease held), so that a crashed leader's successor tries as soon as the key is gone,
  not up to an acquire interval later. Redis's own expiry notices would need the server's
  ``notify-keyspace-events``, which is off by default and not ours to change.

Neither is needed for safety: the loop also polls every acquire interval. A subscriber that loses
its connection says so once at DEBUG, reconnects with a growing pause (at most 2 s), and wakes the
loop once it is back, since it may have missed a notice meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from redis import Redis
from redis.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_POLL = 0.25  # seconds a blocked read waits before looking at the closing flag again
_MAX_PAUSE = 2.0  # seconds between two reconnection attempts, at most


class ChangeListener:
    def __init__(self, client: Redis, channel: str, wake: Callable[[], None]) -> None:
        self._client = client
        self._channel = channel
        self._wake = wake
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.subscribed = threading.Event()  # set while the subscription stands (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="redis-election-listener", daemon=True)
        self._thread.start()

    def wake_after(self, seconds: float) -> None:
        """Wake the loop once ``seconds`` from now (the holder's key expires then); replaces the
        timer set before, if any."""
        with self._lock:
            if self._closed.is_set():
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(max(0.0, seconds), self._wake)
            self._timer.daemon = True
            self._timer.start()

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closed.set()
            if self._timer is not None:
                self._timer.cancel()
        self._thread.join(timeout)

    def _run(self) -> None:
        pause = 0.1
        while not self._closed.is_set():
            pubsub: PubSub | None = None
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                # The subscription is confirmed by the first read; only then can a notice not be missed.
                while not self._closed.is_set() and not pubsub.subscribed:
                    pubsub.get_message(timeout=_POLL)
                if pause > 0.1:
                    log.debug("subscribed to %s again", self._channel)
                    self._wake()  # something may have happened while we were not listening
                self.subscribed.set()
                pause = 0.1
                while not self._closed.is_set():
                    if pubsub.get_message(timeout=_POLL) is not None:
                        self._wake()
            except (RedisError, OSError, ValueError) as exc:
                # ValueError: redis-py reading a socket that close() shut under it.
                self.subscribed.clear()
                if pause == 0.1:
                    log.debug("lost the subscription to %s (%s); reconnecting", self._channel, type(exc).__name__)
                pause = min(_MAX_PAUSE, pause * 2)
                self._closed.wait(pause)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (RedisError, OSError):
                        pass
        self.subscribed.clear()
