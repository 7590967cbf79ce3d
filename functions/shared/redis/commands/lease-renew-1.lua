#!lua flags=allow-oom
--[[
  Extends a lease, but only for its holder: a replica whose lease expired and
  was taken by another must not extend the other's.

  Input:
    KEYS[1] lease                  spillway:persist:lease:<stream>
    ARGV[1] owner                  the holder's random id
    ARGV[2] time to live, ms

  Output:
    1  extended (the caller still holds the lease)
    0  not the holder: the lease is gone or someone else's
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
