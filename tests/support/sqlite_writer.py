"""A leader in another process, writing to a SQLite store: for the tests that race processes.

    python -m support.sqlite_writer PATH hold TERM
        registers TERM, then writes one reading; inside that write's transaction (with the write
        lock held) it prints "inside" and waits for a line on stdin before it commits; then prints
        "committed N", waits for another line, and tries a second write: "committed N" or
        "refused: <message>".
    python -m support.sqlite_writer PATH race TERM ROUNDS
        waits for a line on stdin ("go"), then ROUNDS times: registers TERM and writes a reading;
        stops at the first refusal. Prints one JSON line: {"written": .., "refused": .., "busy": [..]}.

Every line is flushed at once: the test reads them as they come.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone

from distributed_mutex_demo.errors import StoreUnavailableError
from distributed_mutex_demo.stores.sqlite import SQLiteStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.errors import StaleTermError

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def reading(city: str, minute: int) -> Reading:
    return Reading(city, 20.0, 50, "clear sky", T0 + timedelta(minutes=minute), "open-meteo")


def say(text: str) -> None:
    print(text, flush=True)


def hold(store: SQLiteStore, term: int) -> None:
    store.register_term(term, f"holder-{term}")

    def inside() -> bool:
        say("inside")
        sys.stdin.readline()  # the test lets us commit
        return True

    say(f"committed {store.write([reading('Hanoi', 0)], term, f'holder-{term}', inside)}")
    sys.stdin.readline()  # the test has let its successor register meanwhile
    try:
        say(f"committed {store.write([reading('Hanoi', 1)], term, f'holder-{term}')}")
    except StaleTermError as exc:
        say(f"refused: {exc}")


def race(store: SQLiteStore, term: int, rounds: int) -> None:
    sys.stdin.readline()
    written, refused, busy = 0, False, []
    for minute in range(rounds):
        try:
            store.register_term(term, f"racer-{term}")
            written += store.write([reading(f"city-{os.getpid()}", minute)], term, f"racer-{term}")
        except StaleTermError:
            refused = True
            break
        except StoreUnavailableError as exc:
            busy.append(str(exc))
    say(json.dumps({"written": written, "refused": refused, "busy": busy}))


def main(argv: list[str]) -> None:
    path, mode, term = argv[0], argv[1], int(argv[2])
    store = SQLiteStore(path)
    try:
        if mode == "hold":
            hold(store, term)
        else:
            race(store, term, int(argv[3]))
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
