"""The election's Lua scripts: each runs atomically on the Redis primary and compares the holder
and the term before it changes anything.

Keys (``P`` is the key prefix; the braces make them one hash slot, should the server be a cluster
node):

    {P}:lease   a string, ``<owner>:<term>``, with the lease's expiry (PX): who holds the lease now.
                ``owner`` is one backend object's random id; the term in the value makes every
                leadership's value unique, so a script that compares it compares holder and term.
    {P}:term    the term counter: the highest term ever given, raised with every new holder
    {P}:leader  a hash: the last holder's value, term, instance_id, host, pid, acquired_at

and one pub/sub channel, ``{P}:changes``, published on every takeover, release and term change.

Terms are a counter that also keeps up with the server's clock: a new holder's term is the highest
of (counter + 1), (the highest term the contender has seen + 1) and the server's time in
milliseconds. So terms grow by one per change of holder within a millisecond and otherwise jump to
the clock; what it buys is that a server which lost the counter (a restart without persistence,
FLUSHALL, a failover to a replica that had not received the last writes) still gives terms above
every term given before, unless its clock is behind the old primary's by more than the time the
failover took. A repeated term is what a fenced store cannot catch (it accepts a writer with the
term it has stored); a lower one it refuses.

Expiry is the server's: ``PX`` is counted on the primary's clock from when it ran the script, which
is after the client sent its request; the client acts only until ``sent_at + lease - margin`` on its
own monotonic clock (backend.py). Terms are written with ``string.format('%d')``: Lua's numbers are
doubles, exact up to 2^53 (the library's MAX_TERM), but ``tostring`` shows only 14 digits.
"""

from __future__ import annotations

# KEYS: lease, term, leader.  ARGV: owner, lease ms, highest term this client has seen,
# instance_id, host, pid, acquired_at, channel.
# Returns {1, term, lost} when we take the lease (lost = 1: the server's counter was below a term
# we had seen, so it lost its data and the previous holder may still be acting), or
# {0, pttl, leader hash as a flat list} when someone else holds it.
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. ':'
if holder and string.sub(holder, 1, #mine) ~= mine then
  return {0, redis.call('PTTL', KEYS[1]), redis.call('HGETALL', KEYS[3])}
end
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
local seen = tonumber(ARGV[3])
local lost = 0
if seen > stored then
  lost = 1
  stored = seen
end
local now = redis.call('TIME')  -- {seconds, microseconds}: the server's clock, in milliseconds below
local next_term = math.max(stored + 1, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
local term = string.format('%d', next_term)
local value = mine .. term
if holder then
  -- our own earlier leadership (we stepped down, or never heard the answer): a new term
  redis.call('SET', KEYS[1], value, 'XX', 'PX', ARGV[2])
elseif not redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then
  return redis.error_reply('the lease key changed inside a script')
end
redis.call('SET', KEYS[2], term)
redis.call('HSET', KEYS[3], 'holder', value, 'term', term, 'instance_id', ARGV[4], 'host', ARGV[5],
           'pid', ARGV[6], 'acquired_at', ARGV[7])
redis.call('PUBLISH', ARGV[8], 'acquired ' .. value)
return {1, next_term, lost}
"""

# KEYS: lease.  ARGV: our value (owner:term), lease ms.  Returns 1 if extended, 0 if not ours.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease.  ARGV: our value, channel.  Returns 1 if deleted, 0 if it was not ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released ' .. ARGV[1])
  return 1
end
return 0
"""

# KEYS: lease, term, leader.  ARGV: our value, at_least, owner, channel.
# Returns {1, term, value} (the term unchanged if it already was at least at_least), {0} if the
# lease is not ours. A new term is above every term ever given (the counter) and at least at_least.
ADVANCE_TERM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local current = tonumber(string.match(ARGV[1], ':(%d+)$'))
local wanted = tonumber(ARGV[2])
if wanted <= current then
  return {1, current, ARGV[1]}
end
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
local term = string.format('%d', math.max(wanted, stored + 1))
local value = ARGV[3] .. ':' .. term
redis.call('SET', KEYS[1], value, 'XX', 'KEEPTTL')
redis.call('SET', KEYS[2], term)
redis.call('HSET', KEYS[3], 'holder', value, 'term', term)
redis.call('PUBLISH', ARGV[4], 'advanced ' .. value)
return {1, math.max(wanted, stored + 1), value}
"""
