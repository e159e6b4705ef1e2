-- One VTEX account's pace, shared by every process that points at this Redis.
--
-- Called once per lease of tokens (and, while no rate is known, a few times a second), with
-- what the caller saw since its last call. Everything happens here, atomically, on Redis'
-- clock: the token schedule (GCRA with reservations), the learned rate (the SDK's adaptive
-- rate: a slow start on successes, probe, measure, CUBIC; see _throttle.AdaptiveRate, which
-- this mirrors with successes and throttles counted in batches, and the caller's gentler
-- CUBIC scale), the pause after a long Retry-After, and the stop after refused credentials.
-- The account's limit, once measured, is also kept in a second key (KEYS[2], bound to the
-- target the requests go to) for far longer than the account's state: a store seen
-- yesterday starts at its limit today, not from the slow start (the older the limit, the
-- lower it is taken). No credentials are kept: the keys name the account's host (and a
-- digest of the target), the fields are numbers.
--
-- What is stored is trusted only as far as this script could have written it, so that no
-- stray write, other tool or clock step can hold an account: a field that is not a finite
-- number (or a known state) counts as absent; a pause or auth stop further ahead than the
-- length it was set with (or, without one, than the caller's own limit) is cut to that
-- length; a schedule further ahead than any lease leaves it is forgiven; and when Redis'
-- clock stepped back (TIME earlier than the last call's), every stored time is moved back
-- by as much, so the account's state is as it was at the last call.
--
-- KEYS[1]  the account's hash
-- KEYS[2]  the account's measured limit at this target: "rate redis_time"
-- ARGV     want, ok, throttled, pause_s, auth_failures, rtt_s, ttl_ms, auth_to_stop,
--          auth_cooldown_s, ceiling (0: none), adaptive (1/0), and the adaptive constants
--          min_rate, beta, scale, probe_floor, probe_doubling, probe_backoff, measure_time,
--          cooldown, and the generation of the learned rate the caller knew when it sent the
--          throttled requests (throttles of requests sent before a change are echoes), and
--          the number of auth stops the caller knew of at its last success, the rate all
--          callers start from together and how fast it doubles until the first throttle,
--          and the caller's id (processes seen in the last 10 s are counted), and the rate
--          the caller last heard of (0: none), which a new hash starts from, and the caller's
--          longest pause (its max_retry_after, s), and how far ahead a lease may start (s),
--          and the auth generation the caller's refusals were counted in (-1: none known),
--          and the slow start's constants (start_fast_from, start_doubling_fast, start_until,
--          start_backoff), the measure's (measure_answers, measure_over), CUBIC's quiet
--          answers, and how long a measured limit is kept (ms), its half-life (s), and
--          the age (s) up to which it is taken whole, and CUBIC's longest quiet time (s),
--          and how many throttles (and what share of a measure's answers) say the server
--          refused us, and the seconds the caller's successes (ok) came in, and how long a
--          measure must have been refused for its successes until then to measure the server,
--          and CUBIC's longest quiet time towards a guessed rate (s), and the most the
--          successes until a measure's last throttle may add to its average, and the
--          seconds without a call past which the account counts as idle, and whether the
--          rate the caller last heard of was a slow start's, still climbing (1/0), and the
--          seconds within which a caller alone asks whether Redis is back
-- Returns  {granted, first_ms, interval_us, rate_milli (-1: none), paused_ms, auth_ms, gen,
--          authn (auth stops so far), processes (callers seen in the last 10 s), authg (the
--          auth generation: how many times a success ended refusals or a stop), stretch
--          (millionths of the log of how much the schedule was stretched so far: the
--          callers move their leased tokens by as much), starting (1 while the account's
--          slow start climbs: its rate is no measured limit)}:
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
local max_pause = tonumber(ARGV[26])
local HORIZON = tonumber(ARGV[27])
local START_FAST_FROM = tonumber(ARGV[29])
local START_DOUBLING_FAST = tonumber(ARGV[30])
local START_UNTIL = tonumber(ARGV[31])
local START_BACKOFF = tonumber(ARGV[32])
local MEASURE_ANSWERS = tonumber(ARGV[33])
local MEASURE_OVER = tonumber(ARGV[34])
local QUIET_ANSWERS = tonumber(ARGV[35])
local MAX_QUIET = tonumber(ARGV[39])
-- The arguments added since the first release default to the SDK's values: a caller of an
-- older version (or a test) that sends fewer still gets a whole answer.
local REFUSED_THROTTLES = tonumber(ARGV[40]) or 3
local REFUSED_SHARE = tonumber(ARGV[41]) or 0.1
local LIMIT_TTL_MS = tonumber(ARGV[36])
local LIMIT_HALF_LIFE = tonumber(ARGV[37])
local LIMIT_FRESH = tonumber(ARGV[38])
local PROCESS_TTL = 10
-- Seconds of tokens a lease holds at most while the rate is being learned.
local LEARNING_LEASE = 0.25
-- No account takes a million requests a second; the cap also keeps every number returned
-- an integer Redis can send (it turns larger ones into nonsense).
local MAX_RATE = 1000000
-- The most tokens the schedule may run ahead of now: a burst (10 at most), a lease (32 at
-- most, the caller's MAX_LEASE) and the horizon's two tokens, with room for the rate's
-- changes since (set_rate keeps a debt in tokens). Past this, and a second, it is garbage.
local MOST_AHEAD = 64
-- When Redis lost a rate a caller knew: the share of it the account resumes at (see below).
local RESUME_SHARE = 0.9

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

-- The stored state. Ours are numbers but for the two states; a value that is not a finite
-- number (nan and inf parse as numbers) or a known state counts as absent, and is deleted.
local STATES = {u = true, s = true, p = true, c = true, m = true}
local TEXTS = {st = true, from = true}
local NUMBERS = {born = true, okt = true, ign = true, pu = true, pl = true, authf = true,
                 authu = true, al = true, authn = true, rate = true, tat = true, since = true,
                 base = true, fast = true, wmax = true, gen = true, entry = true, mok = true,
                 mthr = true, at = true, authg = true, lt = true, lc = true, xl = true,
                 mlc = true, fk = true}
local function finite(raw)
  local n = tonumber(raw)
  if n ~= nil and n == n and n > -math.huge and n < math.huge then return n end
  return nil
end
-- The seconds the caller's successes came in (0: unknown; they count whole).
local ok_span = finite(ARGV[42]) or 0
local REFUSED_SPAN = tonumber(ARGV[43]) or 0.5
local GUESS_QUIET = tonumber(ARGV[44]) or 5
local REFUSED_AT_MOST = tonumber(ARGV[45]) or 1.25
local IDLE_GAP = tonumber(ARGV[46]) or 2
-- Whether known_rate was a slow start's: no limit was measured yet.
local known_starting = ARGV[47] == '1'
local RECONNECT = tonumber(ARGV[48]) or 1
-- The caller's auth generation (a garbled one matches none: its refusals do not count).
local auth_gen_known = finite(ARGV[28])
local function is_process(name)
  return string.sub(name, 1, 2) == 'p:'
end

local s = {}
-- Every field read: one absent when the call ends (garbage, or cleared, as the start's rate
-- on reaching unlimited) is deleted. HSET alone left a cleared field in place, and the next
-- call read it back: an unlimited account kept the rate it reached (4,000/s) as its limit.
local loaded = {}
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do
  local name, raw = flat[i], flat[i + 1]
  local value = raw  -- a field we do not know (a later version's) is kept as it is
  if TEXTS[name] then
    if not STATES[raw] then value = nil end
  elseif NUMBERS[name] or is_process(name) then
    value = finite(raw)
  end
  loaded[#loaded + 1] = name
  s[name] = value
end

-- Redis' clock stepped back (a time sync, a failover to a host whose clock is behind): every
-- stored time lies that much ahead of TIME and would hold pauses, the schedule and the
-- learned rate's curve that much longer. Move them back by what TIME lost since the last
-- call: the state is as it was then (the time between that call and the step cannot be
-- told from the step, and counts as none).
if s.at ~= nil and s.at > now then
  local step = s.at - now
  for _, name in ipairs({'born', 'ign', 'pu', 'authu', 'tat', 'since', 'lt', 'lc'}) do
    if s[name] ~= nil and s[name] > 0 then s[name] = s[name] - step end
  end
  for name, value in pairs(s) do
    if is_process(name) then s[name] = value - step end
  end
end
-- The account's last call before this one: idle time is not CUBIC's or a probe's time.
local last_at = s.at
s.at = now

-- Counts are whole and not negative, rates within what set_rate could set (the slowest a
-- ceiling allows), and a process was last seen no later than now.
local function count(value)
  if value == nil or value < 0 or value >= 2 ^ 53 then return 0 end
  return math.floor(value)
end
s.okt = count(s.okt)
s.authf = count(s.authf)
s.authn = count(s.authn)
s.gen = count(s.gen)
s.authg = count(s.authg)
local floor_rate = MIN_RATE
if ceiling > 0 then floor_rate = math.min(floor_rate, ceiling) end
if s.rate ~= nil then s.rate = math.min(math.max(s.rate, floor_rate), MAX_RATE) end
for _, name in ipairs({'wmax', 'base', 'entry'}) do
  if s[name] ~= nil then s[name] = math.min(math.max(s[name], floor_rate), MAX_RATE) end
end
if s.mthr ~= nil then s.mthr = count(s.mthr) end
-- A measure's successes are counted in parts of a report (see below): not whole.
for _, name in ipairs({'mok', 'mlc'}) do
  if s[name] ~= nil and (s[name] < 0 or s[name] >= 2 ^ 53) then s[name] = 0 end
end
s.ign = s.ign or 0
-- Throttles are ignored for a round trip, or a caller's reconnect after Redis lost the
-- account: a minute ahead is garbage (it would hide every throttle and freeze a start).
if s.ign > now + 60 then s.ign = 0 end
s.lt = s.lt or 0
s.pu = s.pu or 0
s.authu = s.authu or 0
for name, value in pairs(s) do
  if is_process(name) and value > now then s[name] = now end
end

-- The learned rate's state is whole, or it starts again as for a new account.
local function learning_whole()
  if s.st == 'u' then return true end
  if s.since == nil then return false end
  if s.st == 's' then return s.rate ~= nil end
  if s.st == 'p' then return s.base ~= nil end
  if s.st == 'c' then return s.wmax ~= nil end
  if s.st == 'm' then
    return (s.from == 's' or s.from == 'p' or s.from == 'c') and s.entry ~= nil and s.mok ~= nil
      and s.mthr ~= nil
  end
  return false
end

-- CUBIC's time to come back to w_max (see _throttle.cubic_rate): at least QUIET_ANSWERS
-- answers at it, so a small account, whose burst is small, is probed past its limit rarely;
-- at most GUESS_QUIET seconds while w_max is a guess, not a measure (fk = 1).
local function cubic_k(w_max)
  local own = (w_max * (1 - BETA) / SCALE) ^ (1 / 3)
  local quiet = math.min(QUIET_ANSWERS / w_max, MAX_QUIET)
  if s.fk == 1 then quiet = math.min(quiet, GUESS_QUIET) end
  return math.max(own, quiet)
end

-- The account's limit measured before at this target, taken lower the older it is (nil: none,
-- or garbage).
local function remembered_limit()
  if KEYS[2] == nil then return nil end
  local raw = redis.call('GET', KEYS[2])
  if not raw then return nil end
  local rate, at = string.match(raw, '^(%S+) (%S+)$')
  rate, at = finite(rate), finite(at)
  if rate == nil or at == nil or rate <= 0 or at > now then return nil end
  local age = now - at
  if age > LIMIT_FRESH then rate = rate * 0.5 ^ ((age - LIMIT_FRESH) / LIMIT_HALF_LIFE) end
  return math.min(math.max(rate, MIN_RATE), MAX_RATE)
end

if s.born == nil or s.born > now then s.born = now end
local fresh = not learning_whole()
if fresh then
  local remembered = nil
  if adaptive then remembered = remembered_limit() end
  if adaptive and known_rate > 0 and known_starting then
    -- Redis lost the account while its slow start was still climbing: that rate is no
    -- limit, so go on climbing from just below it. Resumed as CUBIC, its plateau held a
    -- 50/s account at the 16/s its start had reached for tens of seconds, without a 429.
    s.st = 's'
    s.since = now
    s.rate = math.max(START_RATE, known_rate * RESUME_SHARE)
    s.ign = now + RECONNECT + rtt  -- see below; the rate holds still until then
  elseif adaptive and known_rate > 0 then
    -- Redis lost the account (restarted empty, or the key expired) while the caller knew
    -- its rate: go on with CUBIC towards that rate rather than learn it again from the slow
    -- start. It resumes at RESUME_SHARE of the rate, placed on CUBIC's curve (its start in
    -- the future) so it is back just below in a few seconds: until every process has
    -- rejoined, those still alone send their share besides.
    s.st = 'c'
    s.wmax = known_rate
    s.rate = math.max(MIN_RATE, known_rate * RESUME_SHARE)
    local k = cubic_k(s.wmax)
    s.since = now + k * ((1 - RESUME_SHARE) / (1 - BETA)) ^ (1 / 3) - k
    -- The processes still alone (each asks again within RECONNECT) keep sending at their
    -- own pace meanwhile, and the throttles they draw are theirs: counted, they measured a
    -- 50/s account at the 15/s the first process back was resuming from.
    s.ign = now + RECONNECT + rtt
  elseif remembered ~= nil then
    -- Measured on an earlier day: start on CUBIC's plateau just below it (half way back to
    -- it), and probe past it as slowly as after a measure.
    s.st = 'c'
    s.wmax = remembered
    s.since = now - cubic_k(remembered) / 2
    local k = cubic_k(s.wmax)
    s.rate = s.wmax * (1 + (1 - BETA) * ((now - s.since - k) / k) ^ 3)
  elseif adaptive then
    -- A new account: every process starts together at START_RATE (the smallest limits VTEX
    -- accounts have) and climbs on successes (a slow start), rather than each unpaced.
    s.st = 's'
    s.since = now
    s.rate = START_RATE
  else
    s.st = 'u'
  end
end
-- Nobody sent for a while (between two runs, a quiet hour): CUBIC's curve and a probe's
-- doubling go on from where they were, not from where the idle time would put them (60 s
-- idle on CUBIC's curve took a 26 req/s store to 120 req/s at the next run's first answer).
if not fresh and last_at ~= nil and now - last_at > IDLE_GAP and s.since ~= nil
    and (s.st == 'c' or s.st == 'p') then
  s.since = s.since + (now - last_at - IDLE_GAP)
end
-- The furthest ahead the script sets the curve's start: a resume from a rate Redis lost.
if s.since ~= nil then
  local latest = now
  if s.st == 'c' then latest = now + cubic_k(s.wmax) end
  if s.since > latest then s.since = latest end
end
if ceiling > 0 and (s.rate == nil or s.rate > ceiling) then
  s.rate = ceiling  -- the strictest rate_limit of the processes sharing the account wins
end

local function enter(state)
  s.st = state
  s.since = now
  s.fk = nil
  -- Callers count throttles only for requests sent after they heard of this change.
  s.gen = s.gen + 1
  -- Answers to requests sent before the change keep arriving for about a round trip.
  s.ign = now + math.max(COOLDOWN, 1.2 * rtt)
end

local function set_rate(rate)
  rate = math.min(math.max(MIN_RATE, rate), MAX_RATE)
  if ceiling > 0 then rate = math.min(rate, ceiling) end
  -- Tokens already promised are a debt in tokens, not in seconds: at a new rate it is paid
  -- sooner (or later), so the schedule does not stay stuck at a slow rate's pace, nor run
  -- at a fast one after the account said no. The schedule is stretched (or compressed), and
  -- every process moves its own leased tokens by as much when it hears (xl: the log of all
  -- the moves so far, returned to the callers), so the tokens of all of them still
  -- interleave at the new rate.
  local tat = tonumber(s.tat)
  if tat ~= nil and s.rate ~= nil and tat > now and rate ~= s.rate then
    s.tat = now + (tat - now) * s.rate / rate
    s.xl = (s.xl or 0) + math.log(s.rate / rate)
  end
  s.rate = rate
end

local function measure_floor()
  return math.max(MEASURE_TIME, 2 * rtt)
end

-- At least two round trips and enough answers to count, never longer than those answers
-- take at the lowest rate.
local function measure_done()
  local t = now - s.since
  if t < measure_floor() then return false end
  return s.mok >= MEASURE_ANSWERS or t >= MEASURE_ANSWERS / MIN_RATE
end

local function finish_measure()
  local refused = s.mthr >= REFUSED_THROTTLES and s.mthr >= REFUSED_SHARE * (s.mok + s.mthr)
  if not refused and (s.mthr == 0 or (s.lc or 0) < s.since + (now - s.since) / 2) then
    -- A few throttles, none in the second half of the measure: it measured our own pace, not
    -- the server's (see _throttle.AdaptiveRate._finish_measure).
    if s.from == 's' then
      -- Climb from the rate measured at towards the middle (geometric) of it and where the
      -- throttle came, slowly near it: the curve passes the held rate now (its start up to
      -- K ahead). See _throttle.AdaptiveRate._finish_measure.
      local held = s.rate or s.entry
      s.wmax = math.sqrt(held * s.entry)
      enter('c')
      s.fk = 1  -- a guess: a shorter K (the quiet one held a small store under its limit)
      local k = cubic_k(s.wmax)
      local x = math.max(-8, math.min(0, (held / s.wmax - 1) / (1 - BETA)))
      s.since = now - k * (1 - (-x) ^ (1 / 3))
    elseif s.from == 'p' then
      s.base = s.rate or PROBE_FLOOR
      enter('p')
    else
      s.wmax = s.entry
      enter('c')
      set_rate(s.wmax * BETA)
    end
    return
  end
  -- The successes over the measure, or, when higher, those up to its last throttle over
  -- that time: while the server refused us its successes came at its rate; after, our own
  -- demand may have fallen (see _throttle.measured_rate).
  local measured = s.mok / (now - s.since)
  local refused_for = (s.lc or 0) - s.since
  if refused_for >= REFUSED_SPAN and (s.mlc or 0) >= REFUSED_THROTTLES then
    measured = math.max(measured, math.min(s.mlc / refused_for, measured * REFUSED_AT_MOST))
  end
  -- The server refused us: its rate is under what we offered (the rate held). A limit taken
  -- too high is kept for the next run, which would start above it.
  if s.rate ~= nil then measured = math.min(measured, s.rate) end
  s.wmax = math.max(MIN_RATE, measured)
  enter('c')
  set_rate(s.wmax * BETA)
  -- Kept far longer than the account's state: the next run starts from it.
  if KEYS[2] ~= nil then
    redis.call('SET', KEYS[2], string.format('%.4f %.6f', s.wmax, now), 'PX', LIMIT_TTL_MS)
  end
end

-- A pause or an auth stop never lasts longer than the length it was set with (without
-- one, than the caller's own limit): a longer one is a stray write, or the clock's step.
local function cut(until_field, length_field, limit)
  local length = s[length_field] or limit
  if s[until_field] > now + length then s[until_field] = now + length end
end
cut('pu', 'pl', max_pause)
cut('authu', 'al', auth_cooldown)

-- Credentials: a success anywhere ends a stop (unless it happened before the caller heard
-- of the stop); refusals in a row start one. Refusals count only in the auth generation the
-- caller knew when it saw them: a report that comes late (from a process that could not
-- reach Redis, or was stopped on its own) must not re-arm a stop after a success ended the
-- refusals, as the key may have been restored meanwhile. A success that ends refusals or a
-- stop starts a new generation; the caller's own refusals, reported with its success, count
-- in it (they may have come after).
local refusals_current = auth_gen_known ~= nil and auth_gen_known == s.authg
if ok > 0 and auth_known >= s.authn then
  if s.authf > 0 or s.authu > 0 then s.authg = s.authg + 1 end
  s.authf = 0
  s.authu = 0
end
if auth_failures > 0 and refusals_current then
  s.authf = s.authf + auth_failures
  if s.authf >= auth_to_stop and s.authu <= now then
    s.authu = now + auth_cooldown
    s.al = auth_cooldown
    s.authn = s.authn + 1
  end
end
if pause > 0 and now + pause > s.pu then
  s.pu = now + pause
  s.pl = pause
end

-- The learned rate, from everyone's answers.
s.okt = s.okt + ok
if adaptive then
  if throttled > 0 then s.lt = now end
  if throttled > 0 and now >= s.ign and gen_known >= s.gen then
    if s.st == 'u' and s.rate == nil then
      -- The first throttle of an account that had no rate (adaptive off before, or past
      -- the slow start): restart from what got through so far (floored at one second, so
      -- the burst the server allowed does not pass for its rate), probing as usual.
      s.tat = now
      local elapsed = math.max(now - s.born, 1.0)
      s.base = math.max(PROBE_FLOOR, s.okt / elapsed)
      enter('p')
      set_rate(s.base)
    elseif s.st == 's' or s.st == 'p' or s.st == 'c' or s.st == 'u' then
      s.from = s.st
      if s.from == 'u' then s.from = 'p' end
      s.entry = s.rate or PROBE_FLOOR
      enter('m')
      s.mok = 0
      s.mthr = 0
      s.mlc = 0
      if s.from == 's' then
        -- The server's burst ran out about a doubling past its limit: measure from lower.
        set_rate(math.max(s.entry * START_BACKOFF, START_RATE))
      elseif s.from == 'p' then
        set_rate(s.entry * PROBE_BACKOFF)
      else
        -- Past the limit by a little: measure just below where the throttle came, so the
        -- processes do not keep drawing throttles from it while the measure lasts.
        set_rate(s.entry * BETA)
      end
    else
      s.mthr = s.mthr + throttled
      s.lc = now
      s.mlc = s.mok
      if measure_done() then finish_measure() end
    end
  end
  if ok > 0 and s.st ~= 'u' then
    local t = now - s.since
    if s.st == 's' and now < s.ign then
      -- A start resumed after Redis lost the account holds still until every process is
      -- back: the successes of those still alone, whose throttles are ignored meanwhile,
      -- took it to twice the limit unchecked.
    elseif s.st == 's' then
      -- Each success raises the rate so that it doubles every START_DOUBLING seconds while
      -- every request succeeds (faster past the small stores' limits).
      local rate = s.rate or START_RATE
      local doubling = START_DOUBLING
      if rate >= START_FAST_FROM then doubling = START_DOUBLING_FAST end
      rate = rate + ok * math.log(2) / doubling
      if rate >= START_UNTIL and ceiling <= 0 then
        s.st = 'u'
        s.rate = nil
        s.tat = nil
      else
        set_rate(rate)
      end
    elseif s.st == 'p' then
      set_rate(s.base * 2 ^ (t / math.max(PROBE_DOUBLING, rtt)))
    elseif s.st == 'm' then
      -- Only the successes that came since the measure began: a report covers the time
      -- since the caller's last call, and counted whole, the successes of the faster rate
      -- before the measure passed for the server's (a limit of 50 measured at 68).
      local counted = ok
      if ok_span > 0 and now - ok_span < s.since then
        counted = ok * math.max(0, now - s.since) / ok_span
      end
      s.mok = s.mok + counted
      if measure_done() then
        finish_measure()
      elseif t >= measure_floor() and now - s.lt < measure_floor() and s.rate ~= nil then
        -- The server's bucket is empty: its successes come at its rate. Hold just above
        -- what they say, so the measure itself draws few throttles.
        local measured = s.mok / t
        if s.rate > measured * MEASURE_OVER then set_rate(measured * MEASURE_OVER) end
      end
    else
      local k = cubic_k(s.wmax)
      set_rate(s.wmax * (1 + (1 - BETA) * ((t - k) / k) ^ 3))
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
if s.rate ~= nil and s.tat ~= nil then
  -- A schedule further ahead than any lease leaves it is garbage (the clock's steps are
  -- undone above): forgiven, as the fast start's debt is.
  local interval = 1 / s.rate
  if s.tat > now + 1 + math.max(HORIZON, 2 * interval) + MOST_AHEAD * interval then
    s.tat = now
  end
end
-- What the caller is told to wait is bounded by its own limits too (another process may
-- have set a longer pause than this one's max_retry_after).
local auth_s = math.min(s.authu - now, auth_cooldown)
local pause_s = math.min(s.pu - now, max_pause)
if auth_s > 0 then
  auth_ms = math.ceil(auth_s * 1000)
elseif pause_s > 0 then
  paused_ms = math.ceil(pause_s * 1000)
elseif want > 0 then
  local sharing = 0
  for name, value in pairs(s) do
    if is_process(name) and value >= now - PROCESS_TTL then sharing = sharing + 1 end
  end
  if s['p:' .. caller] == nil then sharing = sharing + 1 end
  sharing = math.max(1, sharing)
  local learning = s.rate ~= nil and s.st ~= 'c'
  if learning then
    -- While the rate is being learned (slow start, measure, probe) it changes within a
    -- second: a lease covers this process' share of a quarter of one, so every process
    -- hears of a throttle soon instead of sending tokens at a rate the account just refused.
    want = math.min(want, math.max(1, math.floor(s.rate * LEARNING_LEASE / sharing + 0.5)))
  end
  granted = want
  if s.rate ~= nil then
    local interval = 1 / s.rate
    local burst = math.max(1, math.min(s.rate / 10, 10))
    local tat = math.max(s.tat or now, now)
    local first = tat - now - (burst - 1) * interval
    -- Promise nothing far ahead: the rate may rise meanwhile. Come back when it is near.
    local horizon = math.max(HORIZON, 2 * interval)
    if learning and sharing > 1 then
      -- While the rate is learned, tokens are promised a lease ahead at most: the rate
      -- changes within a second, and tokens promised far ahead to one process fall between
      -- another's when it moves. A process alone moves all of them: no need.
      horizon = math.max(LEARNING_LEASE, 2 * interval)
    end
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
  if is_process(name) and value < now - PROCESS_TTL then
    gone[#gone + 1] = name
  else
    if is_process(name) then processes = processes + 1 end
    fields[#fields + 1] = name
    fields[#fields + 1] = tostring(value)
  end
end
for _, name in ipairs(loaded) do
  if s[name] == nil then gone[#gone + 1] = name end
end
if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIRE', key, ttl_ms)

local rate_milli = -1
if s.rate ~= nil then rate_milli = math.floor(s.rate * 1000) end
local stretch_micro = 0
if s.xl ~= nil and math.abs(s.xl) < 1e9 then stretch_micro = math.floor(s.xl * 1000000) end
local starting = 0
if s.st == 's' then starting = 1 end
return {granted, math.floor(first_ms), interval_us, rate_milli, paused_ms, auth_ms,
        s.gen, s.authn, processes, s.authg, stretch_micro, starting}
