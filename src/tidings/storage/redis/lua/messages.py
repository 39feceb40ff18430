"""Messages: post, list, get, delete, pop."""

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
walk(base, set, '(' .. ARGV[2], limit, function(id, rec, raw)
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
remove_all(base, doomed)
return 0
"""

# ARGV: now, limit. Returns flat {id, record, body}* of the removed messages.
POP = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local out, taken = {}, {}
release_expired(base, ARGV[1])
walk(base, ':f', '-inf', limit, function(id, rec, raw)
  if rec[EXPIRES] > now and rec[AVAILABLE] <= now and not claimed(rec, now) then
    taken[#taken + 1] = id
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = body(base, id)
  end
  return #taken >= limit
end)
remove_all(base, taken)
return out
"""
