#!lua flags=allow-oom
--[[
  The database's write budget, shared by every persist replica: one hash per
  database, on Redis's clock (TIME), so replicas on different machines agree.

  Guarantee: at the database server, no one-second window, wherever it starts,
  holds more than `ceiling` write commands, whether the server counts a command
  when it arrives or when it completes.
  Why: the budget is a single flight. A replica writes only while it holds the
  lease (one holder at a time, across all replicas), and the next lease is
  granted no earlier than 1010/rate ms (1 % slack for timers) after the previous
  holder's release, which it sends after its write's ANSWER. A write is counted
  at the server somewhere between its grant and its release, both seen here, so
  any two counted writes are at least 1010/rate ms apart; a one-second window
  then holds at most floor(0.99 * rate) + 1 <= ceiling of them (for an integer
  ceiling; rate never exceeds it). A plain GCRA over start times would not do: writes started
  one spacing apart by different replicas can reach the server bunched by up to
  their latency. The cost is that a replica waits for the previous write's
  answer (latency + spacing per write, across all replicas); the committer makes
  up for it with bigger batches.

  The largest batch is the database's too, kept here beside the rate when callers
  pass their MAX_BATCH_DOCS (maxBatch): a write slower than the target (or failed)
  halves it, at most once a second, down to min(10, maxBatch); a fast one adds
  maxBatch / 50 back. One figure for every replica, adapted from every replica's
  writes, so three replicas batch as one process would: each replica's own
  batches, adapted only from its own writes, would shrink and recover at random
  with how the slow writes fall among them.

  Step by step:
    1. now = TIME in ms. The rate is min(stored rate, ceiling of this caller),
       at least floor: a lowered ceiling takes effect at once.
    2. acquire: a holder whose lease has ended counts as answered when it ended
       (its write may still reach the server; nothing better is known), and is
       dropped. If someone holds the lease: wait one spacing (the earliest the
       budget can be free again) and ask again; so a waiting replica asks at
       most `rate` times a second, and is due again soon after the release. Else if now < previous answer +
       spacing: wait until then. Else the caller becomes the holder until
       now + leaseMs.
    3. renew: the holder's lease is extended to now + leaseMs (a long write).
    4. release: only the holder. Its answer time (now) is where the next
       spacing starts; the rate adapts (AIMD):
         latency > targetMs or ok = 0 (the database failed or timed out):
           rate = max(floor, rate * 0.7), at most once a second (one slow
           period is one decrease, not one per write);
         else: rate = min(ceiling, rate + ceiling × 0.1 × the seconds since the
           last change, at most one): it climbs back by a tenth of the ceiling
           per second of fast writes, however many writes that is.
       A release by anyone else (its lease ended and may have been taken over)
       is refused: holder, lease and rate stay as they are. Only its answer time
       is kept, if later than the last one, so that the next write still starts
       one spacing after every answer this script hears of.
    5. cancel: the holder gives the lease back without having written (its
       acquire timed out at the caller and may have been granted after all):
       the answer time and rate are untouched.
    6. state: read only, for probes and metrics.
  Clock steps. TIME is Redis's wall clock, which NTP or a restore onto another
  host may step. Every call remembers the last time it saw (seen):
    - a clock stepped back (now < seen) moves every stored time back by the step,
      and any stored time still ahead of now by more than it can be (a last
      answer more than one spacing ahead, a lease end more than one lease ahead,
      the adaptation's times ahead at all) is brought back to now: otherwise
      every replica would wait out the step;
    - time nobody saw pass (no call for longer than a lease, with a holder: it
      renews every third of a lease, so it would have been seen) is not counted
      against the holder's lease: the stored times move forward by the gap, so a
      clock stepped forward cannot end a lease whose write is still running, by
      the holder's own renewals (an idle budget is rebased the same way, which
      only makes its next write wait one spacing; the adaptation's own times
      are left to age).
  Each such repair is counted (steps) and logged to Redis's log.
  A new hash starts at rate = ceiling, with its first grant one spacing after it
  is made (a replica of a budget whose hash was lost cannot double up with a
  write just answered). Every call but state refreshes a TTL of 10 minutes, so an
  unused budget disappears (callers keep leaseMs well under it).

  Input:
    KEYS[1] budget hash              spillway:budget:<database>
    ARGV[1] operation                acquire | renew | release | cancel | state

    acquire: ARGV[2] owner (unique per write), ARGV[3] leaseMs, ARGV[4] ceiling
             (writes/s), ARGV[5] floor (writes/s), ARGV[6] maxBatch (optional, docs)
    renew:   ARGV[2] owner, ARGV[3] leaseMs
    release: ARGV[2] owner, ARGV[3] latencyMs, ARGV[4] ok (1 | 0), ARGV[5] targetMs,
             ARGV[6] ceiling, ARGV[7] floor, ARGV[8] maxBatch (optional, docs)
    cancel:  ARGV[2] owner
    state:   ARGV[2] ceiling, ARGV[3] floor, ARGV[4] maxBatch (optional, docs)

  Output (rates are strings: Redis would truncate a Lua number to an integer):
    acquire: {1, rate, leaseMs, batch, steps}   granted: write now, renew before leaseMs
             {0, rate, waitMs, batch, steps}    not now: ask again after waitMs
             (batch nil without maxBatch; steps: clock steps repaired so far)
    renew:   {1, leaseMs}             extended
             {0, 'not holder'}        the lease ended and is someone else's (or no one's)
    release: {1, rate, waitMs}        released; the next write may start in waitMs
             {0, 'not holder', rate}  refused
    With maxBatch, acquire, release and state add the largest batch (docs) as a last element.
    cancel:  {1} given back | {0} not the holder
    state:   {holder or '', leaseLeftMs, waitMs, rate or ''}   ('' when no budget yet)

  Hash fields: holder, until (lease end, ms), done (last answer, ms), rate,
  cut (last decrease, ms), grew (last change, ms), batch (largest batch, docs),
  bcut (its last decrease, ms), seen (the last call's time, ms), lease (the last
  grant's leaseMs), steps (clock steps repaired).
]]
local key = KEYS[1]
local op = ARGV[1]
local TTL_MS = 600000
local SLACK = 1010
-- The rate climbs back by this share of the ceiling per second of fast writes.
local GROWTH = 0.1

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local function fmt(rate)
  return string.format('%.4f', rate)
end

-- Moves every stored time by delta ms.
local function shift(s, delta)
  if s.done ~= nil then s.done = s.done + delta end
  if s.untilMs > 0 then s.untilMs = s.untilMs + delta end
  s.cut = s.cut + delta
  if s.grew ~= nil then s.grew = s.grew + delta end
  s.bcut = s.bcut + delta
end

-- Repairs what a step of Redis's clock did to the stored times (see "Clock steps").
local function steady(s)
  local repaired = false
  local leaseMs = s.lease
  if s.seen ~= nil and now < s.seen - 1 then
    shift(s, now - s.seen)
    repaired = true
  elseif s.seen ~= nil and now - s.seen > leaseMs then
    -- Only the lease and the last answer: the adaptation's times may age as they would.
    local gap = now - s.seen
    if s.done ~= nil then s.done = s.done + gap end
    if s.untilMs > 0 then s.untilMs = s.untilMs + gap end
    repaired = s.holder ~= ''
  end
  local spacing = SLACK / (s.rate or 1)
  if s.done ~= nil and s.done > now + spacing then s.done = now; repaired = true end
  if s.untilMs > now + leaseMs then s.untilMs = now + leaseMs; repaired = true end
  for _, f in ipairs({'cut', 'grew', 'bcut'}) do
    if s[f] ~= nil and s[f] > now then s[f] = now; repaired = true end
  end
  if repaired then
    s.steps = s.steps + 1
    redis.log(redis.LOG_WARNING, 'spillway write budget ' .. key .. ': the clock moved; stored times repaired')
  end
  s.seen = now
end

local function load()
  local v = redis.call('HMGET', key, 'holder', 'until', 'done', 'rate', 'cut', 'grew', 'batch', 'bcut',
    'seen', 'lease', 'steps')
  local s = {
    holder = v[1] or '',
    untilMs = tonumber(v[2]) or 0,
    done = tonumber(v[3]),
    rate = tonumber(v[4]),
    cut = tonumber(v[5]) or 0,
    grew = tonumber(v[6]),
    batch = tonumber(v[7]),
    bcut = tonumber(v[8]) or 0,
    seen = tonumber(v[9]),
    lease = tonumber(v[10]) or 3000,
    steps = tonumber(v[11]) or 0,
  }
  steady(s)
  return s
end

-- The largest batch for a caller whose MAX_BATCH_DOCS is maxBatch (nil: none kept).
local function batchFor(s, maxBatch)
  if maxBatch == nil then return nil end
  if s.batch == nil or s.batch > maxBatch then return maxBatch end
  return s.batch
end

local function bounded(rate, ceiling, floor)
  if floor > ceiling then floor = ceiling end
  if rate == nil or rate > ceiling then rate = ceiling end
  if rate < floor then rate = floor end
  return rate
end

local function save(s)
  redis.call('HSET', key, 'holder', s.holder, 'until', s.untilMs, 'done', s.done,
    'rate', s.rate, 'cut', s.cut, 'grew', s.grew or 0, 'seen', s.seen, 'lease', s.lease,
    'steps', s.steps)
  if s.batch ~= nil then redis.call('HSET', key, 'batch', s.batch, 'bcut', s.bcut) end
  redis.call('PEXPIRE', key, TTL_MS)
end

if op == 'acquire' then
  local owner, leaseMs = ARGV[2], tonumber(ARGV[3])
  local s = load()
  s.rate = bounded(s.rate, tonumber(ARGV[4]), tonumber(ARGV[5]))
  local batch = batchFor(s, tonumber(ARGV[6]))
  local spacing = SLACK / s.rate
  if s.done == nil then s.done = now end
  if s.holder ~= '' and s.untilMs <= now then
    if s.untilMs > s.done then s.done = s.untilMs end
    s.holder = ''
  end
  local wait
  if s.holder ~= '' then
    wait = spacing
  elseif now < s.done + spacing then
    wait = s.done + spacing - now
  else
    s.holder = owner
    s.untilMs = now + leaseMs
    s.lease = leaseMs
    save(s)
    return {1, fmt(s.rate), leaseMs, batch or false, s.steps}
  end
  save(s)
  return {0, fmt(s.rate), math.max(1, math.ceil(wait)), batch or false, s.steps}
end

if op == 'renew' then
  local owner, leaseMs = ARGV[2], tonumber(ARGV[3])
  local s = load()
  if s.holder ~= owner then
    if s.rate ~= nil then save(s) end
    return {0, 'not holder'}
  end
  s.untilMs = now + leaseMs
  s.lease = leaseMs
  save(s)
  return {1, leaseMs}
end

if op == 'release' then
  local owner, latency, ok = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local target, ceiling, floor = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local maxBatch = tonumber(ARGV[8])
  local s = load()
  s.rate = bounded(s.rate, ceiling, floor)
  if s.done == nil or now > s.done then s.done = now end
  if s.holder ~= owner then
    save(s)
    return {0, 'not holder', fmt(s.rate), batchFor(s, maxBatch)}
  end
  if floor > ceiling then floor = ceiling end
  local slow = ok ~= '1' or latency > target
  if maxBatch ~= nil then
    local batch = batchFor(s, maxBatch)
    if not slow then
      batch = math.min(maxBatch, batch + math.max(1, math.floor(maxBatch / 50)))
    elseif now - s.bcut >= 1000 then
      batch = math.max(math.min(10, maxBatch), math.floor(batch / 2))
      s.bcut = now
    end
    s.batch = batch
  end
  if slow then
    if now - s.cut >= 1000 then
      s.rate = math.max(floor, s.rate * 0.7)
      s.cut = now
      s.grew = now
    end
  else
    -- Additive increase in time, not per write: frequent writes do not undo a cut at once.
    local elapsed = math.min(1000, math.max(0, now - (s.grew or (now - 1000))))
    s.rate = math.min(ceiling, s.rate + ceiling * GROWTH * elapsed / 1000)
    s.grew = now
  end
  s.holder = ''
  s.untilMs = 0
  save(s)
  return {1, fmt(s.rate), math.ceil(SLACK / s.rate), batchFor(s, maxBatch)}
end

if op == 'cancel' then
  local s = load()
  if s.holder ~= ARGV[2] then return {0} end
  s.holder = ''
  s.untilMs = 0
  save(s)
  return {1}
end

if op == 'state' then
  local s = load()
  if s.rate == nil then return {'', 0, 0, ''} end
  local rate = bounded(s.rate, tonumber(ARGV[2]), tonumber(ARGV[3]))
  local holder, left = s.holder, 0
  if holder ~= '' and s.untilMs > now then left = s.untilMs - now else holder = '' end
  local done = s.done or now
  if holder == '' and s.untilMs > done then done = s.untilMs end
  local wait = math.max(0, done + SLACK / rate - now)
  if holder ~= '' then wait = SLACK / rate end
  return {holder, math.ceil(left), math.ceil(wait), fmt(rate), batchFor(s, tonumber(ARGV[4]))}
end

return redis.error_reply('write budget: unknown operation ' .. tostring(op))
