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

# ARGV: now, seed, salt for a new queue, client_id, n, then n times (ttl,
# delay, body). Returns {created (0/1), first sequence, the queue's salt}.
POST = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local created = ensure_queue(base, ARGV[1], ARGV[3])
local salt = queue_salt(base)
local n = tonumber(ARGV[5])
local first = next_seqs(base, n, ARGV[2])
for k = 0, n - 1 do
  local j = 6 + 3 * k
  local rec = {now, now + tonumber(ARGV[j]), now + tonumber(ARGV[j + 1]), 0, '', 0, ARGV[4]}
  store(base, first + k, rec, ARGV[j + 2], salt)
end
return {created, first, salt}
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
# Returns {dlq_created, pending_moves, {id, record, body}*}.
CLAIM = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local claim_id, ttl, grace = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, max_count, mode = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local dlq_name, dlq_ttl, seed = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local claim_expires = now + ttl
local keep = claim_expires + grace
local out, ids = {}, {}
local dlq_created, pending = 0, 0

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
  elseif mode == 'remote' then
    -- Another slot: park the message (invisible from now on) and let the
    -- driver finish the move: add to the dead letter queue, then delete.
    redis.call('HSET', base .. ':d', id, cmsgpack.pack({dlq_name, dlq_ttl, rec}))
    redis.call('HDEL', base .. ':m', id)
    redis.call('ZREM', base .. ':i', id)
    redis.call('ZREM', base .. ':f', id)
    redis.call('ZREM', base .. ':e', id)
    pending = pending + 1
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
return {dlq_created, pending, out}
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

# ARGV: how long (seconds) the sequence outlives the queue, then suffixes.
# The sequence stays a while so a queue made again soon after goes on with
# higher ids (markers held by clients never skip its new messages).
DELETE_QUEUE = r"""
for i = 2, #ARGV do redis.call('UNLINK', KEYS[1] .. ARGV[i]) end
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1] .. ':s', ARGV[1]) end
return 1
"""

# ARGV: now, batch. Removes expired messages and claims (releasing what the
# claims still hold) and old dead-letter receipts. Returns {removed, more,
# pending dead-letter moves}.
GC = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local batch = tonumber(ARGV[2])
local removed = 0
local expired = redis.call('ZRANGEBYSCORE', base .. ':e', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  remove(base, id)
  removed = removed + 1
end
local claims = redis.call('ZRANGEBYSCORE', base .. ':ce', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, claim_id in ipairs(claims) do
  release(base, claim_id)
  removed = removed + 1
end
redis.call('ZREMRANGEBYSCORE', base .. ':dd', '-inf', ARGV[1])
local more = 0
if #expired == batch or #claims == batch then more = 1 end
return {removed, more, redis.call('HLEN', base .. ':d')}
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


class Script:
    """One Lua script, run by EVALSHA with a fallback to EVAL.

    Not redis-py's register_script: EVAL on a NOSCRIPT reply loads the
    script on whichever Cluster node owns the key, with no SCRIPT LOAD
    broadcast to get wrong.
    """

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = f"-- tidings: {name}\n{source}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


def _script(name: str, *parts: str) -> Script:
    return Script(name, "\n".join(parts))


post = _script("post", LIB, POST)
list_messages = _script("list", LIB, LIST)
get = _script("get", LIB, GET)
delete = _script("delete", LIB, DELETE)
pop = _script("pop", LIB, POP)
claim = _script("claim", LIB, CLAIM)
claim_get = _script("claim_get", LIB, CLAIM_GET)
claim_update = _script("claim_update", LIB, CLAIM_UPDATE)
claim_delete = _script("claim_delete", LIB, CLAIM_DELETE)
stats = _script("stats", LIB, STATS)
create_queue = _script("create_queue", CREATE_QUEUE)
set_metadata = _script("set_metadata", SET_METADATA)
delete_queue = _script("delete_queue", DELETE_QUEUE)
gc = _script("gc", LIB, GC)
dead_letter_take = _script("dead_letter_take", LIB, DEAD_LETTER_TAKE)
dead_letter_put = _script("dead_letter_put", LIB, DEAD_LETTER_PUT)
dead_letter_done = _script("dead_letter_done", DEAD_LETTER_DONE)
