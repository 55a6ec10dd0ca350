"""What ``make demo`` shows in the terminal, drawn with Rich from the demo's state (state.py, the
snapshot the web page reads too): who leads and in which term, the lease's time left, one row per
instance with its last write or read, the last failover, the newest log lines; and the keys, read
without Enter. Not in a terminal, the log lines go to stdout as they come (cluster.say) and no
panel is drawn."""

from __future__ import annotations

import contextlib
import select
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

COLOURS = ("cyan", "yellow", "magenta", "green", "blue", "red")
KEYS_HELP = "keys: k kill the leader, s stop it gracefully, a add an instance, q quit"


def render(state: dict[str, Any]) -> Group:
    leader = state["leader"]
    lease = next((i["lease_left"] for i in state["instances"] if i["role"] == "leader"), None)
    header = Text.assemble(("leader election demo", "bold"), f"  {state['elapsed']:5.0f} s   leader: ",
                           (leader["name"] if leader else "none", "bold"),
                           f"  term {leader['term'] if leader else '-'}",
                           f"  lease left {'-' if lease is None else f'{lease:4.1f} s'}",
                           f"  {state['note']}" if state["note"] else "",
                           f"\nweb view: {state['url']}" if state["url"] else "")
    table = Table(box=None, show_header=False, padding=(0, 1))
    for i in state["instances"][-8:]:  # the newest: stopped ones pile up over a long run
        role = {"leader": Text("LEADER", "bold"), "worker": Text("worker"),
                "stopped": Text(f"exited ({i['exit_code']})", "dim")}[i["role"]]
        if i["paused"] or i["cut_off"]:
            role.append(" paused" if i["paused"] else " cut off", "bold red")
        seen = f"last write {i['last_write']}" if i["role"] == "leader" else f"last read {i['last_read']}"
        table.add_row(Text(i["name"], COLOURS[i["colour"] % len(COLOURS)]), role, seen)
    done = [a for a in state["actions"] if a["took"] is not None and a["kind"] != "add"]
    last = (f"last failover: {done[-1]['kind']} of {done[-1]['target']} -> {done[-1]['successor']} in "
            f"{done[-1]['took']:.1f} s" if done else "")
    refused = f"   stale writes refused: {len(state['refusals'])}" if state["refusals"] else ""
    footer = Text(f"{last}{refused}\nk kill leader   s stop leader   a add instance   q quit", "dim")
    log = Text("\n".join(state["log"]), no_wrap=True, overflow="ellipsis")
    return Group(header, table, footer, Text("-" * 72), log)


class Panel:
    """The live panel (in a terminal only), redrawn in place on the alternate screen."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.live = Live(console=Console(file=out, force_terminal=True), auto_refresh=False,
                         screen=True) if live else None

    def __enter__(self) -> Panel:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.stop()

    def draw(self, state: dict[str, Any]) -> None:
        if self.live is not None:
            self.live.update(render(state), refresh=True)


# -- keys ----------------------------------------------------------------------------------------

class Keys:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def read(self, timeout: float) -> str | None:
        if not self.enabled:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        return sys.stdin.read(1).lower() if ready else None


@contextlib.contextmanager
def keys(live: bool) -> Iterator[Keys]:
    """Single keys without Enter while the demo runs (when stdin is a terminal); restored after."""
    if not (live and sys.stdin.isatty()):
        yield Keys(False)
        return
    import termios
    import tty

    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        yield Keys(True)
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
