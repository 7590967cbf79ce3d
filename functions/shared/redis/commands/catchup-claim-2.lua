#!lua flags=allow-oom
--[[
  Claims the next chunk of a backlog for one persist replica's catch-up: every
  replica may catch up at once, each on entries no other one claimed, because
  the claim moves one shared cursor atomically.

  Steps:
    1. GET the claim cursor (KEYS[2]): the last entry any replica claimed.
    2. Where to go on from: the cursor, unless it is missing or behind the source's
       group cursor (ARGV[1]); then just past the entries left to the source, the
       ARGV[2]-th entry after the group cursor (or the group cursor itself when
       fewer are there).
    3. XRANGE the stream (KEYS[1]) after that, ARGV[3] entries at most.
    4. SET the cursor to the last entry claimed, to expire after ARGV[4] ms unused.
  A replica that dies with a claimed chunk leaves it in the stream: the sweeper
  persists what stays there longer than STALE_AFTER_MS.

  Input:
    KEYS[1] stream                 spillway:events
    KEYS[2] claim cursor           spillway:persist:catchup:<stream>
    ARGV[1] the group's last-delivered id ("0-0" without a group)
    ARGV[2] entries past it left to the source (0 without a group)
    ARGV[3] most entries to claim
    ARGV[4] cursor time to live, ms

  Output:
    the claimed entries, as XRANGE gives them: {{id, {field, value, ...}}, ...}
]]
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end

local cursor = redis.call('GET', KEYS[2])
local from = cursor
if not cursor or before(cursor, ARGV[1]) then
  from = ARGV[1]
  local skip = tonumber(ARGV[2])
  if skip > 0 then
    local skipped = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', skip)
    if #skipped == skip then
      from = skipped[#skipped][1]
    end
  end
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. from, '+', 'COUNT', ARGV[3])
if #entries > 0 then
  redis.call('SET', KEYS[2], entries[#entries][1], 'PX', ARGV[4])
end
return entries
