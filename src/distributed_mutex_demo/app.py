"""The weather demo: the leader fetches and stores readings, the workers read and print them.

Both are async role tasks for DistributedMutex: blocking calls (HTTP, the store) run in daemon threads,
and the tasks are cancelled the moment their role ends, so a leader stops fetching and writing
before its lease can run out. When the weather service cannot be reached, the leader writes the
simulated station's readings instead (simulated_weather.py, WEATHER_SIMULATION), so that writes,
reads and fencing refusals happen in an offline run too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TextIO

from distributed_mutex_demo.config import SIMULATED
from distributed_mutex_demo.errors import (
    CityNotFoundError,
    StoreUnavailableError,
    WeatherAuthError,
    WeatherBackoffError,
    WeatherResponseError,
    WeatherUnavailableError,
)
from distributed_mutex_demo.simulated_weather import FallbackSchedule, simulate
from distributed_mutex_demo.stores import Store, StoredReading
from distributed_mutex_demo.weather import Reading, WeatherClient
from DistributedMutex.backend import LeaderRecord, utc_now
from DistributedMutex.errors import BackendError, StaleTermError
from DistributedMutex.mutex import LeaderContext, RoleContext, WorkerContext
from DistributedMutex.threads import blocking

log = logging.getLogger(__name__)

# Longest pause after repeated 429/5xx/timeouts (unless the fetch interval is longer still).
MAX_BACKOFF = 600.0


class WeatherApp:
    def __init__(
        self,
        client: WeatherClient,
        store: Store,
        cities: Sequence[str],
        *,
        fetch_interval: float,
        read_interval: float,
        buffer_size: int = 1000,
        out: TextIO | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        on_stored: Callable[[int], None] | None = None,
        simulation: str = "auto",
        backend: str | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._cities = tuple(cities)
        self._fetch_interval = fetch_interval
        self._read_interval = read_interval
        self._buffer_size = buffer_size
        self._out = out or sys.stdout
        self._now = wall_clock
        self._on_stored = on_stored  # told how many new rows each write stored (for metrics)
        self._backend = backend  # ELECTION_BACKEND, named when the store's terms are not ours
        # WEATHER_SIMULATION: when to use the simulated station instead of the provider.
        self._fallback = FallbackSchedule(simulation, client.name, fetch_interval=fetch_interval,
                                          max_backoff=MAX_BACKOFF)

    # -- leader ------------------------------------------------------------------------------

    async def lead(self, ctx: LeaderContext) -> None:
        """Every FETCH_INTERVAL: fetch each city, then store what was fetched under the term."""
        pending: deque[Reading] = deque()
        # Register the term before anything else: a predecessor's write still in flight is then
        # ordered before ours (both take the fencing row's lock) and refused if it comes later.
        problem = await self._try_register(ctx)
        if problem:
            log.warning("cannot record term %s in the store yet: %s", ctx.term, problem)
        registered = problem is None
        failures = 0
        while ctx.is_active():
            started = time.monotonic()
            readings, backoff = await self._fetch_round(ctx)
            self._buffer(pending, readings)
            if pending and ctx.is_active():
                ctx.report_progress()
                registered = await self._store_pending(ctx, pending, registered)
            if backoff is None:
                failures, delay = 0, self._fetch_interval
            else:
                failures += 1
                delay = max(backoff, min(self._fetch_interval * 2 ** failures,
                                         max(MAX_BACKOFF, self._fetch_interval)))
                log.warning("backing off: next fetch in %.0f s", delay)
            ctx.report_progress()
            await self._pause(ctx, max(0.0, delay - (time.monotonic() - started)))

    async def _pause(self, ctx: RoleContext, seconds: float) -> None:
        """Sleep, still reporting progress: a back-off is not a stall, a hung call is."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and ctx.is_active():
            await ctx.asleep(min(left, self._fetch_interval))
            ctx.report_progress()

    async def _fetch_round(self, ctx: LeaderContext) -> tuple[list[Reading], float | None]:
        """The provider's readings; while it cannot be reached (and WEATHER_SIMULATION allows),
        the simulated station's for the cities it did not answer, and no back-off: the station
        always answers, and the schedule says when to ask the provider again."""
        fallback = self._fallback
        readings: list[Reading] = []
        if fallback.ask_provider():
            readings, backoff, unreachable = await self._fetch_all(ctx)
            if unreachable is None:
                if ctx.is_active():  # not a round cut short before anyone was asked
                    fallback.answered()
                return readings, backoff
            if not fallback.enabled:
                log.warning("%s unavailable: %s: pausing this round", self._client.name, unreachable)
                return readings, self._fetch_interval
            fallback.unreachable(unreachable)
        answered = {reading.city for reading in readings}
        now = self._now()
        readings += [simulate(city, now) for city in self._cities if city not in answered]
        return readings, None

    async def _fetch_all(self, ctx: LeaderContext) -> tuple[list[Reading], float | None, str | None]:
        """One reading per city that answered; the second value asks for a back-off (seconds), the
        third says why the provider could not be reached (it stops the round)."""
        readings: list[Reading] = []
        for city in self._cities:
            # Before every call: a process frozen past its deadline must not fetch when it wakes,
            # before the election loop has had its turn to end the role.
            if not ctx.is_active():
                break
            ctx.report_progress()
            try:
                readings.append(await blocking(self._client.fetch, city))
            except (CityNotFoundError, WeatherResponseError) as exc:
                log.warning("%s: skipped", exc)
            except WeatherAuthError as exc:
                log.error("%s", exc)  # every city would fail the same way: stop this round
                return readings, self._fetch_interval, None
            except WeatherBackoffError as exc:
                log.warning("%s: pausing this round", exc)
                return readings, exc.retry_after or self._fetch_interval, None
            except WeatherUnavailableError as exc:
                return readings, self._fetch_interval, str(exc)
        return readings, None, None

    def _buffer(self, pending: deque[Reading], readings: list[Reading]) -> None:
        for reading in readings:
            if len(pending) >= self._buffer_size:
                dropped = pending.popleft()
                log.warning("reading buffer full (%d): dropped the oldest, %s at %s",
                            self._buffer_size, dropped.city, dropped.observed_at.isoformat())
            pending.append(reading)

    async def _store_pending(self, ctx: LeaderContext, pending: deque[Reading], registered: bool) -> bool:
        """Write the buffered readings; returns whether our term is registered in the store."""
        batch = list(pending)
        problem = None if registered else await self._try_register(ctx)
        if problem:
            log.warning("cannot store readings (%d kept for the next round): %s", len(batch), problem)
            return False
        try:
            inserted = await blocking(self._write, batch, ctx)
        except StoreUnavailableError as exc:
            log.warning("cannot store readings (%d kept for the next round): %s", len(batch), exc)
            return True
        except StaleTermError:
            pending.clear()
            return True
        for _ in batch:
            pending.popleft()
        if self._on_stored is not None:
            self._on_stored(inserted)
        simulated = sum(reading.provider == SIMULATED for reading in batch)
        log.info("stored %d readings (%d new%s) as leader of term %d", len(batch), inserted,
                 f", {simulated} simulated" if simulated else "", ctx.term)
        return True

    def _write(self, batch: list[Reading], ctx: LeaderContext) -> int:
        try:
            return self._store.write(batch, ctx.term, ctx.instance_id, ctx.is_active)
        except StaleTermError as exc:
            # Said here, in the write's own thread: a leader paused inside its write wakes with its
            # role task already cancelled, and nobody would be left to say that the store refused it.
            log.error("%s; dropping %d readings", exc, len(batch))
            raise

    async def _try_register(self, ctx: LeaderContext) -> str | None:
        """Record our term in the store; None once done, otherwise why it could not be."""
        try:
            await self._register_term(ctx)
        except (StoreUnavailableError, StaleTermError, BackendError) as exc:
            return str(exc)
        return None

    async def _register_term(self, ctx: LeaderContext) -> None:
        """Record our term before the first write. A store that has seen a newer term while we
        hold the lease holds another election's terms: most often another ELECTION_BACKEND's (each
        counts from 1, and switching backends in one directory shares the SQLite file), or the
        lease record was reset (new blob or container, same database). Either way, move our term
        past the store's, under the lease, rather than stay unable to write."""
        try:
            await blocking(self._store.register_term, ctx.term, ctx.instance_id)
        except StaleTermError as exc:
            if not isinstance(ctx, LeaderContext):  # a bare RoleContext (a test's): no lease to move
                raise
            ours = f" (ELECTION_BACKEND={self._backend})" if self._backend else ""
            log.warning(
                "the store has term %d, newer than this leadership's %d: most likely it holds another "
                "ELECTION_BACKEND's terms (each backend counts its own; give each its own SQLITE_PATH or "
                "MYSQL_DATABASE), otherwise the lease record was reset while the database was kept; "
                "moving this leadership%s to term %d", exc.stored_term, ctx.term, ours, exc.stored_term + 1)
            await ctx.advance_term(exc.stored_term + 1)
            await blocking(self._store.register_term, ctx.term, ctx.instance_id)
        log.info("recorded term %d in the store", ctx.term)

    # -- worker ------------------------------------------------------------------------------

    async def work(self, ctx: WorkerContext) -> None:
        """Every READ_INTERVAL: print the newest reading of each city."""
        while ctx.is_active():
            try:
                rows = await blocking(self._store.latest)
            except StoreUnavailableError as exc:
                log.warning("cannot read readings: %s (retrying in %g s)", exc, self._read_interval)
            else:
                self._out.write(render_table(rows, self._now(), ctx.leader))
                self._out.flush()
            await ctx.asleep(self._read_interval)


def render_table(rows: Sequence[StoredReading], now: datetime, leader: LeaderRecord | None = None) -> str:
    """A compact, aligned table of the newest reading per city, under a line naming the leader."""
    title = f"newest readings at {now.strftime('%H:%M:%S')} UTC"
    if leader is not None and leader.instance_id and leader.is_held:
        title += f"; current leader {leader.instance_id} (term {leader.term})"
    if not rows:
        return f"{title}: none stored yet\n"
    header = ("city", "temp", "humidity", "description", "provider", "observed (UTC)", "age", "leader", "term")
    lines = [
        (r.city, f"{r.temperature:.1f}°C", f"{r.humidity}%", r.description, r.provider,
         r.observed_at.strftime("%Y-%m-%d %H:%M"), _age(now - r.observed_at), r.leader_id, str(r.term))
        for r in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    right = {1, 2, 6, 8}  # numbers line up on the right

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    table = [title, fmt(header), *(fmt(line) for line in lines)]
    if any(r.provider == SIMULATED for r in rows):
        table.append(f"({SIMULATED}: made up by the demo's simulated station while the weather service "
                     "could not be reached; not real weather)")
    return "\n".join(table) + "\n\n"


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
