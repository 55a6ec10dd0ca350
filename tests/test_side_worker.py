"""threads.SideWorker: calls made beside a blocking caller's own (the blob lease's stamp beside each
renewal) share one long-lived thread, not an OS thread per call; one that hangs does not hold up
the next; an error comes out of result()."""

from __future__ import annotations

import threading

import pytest

from DistributedMutex.threads import SideWorker

NAME = "side-under-test"


def side_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == NAME]


def close_and_join(worker: SideWorker) -> None:
    """Close ``worker`` and wait (bounded) for its threads to end: the next test counts threads."""
    worker.close()
    for thread in side_threads():
        thread.join(2)


def test_calls_one_after_another_share_one_thread_which_ends_on_close() -> None:
    worker = SideWorker(NAME)
    seen: set[int] = set()
    for _ in range(50):
        worker.start(lambda: seen.add(threading.get_ident())).result(5)
    assert len(seen) == 1, f"{len(seen)} threads for 50 calls made one after another"
    assert len(side_threads()) == 1
    close_and_join(worker)
    assert side_threads() == [], "the idle thread did not end on close()"


def test_an_error_comes_out_of_result_and_the_thread_goes_on() -> None:
    worker = SideWorker(NAME)
    try:
        def fail() -> None:
            raise OSError("refused")

        with pytest.raises(OSError, match="refused"):
            worker.start(fail).result(5)
        seen: list[int] = []
        worker.start(lambda: seen.append(threading.get_ident())).result(5)
        assert len(seen) == 1 and len(side_threads()) == 1
    finally:
        close_and_join(worker)


def test_a_hung_call_does_not_hold_up_the_next_one_and_its_thread_ends_when_it_returns() -> None:
    worker = SideWorker(NAME)
    gate = threading.Event()
    try:
        hung_in: list[threading.Thread] = []
        hung = worker.start(lambda: (hung_in.append(threading.current_thread()), gate.wait(10)))
        done = threading.Event()
        second = worker.start(done.set)
        assert done.wait(2), "the second call waited behind the hung one"
        second.result(5)
        assert len(side_threads()) == 2
        gate.set()
        hung.result(5)
        # The hung call's thread finds the other one idle, and ends; that one stays for the next call.
        hung_in[0].join(2)
        assert not hung_in[0].is_alive() and len(side_threads()) == 1, side_threads()
    finally:
        gate.set()
        close_and_join(worker)


def test_a_thread_busy_at_close_ends_once_its_call_returns() -> None:
    worker = SideWorker(NAME)
    gate = threading.Event()
    running_in: list[threading.Thread] = []
    busy = worker.start(lambda: (running_in.append(threading.current_thread()), gate.wait(10)))
    try:
        worker.close()
        gate.set()
        busy.result(5)
        running_in[0].join(2)
        assert not running_in[0].is_alive(), "the thread busy at close() stayed on, idle"
    finally:
        gate.set()


def test_result_waits_no_longer_than_asked() -> None:
    worker = SideWorker(NAME)
    gate = threading.Event()
    try:
        with pytest.raises(TimeoutError, match=r"within 0\.05 s"):
            worker.start(lambda: gate.wait(10)).result(0.05)
    finally:
        gate.set()
        close_and_join(worker)
