"""Queues: stats, create, metadata, delete, gc."""

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
remove_all(base, expired)
local claims = redis.call('ZRANGEBYSCORE', base .. ':ce', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, claim_id in ipairs(claims) do release(base, claim_id) end
redis.call('ZREMRANGEBYSCORE', base .. ':dd', '-inf', ARGV[1])
local more = 0
if #expired == batch or #claims == batch then more = 1 end
return {#expired, #claims, more, redis.call('HLEN', base .. ':d')}
"""
