#!lua flags=allow-oom
--[[
  Adds what one persist replica took out of the stream since its last report
  to the stream's drain rate (includes/drain-rate.lua says how it is kept and
  read): at most once a second per replica, and 0 while it holds work that
  does not commit, so a drain stalled for a whole window reads 0. Buckets older than the window are
  dropped, and the key expires a window after the last report: a drain nobody
  reports (persist stopped, or idle) claims no rate.

  Input:
    KEYS[1] the stream's drain rate spillway:drain:<stream>
    ARGV[1] entries taken out of the stream since the last report
    ARGV[2] the window, s

  Output:
    the drain rate now, entries/s, as text ('' unknown)
]]
--- @include "includes/drain-rate"
local window = tonumber(ARGV[2])
local now = tonumber(redis.call('TIME')[1])
redis.call('HINCRBY', KEYS[1], now, ARGV[1])
for _, second in ipairs(redis.call('HKEYS', KEYS[1])) do
  if (tonumber(second) or 0) < now - window then
    redis.call('HDEL', KEYS[1], second)
  end
end
redis.call('PEXPIRE', KEYS[1], window * 1000)
return drain_rate(KEYS[1], window)
