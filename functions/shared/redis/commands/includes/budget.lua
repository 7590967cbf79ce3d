--[[
  The database's write budget, shared by every persist replica, what its
  scripts (budget-*-1.lua) share: the state, its clock repair and helpers.
  Included by the loader (functions/shared/redis/scripts.ts) where a script
  says `--- @include "includes/budget"`.

  One hash per database, on Redis's clock (TIME), so replicas on different
  machines agree.

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
  ceiling; rate never exceeds it). A plain GCRA over start times would not do:
  writes started one spacing apart by different replicas can reach the server
  bunched by up to their latency. The cost is that a replica waits for the previous write's
  answer (latency + spacing per write, across all replicas); the committer makes
  up for it with bigger batches.

  The largest batch is the database's too, kept here beside the rate when callers
  pass their MAX_BATCH_DOCS (maxBatch): it aims at what the writes' speed writes
  within the latency target, cut by a slow or failed write at most once a
  cooldown, grown by a fast one (the rule and its figures are persist's
  batch-limit.ts). One
  figure for every replica, adapted from every replica's writes, so three
  replicas batch as one process would: each replica's own
  batches, adapted only from its own writes, would shrink and recover at random
  with how the slow writes fall among them.

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

  Hash fields: holder, until (lease end, ms), done (last answer, ms), rate,
  cut (last decrease, ms), grew (last change, ms), batch (largest batch, docs),
  bcut (its last decrease, ms), seen (the last call's time, ms), lease (the last
  grant's leaseMs), steps (clock steps repaired), last (the writer of the last
  grant: budget-acquire-1.lua).
]]
local key = KEYS[1]
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

