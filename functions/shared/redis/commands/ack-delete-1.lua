#!lua flags=allow-oom
--[[
  Forgets stream entries that are committed in MongoDB: XACK them for the
  source's consumer group, THEN XDEL them, in one atomic step.

  Why this order: the source re-reads its pending entries on restart; a pending
  entry that was deleted comes back with nil fields and stalls its consumer.
  Acking first keeps deleted entries out of every pending list. The source's own
  later XACK is a harmless no-op. The stream key itself is never deleted or
  trimmed (a missing stream leaves the source failing with NOGROUP).

  Input:
    KEYS[1] stream                 spillway:events
    ARGV[1] consumer group         spillway-persist
    ARGV[2..] stream entry ids

  Output:
    {acked, deleted}  counts; acked is 0 when the group does not exist
]]
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
local acked = 0
local ok, result = pcall(redis.call, 'XACK', KEYS[1], ARGV[1], unpack(ids))
if ok then
  acked = result
elseif not string.find(tostring(result.err or result), 'NOGROUP', 1, true) then
  return redis.error_reply(tostring(result.err or result))
end
local deleted = redis.call('XDEL', KEYS[1], unpack(ids))
return {acked, deleted}
