"""Shift this process's wall clock at run time, for the chaos harness's clock-jump rounds.

Put this directory on PYTHONPATH and CLOCKSHIFT_FILE in the environment: time.time() and
time.time_ns() then add the number of seconds written in that file (re-read every 50 ms), so the
harness can jump a running instance's wall clock forward and back. Everything in DistributedMutex
reads the wall clock through time.time() (logging and the Azure SDK's x-ms-date do too);
time.monotonic(), which the deadlines use, is left alone, as a real clock jump leaves it alone.
(libfaketime would shift the C library's clock, but 0.9.10 breaks time.sleep on Python 3.11.)
"""

import os
import time

_path = os.environ.get("CLOCKSHIFT_FILE")

if _path:
    _real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _state = {"read_at": -1.0, "offset": 0.0}

    def _offset() -> float:
        now = _monotonic()
        if now - _state["read_at"] >= 0.05:
            _state["read_at"] = now
            try:
                with open(_path, encoding="ascii") as file:
                    _state["offset"] = float(file.read().strip() or 0)
            except (OSError, ValueError):
                pass  # keep the last offset: the harness is rewriting the file
        return _state["offset"]

    def _shifted_time() -> float:
        return _real_time() + _offset()

    def _shifted_time_ns() -> int:
        return _real_time_ns() + int(_offset() * 1e9)

    time.time = _shifted_time
    time.time_ns = _shifted_time_ns
