"""The demo's metrics: the library's election metrics (DistributedMutex.metrics) and the weather
app's own, in one registry, served by metrics_server.py (METRICS_PORT)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from DistributedMutex.metrics import ElectionMetrics


class WeatherMetrics(ElectionMetrics):
    """ElectionMetrics plus ``weather_rows_written``, fed by the app's ``on_stored``."""

    def __init__(self, instance_id: str, backend: str, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(instance_id, backend, registry, clock)
        self.rows_written = Counter("weather_rows_written", "Weather readings the leader stored as new rows",
                                    registry=self.registry)

    def stored(self, rows: int) -> None:
        """The leader stored ``rows`` new readings (counted once the write has committed)."""
        self.rows_written.inc(rows)
