"""``distributed-mutex run -- CMD ARGS...``: run a command only while this instance leads.

The leader task starts the command through the guard (guard.py) with ``LEADER_TERM`` (the fencing
token) and ``LEADER_ID`` in its environment, tells the guard every new local deadline, and when the
leadership ends sends the command SIGTERM (or the SIGINT/SIGTERM the wrapper received), then SIGKILL
to its whole process group at the local deadline minus ``kill_margin`` at the latest: the command
never runs past the lease. The task returns, and the lease is released, only once it has exited.

A command that exits by itself while leading (``on_exit``):

    restart  start it again after 1 s, doubled for each exit in a row up to 60 s (the count starts
             again after a run of 60 s or more); the lease is kept meanwhile
    release  give the lease up, so that another instance runs it, and contend again (after the
             same backoff, at least two acquire intervals)
    stop     give the lease up and exit with the command's exit status

A command that cannot be started (not found, not executable) is refused at start (exit 127 or
126), before contending; one that fails to start later (removed meanwhile) gives the lease up
as ``release`` does (another instance may have it), or ends the wrapper under ``stop``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from DistributedMutex.backend import ElectionBackend, Identity
from DistributedMutex.mutex import DistributedMutex
from DistributedMutex.roles import Backoff, LeaderContext
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger("DistributedMutex.run")
OnExit = Literal["restart", "release", "stop"]
ON_EXIT: tuple[OnExit, ...] = ("restart", "release", "stop")
GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard.py")
_TICK = 0.05  # how often the leader task looks at the command and the deadline (seconds)


class CommandEnded(Exception):  # noqa: N818 - an event, not a fault: the leader task's way to step down
    """The command exited by itself (or could not be started) and the policy gives the lease up."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class QuietCommandEnded(logging.Filter):
    """The library logs a leader task's exception with its traceback: for CommandEnded, a policy at
    work rather than a fault, the one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CommandEnded):
            record.exc_info = None
            record.exc_text = None
        return True


@dataclass(frozen=True)
class RunOptions:
    command: tuple[str, ...]
    on_exit: OnExit = "restart"
    grace: float = 10.0  # SIGTERM to SIGKILL, at most (the deadline comes first)
    kill_margin: float | None = None  # SIGKILL this long before the local deadline (None: per timing)


class CommandRunner:
    """One command under one election; ``run()`` returns the wrapper's exit status."""

    def __init__(self, backend: ElectionBackend, identity: Identity, timing: ElectionTiming | None,
                 options: RunOptions, environ: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.identity = identity
        self.environ = dict(os.environ if environ is None else environ)
        self.received: int | None = None  # the signal that stops us, forwarded to the command
        self.mutex = DistributedMutex(self.lead, backend=backend, identity=identity, timing=timing,
                                      shutdown_grace=options.grace + 1.0,
                                      on_task_failure="stop" if options.on_exit == "stop" else "restart")
        margin = self.mutex._timing.safety_margin  # the timing the loop really runs with
        self.kill_margin = options.kill_margin if options.kill_margin is not None else min(0.5, margin / 2)

    # -- the wrapper's own process --------------------------------------------------------------

    def run(self) -> int:
        logging.getLogger("DistributedMutex.mutex").addFilter(QuietCommandEnded())
        try:
            asyncio.run(self._main())
        except CommandEnded as ended:
            log.info("%s; exiting with its status %d (--on-exit stop)", ended, ended.status)
            return ended.status
        return 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            await self.mutex.run_async()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self.received is None:
            log.info("received %s: stopping the command (if it runs), then releasing the lease",
                     signal.Signals(signum).name)
            self.received = signum
        self.mutex.stop()

    # -- the leader task (a thread of its own) ---------------------------------------------------

    def lead(self, ctx: LeaderContext) -> None:
        backoff = Backoff(first=1.0, longest=60.0)
        while ctx.is_active():
            started = ctx.clock()
            status = self._run_once(ctx)
            if status is None:
                return  # the leadership ended; the command has exited
            if status.startswith("failed"):
                raise CommandEnded(int(status.split()[1]), f"the command could not be started: {status[9:]}")
            code = int(status)
            if self.options.on_exit != "restart":
                raise CommandEnded(code, f"the command exited with status {code}")
            delay = backoff.next_delay(ctx.clock() - started)
            log.warning("the command exited with status %d; starting it again in %g s (exit %d in a row)",
                        code, delay, backoff.failures)
            if not ctx.sleep(delay):
                return

    def _run_once(self, ctx: LeaderContext) -> str | None:
        """Run the command once: its exit status (or ``failed CODE MESSAGE``) if it exited by itself,
        None once stopped because the leadership ended."""
        env = {**self.environ, "LEADER_TERM": str(ctx.term), "LEADER_ID": self.identity.instance_id}
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        until = self._until(ctx)
        try:
            guard = subprocess.Popen(
                # By path, isolated and without site: the guard needs the standard library only, and
                # starts in a few tens of milliseconds (the package would take far longer to import).
                [sys.executable, "-I", "-S", GUARD, str(control_r), str(status_w), repr(until),
                 repr(self.options.grace), "--", *self.options.command],
                env=env, pass_fds=(control_r, status_w), start_new_session=True)
        finally:
            os.close(control_r)
            os.close(status_w)
        with os.fdopen(control_w, "wb", buffering=0) as control, os.fdopen(status_r, "rb", buffering=0) as status:
            sent, started, logged = until, b"", False
            while guard.poll() is None:
                # Deadlines go out from the start: the guard reads the newest one before it starts the
                # command, however long its own start took.
                until = self._until(ctx)
                if until != sent:
                    _send(control, f"until {until!r}")
                    sent = until
                if not started.endswith(b"\n") and select.select([status], [], [], 0)[0]:
                    started += status.read(200) or b"\n"
                    if started.startswith(b"started"):
                        logged = True
                        log.info("leading in term %d: started the command (pid %s)", ctx.term,
                                 started.split()[1].decode())
                    elif started.startswith(b"failed"):
                        guard.wait()
                        return started.decode().strip()
                if not ctx.sleep(_TICK):
                    self._stop(ctx, guard, control)
                    return None
            if not started.endswith(b"\n"):
                started += status.read() or b""  # the guard has exited: all it said is there
            if not started.startswith(b"started"):
                return started.decode().strip() or f"failed {guard.returncode} the guard ended at once"
            if not logged:  # it ended within a tick: the start was not logged yet
                log.info("leading in term %d: started the command (pid %s)", ctx.term, started.split()[1].decode())
            log.info("the command exited with status %d", guard.returncode)
            return str(guard.returncode)

    def _stop(self, ctx: LeaderContext, guard: subprocess.Popen[bytes], control: object) -> None:
        signum = self.received or signal.SIGTERM
        now = ctx.clock()
        kill_at = max(now, min(now + self.options.grace, self._until(ctx)))
        log.info("leadership of term %d ended: sending %s to the command, SIGKILL in %.2f s if it still runs",
                 ctx.term, signal.Signals(signum).name, kill_at - now)
        _send(control, f"stop {int(signum)} {kill_at!r}")
        guard.wait()
        log.info("the command exited (status %d)", guard.returncode)

    def _until(self, ctx: LeaderContext) -> float:
        """The moment the command must be gone: the local deadline minus the kill margin, on
        CLOCK_MONOTONIC (the guard's clock too)."""
        return ctx.acting_until - self.kill_margin


def _send(control: object, line: str) -> None:
    try:
        control.write((line + "\n").encode())  # type: ignore[attr-defined]
    except (BrokenPipeError, OSError):
        pass  # the guard has exited: its status says why


def check_command(command: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str] | None:
    """Whether the command can be started: None, or (126 or 127, the one-line reason)."""
    import shutil

    program = command[0]
    if os.sep in program:
        if not os.path.exists(program):
            return 127, f"{program}: no such file"
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return 126, f"{program}: not an executable file"
        return None
    if shutil.which(program, path=environ.get("PATH", os.defpath)) is None:
        return 127, f"{program}: command not found in PATH"
    return None
