#!lua flags=allow-oom
--[[
  Gives a lease up, but only for its holder (a lease that expired and was taken
  by another replica is left alone).

  Input:
    KEYS[1] lease                  spillway:persist:lease:<stream>
    ARGV[1] owner                  the holder's random id

  Output:
    1  released
    0  not the holder
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
