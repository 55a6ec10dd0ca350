"""The guard: the process between ``distributed-mutex run`` and the command it runs while leading.

    distributed-mutex run ──(control pipe)──> guard ──> CMD ARGS... (a process group of its own)

Why a process of its own rather than PR_SET_PDEATHSIG alone: the guard keeps the local deadline,
so it also stops the command when the wrapper is alive but *frozen* (SIGSTOP, a VM pause) or wedged:
its clock (CLOCK_MONOTONIC, the wrapper's too) runs on, and past the deadline it SIGKILLs the
command's whole process group, grandchildren included, which PR_SET_PDEATHSIG cannot reach. And a
wrapper that is SIGKILLed closes the control pipe (the kernel closes a dead process's descriptors):
the guard reads EOF, sends SIGTERM to the group and SIGKILL at the deadline. PR_SET_PDEATHSIG is
set on the command as well (Linux), so that a guard killed by hand does not leave it behind.

The control pipe (its descriptor is the guard's first argument), one line per message from the wrapper:

    until T          the command may run until monotonic time T (a renewal moved the deadline on)
    stop SIG T       send signal SIG to the group now, and SIGKILL at T if it still runs

The status pipe (the second argument): ``started PID`` or ``failed CODE MESSAGE`` (126: not executable, 127: not
found), once. The guard exits with the command's exit status (128+N when killed by signal N), once
the command has exited and whatever it left in its group is killed.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

_TICK = 0.05  # seconds between looks at the command, when nothing else wakes the guard
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the command, before exec: its own process group, and SIGKILL when the guard dies (Linux)."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the guard's own deadline and EOF still stop the command


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class Guard:
    def __init__(self, control_fd: int, status_fd: int, command: Sequence[str], until: float, grace: float) -> None:
        self.command = list(command)
        self.until = until  # SIGKILL the group at this monotonic time unless moved on
        self.grace = grace  # SIGTERM to SIGKILL when the wrapper is gone
        self.kill_at = float("inf")
        self.control_fd, self.status_fd = control_fd, status_fd
        self.buffer = b""
        self.eof = False
        self.pid: int | None = None

    def run(self) -> int:
        self._read(0.0)  # the newest deadline, sent while this process started
        if self.eof or self.kill_at != float("inf"):
            # The wrapper is gone, or the leadership ended, before the command could start.
            self._status("failed 0 the leadership ended before the command started")
            return 0
        try:
            process = subprocess.Popen(self.command, preexec_fn=_die_with_parent, close_fds=True)
        except OSError as exc:
            code = 126 if isinstance(exc, PermissionError) else 127
            self._status(f"failed {code} {exc.strerror or exc}")
            return code
        self.pid = process.pid
        self._status(f"started {process.pid}")
        while process.poll() is None:
            self._read(min(_TICK, max(0.0, min(self.until, self.kill_at) - time.monotonic())))
            now = time.monotonic()
            if now >= self.until or now >= self.kill_at:
                _kill_group(process.pid, signal.SIGKILL)
                process.wait()
        # What the command left in its group (a job put in the background) ends with it.
        _kill_group(process.pid, signal.SIGKILL)
        return _exit_status(process.returncode)

    def _read(self, timeout: float) -> None:
        if self.eof:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.control_fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.control_fd, 4096)
        if not chunk:
            # The wrapper is gone (crashed, SIGKILLed): stop the command, by the deadline at the latest.
            self.eof = True
            self._signal(signal.SIGTERM, time.monotonic() + self.grace)
            return
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            words = line.decode("ascii", "replace").split()
            if not words:
                continue
            if len(words) == 2 and words[0] == "until":
                self.until = float(words[1])
            elif len(words) == 3 and words[0] == "stop":
                self._signal(int(words[1]), float(words[2]))

    def _signal(self, signum: int, kill_at: float) -> None:
        self.kill_at = min(self.kill_at, kill_at)
        if self.pid is not None:
            _kill_group(self.pid, signum)

    def _status(self, text: str) -> None:
        try:
            os.write(self.status_fd, (text + "\n").encode())
            os.close(self.status_fd)
        except OSError:
            pass


def main(argv: Sequence[str]) -> int:
    """``python -m DistributedMutex.cli.guard CONTROL_FD STATUS_FD UNTIL GRACE -- CMD ARGS...`` (started by
    the wrapper)."""
    control, status, until, grace, separator, *command = argv
    if separator != "--" or not command:
        print("the guard is started by distributed-mutex run, not by hand", file=sys.stderr)
        return 2
    return Guard(int(control), int(status), command, float(until), float(grace)).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
