"""``make demo``: three instances in one terminal, a live status panel, and failovers to watch.

It starts Azurite (the project's pinned npm package; Docker when there is no Node.js), then N
instances of ``src/DistributedMutex/test.py`` sharing one lease blob, each line of their logs under
a coloured prefix. With ELECTION_BACKEND=zookeeper it starts a ZooKeeper server instead (the Debian
package's jar); with ELECTION_BACKEND=redis it uses REDIS_URL, or the local Redis at 127.0.0.1:6379,
or starts a redis-server of its own when nothing answers there; with ELECTION_BACKEND=raft it needs
nothing: the instances are the Raft cluster, authenticated by mutual TLS with a throwaway CA and a
certificate per member that it makes.
Every DEMO_FAILOVER_EVERY seconds it stops the leader, alternating a kill (SIGKILL: the lease must
run out) and a graceful stop (SIGTERM: the lease is released), and starts a fresh instance (a name
never used before) in its place, so failover happens in front of you. Keys: k kills the leader, s
stops it gracefully, a adds an instance, q quits. Ctrl-C ends everything; nothing is left running.

It also serves a web page on 127.0.0.1 (a free port; its URL is printed first) showing the same
state live, with buttons to kill, stop, pause or cut off the leader and to add an instance
(launcher/web.py); DEMO_WEB=0 turns it off.

Who leads and since when is read from the instances' leadership journal (LEADERSHIP_JOURNAL), the
lease's time left from each instance's /healthz, the last write and read from their logs; all of it
kept in one state object (launcher/state.py) that the panel and the page read. ``DEMO_SECONDS=N``
ends the demo after N seconds with a summary and exit code 0.

Settings the demo reads (on top of the instances' own, which pass through): DEMO_SECONDS (0: until
you quit), DEMO_INSTANCES (3), DEMO_FAILOVER_EVERY (seconds between automatic failovers, 30; 0: none),
ELECTION_BACKEND (azure, zookeeper, raft, postgres: POSTGRES_URL, default this machine's server, or
redis: REDIS_URL), DEMO_WEB (1: serve the page, 0: not).

This module reads those settings and runs the demo; distributed_mutex_demo/launcher/ has its parts.
"""

from __future__ import annotations

import os
import signal
import sys

from distributed_mutex_demo.errors import LaunchError
from distributed_mutex_demo.launcher.cluster import Demo

BACKENDS = ("azure", "zookeeper", "raft", "postgres", "redis")


def _backend() -> str:
    backend = os.environ.get("ELECTION_BACKEND", "").strip().lower() or "azure"
    if backend not in BACKENDS:
        raise LaunchError(f"ELECTION_BACKEND: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _setting(name: str, default: str, low: float, high: float) -> float:
    text = os.environ.get(name, "").strip() or default
    try:
        value = float(text)
    except ValueError:
        raise LaunchError(f"{name}: must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise LaunchError(f"{name}: must be from {low:g} to {high:g}, got {value:g}")
    return value


def _web() -> bool:
    text = os.environ.get("DEMO_WEB", "").strip() or "1"
    if text not in ("0", "1"):
        raise LaunchError(f"DEMO_WEB: must be 1 (serve the web page) or 0 (do not), got {text!r}")
    return text == "1"


def main() -> int:
    try:
        web = _web()
        demo = Demo(seconds=_setting("DEMO_SECONDS", "0", 0, 86400),
                    instances=int(_setting("DEMO_INSTANCES", "3", 2, 20)),
                    failover_every=_setting("DEMO_FAILOVER_EVERY", "30", 0, 3600),
                    out=sys.stdout, backend=_backend())
    except LaunchError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: demo.stop())
    view = None
    try:
        if web:
            from distributed_mutex_demo.launcher.web import WebView

            view = WebView(demo)
            view.start()
            demo.state.url = view.url
            print(f"demo: the web view is at {view.url}", flush=True)
        code = demo.run()
    except LaunchError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        code = 2
    finally:
        demo.close()
        if view is not None:
            view.stop()
    print(demo.summary(), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
