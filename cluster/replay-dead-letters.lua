-- Moves dead letters back into the event stream, oldest first, atomically.
--
-- 1. XRANGE the dead-letter stream from its start, at most ARGV[1] entries.
-- 2. XADD each entry's fields, unchanged, to the event stream (a new stream id;
--    the event keeps its own "id" field, so persist's write stays idempotent).
-- 3. XDEL the entry from the dead-letter stream.
--
-- KEYS[1]  dead-letter stream (spillway:dead-letters)
-- KEYS[2]  event stream (spillway:events)
-- ARGV[1]  most entries to move in this call
--
-- Reply: the number of entries moved; 0 when the dead-letter stream is empty.
local entries = redis.call("XRANGE", KEYS[1], "-", "+", "COUNT", tonumber(ARGV[1]))
for _, entry in ipairs(entries) do
  redis.call("XADD", KEYS[2], "*", unpack(entry[2]))
  redis.call("XDEL", KEYS[1], entry[1])
end
return #entries
