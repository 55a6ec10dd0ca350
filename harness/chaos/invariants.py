"""The invariants, checked after every round on the evidence gathered since the last one (each fact
is judged once): no overlapping leaderships; every fetch and every row inside a leadership of the
instance that made it, within the lease of a granted call; no row of a lower term after a higher
one; no reading lost or stored twice; recovery within its bound; no traceback."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from harness.chaos.model import SEND_SLACK, Interval, RoundResult, containing, epoch
from harness.fake_openweather import Request

if TYPE_CHECKING:
    from harness.chaos.cluster import Chaos


class Judge:
    """What has been judged so far, and the counts the report gives."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.verified: set[tuple[str, int]] = set()  # (city, dt) readings proven stored
        self.lost: set[tuple[str, int]] = set()
        self.reported: set[tuple] = set()
        self.fetches_checked = 0
        self.last_row_checked = 0
        self.highest_term = 0
        self.longest_act_after_grant = 0.0
        self.in_flight_across_freeze = 0
        self.writes_across_freeze = 0

    def check(self, result: RoundResult) -> None:
        """Check the evidence gathered since the last round (each fact is judged once)."""
        violations = result.violations
        intervals = self.chaos.intervals(result.ended)
        by_slot: dict[str, list[Interval]] = {}
        for interval in intervals:
            by_slot.setdefault(interval.slot, []).append(interval)

        # 1. No two instances act as leader at overlapping times.
        violations.extend(describe_overlap(a, b, overlap) for a, b, overlap in overlaps(intervals)
                          if self._first_time(("overlap", a.start, b.start)))

        # 2. Every fetch inside a leadership of its instance, within the lease of a granted call.
        fetches = [r for r in self.chaos.weather.log() if r.client]
        for request in fetches[self.fetches_checked:]:
            if self._in_flight_across_freeze(request.client, request.mono, result, by_slot):
                continue
            owner = containing(by_slot.get(request.client, []), request.mono, SEND_SLACK)
            if owner is None:
                violations.append(f"{request.client} fetched {request.city} at {request.mono:.2f} while not leading")
            self._check_within_lease(request.client, request.mono, f"fetch of {request.city}", violations)
            self._check_not_in_another_leadership(request.client, request.mono, f"fetch of {request.city}",
                                                  intervals, violations)
        self.fetches_checked = len(fetches)

        # 3. Rows: non-decreasing terms in insertion order; each written by a leader, while leading.
        # The rows first, then the server's log: the instances run on while we check, and a row read
        # now was fetched (and logged: the server logs before it answers) before we read it.
        rows = self.chaos.rows()
        served = {(r.city, r.dt) for r in self.chaos.weather.log() if r.client and r.dt is not None}
        fresh = [row for row in rows if row[0] > self.last_row_checked]
        across = {row[0] for row in fresh
                  if self._in_flight_across_freeze(row[3].rsplit("-g", 1)[0], self.chaos.to_mono(row[5]), result,
                                                   by_slot, count=False)}
        self.writes_across_freeze += len(across)
        self.highest_term, found = row_violations(fresh, intervals, self.highest_term, self.chaos.to_mono,
                                                  in_flight=across)
        violations.extend(found)
        for row_id, city, observed_at, leader_id, _term, stored_at in fresh:
            self.last_row_checked = row_id
            if row_id not in across:
                self._check_within_lease(leader_id.rsplit("-g", 1)[0], self.chaos.to_mono(stored_at),
                                         f"row {row_id}", violations)
            if (city, epoch(observed_at)) not in served:
                violations.append(f"row {row_id} ({city}, {observed_at}) matches no reading the weather server served")

        # 4. Nothing lost: every reading fetched by a leader that still leads is stored, once.
        self._check_nothing_lost(fetches, by_slot, result, violations)

        # 5. Recovery and leaderless time.
        self._measure_recovery(result, intervals)
        leader = self.chaos.leader_name()
        if result.fault in ("mysql-down", "clock-jump") and (result.failovers or leader != result.victim):
            # Neither may cost the leader its lease: MySQL is not the lock, and deadlines are monotonic.
            violations.append(f"{result.fault} cost {result.victim} its leadership (leader now {leader})")
        if result.recovery > self.chaos.s.recovery_bound:
            violations.append(f"no leader for {result.recovery:.1f} s after the fault healed "
                              f"(bound {self.chaos.s.recovery_bound:g} s)")

        # 6. No traceback anywhere.
        for slot in self.chaos.slots:
            for instance in slot.all_instances():
                if instance.find(r"Traceback") is not None and self._first_time(("traceback", instance.name)):
                    violations.append(f"a traceback in {instance.name}'s output:\n{instance.tail(40)}")

    def _in_flight_across_freeze(self, client: str, at: float, result: RoundResult,
                                 by_slot: dict[str, list[Interval]], *, count: bool = True) -> bool:
        """A request the frozen leader had checked and begun before SIGSTOP reaches the server only
        after SIGCONT: no check can stop an action already under way (that is what the fencing
        token is for; a write of it would be refused). Tolerated, and counted, only when it arrives
        within SEND_SLACK of the resumption and the instance was leading when it was frozen.

        The same holds for a row: frozen inside its write, after the store's term check and with
        that check's row lock held, the leader commits on SIGCONT. The store took it in its term
        order (the successor could not register a higher term meanwhile: the lock), so the term
        rule still judges it; only its timing is excused."""
        if result.fault != "freeze" or result.victim is None or client != result.victim.rsplit("-g", 1)[0]:
            return False
        if not result.healed_at <= at <= result.healed_at + SEND_SLACK:
            return False
        if containing(by_slot.get(client, []), result.fault_at, 0.0) is None:
            return False
        if count:
            self.in_flight_across_freeze += 1
        return True

    def _first_time(self, key: tuple) -> bool:
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    def _check_within_lease(self, slot_name: str, at: float, what: str, violations: list[str]) -> None:
        """An act at most the acting window (lease - safety margin) after the last acquire/renewal
        the storage granted *and* answered before the act (plus the check-to-send slack).
        Judged from the HTTP wire log, so on Azure only (backends.py says why not elsewhere)."""
        slot = next((s for s in self.chaos.slots if s.name == slot_name), None)
        if slot is None or slot.watch is None:
            return
        grants = [t for t in slot.watch.lease_grants(answered_by=at) if t <= at]
        window = self.chaos.s.lease - self.chaos.s.safety_margin
        if not grants or at - grants[-1] > window + SEND_SLACK:
            since = f"{at - grants[-1]:.1f} s after" if grants else "without"
            violations.append(f"{what} by {slot_name} {since} its last granted acquire/renewal "
                              f"(acting window {window:g} s)")
        else:
            self.longest_act_after_grant = max(self.longest_act_after_grant, at - grants[-1])

    def _check_not_in_another_leadership(self, who: str, at: float, what: str, intervals: list[Interval],
                                         violations: list[str]) -> None:
        message = in_another_leadership(who, at, what, intervals)
        if message:
            violations.append(message)

    def _check_nothing_lost(self, fetches: list[Request], by_slot: dict[str, list[Interval]],
                            result: RoundResult, violations: list[str]) -> None:
        """Readings fetched in a leadership still going on must all be stored, once the leader had
        a fair chance to write them (bounded wait); the buffered ones are counted when they land."""
        settle = time.monotonic() + 3 * self.chaos.s.fetch_interval + 12
        while True:
            stored = {(city, epoch(observed)): (term, self.chaos.to_mono(at))
                      for _, city, observed, _, term, at in self.chaos.rows()}
            missing = []
            for request in fetches:
                key = (request.city, request.dt)
                if request.dt is None or key in self.verified or request.mono > result.ended - 3:
                    continue
                owner = containing(by_slot.get(request.client, []), request.mono, SEND_SLACK)
                if owner is None or not owner.open:
                    continue  # a deposed or killed leader's unsaved readings are not owed
                if key in stored:
                    self.verified.add(key)
                    if result.fault == "mysql-down" and result.fault_at <= request.mono <= result.healed_at:
                        result.buffered_flushed += 1
                else:
                    missing.append(key)
            if not missing or time.monotonic() >= settle:
                break
            time.sleep(0.2)
        for city, dt in missing:
            self.lost.add((city, dt))
            violations.append(f"lost reading: {city} at {dt}, fetched by a leader that kept its leadership")
        duplicates = self.chaos.store.duplicates()
        violations.extend(f"reading stored {n} times: {city} at {at}" for city, at, n in duplicates
                          if self._first_time(("duplicate", city, at)))

    def _measure_recovery(self, result: RoundResult, intervals: list[Interval]) -> None:
        window = [i for i in intervals if i.end > result.started and i.start < result.ended]
        result.failovers = sum(1 for i in window if result.started <= i.start)
        gaps = leaderless_gaps(intervals, result.started, result.ended)
        result.longest_leaderless = max((end - start for start, end in gaps), default=0.0)
        # Recovery: the longest time without a leader counted from the fault's healing (a kill
        # heals at once; a freeze or cut usually has its successor before it heals).
        result.recovery = recovery_after(gaps, result.healed_at)
        if result.fault in ("kill", "freeze", "cut"):
            successors = [i.start for i in window if i.start >= result.fault_at and i.instance != result.victim]
            result.takeover = (min(successors) if successors else result.ended) - result.fault_at


# -- the checks on their own: also used by the partition harness (harness/partitions/) -----------

def overlaps(intervals: list[Interval]) -> list[tuple[Interval, Interval, float]]:
    """Every pair of leaderships of two different instances that overlap, with the overlap (s)."""
    found = []
    for n, a in enumerate(intervals):
        for b in intervals[n + 1:]:
            overlap = min(a.end, b.end) - max(a.start, b.start)
            if a.instance != b.instance and overlap > 0:
                found.append((a, b, overlap))
    return found


def describe_overlap(a: Interval, b: Interval, overlap: float) -> str:
    return f"overlap {overlap:.3f} s: {a.instance} (term {a.term}) and {b.instance} (term {b.term})"


def in_another_leadership(who: str, at: float, what: str, intervals: list[Interval]) -> str | None:
    """No slack here: an act inside another instance's leadership is an overlap, whatever the
    journal of the one who acted says."""
    for other in intervals:
        if other.slot != who and other.start < at < other.end:
            return f"{what} by {who} at {at:.2f} during {other.instance}'s leadership (term {other.term})"
    return None


def row_violations(rows: list[tuple], intervals: list[Interval], highest_term: int,
                   to_mono: Callable[[Any], float], in_flight: Collection[int] = ()) -> tuple[int, list[str]]:
    """Rows (id, city, observed_at, leader_id, term, stored_at) in insertion order, not yet judged:
    no row of a lower term after one of a higher term (a stale write the fencing check should have
    refused), each written by its instance while it led and inside no other instance's leadership.
    Rows whose id is in ``in_flight`` (a write under way across a freeze) are held to the term rule
    only. Returns the highest term seen and the violations."""
    violations = []
    for row_id, _city, _observed_at, leader_id, term, stored_at in rows:
        if term < highest_term:
            violations.append(f"stale row {row_id}: term {term} after term {highest_term}")
        highest_term = max(highest_term, term)
        if row_id in in_flight:
            continue
        at = to_mono(stored_at)
        if containing([i for i in intervals if i.instance == leader_id], at, SEND_SLACK) is None:
            violations.append(f"row {row_id} written by {leader_id} at {at:.2f} while not leading")
        other = in_another_leadership(leader_id.rsplit("-g", 1)[0], at, f"row {row_id}", intervals)
        if other:
            violations.append(other)
    return highest_term, violations


def leaderless_gaps(intervals: list[Interval], start: float, end: float) -> list[tuple[float, float]]:
    """The stretches (from, to) between ``start`` and ``end`` when no instance acted as leader."""
    window = [i for i in intervals if i.end > start and i.start < end]
    gaps, moment = [], start
    for interval in sorted(window, key=lambda i: i.start):
        if interval.start > moment:
            gaps.append((moment, interval.start))
        moment = max(moment, interval.end)
    if moment < end:
        gaps.append((moment, end))
    return gaps


def recovery_after(gaps: list[tuple[float, float]], moment: float) -> float:
    """The longest time without a leader counted from ``moment`` (0 if a leader acted throughout)."""
    return max((end - max(start, moment) for start, end in gaps if end > moment), default=0.0)
