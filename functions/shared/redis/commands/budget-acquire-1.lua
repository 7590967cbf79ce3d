#!lua flags=allow-oom
--[[
  Write budget: takes the lease for one write, or says how long to wait.
  A holder whose lease has ended counts as answered when it ended (its write
  may still reach the server; nothing better is known), and is dropped. If
  someone holds the lease: wait one spacing (the earliest the budget can be
  free again) and ask again; so a waiting replica asks at most `rate` times a
  second, and is due again soon after the release. Else if now < previous
  answer + spacing: wait until then. Else the caller becomes the holder until
  now + leaseMs. The rate is min(stored rate, this caller's ceiling), at least
  floor: a lowered ceiling takes effect at once.

  Input:
    KEYS[1] budget hash              spillway:budget:<database>
    ARGV[1] owner (unique per write)
    ARGV[2] leaseMs
    ARGV[3] ceiling, writes/s
    ARGV[4] floor, writes/s
    ARGV[5] maxBatch, docs (optional: the largest batch is kept only with it)

  The writer is the owner up to its last colon (persist's owners are
  <host>:<pid>:<random>:<n>, one per write: the writer is the process). A grant
  says whether the previous grant was the same writer's: then no other writer
  wrote in between, and what that writer read of the stream during its
  previous write is still as it was, but for its own commits.

  Output (rates are strings: Redis would truncate a Lua number to an integer):
    {1, rate, leaseMs, batch, steps, again}   granted: write now, renew before leaseMs;
                                            again = 1 when the previous grant was this writer's
    {0, rate, waitMs, batch, steps}    not now: ask again after waitMs
    (batch false without maxBatch; steps: clock steps repaired so far)
]]
--- @include "includes/budget"

local owner, leaseMs = ARGV[1], tonumber(ARGV[2])
local s = load()
s.rate = bounded(s.rate, tonumber(ARGV[3]), tonumber(ARGV[4]))
local batch = batchFor(s, tonumber(ARGV[5]))
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
  local writer = string.match(owner, '^(.*):[^:]*$') or owner
  local again = redis.call('HGET', key, 'last') == writer and 1 or 0
  redis.call('HSET', key, 'last', writer)
  return {1, fmt(s.rate), leaseMs, batch or false, s.steps, again}
end
save(s)
return {0, fmt(s.rate), math.max(1, math.ceil(wait)), batch or false, s.steps}
