#!lua flags=allow-oom
--[[
  Write budget: the holder's lease is extended to now + leaseMs (a long write).

  Input:
    KEYS[1] budget hash              spillway:budget:<database>
    ARGV[1] owner
    ARGV[2] leaseMs

  Output:
    {1, leaseMs}             extended
    {0, 'not holder'}        the lease ended and is someone else's (or no one's)
]]
--- @include "includes/budget"

local owner, leaseMs = ARGV[1], tonumber(ARGV[2])
local s = load()
if s.holder ~= owner then
  if s.rate ~= nil then save(s) end
  return {0, 'not holder'}
end
s.untilMs = now + leaseMs
s.lease = leaseMs
save(s)
return {1, leaseMs}
