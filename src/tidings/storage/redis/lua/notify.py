"""Subscriptions and deliveries (the :n* keys, see keys.py)."""

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
