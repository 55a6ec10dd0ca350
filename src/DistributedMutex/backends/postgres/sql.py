"""The statements of the PostgreSQL lease: each call is one statement, judged by the server's clock.

Every statement runs in a transaction of its own that sets its bounds first (``SET LOCAL``: they
end with the transaction, so nothing stays behind on a pooled server connection), sent as one
simple query, bound on the client: one round trip, no server-side prepared statement, no session
state, which is what a transaction-pooling PgBouncer needs.

    acquire   INSERT ... ON CONFLICT DO UPDATE ... WHERE the lease is free, expired or ours:
              the term grows by one with every grant; NOTIFY on a grant
    renew     UPDATE ... WHERE our token and our term: the lease's end moves to now + lease
    release   UPDATE ... WHERE our token and our term: ends now, token cleared; NOTIFY
    advance   UPDATE ... SET term = GREATEST(term, n) WHERE our token, our term, not expired
    read      SELECT the row, its state by the server's clock

``{table}`` is a checked identifier; everything else is a parameter.
"""

from __future__ import annotations

DDL = """CREATE TABLE IF NOT EXISTS {table} (
    name        TEXT PRIMARY KEY,
    holder      TEXT,                     -- the holder's instance id (kept after release: the last one)
    host        TEXT,
    pid         INTEGER,
    token       TEXT,                     -- the holding backend's own id; NULL once released
    term        BIGINT NOT NULL,          -- the fencing token: +1 on every grant
    acquired_at TIMESTAMPTZ,
    renewed_at  TIMESTAMPTZ,
    expires_at  TIMESTAMPTZ NOT NULL,     -- by the server's clock
    lease_ms    INTEGER NOT NULL          -- the lease duration the holder asked for
)"""

# The bounds of one call's transaction: a statement that runs (or waits for a row lock) longer is
# cancelled by the server; a client that vanishes mid-transaction has it ended for it.
BOUNDS = ("SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; "
          "SET LOCAL idle_in_transaction_session_timeout = {idle_ms}")

_LEASE_END = "clock_timestamp() + %(lease_ms)s * interval '1 millisecond'"

ACQUIRE = f"""WITH granted AS (
    INSERT INTO {{table}} AS l (name, holder, host, pid, token, term, acquired_at, renewed_at, expires_at, lease_ms)
    VALUES (%(name)s, %(holder)s, %(host)s, %(pid)s, %(token)s, 1, clock_timestamp(), clock_timestamp(),
            {_LEASE_END}, %(lease_ms)s)
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid,
        token = excluded.token, term = l.term + 1, acquired_at = excluded.acquired_at,
        renewed_at = excluded.renewed_at, expires_at = excluded.expires_at, lease_ms = excluded.lease_ms
    WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token
    RETURNING l.term, l.holder, l.host, l.pid, l.acquired_at
)
SELECT term, holder, host, pid, acquired_at, true AS granted, pg_notify(%(channel)s, %(name)s)::text
FROM granted
UNION ALL
SELECT term, holder, host, pid, acquired_at, false, NULL
FROM {{table}} WHERE name = %(name)s AND NOT EXISTS (SELECT FROM granted)"""

RENEW = f"""UPDATE {{table}} SET renewed_at = clock_timestamp(), expires_at = {_LEASE_END}, lease_ms = %(lease_ms)s
WHERE name = %(name)s AND token = %(token)s AND term = %(term)s
RETURNING term"""

RELEASE = """WITH released AS (
    UPDATE {table} SET expires_at = clock_timestamp(), token = NULL
    WHERE name = %(name)s AND token = %(token)s AND term = %(term)s
    RETURNING term
)
SELECT term, pg_notify(%(channel)s, %(name)s)::text FROM released"""

ADVANCE_TERM = """UPDATE {table} SET term = GREATEST(term, %(at_least)s)
WHERE name = %(name)s AND token = %(token)s AND term = %(term)s AND expires_at > clock_timestamp()
RETURNING term"""

READ = """SELECT holder, term, host, pid, acquired_at,
    CASE WHEN token IS NULL THEN 'available' WHEN expires_at > clock_timestamp() THEN 'leased' ELSE 'expired' END
FROM {table} WHERE name = %(name)s"""

# The fencing check at the source (fencing.py), sent with the COMMIT of the leader's write: the
# lease row, locked for share until that COMMIT, so that no new holder can be granted the lease
# while the write commits. A row that is no longer ours counts 0 and the division fails, which
# makes the server skip the COMMIT that follows in the same query (no function to create for it).
STILL_HOLDER = """SELECT 1 / count(*) FROM (SELECT FROM {table} WHERE name = %(name)s AND holder = %(holder)s
    AND term = %(term)s AND expires_at > clock_timestamp() FOR SHARE) AS still_ours"""

# Why it refused, read once the refused transaction was rolled back (no lock).
CHECK_HOLDER = """SELECT holder, term FROM {table} WHERE name = %(name)s"""
