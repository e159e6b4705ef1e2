-- Per-invoice order across Celery batches: one call per batch claims its invoices, one call
-- after its push records what VTEX confirmed and lets the claims go. Atomic, on Redis' clock.
--
-- One hash per invoice (KEYS[i], a digest: no ids, bodies or credentials):
--   d  the highest stamp VTEX confirmed for the invoice
--   c  the stamp of a batch that may be sending the invoice now (a claim)
--   e  when that claim lapses (Redis time, ms)
-- Stamps are integers below 2^53 (microseconds), exact as Lua numbers; they are stored as the
-- caller's strings, never formatted by Lua. A key of another type, or a field that is not a
-- number, is garbage and treated as absent.
--
-- ARGV[1] = 'claim': ARGV[2] lease_ms, ARGV[3] ttl_ms, ARGV[4] force (1/0), then per key the
--   batch's newest stamp of that invoice. Returns per key two values:
--     0, floor   go: claimed; the batch's items of the invoice older than floor (a stamp, or
--                '' for none) are superseded, the others are sent
--     1, ''      stale: a newer stamp was confirmed, or is claimed by a batch in flight
--     2, wait    busy: an older stamp is claimed by a batch in flight for another wait ms
--                (with force: taken over, answered as go with that older stamp as floor)
-- ARGV[1] = 'release': ARGV[2] ttl_ms, then per key two values: the stamp claimed, and the
--   highest stamp confirmed by the batch ('' for none). Returns per key 1 when a newer stamp
--   than the one confirmed had been confirmed meanwhile (the claim was taken over or lapsed:
--   the older body may have reached VTEX after the newer one), else 0.

local mode = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- The invoice's hash as numbers (nil: absent or garbage) and the raw strings of d and c.
local function open(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' then
    if kind ~= 'none' then
      redis.call('DEL', key)
    end
    return nil, nil, nil, nil, nil
  end
  local fields = redis.call('HMGET', key, 'd', 'c', 'e')
  return tonumber(fields[1]), tonumber(fields[2]), tonumber(fields[3]), fields[1], fields[2]
end

local out = {}
if mode == 'claim' then
  local lease, ttl, force = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
  for i, key in ipairs(KEYS) do
    local raw = ARGV[4 + i]
    local stamp = tonumber(raw)
    local d, c, e, d_raw, c_raw = open(key)
    if c ~= nil and (e == nil or e <= now) then
      c = nil -- no live claim: none, or one that lapsed (its batch died or overran)
    end
    if (d ~= nil and stamp < d) or (c ~= nil and c > stamp) then
      out[#out + 1] = 1
      out[#out + 1] = ''
    elseif c ~= nil and c < stamp and not force then
      out[#out + 1] = 2
      out[#out + 1] = tostring(math.max(0, e - now))
    else
      -- Go: the floor is the highest stamp confirmed, or, when an older claim is taken
      -- over, that claim's stamp if higher (the batch in flight may still send it).
      local floor = d ~= nil and d_raw or ''
      if c ~= nil and c < stamp and (d == nil or c > d) then
        floor = c_raw
      end
      if d == nil then
        redis.call('HDEL', key, 'd') -- garbage in d, if any, goes
      end
      redis.call('HSET', key, 'c', raw, 'e', tostring(now + lease))
      redis.call('PEXPIRE', key, ttl)
      out[#out + 1] = 0
      out[#out + 1] = floor
    end
  end
elseif mode == 'release' then
  local ttl = tonumber(ARGV[2])
  for i, key in ipairs(KEYS) do
    local claimed, confirmed = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
    local d, c = open(key)
    local mine = tonumber(confirmed)
    local overtaken = 0
    if mine ~= nil then
      if d == nil or mine > d then
        redis.call('HSET', key, 'd', confirmed)
      elseif d > mine then
        overtaken = 1
      end
    end
    if c ~= nil and c == tonumber(claimed) then
      redis.call('HDEL', key, 'c', 'e')
    end
    if redis.call('EXISTS', key) == 1 then
      redis.call('PEXPIRE', key, ttl)
    end
    out[#out + 1] = overtaken
  end
end
return out
