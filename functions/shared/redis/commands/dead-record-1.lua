#!lua flags=allow-oom
--[[
  Leaves a dead letter's record for the status monitor (receipt-status-3.lua),
  written by persist once events_dead holds the letter and before its entry
  leaves the stream (so an entry gone without a record was committed as an
  event). It expires with the receipts (IDEMPOTENCY_TTL_SEC): by then every
  receipt naming it has expired too. A script (allow-oom) rather than a SET: a
  full Redis must not hold up the drain that frees it.

  Input:
    KEYS[1] the record             spillway:receipts:<stream>:dead:<stream id>
    ARGV[1] JSON {reason, deadAt}
    ARGV[2] time to live, ms

  Output:
    "OK"
]]
return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
