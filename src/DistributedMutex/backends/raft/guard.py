"""What a Raft peer takes from each other peer, before its core's handlers see a message.

Two checks per sender, neither of which needs the sender to be who it claims (that is TLS's job,
a later step of issue 13): a message already taken (a replay) is dropped, and so is one whose term
is further ahead of ours than the elections since we last heard from its sender could explain.
Dropping is always safe: Raft is built for lost messages. Pure, like the core: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from DistributedMutex.backends.raft.messages import Message

# How far one peer may move our term without an election we could have seen (see SenderGuard.plausible).
# TERM_SLACK: at once, after any silence (a leader's recampaign to a fencing store's term, a
# burst of elections between two messages); TERM_RATE: more per ``lo`` of silence from that peer.
TERM_SLACK = 1000
TERM_RATE_PER_PEER = 2
# How far below the newest seq taken from a peer a message never seen is still taken (SenderGuard.fresh):
# a peer sends about n messages a heartbeat, so this is many rounds of reordering.
REPLAY_WINDOW = 1024


class SenderGuard:
    def __init__(self, senders: Iterable[str], *, lo: float, hi: float, now: float) -> None:
        senders = list(senders)
        self.lo = lo
        # Per sender: how many terms it may still move us ahead, as of when (see plausible).
        self._term_budget: dict[str, tuple[float, float]] = {p: (TERM_SLACK, now) for p in senders}
        self._term_rate = TERM_RATE_PER_PEER * (len(senders) + 1)
        # Per sender: the (epoch, seq) of its newest message taken, when we last took one, and
        # the seqs of that epoch taken within REPLAY_WINDOW of it (see fresh).
        self._newest: dict[str, tuple[int, int, float, set[int]]] = {}
        self._forget_after = 2 * hi
        self.implausible_terms = 0  # dropped by plausible, for the runtime to report
        self.stale_messages = 0  # dropped by fresh, likewise

    def admits(self, m: Message, own_term: int, now: float) -> bool:
        """Whether the core may handle ``m`` (from one of ``senders``), our term being ``own_term``."""
        if not (self.fresh(m, now) and self.plausible(m, own_term, now)):
            return False
        # Only now: a message dropped for its term must not make the sender's next ones stale.
        self._take(m, now)
        return True

    def fresh(self, m: Message, now: float) -> bool:
        """Whether ``m`` is one we never took from its sender: else it is a replay (a captured
        message sent again) and has no effect.

        A sender stamps ``(epoch, seq)`` on all it sends: ``seq`` counts up within one start and
        ``epoch`` rises at every start (storage.py: the wall clock in microseconds), so what one
        peer sends is ordered across its restarts. As IPsec does (RFC 4303, 3.4.3), we keep the
        newest stamp taken from each sender and which of the ``REPLAY_WINDOW`` seqs below it we
        took: a seq taken before, or older than the window, or of an older epoch, is dropped. A
        message overtaken by a newer one but never seen is still taken: Raft is built for
        reordering, and dropping those would cost elections for nothing. Dropping is safe, too:
        Raft is built for lost messages.

        What this protects against without authentication: genuine messages captured and sent
        again unchanged (a dead leader's heartbeats replayed: issue 13), and old messages that
        resurface late. Not against a forger, who writes a fresh stamp itself (authenticated
        peers, TLS, are the answer to that), nor against a replay to a receiver that restarted
        since it last heard the sender (it starts with an empty memory; a lone follower misled
        that way cannot elect anybody). One forged stamp far ahead must not silence the real
        peer for good, though: an *earlier epoch* is taken again once nothing was taken from
        that sender for ``_forget_after`` (two maximum election timeouts). A replay of the same
        epoch never is, however long the silence: that is the dead leader's case."""
        newest = self._newest.get(m.src)
        if newest is None:
            fresh = True
        else:
            epoch, seq, taken_at, taken = newest
            fresh = (m.epoch > epoch
                     or (m.epoch == epoch and (m.seq > seq or (m.seq > seq - REPLAY_WINDOW and m.seq not in taken)))
                     or (m.epoch < epoch and now - taken_at >= self._forget_after))
        if not fresh:
            self.stale_messages += 1
        return fresh

    def plausible(self, m: Message, own_term: int, now: float) -> bool:
        """Whether ``m``'s term is one an honest peer could have reached since we last heard it.

        With pre-vote, a term only rises in an election a majority agreed to hold, and each node
        starts one at most once per ``lo`` (its election timeout) unless a leader hands over. So in
        ``t`` seconds of silence from a peer the cluster held at most about ``n * t / lo``
        elections; we allow twice that (``TERM_RATE_PER_PEER`` per node: hand-overs, clock rate
        drift) plus ``TERM_SLACK`` at any time. It is a token bucket per peer: a jump spends
        terms, silence earns them back, at most ``TERM_SLACK`` carried over while the peer talks.
        So a forger can move us at most ``TERM_SLACK`` at once and ``rate`` per ``lo`` after that
        per peer id it claims: it would need millions of years to reach ``MAX_TERM``, and a peer
        back from a partition, however long, still catches up with the cluster's term."""
        budget, since = self._term_budget[m.src]
        available = budget + self._term_rate * max(0.0, now - since) / self.lo
        jump = m.term - own_term
        if jump > available:
            self.implausible_terms += 1
            return False
        self._term_budget[m.src] = (min(TERM_SLACK, available - max(jump, 0)), now)
        return True

    def _take(self, m: Message, now: float) -> None:
        """Remember ``m``'s stamp as taken (see fresh)."""
        newest = self._newest.get(m.src)
        if newest is None or m.epoch != newest[0]:
            self._newest[m.src] = (m.epoch, m.seq, now, {m.seq})
            return
        _, seq, _, taken = newest
        taken.add(m.seq)
        if m.seq > seq:
            seq = m.seq
            if len(taken) > 2 * REPLAY_WINDOW:  # now and then, not at every message
                taken.intersection_update(range(seq - REPLAY_WINDOW + 1, seq + 1))
        self._newest[m.src] = (m.epoch, seq, now, taken)
