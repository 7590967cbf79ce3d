#!lua flags=allow-oom
--[[
  Write budget: the holder's write was answered. Its answer time (now) is
  where the next spacing starts; the rate adapts (AIMD):
    latency > targetMs or ok = 0 (the database failed or timed out):
      rate = max(floor, rate * 0.7), at most once a second (one slow period is
      one decrease, not one per write);
    else: rate = min(ceiling, rate + ceiling × 0.1 × the seconds since the last
      change, at most one): it climbs back by a tenth of the ceiling per second
      of fast writes, however many writes that is.
  With maxBatch, the largest batch adapts by the caller's rule (persist's
  batch-limit.ts gives its figures and says why), aiming at what the write's
  speed (docs ÷ latency) writes in aim × targetMs (fit): a write slower than
  the target cuts it to fit, one not answered (or of no documents) halves it, either at most once
  per cooldown and down to minBatch; a write within the target that held at
  least half the batch lets it grow to fit, by at most growth times, up to
  maxBatch.
  A release by anyone else (its lease ended and may have been taken over) is
  refused: holder, lease and rate stay as they are. Only its answer time is
  kept, if later than the last one, so that the next write still starts one
  spacing after every answer this script hears of.

  Input:
    KEYS[1] budget hash              spillway:budget:<database>
    ARGV[1] owner
    ARGV[2] latencyMs
    ARGV[3] ok (1 | 0)
    ARGV[4] targetMs
    ARGV[5] ceiling, writes/s
    ARGV[6] floor, writes/s
    ARGV[7] maxBatch, docs (optional; with it ARGV[8..12])
    ARGV[8] minBatch, docs
    ARGV[9] the write's documents
    ARGV[10] cooldownMs
    ARGV[11] aim, a share of targetMs
    ARGV[12] growth, the most a write grows the batch by (a factor)

  Output (rates are strings):
    {1, rate, waitMs, batch}         released; the next write may start in waitMs
    {0, 'not holder', rate, batch}   refused
    (batch nil without maxBatch)
]]
--- @include "includes/budget"

local owner, latency, ok = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local target, ceiling, floor = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local maxBatch = tonumber(ARGV[7])
local minBatch, docs, cooldownMs = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local aim, growth = tonumber(ARGV[11]), tonumber(ARGV[12])
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
  local fit = math.floor(docs * aim * target / math.max(latency, 1))
  if slow then
    if now - s.bcut >= cooldownMs then
      if ok ~= '1' or docs == 0 then
        batch = math.max(minBatch, math.floor(batch / 2))
      else
        batch = math.max(minBatch, math.min(batch, fit))
      end
      s.bcut = now
    end
  elseif docs * 2 >= batch then
    batch = math.min(maxBatch, math.max(batch, math.min(math.floor(batch * growth), fit)))
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
