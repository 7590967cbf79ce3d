#!lua flags=allow-oom
--[[
  Makes the stream's receipts trustworthy on this Redis, before anything is
  appended to it: every client that appends (ingest, the dead-letter replay)
  runs it on every (re)connect before its first XADD (shared/redis/
  receipt-epoch.ts), when its XADD finds no stream (ARGV[4] = "1": the stream
  is made here), and ingest when a status read finds a stream without its
  marker, and again at least every half ARGV[3] while it appends (so that the
  ledger outlives every receipt). Atomic, so every id is on one side of what
  it records.

  Steps:
    1. A restore (INFO server's run_id differs from the run recorded in
       KEYS[2]: Redis restarted, perhaps from an older AOF, or the record
       expired): the ids after the stream's last-generated id up to now may
       have been acknowledged and lost with what the AOF did not hold. That
       range is recorded as a gap (ids in a gap never read "persisted"), and
       the stream's last id is moved to the end of the current millisecond
       (XSETID), so every id generated from now on is past the gap. After a
       clean restart the gap holds no acknowledged id: it costs nothing.
    2. No marker (includes/receipts.lua says what it is): one is made, named
       with ARGV[2], at an epoch no earlier than the stream's last id nor the
       end of the current millisecond, and the stream's last id moved there.
       Ids up to the epoch are not this marker's to vouch for (a stream
       deleted and made again: every id of the old one). Without a stream, it
       is made only when ARGV[4] is "1" (XGROUP CREATE … MKSTREAM).
    3. The run is recorded, gaps whose end is older than ARGV[3] ms are
       dropped (their receipts have expired), the ledger's `ttl` (what
       dead-record-2.lua keeps a dead letter's record for) is raised to
       ARGV[3] if lower, and KEYS[2] expires twice its `ttl` later.

  Input:
    KEYS[1] stream                 spillway:events
    KEYS[2] receipt ledger         spillway:receipts:<stream> (hash: run, gaps, ttl)
    ARGV[1] the marker's name prefix
    ARGV[2] a fresh random name for a marker made here
    ARGV[3] how long receipts live, ms (IDEMPOTENCY_TTL_SEC)
    ARGV[4] "1": make the stream when it does not exist

  Output:
    {epoch, restored}  the stream's epoch ('' when there is no stream);
                       restored 1 when step 1 recorded a gap after another
                       run (a gap with no run recorded is not a restart)
]]
--- @include "includes/receipts"
local prefix, ttl = ARGV[1], tonumber(ARGV[3])
local now = now_ms()
local tail = end_of_ms(now)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
local exists = redis.call('EXISTS', KEYS[1]) == 1
local gaps = cjson.decode(redis.call('HGET', KEYS[2], 'gaps') or '[]')
local restored = 0

local recorded = redis.call('HGET', KEYS[2], 'run')
if exists and recorded ~= run then
  local last = last_id(KEYS[1])
  if id_less(last, tail) then
    gaps[#gaps + 1] = {last, tail}
    redis.call('XSETID', KEYS[1], tail)
    -- Another run was recorded: a restart. None: a stream made before any
    -- check (persist's XGROUP CREATE … MKSTREAM) or a ledger that expired.
    if recorded then restored = 1 end
  end
end

local epoch = nil
if exists then
  epoch = find_marker(KEYS[1], prefix)
end
if not epoch and (exists or ARGV[4] == '1') then
  epoch = tail
  if exists then
    local last = last_id(KEYS[1])
    if id_less(epoch, last) then
      epoch = last
    end
    redis.call('XGROUP', 'CREATE', KEYS[1], prefix .. ARGV[2], epoch)
  else
    redis.call('XGROUP', 'CREATE', KEYS[1], prefix .. ARGV[2], epoch, 'MKSTREAM')
  end
  if id_less(last_id(KEYS[1]), epoch) then
    redis.call('XSETID', KEYS[1], epoch)
  end
end

local kept = {}
for _, gap in ipairs(gaps) do
  if split_id(gap[2]) >= now - ttl then
    kept[#kept + 1] = gap
  end
end
local longest = math.max(ttl, tonumber(redis.call('HGET', KEYS[2], 'ttl') or '0') or 0)
redis.call('HSET', KEYS[2], 'run', run, 'gaps', cjson.encode(kept), 'ttl', string.format('%.0f', longest))
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', 2 * longest))
return {epoch or '', restored}
