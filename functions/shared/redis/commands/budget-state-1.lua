#!lua flags=allow-oom
--[[
  Write budget: read only, for probes and metrics.

  Input:
    KEYS[1] budget hash              spillway:budget:<database>
    ARGV[1] ceiling, writes/s
    ARGV[2] floor, writes/s
    ARGV[3] maxBatch, docs (optional)

  Output:
    {holder or '', leaseLeftMs, waitMs, rate or '', batch}   ('' when no budget yet)
]]
--- @include "includes/budget"

local s = load()
if s.rate == nil then return {'', 0, 0, ''} end
local rate = bounded(s.rate, tonumber(ARGV[1]), tonumber(ARGV[2]))
local holder, left = s.holder, 0
if holder ~= '' and s.untilMs > now then left = s.untilMs - now else holder = '' end
local done = s.done or now
if holder == '' and s.untilMs > done then done = s.untilMs end
local wait = math.max(0, done + SLACK / rate - now)
if holder ~= '' then wait = SLACK / rate end
return {holder, math.ceil(left), math.ceil(wait), fmt(rate), batchFor(s, tonumber(ARGV[3]))}
