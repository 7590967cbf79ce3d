#!lua flags=no-writes,allow-oom
--[[
  Counts the entries of a stream after an id, up to a limit: the backlog past
  the source's group cursor when XINFO GROUPS cannot give it (its `lag` is nil
  once entries past the cursor were deleted, as catch-up does). Counted here so
  that only the number crosses the network; at most ARGV[2] entries are read.

  Input:
    KEYS[1] stream                 spillway:events
    ARGV[1] the id to count after (exclusive)
    ARGV[2] most entries to count

  Output:
    the count, at most ARGV[2]
]]
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
