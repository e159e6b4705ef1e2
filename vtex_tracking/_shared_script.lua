-- One VTEX account's pace, shared by every process that points at this Redis.
--
-- Called once per lease of tokens (and, while no rate is known, a few times a second), with
-- what the caller saw since its last call. Everything happens here, atomically, on Redis'
-- clock: the token schedule (GCRA with reservations), the learned rate (the SDK's adaptive
-- rate: probe, measure, CUBIC; see _throttle.AdaptiveRate, which this mirrors, except for
-- the fast start and its first throttle, and the caller's gentler CUBIC scale), the pause
-- after a long Retry-After, and the stop after refused credentials. No credentials are kept:
-- the key names the account's host, the fields are numbers.
--
-- KEYS[1]  the account's hash
-- ARGV     want, ok, throttled, pause_s, auth_failures, rtt_s, ttl_ms, auth_to_stop,
--          auth_cooldown_s, ceiling (0: none), adaptive (1/0), and the adaptive constants
--          min_rate, beta, scale, probe_floor, probe_doubling, probe_backoff, measure_time,
--          cooldown, and the generation of the learned rate the caller knew when it sent the
--          throttled requests (throttles of requests sent before a change are echoes), and
--          the number of auth stops the caller knew of at its last success, the rate all
--          callers start from together and how fast it doubles until the first throttle,
--          and the caller's id (processes seen in the last 10 s are counted), and the rate
--          the caller last heard of (0: none), which a new hash starts from
-- Returns  {granted, first_ms, interval_us, rate_milli (-1: none), paused_ms, auth_ms, gen,
--          authn (auth stops so far), processes (callers seen in the last 10 s)}:
--          token i (from 0) may be used max(0, first_ms + i * interval_us / 1000) ms from now
--          (first_ms is negative while the bucket holds a burst); with granted 0 and a rate,
--          first_ms says when to ask again; gen counts the learned rate's changes of state.

local key = KEYS[1]
local want = tonumber(ARGV[1])
local ok = tonumber(ARGV[2])
local throttled = tonumber(ARGV[3])
local pause = tonumber(ARGV[4])
local auth_failures = tonumber(ARGV[5])
local rtt = tonumber(ARGV[6])
local ttl_ms = tonumber(ARGV[7])
local auth_to_stop = tonumber(ARGV[8])
local auth_cooldown = tonumber(ARGV[9])
local ceiling = tonumber(ARGV[10])
local adaptive = ARGV[11] == '1'
local MIN_RATE = tonumber(ARGV[12])
local BETA = tonumber(ARGV[13])
local SCALE = tonumber(ARGV[14])
local PROBE_FLOOR = tonumber(ARGV[15])
local PROBE_DOUBLING = tonumber(ARGV[16])
local PROBE_BACKOFF = tonumber(ARGV[17])
local MEASURE_TIME = tonumber(ARGV[18])
local COOLDOWN = tonumber(ARGV[19])
local gen_known = tonumber(ARGV[20])
local auth_known = tonumber(ARGV[21])
local START_RATE = tonumber(ARGV[22])
local START_DOUBLING = tonumber(ARGV[23])
local caller = ARGV[24]
local known_rate = tonumber(ARGV[25]) or 0
local PROCESS_TTL = 10
-- At the fast start's first throttle: the share of its rate taken as the account's limit,
-- and the seconds nothing is due so the server's bucket refills. When Redis lost a rate a
-- caller knew: the share of it the account resumes at (see below).
local FIRST_BACKOFF = 0.6
local FIRST_GAP = 0.2
local RESUME_SHARE = 0.6

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local s = {}
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do
  s[flat[i]] = tonumber(flat[i + 1]) or flat[i + 1]
end

if s.born == nil then
  s.born = now
  s.okt = 0
  s.ign = 0
  s.pu = 0
  s.authf = 0
  s.authu = 0
  if adaptive and known_rate > 0 then
    -- Redis lost the account (restarted empty, or the key expired) while the caller knew
    -- its rate: go on with CUBIC towards that rate rather than learn it again from the fast
    -- start, whose first throttle would come at once (the processes that went on alone keep
    -- the server's bucket empty) and leave the rate far below the limit for seconds. It
    -- resumes at RESUME_SHARE of the rate, placed on CUBIC's curve (its start in the future)
    -- so it is back just below in about three seconds: until every process has rejoined,
    -- those still alone send their share besides.
    s.st = 'c'
    s.fast = 0
    s.wmax = known_rate
    s.rate = math.max(MIN_RATE, known_rate * RESUME_SHARE)
    local k = (s.wmax * (1 - BETA) / SCALE) ^ (1 / 3)
    s.since = now + ((1 - RESUME_SHARE) * s.wmax / SCALE) ^ (1 / 3) - k
  elseif adaptive then
    -- Many processes may start at once against an unknown limit: together they start at
    -- START_RATE and double every START_DOUBLING seconds until the first throttle (a probe
    -- from the first request), rather than each sending unpaced.
    s.st = 'p'
    s.since = now
    s.base = START_RATE
    s.fast = 1
    s.rate = START_RATE
  else
    s.st = 'u'
  end
end
if ceiling > 0 and (s.rate == nil or s.rate > ceiling) then
  s.rate = ceiling  -- the strictest rate_limit of the processes sharing the account wins
end

local function enter(state)
  s.st = state
  s.since = now
  -- Callers count throttles only for requests sent after they heard of this change.
  s.gen = (tonumber(s.gen) or 0) + 1
  -- Answers to requests sent before the change keep arriving for about a round trip.
  s.ign = now + math.max(COOLDOWN, 1.2 * rtt)
end

local function set_rate(rate)
  rate = math.max(MIN_RATE, rate)
  if ceiling > 0 then rate = math.min(rate, ceiling) end
  -- Tokens already promised are a debt in tokens, not in seconds: at a new rate it is paid
  -- sooner (or later), so the schedule does not stay stuck at a slow rate's pace.
  local tat = tonumber(s.tat)
  if tat ~= nil and s.rate ~= nil and tat > now then
    s.tat = now + (tat - now) * s.rate / rate
  end
  s.rate = rate
end

local function measure_time()
  return math.max(MEASURE_TIME, 2 * rtt)
end

local function finish_measure()
  if s.mthr == 0 then
    -- No pushback while holding the rate: it measured our own pace, not the server's.
    if s.from == 'p' then
      s.base = s.rate or PROBE_FLOOR
      enter('p')
    else
      s.wmax = s.entry
      enter('c')
      set_rate(s.wmax * BETA)
    end
    return
  end
  s.wmax = math.max(MIN_RATE, s.mok / (now - s.since))
  enter('c')
  set_rate(s.wmax * BETA)
end

-- Credentials: a success anywhere ends a stop (unless it happened before the caller heard
-- of the stop); refusals in a row start one.
s.authn = tonumber(s.authn) or 0
if ok > 0 and auth_known >= s.authn then
  s.authf = 0
  s.authu = 0
end
if auth_failures > 0 then
  s.authf = s.authf + auth_failures
  if s.authf >= auth_to_stop and s.authu <= now then
    s.authu = now + auth_cooldown
    s.authn = s.authn + 1
  end
end
if pause > 0 then
  s.pu = math.max(s.pu, now + pause)
end

-- The learned rate, from everyone's answers.
s.okt = s.okt + ok
if adaptive then
  if throttled > 0 and now >= s.ign and gen_known >= (tonumber(s.gen) or 0) then
    if s.st == 'u' or tonumber(s.fast) == 1 then
      s.fast = 0
      if s.rate == nil then
        -- The first throttle, no rate known (the account was unpaced): restart from what got
        -- through so far (floored at one second, so the burst the server allowed does not
        -- pass for its rate), probing as usual.
        s.tat = now
        local elapsed = math.max(now - s.born, 1.0)
        s.base = math.max(PROBE_FLOOR, s.okt / elapsed)
        enter('p')
        set_rate(s.base)
      else
        -- The first throttle of the fast start. The server's burst hid its limit until the
        -- rate had run past it, about twice over: take FIRST_BACKOFF of that rate as the
        -- limit and go on with CUBIC from just below it. Too high a guess costs one measure,
        -- too low a slower climb; probing again from far below, as the SDK does alone, cost
        -- a second overshoot as large as the first.
        s.wmax = math.max(PROBE_FLOOR, s.rate * FIRST_BACKOFF)
        enter('c')
        set_rate(s.wmax * BETA)
        -- The fast start's promised tokens are forgiven (charged at the new rate they would
        -- stall every process for seconds; they are spent already), and the next token is
        -- due FIRST_GAP from now, with no burst: the server's bucket is empty, and sent into
        -- it at about its rate the next requests would draw throttles until it refilled.
        s.tat = now + FIRST_GAP + (math.max(1, math.min(s.rate / 10, 10)) - 1) / s.rate
      end
    elseif s.st == 'p' or s.st == 'c' then
      s.from = s.st
      s.entry = s.rate or PROBE_FLOOR
      enter('m')
      s.mok = 0
      s.mthr = 0
      if s.from == 'p' then
        set_rate(s.entry * PROBE_BACKOFF)
      else
        -- Past the limit by a little: measure just below where the throttle came, so the
        -- processes do not keep drawing throttles from it while the measure lasts.
        set_rate(s.entry * BETA)
      end
    else
      s.mthr = s.mthr + throttled
      if now - s.since >= measure_time() then finish_measure() end
    end
  end
  if ok > 0 and s.st ~= 'u' then
    local t = now - s.since
    if s.st == 'p' then
      local doubling = PROBE_DOUBLING
      if tonumber(s.fast) == 1 then doubling = START_DOUBLING end
      set_rate(s.base * 2 ^ (t / math.max(doubling, rtt)))
    elseif s.st == 'm' then
      s.mok = s.mok + ok
      if t >= measure_time() then finish_measure() end
    else
      local k = (s.wmax * (1 - BETA) / SCALE) ^ (1 / 3)
      set_rate(SCALE * (t - k) ^ 3 + s.wmax)
    end
  end
end

-- Tokens: GCRA with reservations. Each token granted has its own time; a caller waits for
-- it instead of asking again, so one call serves a whole lease and no one polls.
local granted = 0
local first_ms = 0
local interval_us = 0
local paused_ms = 0
local auth_ms = 0
if s.authu > now then
  auth_ms = math.ceil((s.authu - now) * 1000)
elseif s.pu > now then
  paused_ms = math.ceil((s.pu - now) * 1000)
elseif want > 0 then
  granted = want
  if s.rate ~= nil then
    local interval = 1 / s.rate
    local burst = math.max(1, math.min(s.rate / 10, 10))
    local tat = math.max(tonumber(s.tat) or now, now)
    local first = tat - now - (burst - 1) * interval
    -- Promise nothing far ahead: the rate may rise meanwhile. Come back when it is near.
    local horizon = math.max(0.25, 2 * interval)
    if first > horizon then
      granted = 0
      first_ms = (first - horizon) * 1000
    else
      first_ms = first * 1000
      interval_us = math.floor(interval * 1000000)
      s.tat = tat + want * interval
    end
  end
end

-- Who shares the account: each caller's last call, so a process that has to go on alone
-- knows its fair share.
s['p:' .. caller] = now
local processes = 0
local fields = {}
local gone = {}
for name, value in pairs(s) do
  if string.sub(name, 1, 2) == 'p:' and tonumber(value) < now - PROCESS_TTL then
    gone[#gone + 1] = name
  else
    if string.sub(name, 1, 2) == 'p:' then processes = processes + 1 end
    fields[#fields + 1] = name
    fields[#fields + 1] = tostring(value)
  end
end
if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIRE', key, ttl_ms)

local rate_milli = -1
if s.rate ~= nil then rate_milli = math.floor(s.rate * 1000) end
return {granted, math.floor(first_ms), interval_us, rate_milli, paused_ms, auth_ms,
        tonumber(s.gen) or 0, s.authn, processes}
