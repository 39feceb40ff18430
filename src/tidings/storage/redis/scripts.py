"""The Lua scripts, named.

Each script touches the keys of one queue only (KEYS[1] is the queue's key
base, see keys.py; the other keys share its hash tag), so it is atomic and
runs unchanged on Redis Cluster. The one exception is CLAIM's local
dead-letter move, given the dead letter queue's base as KEYS[2] only when
both queues share a slot (always, on a single server).

Time is ARGV[1], the driver's clock, never Redis TIME: tests drive a fake
clock, and every server of a deployment agrees with its own clock anyway.

A message record (:m) is a msgpack array:
  {created, expires, available, claim_count, claim_id, claim_expires, client_id}
claim_id is '' when unclaimed; a claim is active while claim_expires > now.
A claim record (:c) is {ttl, grace, created, expires, {message ids}}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

LIB = r"""
local CREATED, EXPIRES, AVAILABLE, COUNT, CLAIM, CLAIM_EXPIRES, CLIENT = 1, 2, 3, 4, 5, 6, 7

local function claimed(rec, now)
  return rec[CLAIM] ~= '' and rec[CLAIM_EXPIRES] > now
end

local function get_rec(base, id)
  local raw = redis.call('HGET', base .. ':m', id)
  if not raw then return nil, nil end
  return cmsgpack.unpack(raw), raw
end

local function put_rec(base, id, rec)
  local raw = cmsgpack.pack(rec)
  redis.call('HSET', base .. ':m', id, raw)
  return raw
end

-- Creates the queue when missing; 1 if it did. The sequence outlives a
-- deleted queue for a while (see DELETE_QUEUE), so keep it for good again.
-- The salt (random, from the driver) ends every message id of this queue:
-- ids are never valid in another queue, nor in a later queue of that name.
local function ensure_queue(base, now_text, salt)
  if redis.call('HSETNX', base .. ':q', 'meta', '{}') == 1 then
    redis.call('HSET', base .. ':q', 'created', now_text, 'salt', salt)
    redis.call('PERSIST', base .. ':s')
    return 1
  end
  return 0
end

-- The first of n new sequence numbers. A new sequence starts at the clock in
-- microseconds (seed), so a queue deleted and made again long after never
-- reissues an id a client may still hold as a marker.
local function next_seqs(base, n, seed)
  redis.call('SET', base .. ':s', seed, 'NX')
  return redis.call('INCRBY', base .. ':s', n) - n + 1
end

local function queue_salt(base)
  return redis.call('HGET', base .. ':q', 'salt') or ''
end

-- A message id: the sequence (16 hex digits, so ids sort like sequences)
-- and the queue's salt.
local function store(base, seq, rec, body, salt)
  local id = string.format('%016x', seq) .. salt
  redis.call('ZADD', base .. ':i', seq, id)
  redis.call('ZADD', base .. ':f', seq, id)
  redis.call('ZADD', base .. ':e', rec[EXPIRES], id)
  put_rec(base, id, rec)
  redis.call('HSET', base .. ':b', id, body)
  return id
end

local function remove(base, id)
  redis.call('HDEL', base .. ':m', id)
  redis.call('HDEL', base .. ':b', id)
  redis.call('ZREM', base .. ':i', id)
  redis.call('ZREM', base .. ':f', id)
  redis.call('ZREM', base .. ':e', id)
end

-- Back into the free set, which claims and pops walk.
local function free(base, id)
  local seq = redis.call('ZSCORE', base .. ':i', id)
  if seq then redis.call('ZADD', base .. ':f', seq, id) end
end

-- Releases the claim's messages (those it still holds) and forgets it,
-- expired or not. Returns 1 if there was such a claim.
local function release(base, claim_id)
  local raw = redis.call('HGET', base .. ':c', claim_id)
  redis.call('ZREM', base .. ':ce', claim_id)
  redis.call('ZREM', base .. ':cl', claim_id)
  if not raw then return 0 end
  for _, id in ipairs(cmsgpack.unpack(raw)[5]) do
    local rec = get_rec(base, id)
    if rec and rec[CLAIM] == claim_id then
      rec[CLAIM] = ''
      rec[CLAIM_EXPIRES] = 0
      put_rec(base, id, rec)
      free(base, id)
    end
  end
  redis.call('HDEL', base .. ':c', claim_id)
  return 1
end

-- Claims whose time is up give their messages back to the free set. Lazily,
-- at the start of each script that reads the free set: a claim expires by
-- the clock alone, with no event to react to. (:cl holds the claims not yet
-- so released; :ce all claims, for gc.)
local function release_expired(base, now_text)
  local due = redis.call('ZRANGEBYSCORE', base .. ':cl', '-inf', now_text)
  for _, claim_id in ipairs(due) do
    local raw = redis.call('HGET', base .. ':c', claim_id)
    if raw then
      for _, id in ipairs(cmsgpack.unpack(raw)[5]) do
        local rec = get_rec(base, id)
        if rec and rec[CLAIM] == claim_id then free(base, id) end
      end
    end
  end
  if #due > 0 then redis.call('ZREMRANGEBYSCORE', base .. ':cl', '-inf', now_text) end
end

-- Calls visit(id, rec, raw) on each message of the id-ordered set
-- (':i' every message, ':f' the unclaimed ones) from score bound `low`
-- ('-inf', or '(' .. a sequence), until visit returns true or the set ends.
local function walk(base, set, low, chunk, visit)
  while true do
    local page = redis.call('ZRANGEBYSCORE', base .. set, low, '+inf',
                            'WITHSCORES', 'LIMIT', 0, chunk)
    for i = 1, #page, 2 do
      local rec, raw = get_rec(base, page[i])
      if rec and visit(page[i], rec, raw) then return end
    end
    if #page < 2 * chunk then return end
    low = '(' .. page[#page]
  end
end

local function body(base, id)
  return redis.call('HGET', base .. ':b', id)
end

"""

# The notification helpers: only in the scripts that use them (every
# function a script defines costs time on each run), and in POST only
# on the branch of a queue with subscriptions.
NOTIFY_LIB = r"""
-- --- notifications (see keys.py: the :n* keys) ---------------------------
local S_CREATED, S_EXPIRES, S_TTL, S_CONFIRMED, S_SUBSCRIBER, S_OPTIONS, S_SEQ = 1, 2, 3, 4, 5, 6, 7
local D_SUB, D_KIND, D_PAYLOAD, D_ATTEMPTS, D_CREATED, D_STATUS, D_ERROR, D_SEQ, D_DIED =
  1, 2, 3, 4, 5, 6, 7, 8, 9

-- The first of n numbers of the queue's notification sequence (subscription
-- and delivery ids); seeded like the message sequence.
local function nseqs(base, n, seed)
  redis.call('SET', base .. ':nq', seed, 'NX')
  return redis.call('INCRBY', base .. ':nq', n) - n + 1
end

local function get_sub(base, id)
  local raw = redis.call('HGET', base .. ':ns', id)
  if not raw then return nil, nil end
  return cmsgpack.unpack(raw), raw
end

local function live_sub(base, id, now)
  local rec, raw = get_sub(base, id)
  if rec and rec[S_EXPIRES] > now then return rec, raw end
  return nil, nil
end

local function put_sub(base, id, rec)
  redis.call('HSET', base .. ':ns', id, cmsgpack.pack(rec))
  redis.call('ZADD', base .. ':ne', rec[S_EXPIRES], id)
end

local function get_delivery(base, id)
  local raw = redis.call('HGET', base .. ':nd', id)
  if not raw then return nil, nil end
  return cmsgpack.unpack(raw), raw
end

local function drop_delivery(base, id, rec)
  redis.call('HDEL', base .. ':nd', id)
  redis.call('ZREM', base .. ':nw', id)
  redis.call('ZREM', base .. ':np', id)
  redis.call('ZREM', base .. ':nx', id)
  redis.call('ZREM', base .. ':nk', id)
  redis.call('ZREM', base .. ':nb:' .. rec[D_SUB], id)
end

-- Forgets a subscription and every delivery of it; how many records went,
-- and (second value, for gc's count by kind) 1 if the subscription itself
-- was there, else 0.
local function drop_sub(base, id)
  local rec = get_sub(base, id)
  local set = base .. ':nb:' .. id
  local n = 0
  for _, did in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    redis.call('HDEL', base .. ':nd', did)
    redis.call('ZREM', base .. ':nw', did)
    redis.call('ZREM', base .. ':np', did)
    redis.call('ZREM', base .. ':nx', did)
    redis.call('ZREM', base .. ':nk', did)
    n = n + 1
  end
  redis.call('DEL', set)
  redis.call('HDEL', base .. ':ns', id)
  redis.call('ZREM', base .. ':no', id)
  redis.call('ZREM', base .. ':ne', id)
  if rec then
    if redis.call('HGET', base .. ':nu', rec[S_SUBSCRIBER]) == id then
      redis.call('HDEL', base .. ':nu', rec[S_SUBSCRIBER])
    end
    return n + 1, 1
  end
  return n, 0
end

-- A pending delivery due now. The id: the sequence (16 hex digits), the
-- caller's salt, '.', the queue's tag (so a bare id finds its queue).
local function new_delivery(base, seq, salt, tag, sub_id, kind, payload, now)
  local id = string.format('%016x', seq) .. salt .. '.' .. tag
  redis.call('HSET', base .. ':nd', id,
             cmsgpack.pack({sub_id, kind, payload, 0, now, 'p', false, seq, 0}))
  redis.call('ZADD', base .. ':nw', now, id)
  redis.call('ZADD', base .. ':np', seq, id)
  redis.call('ZADD', base .. ':nb:' .. sub_id, seq, id)
  return id
end

-- The earliest score of the due set (due time, or lease end), or false.
local function due_head(base)
  local head = redis.call('ZRANGE', base .. ':nw', 0, 0, 'WITHSCORES')
  if #head == 0 then return false end
  return head[2]
end
"""

# ARGV: now, seed, salt for a new queue, client_id, n, then n times (ttl,
# delay, body), then the notification sequence's seed, a delivery salt,
# the queue's tag and a request token ('' for none). Writes one MESSAGE
# delivery per message and live, confirmed subscription, and publishes on
# the queue's watch channel. Returns {created (0/1), first sequence, the
# queue's salt, deliveries}.
#
# The token makes a post sent twice store once: Redis Cluster's client
# sends a command again when the first try timed out, and on a stalled
# master both copies wait in its socket and both run once it resumes. The
# first run records its answer under the token for 60 seconds; a second
# run answers the same without writing. The copies run moments apart (they
# were queued together), so a minute is far more than enough.
POST = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local token = ARGV[#ARGV]
if token ~= '' then
  local seen = redis.call('GET', base .. ':r:' .. token)
  if seen then
    local c, f, w = string.match(seen, '^(%d+) (%d+) (%d+)$')
    return {tonumber(c), tonumber(f), queue_salt(base), tonumber(w)}
  end
end
local created = ensure_queue(base, ARGV[1], ARGV[3])
local salt = queue_salt(base)
local n = tonumber(ARGV[5])
local first = next_seqs(base, n, ARGV[2])
for k = 0, n - 1 do
  local j = 6 + 3 * k
  local rec = {now, now + tonumber(ARGV[j]), now + tonumber(ARGV[j + 1]), 0, '', 0, ARGV[4]}
  store(base, first + k, rec, ARGV[j + 2], salt)
end
local written = 0
-- One EXISTS for a queue nobody subscribed to.
if redis.call('EXISTS', base .. ':no') == 1 then
"""

POST_NOTIFY = r"""
  local targets = {}
  for _, sid in ipairs(redis.call('ZRANGE', base .. ':no', 0, -1)) do
    local sub = get_sub(base, sid)
    if sub and sub[S_EXPIRES] > now and sub[S_CONFIRMED] == 1 then
      targets[#targets + 1] = sid
    end
  end
  if #targets > 0 then
    local j0 = 6 + 3 * n
    local dsalt, tag = ARGV[j0 + 1], ARGV[j0 + 2]
    local seq = nseqs(base, n * #targets, ARGV[j0])
    for k = 0, n - 1 do
      local j = 6 + 3 * k
      local payload = '{"id":"' .. string.format('%016x', first + k) .. salt .. '","body":'
                      .. ARGV[j + 2] .. ',"ttl":' .. ARGV[j] .. '}'
      for _, sid in ipairs(targets) do
        new_delivery(base, seq, dsalt, tag, sid, 'message', payload, now)
        seq = seq + 1
      end
    end
    written = n * #targets
  end
end
redis.call('PUBLISH', base .. ':w', '')
if token ~= '' then
  -- %d: a sequence past 1e14 would lose digits through tostring
  redis.call('SET', base .. ':r:' .. token,
             string.format('%d %d %d', created, first, written), 'EX', 60)
end
return {created, first, salt, written}
"""

# ARGV: now, after (a sequence), limit, include_claimed, include_delayed,
# client_id to hide ('' hides none). Returns flat {id, record, body}*.
LIST = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local with_claimed, with_delayed, hide = ARGV[4] == '1', ARGV[5] == '1', ARGV[6]
local out, found = {}, 0
local set = ':i'
if not with_claimed then
  -- Only the free set: observers never wade through claimed messages.
  release_expired(base, ARGV[1])
  set = ':f'
end
walk(base, set, '(' .. ARGV[2], math.max(limit, 100), function(id, rec, raw)
  if rec[EXPIRES] > now
      and (with_claimed or not claimed(rec, now))
      and (with_delayed or rec[AVAILABLE] <= now)
      and (hide == '' or rec[CLIENT] ~= hide) then
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = body(base, id)
    found = found + 1
  end
  return found >= limit
end)
return out
"""

# ARGV: now, ids... Returns flat {id, record, body}* for the live ones.
GET = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local rec, raw = get_rec(base, ARGV[i])
  if rec and rec[EXPIRES] > now then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = raw
    out[#out + 1] = body(base, ARGV[i])
  end
end
return out
"""

# ARGV: now, strict (0/1), n, n claim ids, then message ids.
# All or none: returns 0 (deleted), 1 MessageIsClaimed, 2 ClaimDoesNotExist,
# 3 MessageNotClaimed.
DELETE = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local strict = ARGV[2] == '1'
local n = tonumber(ARGV[3])
local allowed = {}
for i = 4, 3 + n do allowed[ARGV[i]] = true end
local doomed = {}
for i = 4 + n, #ARGV do
  local rec = get_rec(base, ARGV[i])
  if rec and rec[EXPIRES] > now then
    if claimed(rec, now) then
      if not allowed[rec[CLAIM]] then
        if strict then return 2 end
        return 1
      end
    elseif strict then
      return 3
    end
    doomed[#doomed + 1] = ARGV[i]
  end
end
for _, id in ipairs(doomed) do remove(base, id) end
return 0
"""

# ARGV: now, limit. Returns flat {id, record, body}* of the removed messages.
POP = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local out, taken = {}, {}
release_expired(base, ARGV[1])
walk(base, ':f', '-inf', math.max(limit, 100), function(id, rec, raw)
  if rec[EXPIRES] > now and rec[AVAILABLE] <= now and not claimed(rec, now) then
    taken[#taken + 1] = id
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = body(base, id)
  end
  return #taken >= limit
end)
for _, id in ipairs(taken) do remove(base, id) end
return out
"""

# KEYS[2]: the dead letter queue's base when mode is 'local'.
# ARGV: now, claim_id, ttl, grace, limit, max_claim_count (0: no policy),
# mode ('drop', 'local' or 'remote'), dead letter queue name, its message
# ttl (0: keep the message's own), seed for the dead letter queue's sequence,
# salt should it be created.
# Returns {dlq_created, pending_moves, {id, record, body}*, moved}: moved
# counts the messages this claim sent to the dead letter queue, moved here
# or parked for the driver to finish (not those dropped).
CLAIM = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local claim_id, ttl, grace = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, max_count, mode = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local dlq_name, dlq_ttl, seed = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local claim_expires = now + ttl
local keep = claim_expires + grace
local out, ids = {}, {}
local dlq_created, pending, moved = 0, 0, 0

-- The claim id is drawn by the caller, once per claim: a claim that
-- exists already is this very claim sent again (Redis Cluster's client
-- retries a timed-out command), so it answers with what it holds and
-- claims nothing more.
local made = redis.call('HGET', base .. ':c', claim_id)
if made then
  for _, id in ipairs(cmsgpack.unpack(made)[5]) do
    local rec, rec_raw = get_rec(base, id)
    if rec and rec[CLAIM] == claim_id and rec[EXPIRES] > now then
      out[#out + 1] = id
      out[#out + 1] = rec_raw
      out[#out + 1] = body(base, id)
    end
  end
  return {0, 0, out, 0}
end

local function dead_letter(id, rec)
  if mode == 'local' then
    local dlq = KEYS[2]
    if ensure_queue(dlq, ARGV[1], ARGV[11]) == 1 then dlq_created = 1 end
    local expires = rec[EXPIRES]
    if dlq_ttl > 0 then expires = now + dlq_ttl end
    -- A new id at the dead letter queue's tail: observers paging it by
    -- marker see the message.
    store(dlq, next_seqs(dlq, 1, seed), {now, expires, now, 0, '', 0, rec[CLIENT]},
          body(base, id), queue_salt(dlq))
    remove(base, id)
    moved = moved + 1
  elseif mode == 'remote' then
    -- Another slot: park the message (invisible from now on) and let the
    -- driver finish the move: add to the dead letter queue, then delete.
    redis.call('HSET', base .. ':d', id, cmsgpack.pack({dlq_name, dlq_ttl, rec}))
    redis.call('HDEL', base .. ':m', id)
    redis.call('ZREM', base .. ':i', id)
    redis.call('ZREM', base .. ':f', id)
    redis.call('ZREM', base .. ':e', id)
    pending = pending + 1
    moved = moved + 1
  else
    remove(base, id)
  end
end

-- The free set holds no claimed message once expired claims are released,
-- so a claim never walks past the messages other consumers hold.
release_expired(base, ARGV[1])
walk(base, ':f', '-inf', math.max(limit, 100), function(id, rec, raw)
  if rec[EXPIRES] <= now or rec[AVAILABLE] > now or claimed(rec, now) then
    return false
  end
  if max_count > 0 and rec[COUNT] >= max_count then
    dead_letter(id, rec)
    return false
  end
  rec[CLAIM] = claim_id
  rec[CLAIM_EXPIRES] = claim_expires
  rec[COUNT] = rec[COUNT] + 1
  redis.call('ZREM', base .. ':f', id)
  if keep > rec[EXPIRES] then
    -- A claimed message outlives its claim by the grace period.
    rec[EXPIRES] = keep
    redis.call('ZADD', base .. ':e', keep, id)
  end
  ids[#ids + 1] = id
  out[#out + 1] = id
  out[#out + 1] = put_rec(base, id, rec)
  out[#out + 1] = body(base, id)
  return #ids >= limit
end)

if #ids > 0 then
  redis.call('HSET', base .. ':c', claim_id,
             cmsgpack.pack({ttl, grace, now, claim_expires, ids}))
  redis.call('ZADD', base .. ':ce', claim_expires, claim_id)
  redis.call('ZADD', base .. ':cl', claim_expires, claim_id)
end
return {dlq_created, pending, out, moved}
"""

# ARGV: now, claim_id. Returns false, or {claim record, {id, record, body}*}.
CLAIM_GET = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local raw = redis.call('HGET', base .. ':c', ARGV[2])
if not raw then return false end
local claim = cmsgpack.unpack(raw)
if claim[4] <= now then return false end
local out = {}
for _, id in ipairs(claim[5]) do
  local rec, rec_raw = get_rec(base, id)
  if rec and rec[CLAIM] == ARGV[2] and rec[CLAIM_EXPIRES] > now and rec[EXPIRES] > now then
    out[#out + 1] = id
    out[#out + 1] = rec_raw
    out[#out + 1] = body(base, id)
  end
end
return {raw, out}
"""

# ARGV: now, claim_id, ttl, grace. Returns 1, or 0 for no live claim.
CLAIM_UPDATE = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local claim_id, ttl, grace = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local raw = redis.call('HGET', base .. ':c', claim_id)
if not raw then return 0 end
local claim = cmsgpack.unpack(raw)
if claim[4] <= now then return 0 end
local claim_expires = now + ttl
local keep = claim_expires + grace
for _, id in ipairs(claim[5]) do
  local rec = get_rec(base, id)
  if rec and rec[CLAIM] == claim_id and rec[CLAIM_EXPIRES] > now then
    rec[CLAIM_EXPIRES] = claim_expires
    if keep > rec[EXPIRES] then
      rec[EXPIRES] = keep
      redis.call('ZADD', base .. ':e', keep, id)
    end
    put_rec(base, id, rec)
  end
end
redis.call('HSET', base .. ':c', claim_id,
           cmsgpack.pack({ttl, grace, now, claim_expires, claim[5]}))
redis.call('ZADD', base .. ':ce', claim_expires, claim_id)
redis.call('ZADD', base .. ':cl', claim_expires, claim_id)
return 1
"""

# ARGV: claim_id. Returns 1 if there was such a claim.
CLAIM_DELETE = r"""
return release(KEYS[1], ARGV[1])
"""

# ARGV: now. Returns {total live, claimed, oldest id, its record, newest id,
# its record}; false where there is none.
STATS = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local total = redis.call('ZCOUNT', base .. ':e', '(' .. ARGV[1], '+inf')
if total == 0 then return {0, 0, false, false, false, false} end
-- Once expired claims are released, a message outside the free set is
-- under a live claim (and so alive itself: it outlives its claim).
release_expired(base, ARGV[1])
local held = redis.call('ZCARD', base .. ':i') - redis.call('ZCARD', base .. ':f')
local function first_live(command)
  local start = 0
  while true do
    local ids = redis.call(command, base .. ':i', start, start + 99)
    for _, id in ipairs(ids) do
      local rec, raw = get_rec(base, id)
      if rec and rec[EXPIRES] > now then return id, raw end
    end
    if #ids < 100 then return false, false end
    start = start + 100
  end
end
local oldest, oldest_raw = first_live('ZRANGE')
local newest, newest_raw = first_live('ZREVRANGE')
return {total, held, oldest, oldest_raw, newest, newest_raw}
"""

# ARGV: metadata JSON, now, salt. Returns 1 if created, 0 if it existed.
CREATE_QUEUE = r"""
if redis.call('HSETNX', KEYS[1] .. ':q', 'meta', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1] .. ':q', 'created', ARGV[2], 'salt', ARGV[3])
  redis.call('PERSIST', KEYS[1] .. ':s')
  return 1
end
return 0
"""

# ARGV: metadata JSON. Returns 0 when the queue does not exist.
SET_METADATA = r"""
if redis.call('EXISTS', KEYS[1] .. ':q') == 0 then return 0 end
redis.call('HSET', KEYS[1] .. ':q', 'meta', ARGV[1])
return 1
"""

# ARGV: how long (seconds) the sequence outlives the queue, whether the
# subscriptions go too (0/1), then suffixes.
# The sequence stays a while so a queue made again soon after goes on with
# higher ids (markers held by clients never skip its new messages).
DELETE_QUEUE = r"""
if ARGV[2] == '1' then
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[1] .. ':no', 0, -1)) do
    redis.call('UNLINK', KEYS[1] .. ':nb:' .. sid)
  end
end
for i = 3, #ARGV do redis.call('UNLINK', KEYS[1] .. ARGV[i]) end
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1] .. ':s', ARGV[1]) end
return 1
"""

# ARGV: now, batch. Removes expired messages and claims (releasing what the
# claims still hold) and old dead-letter receipts (not counted: bookkeeping,
# not records a client saw). Returns {messages removed, claims removed, more,
# pending dead-letter moves}.
GC = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local batch = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', base .. ':e', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, id in ipairs(expired) do remove(base, id) end
local claims = redis.call('ZRANGEBYSCORE', base .. ':ce', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, claim_id in ipairs(claims) do release(base, claim_id) end
redis.call('ZREMRANGEBYSCORE', base .. ':dd', '-inf', ARGV[1])
local more = 0
if #expired == batch or #claims == batch then more = 1 end
return {#expired, #claims, more, redis.call('HLEN', base .. ':d')}
"""

# Step 1 of a cross-slot dead-letter move, on the source queue: the parked
# messages. ARGV: how many. Returns flat {id, parked entry, body}*.
DEAD_LETTER_TAKE = r"""
local out = {}
local parked = redis.call('HSCAN', KEYS[1] .. ':d', 0, 'COUNT', ARGV[1])[2]
for i = 1, #parked, 2 do
  out[#out + 1] = parked[i]
  out[#out + 1] = parked[i + 1]
  out[#out + 1] = body(KEYS[1], parked[i])
end
return out
"""

# Step 2, on the dead letter queue: add each message once. A receipt (the
# source queue and id) makes a repeated step 2 a no-op.
# ARGV: now, seed, salt, then (receipt, expires, client_id, body)*.
# Returns 1 if the dead letter queue was created.
DEAD_LETTER_PUT = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local created = ensure_queue(base, ARGV[1], ARGV[3])
local salt = queue_salt(base)
for j = 4, #ARGV, 4 do
  if not redis.call('ZSCORE', base .. ':dd', ARGV[j]) then
    local expires = tonumber(ARGV[j + 1])
    store(base, next_seqs(base, 1, ARGV[2]), {now, expires, now, 0, '', 0, ARGV[j + 2]},
          ARGV[j + 3], salt)
    redis.call('ZADD', base .. ':dd', math.max(expires, now + 1), ARGV[j])
  end
end
return created
"""

# Step 3, on the source queue: forget the moved messages. ARGV: ids.
DEAD_LETTER_DONE = r"""
for i = 1, #ARGV do
  redis.call('HDEL', KEYS[1] .. ':d', ARGV[i])
  redis.call('HDEL', KEYS[1] .. ':b', ARGV[i])
end
return #ARGV
"""


# --- subscriptions ----------------------------------------------------------
#
# A subscription record (:ns) is a msgpack array
#   {created (start of its ttl), expires, ttl, confirmed (0/1), subscriber,
#    options (JSON), sequence}
# and it is live while expires > now.

# ARGV: now, ttl, subscriber, options JSON, confirmed (0/1), seed, salt,
# then optionally a sequence reserved with NSEQ_RESERVE (the id is then known
# beforehand), a CONFIRMATION delivery's payload JSON, its salt and the tag.
# Returns the new id, or false when the subscriber has a live subscription.
SUB_CREATE = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local old = redis.call('HGET', base .. ':nu', ARGV[3])
if old then
  if live_sub(base, old, now) then
    -- Its id ends with this call's random salt: it is this very create,
    -- sent again by Redis Cluster's client, and answers the same.
    if string.sub(old, -#ARGV[7]) == ARGV[7] then return old end
    return false
  end
  drop_sub(base, old)
end
local seq
if ARGV[8] and ARGV[8] ~= '' then seq = tonumber(ARGV[8]) else seq = nseqs(base, 1, ARGV[6]) end
local id = string.format('%016x', seq) .. ARGV[7]
local ttl = tonumber(ARGV[2])
put_sub(base, id, {now, now + ttl, ttl, tonumber(ARGV[5]), ARGV[3], ARGV[4], seq})
redis.call('ZADD', base .. ':no', seq, id)
redis.call('HSET', base .. ':nu', ARGV[3], id)
if ARGV[9] and ARGV[9] ~= '' then
  new_delivery(base, nseqs(base, 1, ARGV[6]), ARGV[10], ARGV[11], id, 'confirmation',
               ARGV[9], now)
end
return id
"""

# ARGV: seed. A sequence number for a subscription created later (SUB_CREATE).
NSEQ_RESERVE = r"""
return nseqs(KEYS[1], 1, ARGV[1])
"""

# ARGV: now, id. Returns the live record or false.
SUB_GET = r"""
local rec, raw = live_sub(KEYS[1], ARGV[2], tonumber(ARGV[1]))
return raw or false
"""

# ARGV: now, subscriber. Returns {id, record} or false.
SUB_FIND = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local id = redis.call('HGET', base .. ':nu', ARGV[2])
if not id then return false end
local rec, raw = live_sub(base, id, now)
if not rec then return false end
return {id, raw}
"""

# ARGV: now, after (a sequence), limit. Returns flat {id, record}*.
SUB_LIST = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local out, found, low = {}, 0, '(' .. ARGV[2]
while found < limit do
  local page = redis.call('ZRANGEBYSCORE', base .. ':no', low, '+inf',
                          'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #page, 2 do
    local rec, raw = live_sub(base, page[i], now)
    if rec then
      out[#out + 1] = page[i]
      out[#out + 1] = raw
      found = found + 1
      if found >= limit then break end
    end
  end
  if #page < 200 then break end
  low = '(' .. page[#page]
end
return out
"""

# ARGV: now, id, has subscriber (0/1), subscriber, has ttl, ttl, has
# options, options JSON. Returns 0 (done), 1 (no live subscription), 2
# (another live subscription has the subscriber: nothing changed).
SUB_UPDATE = r"""
local base, now, id = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local rec = live_sub(base, id, now)
if not rec then return 1 end
if ARGV[3] == '1' and ARGV[4] ~= rec[S_SUBSCRIBER] then
  local holder = redis.call('HGET', base .. ':nu', ARGV[4])
  if holder and holder ~= id then
    if live_sub(base, holder, now) then return 2 end
    drop_sub(base, holder)
  end
  if redis.call('HGET', base .. ':nu', rec[S_SUBSCRIBER]) == id then
    redis.call('HDEL', base .. ':nu', rec[S_SUBSCRIBER])
  end
  redis.call('HSET', base .. ':nu', ARGV[4], id)
  rec[S_SUBSCRIBER] = ARGV[4]
end
if ARGV[5] == '1' then
  local ttl = tonumber(ARGV[6])
  rec[S_CREATED], rec[S_TTL], rec[S_EXPIRES] = now, ttl, now + ttl
end
if ARGV[7] == '1' then rec[S_OPTIONS] = ARGV[8] end
put_sub(base, id, rec)
return 0
"""

# ARGV: now, id, confirmed (0/1). Returns 0 when there is no live one.
SUB_CONFIRM = r"""
local base = KEYS[1]
local rec = live_sub(base, ARGV[2], tonumber(ARGV[1]))
if not rec then return 0 end
rec[S_CONFIRMED] = tonumber(ARGV[3])
put_sub(base, ARGV[2], rec)
return 1
"""

# ARGV: id. Drops the subscription (live or not) with its deliveries.
# Returns {records removed, due head}.
SUB_DELETE = r"""
local base = KEYS[1]
local removed = 0
if redis.call('HEXISTS', base .. ':ns', ARGV[1]) == 1 then removed = drop_sub(base, ARGV[1]) end
return {removed, due_head(base)}
"""

# --- deliveries -------------------------------------------------------------
#
# A delivery record (:nd) is a msgpack array
#   {subscription id, kind, payload (JSON), attempts, created,
#    status ('p' pending, 'd' dead), last error (false: none), sequence,
#    time of death (0 while pending)}

# ARGV: now, subscription id, kind, payload JSON, seed, salt, tag.
# Returns the id, or false when there is no live subscription.
DELIVERY_ENQUEUE = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
if not live_sub(base, ARGV[2], now) then return false end
return new_delivery(base, nseqs(base, 1, ARGV[5]), ARGV[6], ARGV[7], ARGV[2], ARGV[3],
                    ARGV[4], now)
"""

# ARGV: now, lease end, limit. Leases up to limit due, unleased deliveries
# of live subscriptions, oldest due first; drops those whose subscription
# expired or is gone. Returns {flat {id, record, subscription record, due}*,
# due head}.
DELIVERY_LEASE = r"""
local base, now, lease_end = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local limit = tonumber(ARGV[3])
local out, taken, rounds = {}, 0, 0
-- Each round leases or drops what it reads (the lease end is in the
-- future), so the next round reads on; the bound is a safety net.
while taken < limit and rounds < 100 do
  rounds = rounds + 1
  local page = redis.call('ZRANGEBYSCORE', base .. ':nw', '-inf', ARGV[1],
                          'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #page, 2 do
    local id = page[i]
    local rec, raw = get_delivery(base, id)
    if not rec then
      redis.call('ZREM', base .. ':nw', id)
    else
      local sub, sub_raw = live_sub(base, rec[D_SUB], now)
      if not sub then
        drop_delivery(base, id, rec)
      else
        redis.call('ZADD', base .. ':nw', lease_end, id)
        out[#out + 1] = id
        out[#out + 1] = raw
        out[#out + 1] = sub_raw
        out[#out + 1] = page[i + 1]
        taken = taken + 1
        if taken >= limit then break end
      end
    end
  end
  if #page < 200 then break end
end
return {out, due_head(base)}
"""

# Gives back deliveries a lease took but the caller does not want (it
# leased several queues and keeps the oldest). ARGV: lease end, then
# (id, due)*: each goes back to its due time if that lease still holds it.
DELIVERY_RELEASE = r"""
local base, lease_end = KEYS[1], tonumber(ARGV[1])
for j = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', base .. ':nw', ARGV[j])
  if score and tonumber(score) == lease_end then
    redis.call('ZADD', base .. ':nw', ARGV[j + 1], ARGV[j])
  end
end
return due_head(base)
"""

# ARGV: id. Returns {1 if it was there, due head}.
DELIVERY_DONE = r"""
local base = KEYS[1]
local rec = get_delivery(base, ARGV[1])
if not rec then return {0, false} end
drop_delivery(base, ARGV[1], rec)
return {1, due_head(base)}
"""

# ARGV: now, id, due again at, error. A pending delivery only.
# Returns 1 if retried.
DELIVERY_RETRY = r"""
local base = KEYS[1]
local rec = get_delivery(base, ARGV[2])
if not rec or rec[D_STATUS] ~= 'p' then return 0 end
rec[D_ATTEMPTS] = rec[D_ATTEMPTS] + 1
rec[D_ERROR] = ARGV[4]
redis.call('HSET', base .. ':nd', ARGV[2], cmsgpack.pack(rec))
redis.call('ZADD', base .. ':nw', ARGV[3], ARGV[2])
return 1
"""

# ARGV: now, id, error. A pending delivery only. Returns {1 if it died,
# due head}.
DELIVERY_DEAD = r"""
local base, now, id = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local rec = get_delivery(base, id)
if not rec or rec[D_STATUS] ~= 'p' then return {0, false} end
rec[D_ATTEMPTS] = rec[D_ATTEMPTS] + 1
rec[D_ERROR] = ARGV[3]
rec[D_STATUS] = 'd'
rec[D_DIED] = now
redis.call('HSET', base .. ':nd', id, cmsgpack.pack(rec))
redis.call('ZREM', base .. ':nw', id)
redis.call('ZREM', base .. ':np', id)
redis.call('ZADD', base .. ':nx', rec[D_SEQ], id)
redis.call('ZADD', base .. ':nk', now, id)
return {1, due_head(base)}
"""

# ARGV: status ('p' or 'd'), after (a sequence), limit, subscription id
# ('' for all). Returns flat {id, record, subscription record}* in creation
# order.
DELIVERY_LIST = r"""
local base, status, limit, sid = KEYS[1], ARGV[1], tonumber(ARGV[3]), ARGV[4]
local set = ':np'
if status == 'd' then set = ':nx' end
if sid ~= '' then set = ':nb:' .. sid end
local out, found, low = {}, 0, '(' .. ARGV[2]
while found < limit do
  local page = redis.call('ZRANGEBYSCORE', base .. set, low, '+inf',
                          'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #page, 2 do
    local rec, raw = get_delivery(base, page[i])
    if rec and rec[D_STATUS] == status then
      local sub, sub_raw = get_sub(base, rec[D_SUB])
      if sub then
        out[#out + 1] = page[i]
        out[#out + 1] = raw
        out[#out + 1] = sub_raw
        found = found + 1
        if found >= limit then break end
      end
    end
  end
  if #page < 200 then break end
  low = '(' .. page[#page]
end
return out
"""

# ARGV: now, dead deliveries older than this go, batch. Removes expired
# subscriptions (with their deliveries) and old dead deliveries.
# Returns {subscriptions removed, deliveries removed, more (0/1), due head,
# nothing left (0/1)}.
NOTIFY_GC = r"""
local base, batch = KEYS[1], tonumber(ARGV[3])
local subscriptions, deliveries = 0, 0
local subs = redis.call('ZRANGEBYSCORE', base .. ':ne', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, sid in ipairs(subs) do
  local records, had = drop_sub(base, sid)
  subscriptions = subscriptions + had
  deliveries = deliveries + records - had
end
local dead = redis.call('ZRANGEBYSCORE', base .. ':nk', '-inf', ARGV[2], 'LIMIT', 0, batch)
for _, id in ipairs(dead) do
  local rec = get_delivery(base, id)
  if rec then drop_delivery(base, id, rec) else redis.call('ZREM', base .. ':nk', id) end
  deliveries = deliveries + 1
end
local more = 0
if #subs == batch or #dead == batch then more = 1 end
local empty = 0
if redis.call('EXISTS', base .. ':ns') == 0 and redis.call('EXISTS', base .. ':nd') == 0 then
  -- A later sequence starts again from the clock, past every id issued.
  redis.call('DEL', base .. ':nq')
  empty = 1
end
return {subscriptions, deliveries, more, due_head(base), empty}
"""


class Script:
    """One Lua script, run by EVALSHA with a fallback to EVAL.

    Not redis-py's register_script: EVAL on a NOSCRIPT reply loads the
    script on whichever Cluster node owns the key, with no SCRIPT LOAD
    broadcast to get wrong.
    """

    def __init__(self, name: str, source: str, *, writes: bool = True) -> None:
        self.name = name
        # Whether a client's change rides on it: ``?replicas=N`` waits for
        # replicas after these only (a listing tidies expired claims, but
        # nothing a client was told about depends on that write).
        self.writes = writes
        self.source = f"-- tidings: {name}\n{source}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


def _script(name: str, *parts: str, writes: bool = True) -> Script:
    return Script(name, "\n".join(parts), writes=writes)


post = _script("post", LIB, POST, NOTIFY_LIB, POST_NOTIFY)
list_messages = _script("list", LIB, LIST, writes=False)
get = _script("get", LIB, GET, writes=False)
delete = _script("delete", LIB, DELETE)
pop = _script("pop", LIB, POP)
claim = _script("claim", LIB, CLAIM)
claim_get = _script("claim_get", LIB, CLAIM_GET, writes=False)
claim_update = _script("claim_update", LIB, CLAIM_UPDATE)
claim_delete = _script("claim_delete", LIB, CLAIM_DELETE)
stats = _script("stats", LIB, STATS, writes=False)
create_queue = _script("create_queue", CREATE_QUEUE)
set_metadata = _script("set_metadata", SET_METADATA)
delete_queue = _script("delete_queue", DELETE_QUEUE)
gc = _script("gc", LIB, GC)
dead_letter_take = _script("dead_letter_take", LIB, DEAD_LETTER_TAKE)
dead_letter_put = _script("dead_letter_put", LIB, DEAD_LETTER_PUT)
dead_letter_done = _script("dead_letter_done", DEAD_LETTER_DONE)
sub_create = _script("sub_create", NOTIFY_LIB, SUB_CREATE)
nseq_reserve = _script("nseq_reserve", NOTIFY_LIB, NSEQ_RESERVE)
sub_get = _script("sub_get", NOTIFY_LIB, SUB_GET, writes=False)
sub_find = _script("sub_find", NOTIFY_LIB, SUB_FIND, writes=False)
sub_list = _script("sub_list", NOTIFY_LIB, SUB_LIST, writes=False)
sub_update = _script("sub_update", NOTIFY_LIB, SUB_UPDATE)
sub_confirm = _script("sub_confirm", NOTIFY_LIB, SUB_CONFIRM)
sub_delete = _script("sub_delete", NOTIFY_LIB, SUB_DELETE)
delivery_enqueue = _script("delivery_enqueue", NOTIFY_LIB, DELIVERY_ENQUEUE)
delivery_lease = _script("delivery_lease", NOTIFY_LIB, DELIVERY_LEASE)
delivery_release = _script("delivery_release", NOTIFY_LIB, DELIVERY_RELEASE)
delivery_done = _script("delivery_done", NOTIFY_LIB, DELIVERY_DONE)
delivery_retry = _script("delivery_retry", NOTIFY_LIB, DELIVERY_RETRY)
delivery_dead = _script("delivery_dead", NOTIFY_LIB, DELIVERY_DEAD)
delivery_list = _script("delivery_list", NOTIFY_LIB, DELIVERY_LIST, writes=False)
notify_gc = _script("notify_gc", NOTIFY_LIB, NOTIFY_GC)
