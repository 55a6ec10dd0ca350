"""One benchmark instance: the product's own command line, optionally emulating another design.

With no BENCH_EMULATE in the environment this is exactly ``python src/DistributedMutex/test.py``.
With BENCH_EMULATE='{"lease": 30, "renew": 20, "acquire": 20, "safety_margin": 2, "release": false,
"jitter": "ours"}' the same election loop runs with another design's numbers and behaviour:

- the timing is built *without* the product's invariants (a subclass whose check does nothing),
  since the seed's 30/20/20 and Microsoft's 15/10/20 break them on purpose: they are what we compare
  against. The product's ElectionTiming and its validation are untouched;
- ``release: false`` makes releasing the lease a no-op (the seed never released it: a graceful stop
  then fails over like a crash);
- ``jitter: "client-go"`` waits ``d * (1 + U(0, 1.2))`` between attempts, as client-go's
  wait.JitterUntil(RetryPeriod, JitterFactor=1.2) does, instead of our d * U(0.9, 1.1).

Only this benchmark process is patched, in memory; LEASE_DURATION etc. in the environment must still
be values the product accepts (the bench passes the design's lease, which is always 15..60 s).
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def emulate(spec: dict[str, Any]) -> None:
    from distributed_mutex_demo import config
    from DistributedMutex import mutex
    from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend
    from DistributedMutex.timing import ElectionTiming

    class EmulatedTiming(ElectionTiming):
        def __post_init__(self) -> None:
            pass  # another design's numbers, deliberately not held to our invariants

    timing = EmulatedTiming(float(spec["lease"]), float(spec["renew"]), float(spec["acquire"]),
                            float(spec["safety_margin"]))
    config.Settings.timing = lambda self: timing  # type: ignore[method-assign]
    if not spec["release"]:
        AzureBlobLeaseBackend.release = lambda self, lease: None  # type: ignore[method-assign]
    if spec["jitter"] == "client-go":
        mutex.DistributedMutex._jittered = (  # type: ignore[method-assign]
            lambda self, seconds: seconds * (1 + random.uniform(0, 1.2)))
    elif spec["jitter"] == "none":
        mutex.DistributedMutex._jittered = lambda self, seconds: seconds  # type: ignore[method-assign]


def main() -> int:
    spec = os.environ.get("BENCH_EMULATE")
    if spec:
        emulate(json.loads(spec))
    from distributed_mutex_demo import cli

    return cli.main([])


if __name__ == "__main__":
    sys.exit(main())
