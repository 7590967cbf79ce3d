#!lua flags=no-writes,allow-oom
--[[
  Which of these entries are still in the stream: persist's check, at a grant
  of the write budget, of a batch it read before it waited. Only persist deletes
  entries, and only once they are committed, so an entry gone meanwhile was
  committed by another replica. Checked here so that only one flag per entry
  crosses the network.

  Input:
    KEYS[1] stream                 spillway:events
    ARGV    entry ids

  Output:
    one integer per id, in order: 1 in the stream, 0 not
]]
local present = {}
for i, id in ipairs(ARGV) do
  present[i] = #redis.call('XRANGE', KEYS[1], id, id) > 0 and 1 or 0
end
return present
