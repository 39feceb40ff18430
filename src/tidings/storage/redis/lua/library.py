"""The functions the scripts share, prepended to those that use them.

A blank line ends each function or constant, with its comment, at the top
level (and nowhere inside one): scripts.py keeps in a script only the
parts it uses.
"""

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

-- A message id: the sequence (16 hex digits, so ids sort like sequences,
-- and walk reads it back) and the queue's salt.
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

-- fn(...) with the items of list, UNPACK_MAX at a time: a command for
-- many items takes them as arguments, and the stack that unpack fills is
-- bounded. UNPACK_MAX is even, so flat pairs (an HSET's field, value)
-- stay whole.
local UNPACK_MAX = 1000
local function in_parts(list, fn)
  for first = 1, #list, UNPACK_MAX do
    fn(unpack(list, first, math.min(first + UNPACK_MAX - 1, #list)))
  end
end

-- Removes the messages of ids: five commands for all of them, where one
-- call each cost a bulk delete of ten a third of its time. One id (a
-- single delete, the commonest) takes remove's plain calls: through
-- unpack it cost 3 % more.
local function remove_all(base, ids)
  if #ids == 1 then return remove(base, ids[1]) end
  in_parts(ids, function(...)
    redis.call('HDEL', base .. ':m', ...)
    redis.call('HDEL', base .. ':b', ...)
    redis.call('ZREM', base .. ':i', ...)
    redis.call('ZREM', base .. ':f', ...)
    redis.call('ZREM', base .. ':e', ...)
  end)
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
-- The first page holds `need` entries, what the caller wants when every
-- entry qualifies (the common case: a page of 100 cost a claim of ten a
-- third of its time, turning entries it never visits into Lua strings);
-- a page doubles, up to WALK_PAGE, each time entries are skipped. Pages
-- come without scores, which nearly doubled a page's cost: the next page
-- starts after the last entry's sequence, read from its id (see store),
-- which holds even when visit took the entry out of the set.
local WALK_PAGE = 256
local function walk(base, set, low, need, visit)
  local key, chunk = base .. set, math.max(need, 1)
  while true do
    local page = redis.call('ZRANGEBYSCORE', key, low, '+inf', 'LIMIT', 0, chunk)
    for i = 1, #page do
      local rec, raw = get_rec(base, page[i])
      if rec and visit(page[i], rec, raw) then return end
    end
    if #page < chunk then return end
    -- %d: tostring would round a sequence past 1e14
    low = string.format('(%d', tonumber(string.sub(page[#page], 1, 16), 16))
    chunk = math.min(chunk * 2, WALK_PAGE)
  end
end

local function body(base, id)
  return redis.call('HGET', base .. ':b', id)
end

"""

# The notification helpers: in POST only on the branch of a queue with
# subscriptions, where the definitions run only when needed.
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
