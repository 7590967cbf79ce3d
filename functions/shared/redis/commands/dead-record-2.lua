#!lua flags=allow-oom
--[[
  Leaves a dead letter's record for the status monitor (receipt-status-3.lua),
  written by persist once events_dead holds the letter and before its entry
  leaves the stream (so an entry gone without a record was committed as an
  event). It lives as long as the receipts that may name it: the longer of
  ARGV[2] (persist's IDEMPOTENCY_TTL_SEC) and the `ttl` ingest keeps in the
  receipt ledger (its own IDEMPOTENCY_TTL_SEC, receipt-epoch-2.lua), so a
  deployment that set the setting for ingest alone never reads a dead letter
  as persisted. A script (allow-oom) rather than a SET: a full Redis must not
  hold up the drain that frees it.

  Input:
    KEYS[1] the record             spillway:receipts:<stream>:dead:<stream id>
    KEYS[2] receipt ledger         spillway:receipts:<stream> (hash: run, gaps, ttl)
    ARGV[1] JSON {reason, deadAt}
    ARGV[2] persist's time to live, ms

  Output:
    the time to live given, ms
]]
local ttl = math.max(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[2], 'ttl') or '0') or 0)
redis.call('SET', KEYS[1], ARGV[1], 'PX', string.format('%.0f', ttl))
return ttl
