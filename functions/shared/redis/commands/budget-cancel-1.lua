#!lua flags=allow-oom
--[[
  Write budget: the holder gives the lease back without having written (its
  acquire timed out at the caller and may have been granted after all): the
  answer time and rate are untouched.

  Input:
    KEYS[1] budget hash              spillway:budget:<database>
    ARGV[1] owner

  Output:
    {1} given back | {0} not the holder
]]
--- @include "includes/budget"

local s = load()
if s.holder ~= ARGV[1] then return {0} end
s.holder = ''
s.untilMs = 0
save(s)
return {1}
