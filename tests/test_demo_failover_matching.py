"""make demo's summary matches each disruption with the first leadership another instance started
after it, from the leadership journal. A Redis or Raft hand-over takes a few milliseconds: a
successor's start rounded down to before the disruption was once matched with the next disruption
instead ("failover after the graceful stop of node-1: node-3 led after 9.0 s", where node-2 had led
within milliseconds of it and node-3 only after node-2's kill)."""

from __future__ import annotations

import io
import json
import shutil

from distributed_mutex_demo.launcher.cluster import Demo
from distributed_mutex_demo.launcher.state import Action


def test_a_hand_over_of_milliseconds_is_matched_with_its_own_disruption() -> None:
    demo = Demo(seconds=1, instances=3, failover_every=4, out=io.StringIO(), backend="redis")
    try:
        base = demo.state.started
        stop_at, kill_at = 4.2034, 8.2
        journal = [
            {"event": "start", "instance": "node-1", "pid": 101, "term": 1, "mono": base + 1.0},
            {"event": "stop", "instance": "node-1", "pid": 101, "term": 1, "mono": base + stop_at + 0.001},
            {"event": "start", "instance": "node-2", "pid": 102, "term": 2, "mono": base + stop_at + 0.0012},
            {"event": "start", "instance": "node-3", "pid": 103, "term": 3, "mono": base + kill_at + 5.0},
        ]
        demo.journal.write_text("".join(json.dumps(record) + "\n" for record in journal))
        graceful = Action("graceful stop", "node-1", 101, stop_at, "schedule")
        kill = Action("kill", "node-2", 102, kill_at, "schedule")
        demo.state.actions += [graceful, kill]
        demo.track()
        assert (graceful.successor, graceful.term) == ("node-2", 2)
        assert graceful.took is not None and graceful.took < 0.01
        assert (kill.successor, kill.took) == ("node-3", 5.0)
    finally:
        shutil.rmtree(demo.workdir, ignore_errors=True)
