#!lua flags=allow-oom
--[[
  Takes a lease when no one holds it (SET NX PX), as a script so that it runs
  when Redis is out of memory: the drain frees memory, so nothing it needs may
  be refused for the lack of it (allow-oom, on every script persist runs).

  Input:
    KEYS[1] lease                  spillway:persist:lease:<stream>
    ARGV[1] owner                  the caller's random id
    ARGV[2] time to live, ms

  Output:
    1  taken: the caller holds the lease
    0  someone holds it
]]
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
